"""Keras 3's losses with their gradients, reduced as Keras reduces them ("sum over batch
size": the mean of the per-sample losses over every axis but the last).

Each loss gives `value(y_true, y_pred)` and `gradient(y_true, y_pred) = d value / d y_pred`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPSILON = 1e-7
"""Keras's `backend.epsilon()`: probabilities are clipped to [ε, 1 - ε]."""

LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy")
ALIASES = {"mean_squared_error": "mse", "mean_absolute_error": "mae"}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Loss:
    """A Keras loss by name, with `from_logits` for the cross-entropies."""

    name: str
    from_logits: bool = False

    @property
    def classification(self) -> bool:
        """True for the losses whose `accuracy` metric Keras reports."""
        return self.name.endswith("crossentropy")

    def _per_sample_count(self, y_pred: np.ndarray) -> int:
        # the number of per-sample loss values the reduction averages over
        return int(np.prod(y_pred.shape[:-1]))

    def _targets(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        if self.name != "sparse_categorical_crossentropy":
            return y_true.reshape(y_pred.shape).astype(np.float64)
        labels = y_true.reshape(y_pred.shape[:-1]).astype(np.int64)
        return np.eye(y_pred.shape[-1])[labels]

    def value(self, y_true: np.ndarray, y_pred: np.ndarray, mask=None) -> float:
        """The reduced loss for a batch; a mask of the output (one bool per loss value, as
        Keras attaches to the output of a masked sequence model) leaves the masked values
        out of the mean."""
        per = self.per_sample(y_true, y_pred)
        count = per.size
        if mask is not None:
            per = per * _mask_weight(mask, per.shape, count)
        return float(per.sum() / count)

    def per_sample(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """The loss of each sample (of each step, for a sequence output) before Keras's
        reduction: float64, shaped like `y_pred` without its last axis."""
        target, pred = self._targets(y_true, y_pred), y_pred.astype(np.float64)
        if self.name == "mse":
            per = np.square(pred - target).mean(axis=-1)
        elif self.name == "mae":
            per = np.abs(pred - target).mean(axis=-1)
        elif self.name == "binary_crossentropy":
            if self.from_logits:  # max(z, 0) - z·y + log(1 + exp(-|z|))
                per = np.maximum(pred, 0) - pred * target + np.log1p(np.exp(-np.abs(pred)))
            else:
                p = np.clip(pred, EPSILON, 1 - EPSILON)
                per = -(target * np.log(p) + (1 - target) * np.log(1 - p))
            per = per.mean(axis=-1)
        else:
            per = -(target * self._log_prob(pred)).sum(axis=-1)
        return per

    def _log_prob(self, pred: np.ndarray) -> np.ndarray:
        if self.from_logits:
            return _log_softmax(pred)
        normalised = pred / pred.sum(axis=-1, keepdims=True)
        return np.log(np.clip(normalised, EPSILON, 1 - EPSILON))

    def gradient(self, y_true: np.ndarray, y_pred: np.ndarray, mask=None) -> np.ndarray:
        """d loss / d y_pred, float32, shaped like y_pred (`mask` as in `value`)."""
        target, pred = self._targets(y_true, y_pred), y_pred.astype(np.float64)
        count = self._per_sample_count(pred)
        last = pred.shape[-1]
        if self.name == "mse":
            grad = 2 * (pred - target) / last
        elif self.name == "mae":
            grad = np.sign(pred - target) / last
        elif self.name == "binary_crossentropy":
            if self.from_logits:
                grad = (1 / (1 + np.exp(-pred)) - target) / last
            else:
                inside = (pred > EPSILON) & (pred < 1 - EPSILON)
                p = np.clip(pred, EPSILON, 1 - EPSILON)
                grad = np.where(inside, (p - target) / (p * (1 - p)), 0.0) / last
        elif self.from_logits:  # d/dz of -Σ y·log_softmax(z) = softmax(z)·Σy - y
            grad = _softmax(pred) * target.sum(axis=-1, keepdims=True) - target
        else:  # through q = clip(p / Σp): d/dp_j = (-m_j y_j / q_j + Σ_i m_i y_i / q_i · q_i) / Σp
            total = pred.sum(axis=-1, keepdims=True)
            q = pred / total
            inside = (q > EPSILON) & (q < 1 - EPSILON)
            weighted = np.where(inside, target / np.clip(q, EPSILON, 1 - EPSILON), 0.0)
            grad = (-weighted + (weighted * q).sum(axis=-1, keepdims=True)) / total
        if mask is not None:
            grad = grad * _mask_weight(mask, pred.shape[:-1], count)[..., None]
        return (grad / count).astype(np.float32)


def _mask_weight(mask: np.ndarray, shape: tuple, count: int) -> np.ndarray:
    """Keras's `apply_mask`: kept values weigh total/valid, masked ones 0 (all 0 if none is
    kept), so the mean is over the kept values."""
    keep = np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim)), shape)
    valid = int(np.count_nonzero(keep))
    return np.where(keep, count / valid if valid else 0.0, 0.0)


def get_loss(name: str, from_logits: bool = False) -> Loss:
    """The loss called `name` (Keras's names and aliases); ValueError if unknown."""
    canonical = ALIASES.get(name, name)
    if canonical not in LOSSES:
        import difflib

        close = difflib.get_close_matches(name, list(LOSSES) + list(ALIASES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(LOSSES)}."
        raise ValueError(f"unknown loss '{name}'.{hint}")
    return Loss(canonical, from_logits)
