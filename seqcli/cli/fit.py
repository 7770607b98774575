"""`seqcli fit`: Keras's `compile` + `fit` on the trainable layers of a model file."""

from __future__ import annotations

import json
import sys
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
    finite,
    load,
    start_up_done,
    stdin_once,
)
from seqcli.errors import DivergedError, UsageError
from seqcli.io.limits import MAX_EPOCHS, MAX_SEED


@app.command()
def fit(
    model: ModelArg,
    x: XArg,
    y: YArg = None,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE", show_default=False,
        help="Weights file to write (.safetensors or .npz); required.")] = None,
    loss: LossOpt = "mse",
    from_logits: FromLogitsOpt = False,
    optimizer: Annotated[str, typer.Option(
        "--optimizer", metavar="NAME",
        help="sgd, adam or rmsprop (Keras's defaults).")] = "rmsprop",
    learning_rate: Annotated[float | None, typer.Option(
        "--learning-rate", metavar="F", callback=finite(low=0), help="At least 0. Default: "
        "Keras's (sgd 0.01, adam and rmsprop 0.001).")] = None,
    momentum: Annotated[float, typer.Option(
        "--momentum", callback=finite(0, 1),
        help="Momentum for sgd and rmsprop, between 0 and 1.")] = 0.0,
    nesterov: Annotated[bool, typer.Option("--nesterov", help="Nesterov momentum (sgd).")] = False,
    epochs: Annotated[int, typer.Option(
        "--epochs", min=1, max=MAX_EPOCHS, help="Passes over the data.")] = 1,
    batch_size: BatchSizeOpt = 32,
    shuffle: Annotated[bool, typer.Option(
        "--shuffle/--no-shuffle", help="Shuffle the training rows every epoch.")] = True,
    seed: Annotated[int, typer.Option(
        "--seed", min=0, max=MAX_SEED, help="Seeds shuffling and Dropout.")] = 0,
    validation_split: Annotated[float, typer.Option(
        "--validation-split", metavar="F", callback=finite(0, 0.99),
        help="Hold out this last fraction of the rows for validation, as Keras does (0 to "
        "0.99).")] = 0.0,
    validation_data: Annotated[tuple[str, str] | None, typer.Option(
        "--validation-data", metavar="XV YV", callback=stdin_once,
        help="Validation inputs and targets: XV.npy YV.npy (XV may be images, in sorted "
        "order).")] = None,
    history: Annotated[str | None, typer.Option(
        "--history", metavar="FILE",
        help="Write the per-epoch metrics to this .json file.")] = None,
    checkpoint: Annotated[bool, typer.Option(
        "--checkpoint", help="Write the weights after every epoch, not only at the end.")] = False,
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
    """Train a model's trainable layers (Keras compile + fit).

    Frozen layers stay bit-identical. On a terminal, a progress bar per epoch as Keras's
    verbose=1; in pipes and files, one line per epoch. The weights are written to -o at the
    end (with --checkpoint, after every epoch). X may be images: with Y omitted, a folder of
    class subfolders, labelled as Keras's image_dataset_from_directory labels them (and
    shuffled with --seed before a --validation-split, as it does).

    Examples:
      seqcli fit model.yaml x.npy y.npy -o trained.safetensors --epochs 5
      seqcli fit model.yaml x.npy labels.npy -o trained.safetensors \\
          --loss sparse_categorical_crossentropy --optimizer adam --validation-split 0.2
      seqcli fit model.yaml photos/ -o trained.safetensors --class-names classes.txt \\
          --loss sparse_categorical_crossentropy --validation-split 0.2
    """
    from seqcli.cli.evaluate import check_class_names_output, class_names_text, write_class_names
    from seqcli.cli.progress import FitProgress
    from seqcli.io.atomic import all_or_none, atomic_output, check_distinct, check_output
    from seqcli.io.formats import check_extension
    from seqcli.io.inputs import image_options, names_images
    from seqcli.io.weights import weights_format, write_weights
    from seqcli.runtime.compiled import set_threads
    from seqcli.runtime.memory import check_batch_memory
    from seqcli.runtime.model import Sequential
    from seqcli.runtime.runner import numeric_warnings_off
    from seqcli.training.data import (
        check_finite,
        check_targets,
        output_shape_for,
        read_examples,
        shuffled,
        split_validation,
        with_targets_for,
    )
    from seqcli.training.fit import fit as run_fit
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    if output is None:
        raise UsageError("Missing option '-o' / '--output': the weights file to write "
                         "(.safetensors or .npz)")
    if validation_split and validation_data:
        raise UsageError("--validation-split and --validation-data are alternatives; pass one")
    images = image_options(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio,
                           names_images([x]))
    weights_format(output, stdout=False)  # a name fit cannot write is refused before training
    check_distinct({"-o": output, "--history": history, "--class-names": class_names})
    check_output(output)
    check_class_names_output(class_names, x, y, images=images is not None, stdout_free=True)
    if history is not None:
        check_extension(history, (".json",), "the history (JSON)", option="--history")
        check_output(history, binary=False, option=None)
    try:
        chosen_loss = get_loss(loss, from_logits)
        chosen_optimizer = get_optimizer(optimizer, learning_rate, momentum, nesterov)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    set_threads(threads)
    loaded = load(model, allow_outside, base_dir)
    examples = read_examples(x, y, loaded, images)
    names_text = class_names_text(examples.class_names, x) if class_names is not None else None
    inputs = examples.inputs
    check_finite(inputs, x)
    check_finite(examples.targets, y or x)
    not_written = loaded.weights_not_written() if weights is None else None
    if not_written:  # a new model: fit writes its first weights
        loaded.weights_path = None
    network = Sequential.from_loaded(loaded, weights)
    network.build(loaded.input_shape or inputs.shape[1:])
    network.check_input_shape(inputs.shape)
    built = network.built_model
    output_shape = output_shape_for(built, inputs.shape[1:])
    examples = with_targets_for(examples, chosen_loss, output_shape, x)
    if examples.class_names is not None and validation_split:
        examples = shuffled(examples, seed)
    inputs = examples.inputs
    targets = check_targets(examples.targets, len(inputs), output_shape, chosen_loss, y or x)
    check_batch_memory(built, min(batch_size, len(inputs)), training=True)
    validation = None
    if validation_data:
        held = read_examples(*validation_data, loaded, images)
        check_finite(held.inputs, validation_data[0])
        check_finite(held.targets, validation_data[1])
        network.check_input_shape(held.inputs.shape)
        shape = output_shape_for(built, held.inputs.shape[1:])
        validation = (held.inputs, check_targets(held.targets, len(held.inputs), shape,
                                                 chosen_loss, validation_data[1]))
    elif validation_split:
        inputs, targets, validation = split_validation(inputs, targets, validation_split)
    if not built.trainable_keys:
        print("seqcli: warning: every layer is frozen; fit changes nothing but "
              "BatchNormalization statistics of trainable layers", file=sys.stderr)
    if not_written and not quiet:
        print(f"seqcli: note: {not_written}; training starts from initial weights (seed "
              f"{network.weights_seed})", file=sys.stderr)
    model_weights = network.weight_arrays  # updated in place, batch after batch
    progress = FitProgress(epochs, quiet)

    def report(epoch: int, metrics: dict[str, float], seconds: float) -> None:
        progress.epoch_end(epoch, metrics, seconds)
        if checkpoint:
            write_weights(output, model_weights)
        if epoch + 1 < epochs:
            progress.begin(epoch + 1)

    start_up_done()
    progress.begin(0)
    try:
        with numeric_warnings_off():  # a NaN loss stops training with one message
            result = run_fit(built, model_weights, inputs, targets, loss=chosen_loss,
                             optimizer=chosen_optimizer, epochs=epochs, batch_size=batch_size,
                             shuffle=shuffle, seed=seed, validation=validation,
                             on_epoch_end=report, on_batch_end=progress.batch_end)
    except DivergedError as error:
        kept = "no weights written"
        if checkpoint and error.epochs_done:
            kept = f"{output} keeps the weights of epoch {error.epochs_done}"
        raise DivergedError(f"{error}; {kept} (a lower --learning-rate may help, or check "
                            "the starting weights)", error.epochs_done) from None
    with all_or_none():
        if not checkpoint:
            write_weights(output, model_weights)
        if history is not None:
            with atomic_output(history, binary=False) as out:
                out.write(json.dumps(result.history) + "\n")
        if names_text is not None:
            write_class_names(class_names, names_text)

