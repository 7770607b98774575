"""The k largest outputs of each sample, or a binary score against a threshold, as text: what
`predict --argmax/--top-k/--threshold` prints."""

from __future__ import annotations

import numpy as np


def ranking_text(batch: np.ndarray, k: int, with_values: bool,
                 labels: list[str] | None = None) -> str:
    """One line per row of `batch` (N, classes): the indices (or `labels`) of its `k` largest
    values, largest first (ties in index order); as `index:value` pairs when `with_values`,
    else the top index alone."""
    order = np.argsort(-batch, axis=1, kind="stable")[:, :k]
    names = labels if labels is not None else [str(i) for i in range(batch.shape[1])]
    lines = []
    for row, indices in zip(batch, order):
        if with_values:
            lines.append(" ".join(f"{names[i]}:{row[i]:.6g}" for i in indices))
        else:
            lines.append(names[indices[0]])
    return "".join(line + "\n" for line in lines)


def threshold_text(batch: np.ndarray, threshold: float, labels: list[str] | None = None) -> str:
    """One line per sample of `batch` (N, 1), a binary score: 1 where it is above `threshold`,
    else 0 (Keras's `binary_accuracy` rule), or `labels[1]` and `labels[0]`."""
    names = labels if labels is not None else ["0", "1"]
    above = np.asarray(batch).reshape(len(batch), -1)[:, 0] > threshold
    return "".join(names[int(value)] + "\n" for value in above)
