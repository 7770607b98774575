"""`seqcli bench`: throughput, latency and FLOP/s of a model on this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    InputShapeOpt,
    ModelArg,
    ThreadsOpt,
    WeightsOpt,
    app,
    finite,
    parse_shape,
    start_up_done,
)
from seqcli.io.limits import MAX_BATCH_SIZE, MAX_BENCH_SECONDS


@app.command()
def bench(
    model: ModelArg,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", metavar="N", min=1, max=MAX_BATCH_SIZE,
        help="Images (rows) per batch.")] = 32,
    threads: ThreadsOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    per_layer: Annotated[bool, typer.Option(
        "--per-layer", help="Also time each layer alone on its real input.")] = False,
    seconds: Annotated[float, typer.Option(
        "--seconds", metavar="SECONDS", callback=finite(0, MAX_BENCH_SECONDS),
        help=f"How long to measure the steady state (at most {MAX_BENCH_SECONDS:g}).")] = 2.0,
    input_shape: InputShapeOpt = None,
    weights: WeightsOpt = None,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Measure a model's speed on this machine.

    Runs the model on random batches: first-run (kernel compile or cache load) time apart,
    then images/s, latency percentiles per batch, GFLOP/s and its share of this machine's
    float32 GEMM rate measured on the same threads; per layer with --per-layer.

    Examples:
      seqcli bench configs/guide_convnet.yaml --batch-size 1 --threads 1
      seqcli bench configs/dense_stack.yaml --per-layer --json
    """
    from seqcli.benchmark import format_result, run_benchmark
    from seqcli.io.atomic import STDOUT, check_output, write_stdout

    check_output(STDOUT, binary=False, option=None)
    start_up_done()  # timed runs see the garbage collector on, as predict's batches do
    result = run_benchmark(model, batch_size=batch_size, threads=threads,
                           input_shape=parse_shape(input_shape), weights=weights,
                           per_layer=per_layer, seconds=seconds, allow_outside=allow_outside,
                           base_dir=base_dir)
    if json_output:
        write_stdout(json.dumps(result.to_dict()) + "\n")
    else:
        write_stdout(format_result(result))
