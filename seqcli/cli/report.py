"""`seqcli report`: one self-contained HTML page about a model: its diagram, its table, its
weights, and with an input its feature maps, with a history its training curves."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    InputShapeOpt,
    ModelArg,
    QuietOpt,
    ThreadsOpt,
    WeightsOpt,
    app,
    parse_shape,
    stdin_once,
)
from seqcli.errors import UsageError

MAX_SAMPLES = 64
"""The most samples whose predictions a report shows."""


@app.command()
def report(
    model: ModelArg,
    input: Annotated[str | None, typer.Argument(
        metavar="INPUT", callback=stdin_once, show_default=False,
        help="Input .npy (batch first), - for stdin, or images (a file, folder or glob): the "
        "first samples' predictions and feature maps. Omitted: no input.")] = None,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE",
        help="HTML file to write; - for stdout (never a terminal).")] = "-",
    history: Annotated[str | None, typer.Option(
        "--history", metavar="FILE", callback=stdin_once,
        help="The .json file 'seqcli fit --history' wrote: loss and metric curves.")] = None,
    samples: Annotated[int, typer.Option(
        "--samples", metavar="N", min=1, max=MAX_SAMPLES,
        help="Predictions shown for this many first samples of INPUT (feature maps: the "
        "first).")] = 4,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Write a model's HTML report: diagram, weights, feature maps.

    One self-contained page (nothing fetched when opened): the diagram, the summary table
    with bars for parameters, MACs and activation memory, and a histogram of every weight;
    with INPUT, the predictions for its first samples and every layer's feature maps for the
    first; with --history (from seqcli fit), the loss and metric curves, training and
    validation.

    Examples:
      seqcli report configs/transfer_learning.yaml -o report.html
      seqcli report model.yaml images.npy --history history.json -o report.html
    """
    from seqcli.io.atomic import atomic_output, check_distinct, check_output
    from seqcli.io.formats import check_extension
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import prepare_run
    from seqcli.visual.history import read_history
    from seqcli.visual.report import ReportInputs, first_samples, report_page

    if input is not None and input_shape is not None:
        raise UsageError("--input-shape is for a report without INPUT: the input's shape "
                         "builds the model; drop one of them")
    check_extension(output, (".html", ".htm"), "the report (HTML)")
    check_distinct({"-o": output, "--history": history, "INPUT": input})
    check_output(output, what="an HTML page", option="-o FILE.html")
    curves = read_history(history) if history is not None else None
    runner = prepare_run(model, weights, threads, allow_outside=allow_outside,
                         base_dir=base_dir)
    rows = None
    if input is None:
        runner.model.build(parse_shape(input_shape))
    else:
        rows = first_samples(runner, input, samples)
        check_batch_memory(runner.built_model, len(rows))
    note = runner.initial_weights_note()
    if note and not quiet:
        print(f"seqcli: note: {note}", file=sys.stderr)
    page = report_page(ReportInputs(
        built=runner.built_model, weights=runner.weights, source=runner.loaded.source,
        notes=[note] if note else [], samples=rows, input_source=input, history=curves,
        history_source=history))
    with atomic_output(output, binary=False) as out:
        out.write(page)
