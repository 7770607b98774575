"""`seqcli summary` and `seqcli validate`: a model file's table, or its check."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    InputShapeOpt,
    ModelArg,
    WeightsOpt,
    app,
    load,
    parse_shape,
)
from seqcli.errors import UsageError
from seqcli.io.limits import MAX_BATCH_SIZE


@app.command()
def summary(
    model: ModelArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    show_trainable: Annotated[bool, typer.Option(
        "--show-trainable", help="Add a column saying whether each layer is trainable.")] = False,
    expand_nested: Annotated[bool, typer.Option(
        "--expand-nested", help="Show the layers inside nested models.")] = False,
    input_shape: InputShapeOpt = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, max=MAX_BATCH_SIZE,
        help="Batch size for the activation memory figure.")] = 1,
    weights: WeightsOpt = None,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Print the Keras-style summary: output shapes, parameters, MACs."""
    from seqcli.build import build
    from seqcli.io.atomic import STDOUT, check_output, write_stdout
    from seqcli.summary import summary_json, summary_text

    check_output(STDOUT, binary=False, option=None)
    loaded = load(model, allow_outside)
    built = build(loaded, parse_shape(input_shape))
    if weights is not None or loaded.weights_path is not None:
        _check_weights(loaded, built, weights)
    if json_output:
        document = summary_json(built, expand_nested=expand_nested, batch_size=batch_size)
        write_stdout(json.dumps(document) + "\n")
    else:
        write_stdout(summary_text(built, expand_nested=expand_nested,
                                  show_trainable=show_trainable, batch_size=batch_size,
                                  boxes=sys.stdout.isatty()))


@app.command()
def validate(
    model: ModelArg,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Check a model file (and its weights); print OK or every error."""
    from seqcli.build import build
    from seqcli.io.atomic import STDOUT, check_output, write_stdout

    check_output(STDOUT, binary=False, option=None)
    loaded = load(model, allow_outside)
    shape = parse_shape(input_shape)
    if loaded.input_shape is None and shape is None:
        if weights is not None:
            raise UsageError("checking weights needs an input shape: pass --input-shape")
        write_stdout(f"OK: {loaded.source}: {len(loaded.layers)} layers; no input shape "
                     "(built from the first input)\n")
        return
    built = build(loaded, shape)
    if weights is not None or loaded.weights_path is not None:
        _check_weights(loaded, built, weights)
    write_stdout(f"OK: {loaded.source}: {len(loaded.layers)} layers, "
                 f"{built.total_params:,} params, input {list(built.input_shape)}, "
                 f"output {list(built.output_shape)}\n")


def _check_weights(loaded, built, weights: str | None) -> None:
    """Read the weights (`weights`, or the model's own file) and check them against `built`."""
    from seqcli.runtime.weights import load_model_weights

    load_model_weights(loaded, built, weights)
