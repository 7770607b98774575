"""Training data: inputs and targets read from `.npy` files and checked against the model,
and Keras's `validation_split`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqcli.errors import InputDataError, UsageError
from seqcli.shapes import ShapeError, empty_axis_problem, format_shape
from seqcli.training.losses import Loss


def read_training_arrays(x_path: str, y_path: str,
                         command: str = "fit") -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets, read whole into memory (as Keras's `fit` and `evaluate` take numpy
    arrays), once their headers show samples that are not empty and the same number of rows,
    at least one (an InputDataError otherwise), and a size this machine has the memory for.
    `command` (fit or evaluate) is named in the messages."""
    from seqcli.io.arrays import open_input

    with open_input(x_path) as inputs, open_input(y_path) as targets:
        for path, array, what in ((x_path, inputs, "input"), (y_path, targets, "target")):
            empty = empty_axis_problem(array.shape[1:], what)
            if empty:  # before 10**12 empty rows are looked at
                raise InputDataError(f"{path}: {empty}")
        if inputs.rows != targets.rows:
            raise InputDataError(f"{x_path} has {inputs.rows} rows but {y_path} has "
                                 f"{targets.rows}; they must match")
        if inputs.rows == 0:
            raise InputDataError(f"{x_path} has no rows to "
                                 f"{'train on' if command == 'fit' else command}")
        _check_memory(x_path, y_path, inputs.data_size + targets.data_size, command)
        return inputs.read_all(), targets.read_all()


@dataclass
class Examples:
    """What fit and evaluate train or measure on: inputs and targets; with `class_names`, the
    targets are class ids inferred from class folders (Keras's labels="inferred"), which
    `with_targets_for` turns into the form the loss takes."""

    inputs: np.ndarray
    targets: np.ndarray
    class_names: list[str] | None = None


def read_examples(x_path: str, y_path: str | None, loaded, options,
                  command: str = "fit") -> Examples:
    """X and Y as `Examples`: `.npy` arrays (`read_training_arrays`), or images in X (decoded
    and resized to the input shape the model file `loaded` declares, with the `ImageOptions`
    `options`, None for Keras's defaults) and their targets: Y's, or with Y omitted, the
    class ids of X's class subfolders."""
    from seqcli.io.inputs import declared_shape, names_images

    if not names_images([x_path]):
        if y_path is None:
            raise UsageError(f"Y (the targets) is missing: {command} needs a .npy of targets "
                             "beside X, unless X is a folder of images in class subfolders")
        return Examples(*read_training_arrays(x_path, y_path, command))
    from seqcli.io.images import ImageOptions, list_images, load_images

    options = options or ImageOptions()
    shape = declared_shape(loaded)
    files = list_images([x_path], labelled=y_path is None)
    if y_path is None:
        return Examples(load_images(files, shape, options), files.labels, files.class_names)
    from seqcli.io.arrays import open_input

    with open_input(y_path) as targets:
        if targets.rows != len(files.paths):
            raise InputDataError(f"{x_path} holds {len(files.paths)} images but {y_path} has "
                                 f"{targets.rows} rows; they must match (images in sorted order)")
        empty = empty_axis_problem(targets.shape[1:], "target")
        if empty:
            raise InputDataError(f"{y_path}: {empty}")
        return Examples(load_images(files, shape, options), targets.read_all())


def with_targets_for(examples: Examples, loss: Loss, output_shape: tuple,
                     source: str) -> Examples:
    """`examples` whose class ids (from class folders) are in the form `loss` and the model's
    per-sample `output_shape` take, as Keras's label_mode gives them: ids ("int") for the
    sparse cross-entropy, 0/1 scores ("binary") for a single output of two classes, else
    one-hot rows ("categorical"). An InputDataError when the classes are not as many as the
    outputs. Examples with targets of their own are returned as they are."""
    names = examples.class_names
    if names is None:
        return examples
    classes, units = len(names), (output_shape[-1] if output_shape else 1)
    if units == 1 and classes == 2:
        targets = examples.targets.astype(np.float32)[:, None]
    elif units != classes:
        raise InputDataError(f"{source} has {classes} class folder{'s' if classes != 1 else ''} "
                             f"({_listed(names)}) but the model outputs {units} "
                             f"value{'s' if units != 1 else ''} per sample; they must match (or "
                             "a single output for two classes)")
    elif loss.name == "sparse_categorical_crossentropy":
        targets = examples.targets.astype(np.int32)
    else:
        targets = np.eye(classes, dtype=np.float32)[examples.targets]
    return Examples(examples.inputs, targets, names)


def _listed(names: list[str]) -> str:
    """The first names of `names`, comma-separated."""
    shown = ", ".join(names[:5])
    return shown + (", ..." if len(names) > 5 else "")


def shuffled(examples: Examples, seed: int) -> Examples:
    """`examples` in the order Keras's image_dataset_from_directory(shuffle=True, seed=seed)
    indexes its files (numpy's RandomState(seed) shuffle), so that a validation split holds
    rows of every class."""
    order = np.random.RandomState(seed).permutation(len(examples.inputs))
    return Examples(examples.inputs[order], examples.targets[order], examples.class_names)


def _check_memory(x_path: str, y_path: str, size: int, command: str) -> None:
    """Refuse, before reading, training data larger than the memory this machine has left."""
    from seqcli.errors import SeqcliError
    from seqcli.runtime.weights import available_memory
    from seqcli.summary import readable_size

    available = available_memory()
    if available is not None and size > available:
        what = "training data" if command == "fit" else "data"
        raise SeqcliError(f"{x_path} and {y_path} hold {readable_size(size)} of {what}, "
                          f"more than the {readable_size(available)} of memory this machine "
                          f"has available; {command} reads them whole")


