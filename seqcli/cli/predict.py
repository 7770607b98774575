"""`seqcli predict`: the model's outputs for a `.npy` array, as `.npy` or ranked text."""

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
from seqcli.errors import UsageError


@app.command()
def predict(
    model: ModelArg,
    input: InputArg = "-",
    output: Annotated[str, typer.Option(
        "-o", "--output", help="Output .npy, or - for stdout.")] = "-",
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    argmax: Annotated[bool, typer.Option(
        "--argmax", help="Print the index of the largest output of each sample.")] = False,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", min=1, help="Print the K largest outputs of each sample as index:value.",
    )] = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Run the model on a .npy array; write the outputs as .npy (or text with --argmax/--top-k)."""
    from seqcli.cli.progress import Progress, announce, progressing, warn_non_finite
    from seqcli.io.arrays import NonFiniteCounter, open_input

    if argmax and top_k is not None:
        raise UsageError("--argmax and --top-k are alternatives; pass one")
    from seqcli.io.atomic import check_output
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run

    check_output(output, binary=not argmax and top_k is None)

    runner = prepare_run(model, weights, threads, allow_outside=allow_outside)
    with open_input(input) as data, numeric_warnings_off():
        runner.build(data.shape)
        check_batch_memory(runner.built_model, min(batch_size, data.shape[0]))
        announce(runner, quiet)
        rows, sample = data.shape[0], runner.output_shape
        progress = Progress("predict", rows, enabled=not quiet)
        inputs = NonFiniteCounter(data.source, strict=strict)
        results = NonFiniteCounter("<outputs>")
        batches = data.batches(batch_size, as_float32=not runner.takes_ids)
        outputs = results.check(progressing(runner.run(inputs.check(batches)), progress))
        if argmax or top_k is not None:
            _write_ranking(outputs, output, sample, 1 if argmax else top_k, with_values=not argmax)
        else:
            from seqcli.io.arrays import NpyWriter

            with NpyWriter(output, sample, rows) as writer:
                for batch in outputs:
                    writer.write(batch)
        progress.done()
    warn_non_finite(inputs, results)


def _write_ranking(outputs, path: str, sample: tuple, k: int, with_values: bool) -> None:
    """One text line per sample to `path`: the k largest indices (with values for --top-k)."""
    from seqcli.io.atomic import atomic_output
    from seqcli.runtime.ranking import ranking_text

    if len(sample) != 1:
        raise UsageError(f"--argmax and --top-k need one output vector per sample; this model "
                         f"outputs shape {tuple(sample)} per sample")
    k = min(k, sample[0])
    with atomic_output(path, binary=False) as out:
        for batch in outputs:
            out.write(ranking_text(batch, k, with_values))
