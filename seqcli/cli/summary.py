"""`seqcli summary` and `seqcli validate`: a model file's table, or its check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    InputShapeOpt,
    ModelArg,
    QuietOpt,
    WeightsOpt,
    app,
    load,
    parse_shape,
    print_error,
    stdin_once,
)
from seqcli.errors import OutputError, SeqcliError, UsageError
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
    base_dir: BaseDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the layers, output shapes and parameters of a model.

    Keras's model.summary() table (boxes on a terminal, plain text in pipes and files), with
    multiply-accumulates and activation memory; --json prints one JSON document instead.
    Weights are not needed: a 'weights:' file not written yet is only noted.

    Examples:
      seqcli summary configs/guide_convnet.yaml
      seqcli summary configs/transfer_learning.yaml --expand-nested --show-trainable
      seqcli freeze configs/dense_stack.yaml --all-but-last | seqcli summary - --json
    """
    from seqcli.build import build
    from seqcli.io.atomic import STDOUT, check_output, write_stdout
    from seqcli.io.terminal import columns, draws, unicode_glyphs
    from seqcli.summary import summary_json, summary_text

    check_output(STDOUT, binary=False, option=None)
    loaded = load(model, allow_outside, base_dir)
    built = build(loaded, parse_shape(input_shape))
    if weights is not None or loaded.weights_path is not None:
        _check_weights(loaded, built, weights, quiet)
    if json_output:
        document = summary_json(built, expand_nested=expand_nested, batch_size=batch_size)
        write_stdout(json.dumps(document) + "\n")
    else:
        write_stdout(summary_text(built, expand_nested=expand_nested,
                                  show_trainable=show_trainable, batch_size=batch_size,
                                  boxes=draws(sys.stdout), unicode=unicode_glyphs(sys.stdout),
                                  width=columns(sys.stdout)))


@app.command()
def validate(
    models: Annotated[list[str], typer.Argument(
        metavar="MODEL", show_default=False, callback=stdin_once,
        help="Model files (YAML); - for stdin.")],
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Check model files (and their weights): OK, or every error.

    One line per valid file on stdout (OK: FILE: layers, params, shapes); each error of an
    invalid file on stderr, as FILE:LINE:COL: message. Every file is checked. Exit 0 when
    all are valid, 65 when one is invalid, 66 when one cannot be read (even if another is
    invalid). A model's 'weights:' file not written yet is noted (seqcli init writes it).

    Examples:
      seqcli validate configs/*.yaml
      seqcli validate model.yaml --weights trained.safetensors
    """
    from seqcli.io.atomic import STDOUT, check_output

    check_output(STDOUT, binary=False, option=None)
    if weights is not None and len(models) > 1:
        raise UsageError(f"--weights belongs to one model, and {len(models)} are given: "
                         "validate that model alone")
    shape = parse_shape(input_shape)
    if len(models) == 1:
        _validate_one(models[0], weights, shape, allow_outside, base_dir, quiet)
        return
    worst = 0
    for model in models:
        try:
            _validate_one(model, None, shape, allow_outside, base_dir, quiet)
        except OutputError:
            raise
        except SeqcliError as error:
            print_error(str(error))
            worst = max(worst, error.exit_code)
    if worst:
        raise typer.Exit(worst)


def _validate_one(model: str, weights: str | None, shape: tuple[int, ...] | None,
                  allow_outside: bool, base_dir: Path | None, quiet: bool) -> None:
    """Check the model file `model` (and `weights`, or its own): print its OK line, or raise
    its errors."""
    from seqcli.build import build
    from seqcli.io.atomic import write_stdout

    loaded = load(model, allow_outside, base_dir)
    if loaded.input_shape is None and shape is None:
        if weights is not None:
            raise UsageError("checking weights needs an input shape: pass --input-shape")
        write_stdout(f"OK: {loaded.source}: {_layers(loaded)}; no input shape "
                     "(built from the first input)\n")
        note_weights_not_written(loaded, quiet)
        return
    built = build(loaded, shape)
    if weights is not None or loaded.weights_path is not None:
        _check_weights(loaded, built, weights, quiet)
    write_stdout(f"OK: {loaded.source}: {_layers(loaded)}, "
                 f"{built.total_params:,} params, input {list(built.input_shape)}, "
                 f"output {list(built.output_shape)}\n")


def _layers(loaded) -> str:
    """`1 layer`, `3 layers`: the top-level layers of a model file."""
    count = len(loaded.layers)
    return f"{count} layer{'' if count == 1 else 's'}"


def _check_weights(loaded, built, weights: str | None, quiet: bool) -> None:
    """Read the weights (`weights`, or the model's own file) and check them against `built`.
    The model's own file, not written yet, is only noted (unless `quiet`): shapes need no
    weights."""
    if weights is None and note_weights_not_written(loaded, quiet):
        return
    from seqcli.runtime.weights import load_model_weights

    load_model_weights(loaded, built, weights)


def note_weights_not_written(loaded, quiet: bool = False) -> bool:
    """Say on stderr (unless `quiet`) that the model's weights file does not exist yet and how
    to write it; False when it exists or the model names none."""
    missing = loaded.weights_not_written()
    if missing and not quiet:
        print(f"seqcli: note: {missing}; run `{loaded.command('init')}` to create it",
              file=sys.stderr)
    return missing is not None