def output_shape_for(built, sample_shape: tuple) -> tuple:
    """The per-sample output shape of `built` for inputs of per-sample shape `sample_shape`:
    its output shape, whose variable-length (None) axes are inferred from these inputs
    through every layer. An InputDataError when the inputs fit no layer (shorter than a
    kernel, say)."""
    shape = tuple(built.output_shape)
    if None not in shape:
        return shape
    current = tuple(sample_shape)
    for info in built.leaves():
        try:
            current = tuple(info.layer.output_shape(current))
        except ShapeError as exc:
            raise InputDataError(f"inputs of shape {format_shape(sample_shape)} do not fit "
                                 f"layer '{info.path}' ({info.layer.type}): {exc}") from None
    return current


def check_targets(targets: np.ndarray, rows: int, output_shape: tuple, loss: Loss,
                  source: str) -> np.ndarray:
    """The targets of `rows` samples, checked against the model's per-sample `output_shape`:
    the same shape, or whole-number class labels in [0, classes) for the sparse
    cross-entropy; targets lacking only a one-unit output's last axis gain it, as Keras's
    losses and metrics expand them. An InputDataError (naming `source`) otherwise."""
    if loss.name == "sparse_categorical_crossentropy":
        expected = (rows, *output_shape[:-1])
        if targets.shape not in (expected, expected + (1,)):
            raise InputDataError(f"{source}: sparse labels need shape {expected}; received "
                                 f"{tuple(targets.shape)}"
                                 + _dense_targets_hint(targets, rows, output_shape))
        labels = np.asarray(targets)
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise InputDataError(f"{source}: sparse labels must be whole numbers")
        if labels.size and (labels.min() < 0 or labels.max() >= output_shape[-1]):
            raise InputDataError(f"{source}: labels must lie in [0, {output_shape[-1]}); "
                                 f"received {labels.min()}..{labels.max()}")
        return targets
    expected = (rows, *output_shape)
    if output_shape and output_shape[-1] == 1 and tuple(targets.shape) == expected[:-1]:
        targets = targets[..., None]
    if tuple(targets.shape) != expected:
        raise InputDataError(f"{source}: targets need shape {expected} (the model's output); "
                             f"received {tuple(targets.shape)}"
                             + _class_ids_hint(targets, rows, output_shape))
    return targets


def _class_ids_hint(targets: np.ndarray, rows: int, output_shape: tuple) -> str:
    """`; ...` advising the sparse cross-entropy for targets that are class ids, one per
    output vector of K > 1 classes; else ""."""
    labels_shape = (rows, *output_shape[:-1])
    if targets.shape not in (labels_shape, labels_shape + (1,)):
        return ""
    classes = output_shape[-1]
    if classes == 1:
        return ""
    if targets.dtype.kind == "f" and not np.all(targets == np.round(targets)):
        return ""
    if targets.size and (targets.min() < 0 or targets.max() >= classes):
        return ""
    ids = "y" if targets.shape == labels_shape else "y[..., 0]"
    return (f"; these are class ids (0 to {classes - 1}) for the model's {classes} outputs: use "
            f"--loss sparse_categorical_crossentropy, or one-hot encode them (np.eye({classes})"
            f"[{ids}])")


def _dense_targets_hint(targets: np.ndarray, rows: int, output_shape: tuple) -> str:
    """`; ...` advising the categorical cross-entropy for targets shaped like the model's
    output (one-hot rows), given to the sparse cross-entropy; else ""."""
    if tuple(targets.shape) != (rows, *output_shape) or output_shape[-1] < 2:
        return ""
    one_hot = bool(np.all((targets == 0) | (targets == 1)) and np.all(targets.sum(-1) == 1))
    what = "one-hot rows" if one_hot else "shaped like the model's output"
    return (f"; these targets are {what}: use --loss categorical_crossentropy, or pass class ids "
            "(y.argmax(-1))")


FINITE_CHECK_VALUES = 2**22
"""Values converted to float32 at a time when training data is checked for NaN and Inf."""


def check_finite(array: np.ndarray, source: str, command: str = "fit") -> None:
    """An InputDataError, with the counts, when float training data holds NaN or Inf (values
    beyond float32's range count as Inf): Keras would train on them into NaN weights, and
    evaluate them into a NaN loss. `command` (fit or evaluate) is named in the message."""
    from seqcli.io.arrays import NonFiniteCounter

    if array.dtype.kind != "f" or not len(array):
        return
    rows = max(1, FINITE_CHECK_VALUES // max(array[0].size, 1))
    counter = NonFiniteCounter(source)
    with np.errstate(over="ignore"):
        chunks = (np.asarray(array[start:start + rows], dtype=np.float32)
                  for start in range(0, len(array), rows))
        for _ in counter.check(chunks):
            pass
    if counter.summary():
        what, harm = (("training data", "its loss and weights") if command == "fit"
                      else ("data", "the loss"))
        raise InputDataError(f"{source} holds {counter.summary()}; {command} refuses "
                             f"non-finite {what} ({harm} would become NaN): drop or fix "
                             "those rows")


def split_validation(inputs: np.ndarray, targets: np.ndarray, fraction: float):
    """Keras's `validation_split`: the last `fraction` of the rows held out, the first
    ceil(n·(1 - fraction)) kept. Returns (inputs, targets, (validation inputs, targets))."""
    split = int(-(-len(inputs) * (1 - fraction) // 1))
    return inputs[:split], targets[:split], (inputs[split:], targets[split:])
