"""`seqcli bench`: throughput, latency and FLOP/s of a model on this machine."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    InputShapeOpt,
    ModelArg,
    ThreadsOpt,
    WeightsOpt,
    app,
    parse_shape,
    start_up_done,
)


@app.command()
def bench(
    model: ModelArg,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Images (rows) per batch.")] = 32,
    threads: ThreadsOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    per_layer: Annotated[bool, typer.Option(
        "--per-layer", help="Also time each layer alone on its real input.")] = False,
    seconds: Annotated[float, typer.Option(
        "--seconds", min=0.0, help="How long to measure the steady state.")] = 2.0,
    input_shape: InputShapeOpt = None,
    weights: WeightsOpt = None,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Run the model on random batches: first-run (kernel compile or cache load) time apart,
    then images/s, latency percentiles per batch, GFLOP/s and its share of this machine's
    float32 GEMM rate measured on the same threads; per layer with --per-layer."""
    from seqcli.benchmark import format_result, run_benchmark
    from seqcli.runtime.compiled import keep_freed_memory

    keep_freed_memory()  # as predict does
    start_up_done()  # timed runs see the garbage collector on, as predict's batches do
    result = run_benchmark(model, batch_size=batch_size, threads=threads,
                           input_shape=parse_shape(input_shape), weights=weights,
                           per_layer=per_layer, seconds=seconds, allow_outside=allow_outside)
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        sys.stdout.write(format_result(result))
