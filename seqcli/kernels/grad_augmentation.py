"""The gradient of the affine resampling (RandomRotation, RandomZoom, RandomTranslation): the
transpose of the sampling, each output's gradient added back to the input pixels it read,
with the weights it read them with (fill values are constants: no gradient)."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.augmentation import (
    _bilinear_corners,
    _check_codes,
    _check_transforms,
    _fix_index,
    _round_half_away,
    _source,
)
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _affine_transform_backward(counter, dy, transforms, dx, interpolation, fill_mode):
    # (N, H, W, C) -> (N, H, W, C), one image per item (its scatter stays in its own slice)
    nb, h, w, c_n = dy.shape
    n = _next_item(counter)
    while n < nb:
        acc = np.zeros((h, w, c_n), dtype=np.float64)
        for i in range(h):
            for j in range(w):
                row, col = _source(transforms, n, i, j)
                if interpolation == 0:
                    si, sj = _round_half_away(row), _round_half_away(col)
                    if fill_mode == 0 and not (0 <= si < h and 0 <= sj < w):
                        continue
                    si, sj = _fix_index(si, h, fill_mode), _fix_index(sj, w, fill_mode)
                    for c in range(c_n):
                        acc[si, sj, c] += dy[n, i, j, c]
                    continue
                rows, cols, row_weights, col_weights = _bilinear_corners(row, col)
                for a in range(2):
                    for b in range(2):
                        si, sj = rows[a], cols[b]
                        if fill_mode == 0 and not (0 <= si < h and 0 <= sj < w):
                            continue
                        weight = np.float64(np.float32(row_weights[a] * col_weights[b]))
                        si, sj = _fix_index(si, h, fill_mode), _fix_index(sj, w, fill_mode)
                        for c in range(c_n):
                            acc[si, sj, c] += weight * dy[n, i, j, c]
        for i in range(h):
            for j in range(w):
                for c in range(c_n):
                    dx[n, i, j, c] = acc[i, j, c]
        n = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def affine_transform_backward(dy, transforms, interpolation: int, fill_mode: int) -> np.ndarray:
    """dx[n, p] = Σ over outputs q of image n that read input pixel p: weight(q, p) · dy[n, q]."""
    dy = _as_f32(dy, "dy", 4)
    transforms = _check_transforms(transforms, dy.shape[0])
    interpolation, fill_mode = _check_codes(interpolation, fill_mode)
    dx = np.empty_like(dy)
    if dy.size:
        _parallel(_affine_transform_backward, dy.shape[0], 40.0 * dy.size, dy, transforms, dx,
                  interpolation, fill_mode)
    return dx
