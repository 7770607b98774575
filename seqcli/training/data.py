"""Training data: inputs and targets read from `.npy` files and checked against the model,
and Keras's `validation_split`."""

from __future__ import annotations

import numpy as np

from seqcli.errors import InputDataError
from seqcli.training.losses import Loss


def read_training_arrays(x_path: str, y_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets, both memory-mapped; an InputDataError unless they have the same
    number of rows, and at least one."""
    from seqcli.io.arrays import open_input

    inputs = open_input(x_path).as_array()
    targets = open_input(y_path).as_array()
    if len(inputs) != len(targets):
        raise InputDataError(f"{x_path} has {len(inputs)} rows but {y_path} has "
                             f"{len(targets)}; they must match")
    if len(inputs) == 0:
        raise InputDataError(f"{x_path} has no rows to train on")
    return inputs, targets


def check_targets(targets: np.ndarray, rows: int, output_shape: tuple, loss: Loss,
                  source: str) -> None:
    """An InputDataError (naming `source`) unless the targets of `rows` samples fit the model's
    per-sample `output_shape`: the same shape, or whole-number class labels in
    [0, classes) for the sparse cross-entropy."""
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


def split_validation(inputs: np.ndarray, targets: np.ndarray, fraction: float):
    """Keras's `validation_split`: the last `fraction` of the rows held out, the first
    ceil(n·(1 - fraction)) kept. Returns (inputs, targets, (validation inputs, targets))."""
    split = int(-(-len(inputs) * (1 - fraction) // 1))
    return inputs[:split], targets[:split], (inputs[split:], targets[split:])
