"""The k largest outputs of each sample, as text: what `predict --argmax/--top-k` prints."""

from __future__ import annotations

import numpy as np


def ranking_text(batch: np.ndarray, k: int, with_values: bool) -> str:
    """One line per row of `batch` (N, classes): the indices of its `k` largest values, largest
    first (ties in index order); as `index:value` pairs when `with_values`, else the top index
    alone."""
    order = np.argsort(-batch, axis=1, kind="stable")[:, :k]
    lines = []
    for row, indices in zip(batch, order):
        if with_values:
            lines.append(" ".join(f"{i}:{row[i]:.6g}" for i in indices))
        else:
            lines.append(str(indices[0]))
    return "\n".join(lines) + "\n"
