"""`seqcli evaluate`: Keras's `model.evaluate`, the loss and metrics of a model on a labelled
set."""

from __future__ import annotations

from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    BatchSizeOpt,
    ClassNamesOpt,
    CropOpt,
    FromLogitsOpt,
    InterpolationOpt,
    LossOpt,
    ModelArg,
    PadOpt,
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
    y: YArg = None,
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
    interpolation: InterpolationOpt = None,
    crop_to_aspect_ratio: CropOpt = False,
    pad_to_aspect_ratio: PadOpt = False,
    class_names: ClassNamesOpt = None,
    quiet: QuietOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Print a model's loss and metrics on X, Y (Keras's evaluate).

    One line, `loss: 0.3120 - accuracy: 0.9000`, or with --json one JSON object. The loss is
    averaged over the batches weighted by their sizes, the metrics over every sample, as
    Keras computes them. X may be images: with Y omitted, a folder of class subfolders,
    labelled as Keras's image_dataset_from_directory labels them.

    Examples:
      seqcli evaluate model.yaml x.npy y.npy --loss sparse_categorical_crossentropy
      seqcli evaluate model.yaml photos/ --loss sparse_categorical_crossentropy
      seqcli evaluate model.yaml x.npy y.npy --metrics mae,root_mean_squared_error --json
    """
    from seqcli.cli.progress import Progress, announce
    from seqcli.io.atomic import STDOUT, check_output, write_stdout
    from seqcli.io.inputs import image_options, names_images
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.runner import numeric_warnings_off, prepare_run
    from seqcli.training.data import (
        check_finite,
        check_targets,
        output_shape_for,
        read_examples,
        with_targets_for,
    )
    from seqcli.training.fit import evaluate as run_evaluate
    from seqcli.training.fit import make_metrics
    from seqcli.training.losses import get_loss

    check_output(STDOUT, binary=False, option=None)
    images = image_options(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
                           names_images([x]))
    check_class_names_output(class_names, x, y, images=images is not None, stdout_free=False)
    names = metric_names(metrics)
    try:
        chosen_loss = get_loss(loss, from_logits)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    runner = prepare_run(model, weights, threads, allow_outside=allow_outside,
                         base_dir=base_dir)
    examples = read_examples(x, y, runner.loaded, images, command="evaluate")
    names_text = class_names_text(examples.class_names, x) if class_names is not None else None
    inputs = examples.inputs
    check_finite(inputs, x, command="evaluate")
    check_finite(examples.targets, y or x, command="evaluate")
    runner.build(inputs.shape)
    built = runner.built_model
    output_shape = output_shape_for(built, inputs.shape[1:])
    examples = with_targets_for(examples, chosen_loss, output_shape, x)
    targets = check_targets(examples.targets, len(inputs), output_shape, chosen_loss, y or x)
    make_metrics(output_shape, targets, chosen_loss, names)  # targets a metric cannot take: 65, now
    check_batch_memory(built, min(batch_size, len(inputs)))
    announce(runner, quiet)
    progress = Progress("evaluate", len(inputs), enabled=not quiet)
    start_up_done()
    with numeric_warnings_off():
        results = run_evaluate(built, runner.weights, inputs, targets, chosen_loss, batch_size,
                               names, on_batch=progress.advance)
    progress.done()
    if names_text is not None:
        write_class_names(class_names, names_text)
    write_stdout(results_text(results, json_output))


def check_class_names_output(path: str | None, x: str, y: str | None, images: bool,
                             stdout_free: bool) -> None:
    """Refuse (exit 2) `--class-names` where there are no class folders to name, or to stdout
    when the command prints there (not `stdout_free`), and (73) a file it cannot write,
    before any work."""
    from seqcli.io.atomic import check_output

    if path is None:
        return
    if path == "-" and not stdout_free:
        raise UsageError("--class-names -: stdout holds the results; name a file")
    if not images or y is not None:
        raise UsageError(f"--class-names writes the names of X's class subfolders; here {x} is "
                         f"{'labelled by Y' if images else 'not images'}: drop --class-names")
    check_output(path, binary=False, option=None)


def class_names_text(names: list[str], source: str) -> str:
    """The class names, one per line in label order (what --labels reads); an InputDataError
    (before any work) for a folder name that cannot be such a line: a line break in it, or
    bytes that are not UTF-8."""
    from seqcli.errors import InputDataError

    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InputDataError(f"{source}: the class folder {name!r} is not named in UTF-8, "
                                 "so --class-names cannot write it; rename it") from None
        if "\n" in name or "\r" in name:
            raise InputDataError(f"{source}: the class folder {name!r} has a line break in its "
                                 "name, so --class-names cannot write it; rename it")
    return "".join(f"{name}\n" for name in names)


def write_class_names(path: str, text: str) -> None:
    """`text` (`class_names_text`) to `path`, atomically."""
    from seqcli.io.atomic import atomic_output

    with atomic_output(path, binary=False) as out:
        out.write(text)


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
