"""`seqcli predict`: the model's outputs for a `.npy` array, as `.npy`, `.npz`, CSV or JSON
lines, or as ranked or thresholded text."""

from __future__ import annotations

import math
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
    finite,
    stdin_once,
)
from seqcli.cli.cluster import DaskOpt
from seqcli.errors import UsageError
from seqcli.io.formats import OutputFormat


@app.command()
def predict(
    model: ModelArg,
    input: InputArg = None,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE",
        help="Output file: .npy, .npz, .csv, .jsonl or .zarr (a Zarr store), by its extension; "
        "- for stdout.")] = "-",
    output_format: FormatOpt = None,
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    dask: DaskOpt = None,
    argmax: Annotated[bool, typer.Option(
        "--argmax", help="Print the index of the largest output of each sample.")] = False,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", min=1, help="Print the N largest outputs of each sample as index:value.",
    )] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", metavar="T", callback=finite(0, 1), show_default=False,
        help="For a single-unit (binary) output: print 1 where it is above T, else 0 (0.5 for "
        "a sigmoid score, 0 for logits).")] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", metavar="FILE", show_default=False, callback=stdin_once,
        help="Class names, one per line, in output order: printed instead of indices, and "
        "the header of a .csv.")] = None,
    interpolation: InterpolationOpt = None,
    crop_to_aspect_ratio: CropOpt = False,
    pad_to_aspect_ratio: PadOpt = False,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Run a model on an input array and write its outputs.

    Run the model on a .npy array (or a Zarr array, or a glob of .npy shards), or on image
    files (a folder, a glob, several files), decoded and resized to the model's input as
    Keras's image_dataset_from_directory does; write the outputs as .npy, .npz, .csv, .jsonl
    or .zarr (or text lines with --argmax, --top-k or --threshold, each starting with the
    image's path for images). With --dask, the batches run on a Dask cluster.

    Examples:
      seqcli predict configs/dense_stack.yaml x.npy -o y.npy
      cat images.npy | seqcli predict model.yaml --top-k 3
      seqcli predict model.yaml photos/ --top-k 3 --labels classes.txt
      seqcli predict model.yaml images.zarr -o scores.zarr --dask tcp://scheduler:8786
    """
    from seqcli.cli.progress import Progress, announce, progressing, warn_non_finite
    from seqcli.io.arrays import NonFiniteCounter
    from seqcli.io.chunked import output_layout
    from seqcli.io.inputs import image_options, input_paths, names_images, open_model_input

    lines = _lines_option(argmax, top_k, threshold)
    chosen = _output_format(output, output_format, lines, labels)
    from seqcli.cli.cluster import check_cluster_input, in_place, results_in_order, write_in_place
    from seqcli.io.labels import read_labels
    from seqcli.io.outputs import array_writer, computed_first
    from seqcli.io.stores import check_array_output
    from seqcli.kernels.small import small_run
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run

    check_array_output(output, chosen)
    paths = input_paths(input)
    images = image_options(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
                           names_images(paths))
    if dask is not None:
        check_cluster_input(paths)
    names = read_labels(labels) if labels is not None else None

    runner = prepare_run(model, weights, threads, allow_outside=allow_outside,
                         base_dir=base_dir)
    with open_model_input(paths, runner, images) as data, numeric_warnings_off():
        runner.build(data.shape)
        rows, sample = data.shape[0], runner.output_shape
        _check_output_shape(sample, lines, names, labels)
        check_batch_memory(runner.built_model, min(batch_size, data.shape[0]))
        announce(runner, quiet)
        progress = Progress("predict", rows, enabled=not quiet, output=output)
        inputs = NonFiniteCounter(data.source, strict=strict)
        results = NonFiniteCounter("<outputs>")
        cluster = {"paths": None, "batch_size": batch_size, "threads": threads,
                   "strict": strict, "progress": progress, "inputs": inputs, "outputs": results}
        if dask is not None and lines is None and in_place(output, chosen):
            write_in_place(dask, runner, data, output, chosen, {"output": sample}, **cluster)
        else:
            if dask is not None:
                outputs = (found["output"] for found in
                           results_in_order(dask, runner, data, **cluster))
            else:
                batches = data.batches(batch_size, as_float32=not runner.takes_ids)
                outputs = results.check(progressing(runner.run(inputs.check(batches)), progress))
            with small_run(runner.built_model, rows):
                outputs = computed_first(outputs)
                if lines is not None:
                    text = _line_text(sample, top_k, threshold, names)
                    _write_lines(outputs, output, _with_paths(text, getattr(data, "paths", None)))
                else:
                    with array_writer(output, chosen, {"output": sample}, rows, names,
                                      output_layout(data, batch_size)) as write:
                        for batch in outputs:
                            write({"output": batch})
        progress.done()
    warn_non_finite(inputs, results)


def _lines_option(argmax: bool, top_k: int | None, threshold: float | None) -> str | None:
    """The option that asks for text lines (`--argmax`, `--top-k`, `--threshold`), if any;
    a UsageError for more than one."""
    given = [name for name, value in (("--argmax", argmax), ("--top-k", top_k is not None),
                                      ("--threshold", threshold is not None)) if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} are alternatives; pass one")
    return given[0] if given else None


def _output_format(output: str, chosen: OutputFormat | None, lines: str | None,
                   labels: str | None) -> OutputFormat | None:
    """The format of the outputs (None: the text lines of the option `lines`), checked against
    the name of `output`, `--format` and `--labels`, before any work."""
    from seqcli.io.formats import array_format, check_lines_output, extension

    if lines is not None:
        check_lines_output(output, chosen, lines)
        return None
    result = array_format(output, chosen, command="predict")
    if labels is not None and result.binary:
        text = "--format csv or jsonl" if extension(output) is None else "-o FILE.csv or .jsonl"
        raise UsageError(f"--labels names outputs in text (--argmax, --top-k or --threshold "
                         f"lines, a .csv header, .jsonl keys), and .{result.value} has no names: "
                         f"drop --labels, or write text with {text}")
    return result


def _check_output_shape(sample: tuple, lines: str | None, names: list[str] | None,
                        labels: str | None) -> None:
    """Refuse, before the run, text lines or labels that do not fit the model's output shape
    `sample` (per sample): a single unit is a binary score, for --threshold alone."""
    from seqcli.io.labels import check_labels

    units = math.prod(sample)
    if lines in ("--argmax", "--top-k") and units == 1:
        raise UsageError(f"the model outputs one value per sample, a binary score, so {lines} "
                         "would always print 0; pass --threshold T to print 1 where the score "
                         "is above T, else 0 (0.5 for a sigmoid output, 0 for logits)")
    if lines in ("--argmax", "--top-k") and len(sample) != 1:
        raise UsageError(f"--argmax and --top-k need one output vector per sample; this model "
                         f"outputs shape {tuple(sample)} per sample")
    if lines == "--threshold" and units != 1:
        raise UsageError(f"--threshold is for a single-unit (binary) output; this model outputs "
                         f"{units:,} values per sample: use --argmax or --top-k")
    if names is not None:
        check_labels(names, labels, tuple(sample), binary=lines == "--threshold")


def _line_text(sample: tuple, top_k: int | None, threshold: float | None,
               names: list[str] | None):
    """The function that turns a batch of outputs into the lines asked for."""
    from seqcli.runtime.ranking import ranking_text, threshold_text

    if threshold is not None:
        return lambda batch: threshold_text(batch, threshold, names)
    k = 1 if top_k is None else min(top_k, sample[0])
    return lambda batch: ranking_text(batch, k, top_k is not None, names)


def _with_paths(text, paths: list[str] | None):
    """`text` with each line starting with its sample's file path and a tab, when the samples
    come from files (`paths`, in order); `text` itself otherwise."""
    if paths is None:
        return text
    done = 0

    def texted(batch) -> str:
        nonlocal done
        lines = text(batch).split("\n")[:-1]  # one per sample, each ending in a line break
        shown = paths[done:done + len(lines)]
        done += len(lines)
        return "".join(f"{_one_line(path)}\t{line}\n" for path, line in zip(shown, lines))

    return texted


def _one_line(path: str) -> str:
    """`path` on one line of UTF-8 text: its tabs and line breaks as `\\t`, `\\n`, `\\r`,
    bytes of a name that is not UTF-8 as `\\xff`."""
    import os

    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    return shown.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _write_lines(outputs, path: str, text) -> None:
    """Write `text(batch)` for each batch of `outputs` to `path` (`-`: stdout), atomically."""
    from seqcli.io.atomic import atomic_output

    with atomic_output(path, binary=False) as out:
        for batch in outputs:
            out.write(text(batch))
