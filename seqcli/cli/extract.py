"""`seqcli extract`: intermediate layers' outputs, one layer as `.npy`, several as `.npz`."""

from __future__ import annotations

from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BatchSizeOpt,
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
        "--layer", help="A layer name or nested path (base/conv2d); repeat for several.")] = None,
    all_layers: Annotated[bool, typer.Option(
        "--all", help="Every top-level layer, as the Keras guide's [layer.output ...].")] = False,
    output: Annotated[str, typer.Option(
        "-o", "--output", help="Output: .npy for one layer, .npz for several; - is stdout.")] = "-",
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Write intermediate layers' outputs: one layer as .npy, several as .npz keyed by path."""
    from seqcli.cli.progress import Progress, announce, progressing, warn_non_finite
    from seqcli.io.arrays import NonFiniteCounter, NpyWriter, NpzWriter, open_input
    from seqcli.io.atomic import check_output
    from seqcli.runtime.extract import choose_layers, extract_batches
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run

    check_output(output)
    runner = prepare_run(model, weights, threads, allow_outside=allow_outside)
    with open_input(input) as data, numeric_warnings_off():
        runner.build(data.shape)
        check_batch_memory(runner.built_model, min(batch_size, data.shape[0]))
        built = runner.built_model
        paths = choose_layers(built, layer or [], all_layers)
        announce(runner, quiet)
        rows = data.shape[0]
        progress = Progress("extract", rows, enabled=not quiet)
        inputs = NonFiniteCounter(data.source, strict=strict)
        batches = data.batches(batch_size, as_float32=not runner.takes_ids)
        results = extract_batches(built, runner.weights, paths,
                                  progressing(inputs.check(batches), progress))
        part_shapes = built.part_shapes()
        shapes = {path: part_shapes[path] if path in part_shapes else built.find(path).output_shape
                  for path in paths}
        if len(paths) == 1 and not all_layers:
            with NpyWriter(output, shapes[paths[0]], rows) as writer:
                for found in results:
                    writer.write(found[paths[0]])
        else:
            with NpzWriter(output, shapes, rows) as writer:
                for found in results:
                    for path, array in found.items():
                        writer.write(path, array)
        progress.done()
    warn_non_finite(inputs)
