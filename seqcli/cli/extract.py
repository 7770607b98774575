"""`seqcli extract`: intermediate layers' outputs, one layer as `.npy`, several as `.npz`, or
as CSV or JSON lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    BatchSizeOpt,
    CropOpt,
    FormatOpt,
    InputArg,
    InterpolationOpt,
    ModelArg,
    PadOpt,
    QuietOpt,
    StrictOpt,
    ThreadsOpt,
    WeightsOpt,
    app,
)
from seqcli.cli.cluster import DaskOpt


@app.command()
def extract(
    model: ModelArg,
    input: InputArg = None,
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", metavar="NAME",
        help="A layer name or nested path (base/conv2d); repeat for several.")] = None,
    all_layers: Annotated[bool, typer.Option(
        "--all", help="Every top-level layer, as the Keras guide's [layer.output ...].")] = False,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="FILE",
        help="Output file, by its extension: .npy (one layer), .npz (keyed by layer path), "
        ".csv (one layer), .jsonl (keyed by layer path), .zarr (a Zarr store: one array, or "
        "a group keyed by layer path); - for stdout (.npy for one layer, .npz for "
        "several). Default: -, or none with --images.")] = None,
    output_format: FormatOpt = None,
    images: Annotated[str | None, typer.Option(
        "--images", metavar="DIR",
        help="Also write each layer's output of each sample as a PNG grid into "
        "DIR/<layer>/<sample>.png; without -o, only these.")] = None,
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    dask: DaskOpt = None,
    interpolation: InterpolationOpt = None,
    crop_to_aspect_ratio: CropOpt = False,
    pad_to_aspect_ratio: PadOpt = False,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Write the outputs of intermediate layers.

    Write intermediate layers' outputs: one layer as .npy, several as .npz keyed by path;
    or as text, by the -o extension or --format: .csv (one layer) or .jsonl; or as a Zarr
    store (.zarr). INPUT may also be a Zarr array, a glob of .npy shards, or image files (a
    folder, a glob, several files) resized to the model's input as predict resizes them; with
    --dask, the batches run on a Dask cluster. --images DIR draws them as PNG grids of feature maps.

    Examples:
      seqcli extract model.yaml images.npy --layer conv2d -o features.npy
      seqcli extract configs/transfer_learning.yaml images.npy --all -o all.npz
      seqcli extract model.yaml images.zarr --layer conv2d -o maps.zarr --dask local
      seqcli extract model.yaml images.npy --layer conv2d --layer dense --images maps/
    """
    from seqcli.cli.cluster import check_cluster_input, in_place, results_in_order, write_in_place
    from seqcli.cli.progress import Progress, announce, progressing, warn_non_finite
    from seqcli.io.arrays import NonFiniteCounter
    from seqcli.io.atomic import check_distinct
    from seqcli.io.chunked import output_layout
    from seqcli.io.formats import array_format
    from seqcli.io.inputs import image_options, input_paths, names_images, open_model_input
    from seqcli.io.outputs import computed_first
    from seqcli.io.stores import check_array_output
    from seqcli.kernels.small import small_run
    from seqcli.runtime.extract import choose_layers, extract_batches
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run

    if output is None and images is None:
        output = "-"
    chosen = None
    if output is not None:
        chosen = array_format(output, output_format, command="extract",
                              several=_several(layer or [], all_layers))
        check_array_output(output, chosen)
    if images is not None:
        from seqcli.visual.grids import check_grid_directory

        check_distinct({"-o": output, "--images": images})
        check_grid_directory(images)
    sources = input_paths(input)
    images_in = image_options(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
                              names_images(sources))
    if dask is not None:
        check_cluster_input(sources)
    runner = prepare_run(model, weights, threads, allow_outside=allow_outside,
                         base_dir=base_dir)
    with open_model_input(sources, runner, images_in) as data, numeric_warnings_off():
        runner.build(data.shape)
        check_batch_memory(runner.built_model, min(batch_size, data.shape[0]))
        built = runner.built_model
        paths = choose_layers(built, layer or [], all_layers)
        announce(runner, quiet)
        rows = data.shape[0]
        progress = Progress("extract", rows, enabled=not quiet, output=output)
        inputs = NonFiniteCounter(data.source, strict=strict)
        part_shapes = built.part_shapes()
        shapes = {path: part_shapes[path] if path in part_shapes else built.find(path).output_shape
                  for path in paths}
        cluster = {"paths": paths, "batch_size": batch_size, "threads": threads,
                   "strict": strict, "progress": progress, "inputs": inputs,
                   "outputs": NonFiniteCounter("<outputs>")}
        if dask is not None and images is None and in_place(output, chosen):
            write_in_place(dask, runner, data, output, chosen, shapes, **cluster)
        else:
            if dask is not None:
                results = results_in_order(dask, runner, data, **cluster)
            else:
                batches = data.batches(batch_size, as_float32=not runner.takes_ids)
                results = extract_batches(built, runner.weights, paths,
                                          progressing(inputs.check(batches), progress))
            with small_run(built, rows):
                results = computed_first(results)
                with _writers(output, chosen, images, shapes, rows,
                              output_layout(data, batch_size)) as write:
                    for found in results:
                        write(found)
        progress.done()
    warn_non_finite(inputs)


@contextmanager
def _writers(output: str | None, chosen, images: str | None, shapes: dict[str, tuple],
             rows: int, layout) -> Iterator[Callable[[dict], None]]:
    """One function writing each batch's outputs to `output` (none: no arrays) and, with
    `images`, as PNG grids into that folder; each replaces what it replaces only if the block
    succeeds."""
    from seqcli.io.outputs import array_writer
    from seqcli.visual.grids import write_grids

    with ExitStack() as stack:
        writes = []
        if images is not None:  # first: it refuses a layer it cannot draw before any staging
            writes.append(stack.enter_context(write_grids(images, shapes, rows)))
        if output is not None:
            writes.append(stack.enter_context(
                array_writer(output, chosen, shapes, rows, layout=layout)))

        def write(found: dict) -> None:
            for each in writes:
                each(found)

        yield write


def _several(layers: list[str], all_layers: bool) -> str | None:
    """What the layers asked for are when they are several ("2 layers"), else None."""
    if all_layers:
        return "every top-level layer (--all)"
    count = len(set(layers))
    return f"{count} layers" if count > 1 else None
