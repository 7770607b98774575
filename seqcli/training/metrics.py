"""Keras 3's metrics, by the names `compile(metrics=[...])` takes: each accumulates over every
batch of a set and gives one number at the end, as Keras's metric objects do.

Most are Keras's `MeanMetricWrapper` of a function giving one value per sample (per step of a
sequence output): the mean of those values over the whole set, the steps a mask hides left
out. `root_mean_squared_error`, `precision` and `recall` accumulate their own sums (and, as
in Keras, ignore masks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from seqcli.errors import InputDataError
from seqcli.training.losses import EPSILON, Loss

THRESHOLD = 0.5
"""Keras's threshold for binary accuracy, precision and recall."""
TOP_K = 5
"""Keras's default `k` of the top-k accuracies."""


def _hinge_targets(y_true: np.ndarray) -> np.ndarray:
    """Keras's `convert_binary_labels_to_hinge`: 0/1 targets as -1/1 (all of a batch's
    targets must be 0 or 1; others are left as they are)."""
    if np.isin(y_true, (0.0, 1.0)).all():
        return 2.0 * y_true - 1.0
    return y_true


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Keras's `normalize(x, order=2)`: x · min(1/‖x‖, 1/ε) along the last axis."""
    inverse = 1 / np.sqrt(np.square(x).sum(axis=-1, keepdims=True))
    return x * np.minimum(inverse, 1 / EPSILON)


