"""`seqcli evaluate`: Keras's `model.evaluate`, the loss and metrics of a model on a labelled
set."""

from __future__ import annotations

from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    BatchSizeOpt,
    FromLogitsOpt,
    LossOpt,
    ModelArg,
    QuietOpt,
    ThreadsOpt,
    WeightsOpt,
    XArg,
    YArg,
    app,
    start_up_done,
)
from seqcli.errors import UsageError


@app.command()
def evaluate(
    model: ModelArg,
    x: XArg,
    y: YArg,
    loss: LossOpt = "mse",
    from_logits: FromLogitsOpt = False,
    metrics: Annotated[list[str] | None, typer.Option(
        "--metrics", metavar="NAME,...", help="Keras metric names, comma-separated or "
        "repeated: accuracy, mse, mae, precision, recall, top_k_categorical_accuracy, ... "
        "Default: accuracy for the cross-entropy losses, none otherwise.")] = None,
    batch_size: BatchSizeOpt = 32,
    json_output: Annotated[bool, typer.Option(
        "--json", help='Print {"loss": ..., "<metric>": ...} instead of one line.')] = False,
    weights: WeightsOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Print a model's loss and metrics on X, Y (Keras's evaluate).

    One line, `loss: 0.3120 - accuracy: 0.9000`, or with --json one JSON object. The loss is
    averaged over the batches weighted by their sizes, the metrics over every sample, as
    Keras computes them.

    Examples:
      seqcli evaluate model.yaml x.npy y.npy --loss sparse_categorical_crossentropy
      seqcli evaluate model.yaml x.npy y.npy --metrics mae,root_mean_squared_error --json
    """
    from seqcli.cli.progress import Progress, announce
    from seqcli.io.atomic import STDOUT, check_output, write_stdout
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run
    from seqcli.training.data import (
        check_finite,
        check_targets,
        output_shape_for,
        read_training_arrays,
    )
    from seqcli.training.fit import evaluate as run_evaluate
    from seqcli.training.fit import make_metrics
    from seqcli.training.losses import get_loss

    check_output(STDOUT, binary=False, option=None)
    names = metric_names(metrics)
    try:
        chosen_loss = get_loss(loss, from_logits)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    runner = prepare_run(model, weights, threads, allow_outside=allow_outside,
                         base_dir=base_dir)
    inputs, targets = read_training_arrays(x, y, command="evaluate")
    check_finite(inputs, x, command="evaluate")
    check_finite(targets, y, command="evaluate")
    runner.build(inputs.shape)
    built = runner.built_model
    output_shape = output_shape_for(built, inputs.shape[1:])
    targets = check_targets(targets, len(inputs), output_shape, chosen_loss, y)
    make_metrics(output_shape, targets, chosen_loss, names)  # targets a metric cannot take: 65, now
    check_batch_memory(built, min(batch_size, len(inputs)))
    announce(runner, quiet)
    progress = Progress("evaluate", len(inputs), enabled=not quiet)
    start_up_done()
    with numeric_warnings_off():
        results = run_evaluate(built, runner.weights, inputs, targets, chosen_loss, batch_size,
                               names, on_batch=progress.advance)
    progress.done()
    write_stdout(results_text(results, json_output))


def metric_names(options: list[str] | None) -> list[str] | None:
    """The metric names of `--metrics` (comma-separated, repeatable), checked: None when the
    option is not given (the loss's default metrics); a usage error for an unknown or
    repeated name."""
    from seqcli.training.metrics import canonical_name

    if options is None:
        return None
    names = [name.strip() for option in options for name in option.split(",") if name.strip()]
    for name in names:
        try:
            canonical_name(name)
        except ValueError as exc:
            raise UsageError(f"--metrics: {exc}") from None
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise UsageError(f"--metrics names '{repeated}' twice; name each metric once")
    return names


def results_text(results: dict[str, float], as_json: bool) -> str:
    """`loss: 0.1234 - accuracy: 0.9500` as Keras prints it, or one JSON object (a NaN or
    infinite value as null)."""
    import json
    import math

    if as_json:
        return json.dumps({name: value if math.isfinite(value) else None
                           for name, value in results.items()}) + "\n"
    return " - ".join(f"{name}: {value:.4f}" for name, value in results.items()) + "\n"
