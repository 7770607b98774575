"""`seqcli fit`: Keras's `compile` + `fit` on the trainable layers of a model file."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from seqcli.cli import (
    AllowOutsideOpt,
    BatchSizeOpt,
    ModelArg,
    QuietOpt,
    ThreadsOpt,
    WeightsOpt,
    app,
)
from seqcli.errors import InputDataError, UsageError


@app.command()
def fit(
    model: ModelArg,
    x: Annotated[str, typer.Argument(metavar="X", help="Training inputs (.npy, batch first).")],
    y: Annotated[str, typer.Argument(metavar="Y", help="Training targets (.npy).")],
    output: Annotated[str, typer.Option(
        "-o", "--output", help="Weights file to write (.safetensors or .npz).")],
    loss: Annotated[str, typer.Option(
        "--loss", help="mse, mae, binary_crossentropy, categorical_crossentropy or "
        "sparse_categorical_crossentropy.")] = "mse",
    from_logits: Annotated[bool, typer.Option(
        "--from-logits", help="The model outputs logits (cross-entropy losses).")] = False,
    optimizer: Annotated[str, typer.Option(
        "--optimizer", help="sgd, adam or rmsprop (Keras's defaults).")] = "rmsprop",
    learning_rate: Annotated[float | None, typer.Option(
        "--learning-rate", min=0.0, help="Default: Keras's (sgd 0.01, adam and rmsprop "
        "0.001).")] = None,
    momentum: Annotated[float, typer.Option(
        "--momentum", min=0.0, max=1.0, help="Momentum for sgd and rmsprop.")] = 0.0,
    nesterov: Annotated[bool, typer.Option("--nesterov", help="Nesterov momentum (sgd).")] = False,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the data.")] = 1,
    batch_size: BatchSizeOpt = 32,
    shuffle: Annotated[bool, typer.Option(
        "--shuffle/--no-shuffle", help="Shuffle the training rows every epoch.")] = True,
    seed: Annotated[int, typer.Option(
        "--seed", min=0, help="Seeds shuffling and Dropout.")] = 0,
    validation_split: Annotated[float, typer.Option(
        "--validation-split", min=0.0, max=0.99,
        help="Hold out this last fraction of the rows for validation, as Keras does.")] = 0.0,
    validation_data: Annotated[tuple[str, str] | None, typer.Option(
        "--validation-data", help="Validation inputs and targets: XV.npy YV.npy.")] = None,
    history: Annotated[str | None, typer.Option(
        "--history", help="Write the per-epoch metrics as JSON here.")] = None,
    checkpoint: Annotated[bool, typer.Option(
        "--checkpoint", help="Write the weights after every epoch, not only at the end.")] = False,
    weights: WeightsOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Train the trainable layers (Keras compile + fit); frozen layers stay bit-identical."""
    from seqcli.cli import _load, _numeric_warnings_off, start_up_done
    from seqcli.runtime.compiled import keep_freed_memory, set_threads
    from seqcli.runtime.model import Sequential
    from seqcli.training.fit import fit as run_fit
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    if validation_split and validation_data:
        raise UsageError("--validation-split and --validation-data are alternatives; pass one")
    _check_weights_path(output)  # before training, not after
    try:
        chosen_loss = get_loss(loss, from_logits)
        chosen_optimizer = get_optimizer(optimizer, learning_rate, momentum, nesterov)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    set_threads(threads)
    keep_freed_memory()
    loaded = _load(model, allow_outside)
    inputs, targets = _arrays(x, y)
    network = Sequential.from_loaded(loaded, weights)
    network.build(loaded.input_shape or inputs.shape[1:])
    network.check_input_shape(inputs.shape)
    built = network.built_model
    _check_targets(targets, inputs, built.output_shape, chosen_loss, y)
    validation = None
    if validation_data:
        validation = _arrays(*validation_data)
        network.check_input_shape(validation[0].shape)
        _check_targets(validation[1], validation[0], built.output_shape, chosen_loss,
                       validation_data[1])
    elif validation_split:
        split = int(-(-len(inputs) * (1 - validation_split) // 1))  # Keras: ceil(n·(1 - f))
        validation = (inputs[split:], targets[split:])
        inputs, targets = inputs[:split], targets[:split]
    if not built.trainable_keys:
        print("seqcli: warning: every layer is frozen; fit changes nothing but "
              "BatchNormalization statistics of trainable layers", file=sys.stderr)
    model_weights = network._weights.arrays  # updated in place, batch after batch

    def report(epoch: int, metrics: dict[str, float], seconds: float) -> None:
        if not quiet:
            shown = " - ".join(f"{name}: {value:.4f}" for name, value in metrics.items())
            print(f"Epoch {epoch + 1}/{epochs} - {seconds:.1f}s - {shown}", file=sys.stderr)
        if checkpoint:
            _save(output, model_weights)

    start_up_done()
    with _numeric_warnings_off():  # a NaN loss shows in the epoch lines, not as noise
        result = run_fit(built, model_weights, inputs, targets, loss=chosen_loss,
                         optimizer=chosen_optimizer, epochs=epochs, batch_size=batch_size,
                         shuffle=shuffle, seed=seed, validation=validation,
                         on_epoch_end=report)
    if not checkpoint:
        _save(output, model_weights)
    if history is not None:
        from seqcli.io.atomic import atomic_output

        with atomic_output(history, binary=False) as out:
            out.write(json.dumps(result.history) + "\n")


def _arrays(x_path: str, y_path: str):
    """Inputs as float32-convertible rows and targets, both memory-mapped, same row count."""
    from seqcli.io.arrays import open_input

    inputs = open_input(x_path).as_array()
    targets = open_input(y_path).as_array()
    if len(inputs) != len(targets):
        raise InputDataError(f"{x_path} has {len(inputs)} rows but {y_path} has "
                             f"{len(targets)}; they must match")
    if len(inputs) == 0:
        raise InputDataError(f"{x_path} has no rows to train on")
    return inputs, targets


def _check_targets(targets, inputs, output_shape, loss, source: str) -> None:
    """Targets must fit the model's output (integer labels for the sparse loss)."""
    import numpy as np

    rows = len(inputs)
    if loss.name == "sparse_categorical_crossentropy":
        expected = (rows, *output_shape[:-1])
        if targets.shape not in (expected, expected + (1,)):
            raise InputDataError(f"{source}: sparse labels need shape {expected}; received "
                                 f"{tuple(targets.shape)}")
        labels = np.asarray(targets)
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise InputDataError(f"{source}: sparse labels must be whole numbers")
        if labels.size and (labels.min() < 0 or labels.max() >= output_shape[-1]):
            raise InputDataError(f"{source}: labels must lie in [0, {output_shape[-1]}); "
                                 f"received {labels.min()}..{labels.max()}")
        return
    expected = (rows, *output_shape)
    if tuple(targets.shape) != expected:
        raise InputDataError(f"{source}: targets need shape {expected} (the model's output); "
                             f"received {tuple(targets.shape)}")


def _check_weights_path(path: str) -> None:
    if not path.endswith((".npz", ".safetensors")):
        raise UsageError(f"{path}: weights files end in .safetensors or .npz")


def _save(path: str, weights) -> None:
    from seqcli.io.arrays import save_npz
    from seqcli.io.weights import write_safetensors

    _check_weights_path(path)
    if path.endswith(".npz"):
        save_npz(path, weights)
    else:
        write_safetensors(path, weights)