def _log_cosh(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Mean over the last axis of log(cosh(p - y)) = x + softplus(-2x) - log 2."""
    x = y_pred - y_true
    return (x + np.logaddexp(0, -2 * x) - np.log(2)).mean(axis=-1)


def _rank_of(labels: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Keras's `in_top_k` rank: 1 + how many outputs exceed the one at the label (ties rank
    in the label's favour; NaN at the label ranks last)."""
    at_label = np.take_along_axis(y_pred, labels[..., None], axis=-1)
    at_label = np.where(np.isnan(at_label), -np.inf, at_label)
    return 1 + (y_pred > at_label).sum(axis=-1)


def _crossentropy(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The per-sample cross-entropy of probabilities (Keras's metric default,
    `from_logits=False`)."""
    return Loss(name).per_sample


# name: (targets the metric takes: "dense" like the output, "labels" class ids,
#        per-value function of (y_true, y_pred) in float64)
_MEAN_METRICS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "binary_accuracy": ("dense", lambda y, p: ((p > THRESHOLD) == y).astype(np.float64)),
    "categorical_accuracy": ("dense", lambda y, p: (p.argmax(-1) == y.argmax(-1)) * 1.0),
    "sparse_categorical_accuracy": ("labels", lambda y, p: (p.argmax(-1) == y) * 1.0),
    "top_k_categorical_accuracy": ("dense",
                                   lambda y, p: (_rank_of(y.argmax(-1), p) <= TOP_K) * 1.0),
    "sparse_top_k_categorical_accuracy": ("labels",
                                          lambda y, p: (_rank_of(y, p) <= TOP_K) * 1.0),
    "mean_squared_error": ("dense", lambda y, p: np.square(p - y).mean(axis=-1)),
    "mean_absolute_error": ("dense", lambda y, p: np.abs(p - y).mean(axis=-1)),
    "mean_absolute_percentage_error": (
        "dense", lambda y, p: 100 * (np.abs(y - p) / np.maximum(np.abs(y), EPSILON)).mean(-1)),
    "mean_squared_logarithmic_error": (
        "dense", lambda y, p: np.square(np.log(np.maximum(p, EPSILON) + 1)
                                        - np.log(np.maximum(y, EPSILON) + 1)).mean(-1)),
    "binary_crossentropy": ("dense", _crossentropy("binary_crossentropy")),
    "categorical_crossentropy": ("dense", _crossentropy("categorical_crossentropy")),
    "sparse_categorical_crossentropy": ("labels", _crossentropy("sparse_categorical_crossentropy")),
    "kl_divergence": ("dense", lambda y, p: (np.clip(y, EPSILON, 1) * np.log(
        np.clip(y, EPSILON, 1) / np.clip(p, EPSILON, 1))).sum(axis=-1)),
    "poisson": ("dense", lambda y, p: (p - y * np.log(p + EPSILON)).mean(axis=-1)),
    "hinge": ("dense", lambda y, p: np.maximum(1 - _hinge_targets(y) * p, 0).mean(axis=-1)),
    "squared_hinge": ("dense", lambda y, p: np.square(
        np.maximum(1 - _hinge_targets(y) * p, 0)).mean(axis=-1)),
    "categorical_hinge": ("dense", lambda y, p: np.maximum(
        ((1 - y) * p).max(axis=-1) - (y * p).sum(axis=-1) + 1, 0)),
    "log_cosh_error": ("dense", _log_cosh),
    "cosine_similarity": ("dense",
                          lambda y, p: (_l2_normalize(y) * _l2_normalize(p)).sum(axis=-1)),
}
_ALIASES = {"acc": "accuracy", "mse": "mean_squared_error", "mae": "mean_absolute_error",
            "mape": "mean_absolute_percentage_error",
            "msle": "mean_squared_logarithmic_error", "bce": "binary_crossentropy"}
_OWN_SUMS = ("root_mean_squared_error", "precision", "recall")
METRICS = ("accuracy", *_MEAN_METRICS, *_OWN_SUMS)
"""Every metric name seqcli knows (Keras's names; `_ALIASES` too, as Keras takes them)."""
KERAS_ONLY = ("auc", "f1_score", "f_beta_score", "r2_score", "true_positives",
              "true_negatives", "false_positives", "false_negatives", "precision_at_recall",
              "recall_at_precision", "sensitivity_at_specificity", "specificity_at_sensitivity",
              "pearson_correlation", "concordance_correlation")
"""Keras metrics seqcli does not compute: refused as such, not as misspellings."""


class Metric:
    """One metric over a whole set: `update` with each batch, `result` at the end. `name` is
    the name it was asked for, as Keras reports it."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind

    def update(self, y_true: np.ndarray, y_pred: np.ndarray, mask=None) -> None:
        """Count one batch (`mask`: the output's mask, one bool per sample and step)."""
        raise NotImplementedError

    def result(self) -> float:
        """The metric over every batch counted so far."""
        raise NotImplementedError


class MeanMetric(Metric):
    """Keras's `MeanMetricWrapper`: the mean of `function`'s values over the set."""

    def __init__(self, name: str, kind: str, function: Callable):
        super().__init__(name, kind)
        self.function = function
        self.total, self.count = 0.0, 0.0

    def update(self, y_true, y_pred, mask=None):
        values = self.function(_targets(self.kind, y_true, y_pred), y_pred.astype(np.float64))
        if mask is None:
            self.total += float(values.sum())
            self.count += values.size
            return
        keep = np.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim)),
                               values.shape)
        self.total += float(values[keep].sum())
        self.count += int(keep.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0


class RootMeanSquaredError(Metric):
    """Keras's `RootMeanSquaredError`: the square root of the mean squared error over every
    value of the set."""

    def __init__(self, name: str):
        super().__init__(name, "dense")
        self.total, self.count = 0.0, 0

    def update(self, y_true, y_pred, mask=None):
        squares = np.square(y_pred - _targets("dense", y_true, y_pred))
        self.total += float(squares.sum())
        self.count += squares.size

    def result(self):
        return float(np.sqrt(self.total / self.count)) if self.count else 0.0


class PrecisionRecall(Metric):
    """Keras's `Precision` (tp / (tp + fp)) or `Recall` (tp / (tp + fn)) over every value,
    an output above 0.5 counting as positive; 0 when nothing is counted."""

    def __init__(self, name: str, recall: bool):
        super().__init__(name, "dense")
        self.recall = recall
        self.true_positives, self.others = 0, 0

    def update(self, y_true, y_pred, mask=None):
        actual = _targets("dense", y_true, y_pred).astype(bool)
        predicted = y_pred > THRESHOLD
        self.true_positives += int((actual & predicted).sum())
        self.others += int((actual & ~predicted).sum() if self.recall
                           else (~actual & predicted).sum())

    def result(self):
        counted = self.true_positives + self.others
        return self.true_positives / counted if counted else 0.0


def _targets(kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The targets as a metric of `kind` takes them: shaped like the output (float64), or
    class ids shaped like the output without its last axis (int64)."""
    if kind == "labels":
        return y_true.reshape(y_pred.shape[:-1]).astype(np.int64)
    return y_true.reshape(y_pred.shape).astype(np.float64)


def canonical_name(name: str) -> str:
    """Keras's name for a metric, given as Keras takes it (`mse`, `MSE`, `MeanSquaredError` →
    `mean_squared_error`); ValueError if unknown."""
    from seqcli.layers.base import snake_case

    key = snake_case(name) if name != name.lower() else name
    canonical = _ALIASES.get(key, key)
    if canonical in KERAS_ONLY:
        raise ValueError(f"metric '{name}' is one of Keras's that seqcli does not compute; it "
                         f"computes {', '.join(METRICS)}")
    if canonical not in METRICS:
        import difflib

        close = difflib.get_close_matches(name, list(METRICS) + list(_ALIASES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(METRICS)}."
        raise ValueError(f"unknown metric '{name}'.{hint}")
    return canonical


def get_metric(name: str, targets: np.ndarray, output_shape: tuple) -> Metric:
    """The metric called `name` for `targets` (the whole set's, batch first) and a per-sample
    `output_shape`. `accuracy` becomes binary, sparse categorical or categorical accuracy as
    Keras chooses from the shapes. ValueError for an unknown name; InputDataError when the
    targets do not suit the metric (class labels where it compares one-hot targets, labels
    that are not class ids of the output)."""
    canonical = canonical_name(name)
    if canonical == "accuracy":
        canonical = _accuracy_kind(targets.shape, output_shape)
    if canonical == "root_mean_squared_error":
        metric = RootMeanSquaredError(name)
    elif canonical in ("precision", "recall"):
        metric = PrecisionRecall(name, recall=canonical == "recall")
    else:
        metric = MeanMetric(name, *_MEAN_METRICS[canonical])
    if metric.kind == "labels":
        _check_labels(metric.name, targets, output_shape)
    else:
        _check_dense(metric.name, canonical, targets.shape, output_shape)
    return metric


def _accuracy_kind(targets_shape: tuple, output_shape: tuple) -> str:
    """Keras's `compile_utils.get_metric` for "accuracy": binary for one output unit, sparse
    when the targets are labels (one axis fewer, or a last axis of 1), categorical else."""
    if output_shape[-1] == 1:
        return "binary_accuracy"
    if len(targets_shape) < len(output_shape) + 1 or targets_shape[-1] == 1:
        return "sparse_categorical_accuracy"
    return "categorical_accuracy"


def _check_labels(name: str, targets: np.ndarray, output_shape: tuple) -> None:
    """An InputDataError unless `targets` are whole class ids in [0, classes), one per
    output vector (with or without a last axis of 1)."""
    expected = (len(targets), *output_shape[:-1])
    if tuple(targets.shape) not in (expected, expected + (1,)):
        raise InputDataError(f"metric '{name}' takes class labels of shape {expected}; "
                             f"received targets of shape {tuple(targets.shape)}")
    classes = output_shape[-1]
    whole = targets.dtype.kind in "iub" or bool(np.all(targets == np.round(targets)))
    if not whole or targets.size and (targets.min() < 0 or targets.max() >= classes):
        raise InputDataError(f"metric '{name}' takes class labels, whole numbers in "
                             f"[0, {classes}); received {targets.min()}..{targets.max()}")


def _check_dense(name: str, canonical: str, targets_shape: tuple, output_shape: tuple) -> None:
    """An InputDataError unless the targets are shaped like the outputs (batch first)."""
    rows = targets_shape[0]
    expected = (rows, *output_shape)
    if tuple(targets_shape) == expected:
        return
    labels = tuple(targets_shape) in ((rows, *output_shape[:-1]), (rows, *output_shape[:-1], 1))
    sparse = f"sparse_{canonical}"
    hint = f" (for class labels use '{sparse}')" if labels and sparse in METRICS else ""
    raise InputDataError(f"metric '{name}' compares targets shaped like the model's output, "
                         f"{expected}; received {tuple(targets_shape)}{hint}")
