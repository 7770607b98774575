"""`seqcli extract`: intermediate layers' outputs, one layer as `.npy`, several as `.npz`, or
as CSV or JSON lines."""

from __future__ import annotations

from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    BatchSizeOpt,
    FormatOpt,
    InputArg,
    ModelArg,
    QuietOpt,
    StrictOpt,
    ThreadsOpt,
    WeightsOpt,
    app,
)


@app.command()
def extract(
    model: ModelArg,
    input: InputArg = "-",
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", metavar="NAME",
        help="A layer name or nested path (base/conv2d); repeat for several.")] = None,
    all_layers: Annotated[bool, typer.Option(
        "--all", help="Every top-level layer, as the Keras guide's [layer.output ...].")] = False,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE",
        help="Output file, by its extension: .npy (one layer), .npz (keyed by layer path), "
        ".csv (one layer), .jsonl (keyed by layer path); - for stdout (.npy for one layer, "
        ".npz for several).")] = "-",
    output_format: FormatOpt = None,
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Write the outputs of intermediate layers.

    Write intermediate layers' outputs: one layer as .npy, several as .npz keyed by path;
    or as text, by the -o extension or --format: .csv (one layer) or .jsonl.

    Examples:
      seqcli extract model.yaml images.npy --layer conv2d -o features.npy
      seqcli extract configs/transfer_learning.yaml images.npy --all -o all.npz
    """
    from seqcli.cli.progress import Progress, announce, progressing, warn_non_finite
    from seqcli.io.arrays import NonFiniteCounter, open_input
    from seqcli.io.atomic import check_output
    from seqcli.io.formats import array_format
    from seqcli.io.outputs import array_writer
    from seqcli.kernels.small import small_run
    from seqcli.runtime.extract import choose_layers, extract_batches
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run

    chosen = array_format(output, output_format, command="extract",
                          several=_several(layer or [], all_layers))
    check_output(output, binary=chosen.binary)
    runner = prepare_run(model, weights, threads, allow_outside=allow_outside,
                         base_dir=base_dir)
    with open_input(input) as data, numeric_warnings_off():
        runner.build(data.shape)
        check_batch_memory(runner.built_model, min(batch_size, data.shape[0]))
        built = runner.built_model
        paths = choose_layers(built, layer or [], all_layers)
        announce(runner, quiet)
        rows = data.shape[0]
        progress = Progress("extract", rows, enabled=not quiet, output=output)
        inputs = NonFiniteCounter(data.source, strict=strict)
        batches = data.batches(batch_size, as_float32=not runner.takes_ids)
        results = extract_batches(built, runner.weights, paths,
                                  progressing(inputs.check(batches), progress))
        part_shapes = built.part_shapes()
        shapes = {path: part_shapes[path] if path in part_shapes else built.find(path).output_shape
                  for path in paths}
        with array_writer(output, chosen, shapes, rows) as write, small_run(built, rows):
            for found in results:
                write(found)
        progress.done()
    warn_non_finite(inputs)


def _several(layers: list[str], all_layers: bool) -> str | None:
    """What the layers asked for are when they are several ("2 layers"), else None."""
    if all_layers:
        return "every top-level layer (--all)"
    count = len(set(layers))
    return f"{count} layers" if count > 1 else None
