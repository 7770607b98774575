"""`seqcli import-keras` and `seqcli export-keras`: Keras 3 `.keras` files in and out."""

from __future__ import annotations

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
    stdin_once,
)
from seqcli.errors import UsageError


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _notes(notes: list[str], quiet: bool) -> None:
    if not quiet:
        for note in notes:
            print(f"seqcli: note: {note}", file=sys.stderr)


@app.command("import-keras")
def import_keras(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", show_default=False, callback=stdin_once,
        help="The .keras file to import; with --weights-only, the model file (YAML) the "
        "weights belong to.")],
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE", show_default=False,
        help="The model file to write (MODEL.yaml; its weights go to MODEL.safetensors "
        "beside it); with --weights-only, the weights file (.safetensors or .npz, - for "
        "stdout).")],
    weights_only: Annotated[str | None, typer.Option(
        "--weights-only", metavar="FILE.weights.h5", callback=stdin_once,
        help="Import only weights, from a Keras model.save_weights file, onto the model "
        "file SOURCE.")] = None,
    input_shape: InputShapeOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace existing files (the model file, its weights).")] = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Convert a Keras .keras file to a model file and weights.

    Import a Keras 3 .keras file as a model file plus weights (or, with --weights-only, a
    Keras weights file onto an existing model file). An existing file is replaced only with
    --force.

    Examples:
      seqcli import-keras classifier.keras -o classifier.yaml
      seqcli import-keras model.yaml --weights-only model.weights.h5 -o model.safetensors
    """
    if weights_only is None:
        from seqcli.interop.keras_import import import_keras as run_import

        if input_shape is not None:
            raise UsageError("--input-shape only applies with --weights-only (a .keras file "
                             "records its input shape)")
        if source == "-" or output == "-":
            raise UsageError("import-keras reads a .keras file and writes a model file and "
                             "its weights: name both files (no -)")
        report = run_import(Path(source), Path(output), force)
        _notes(report.notes, quiet)
        weights = (f" and {report.weights_path} ({_count(report.tensors, 'tensor')}, "
                   f"{_count(report.params, 'param')})") if report.weights_path \
            else " (no weights)"
        if not quiet:
            print(f"seqcli: wrote {report.model_path} ({_count(report.layers, 'layer')}){weights}",
                  file=sys.stderr)
        return

    from seqcli.build import build
    from seqcli.interop.keras_import import read_keras_weights, refuse_existing
    from seqcli.io.atomic import check_output
    from seqcli.io.weights import weights_format, write_weights

    weights_format(output)
    check_output(output, what="binary weights")
    loaded = load(source, allow_outside, base_dir)
    built = build(loaded, parse_shape(input_shape))
    arrays = read_keras_weights(Path(weights_only), built)
    if not force:
        refuse_existing([output])
    write_weights(output, arrays)
    if output != "-" and not quiet:
        print(f"seqcli: wrote {_count(len(arrays), 'tensor')} "
              f"({_count(built.total_params, 'param')}) from {weights_only} to {output}",
              file=sys.stderr)


@app.command("export-keras")
def export_keras(
    model: ModelArg,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE", show_default=False,
        help="The .keras file to write (- for stdout).")],
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a model as a Keras 3 .keras file.

    A file that keras.saving.load_model opens, without Keras here, and that predicts what
    seqcli predicts.

    Examples:
      seqcli export-keras configs/transfer_learning.yaml -o transfer.keras
      seqcli export-keras model.yaml --weights trained.safetensors -o trained.keras
    """
    from seqcli.interop.keras_export import export_keras as run_export

    report = run_export(model, output, weights, parse_shape(input_shape), allow_outside,
                        base_dir)
    _notes(report.notes, quiet)
    if output != "-" and not quiet:
        print(f"seqcli: wrote {output} ({_count(report.layers, 'layer')}, "
              f"{_count(report.params, 'param')})", file=sys.stderr)
