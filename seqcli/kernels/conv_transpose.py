"""Transposed convolution (Conv1D/2D/3DTranspose, 1-D and 2-D as depth and height 1): the input
gradient of a convolution. Per image, one BLAS GEMM spreads each input pixel over its window,
cols = x (rows, C) @ kernel^T (C, KD*KH*KW*F), and col2im adds the windows into the output (the
cells a convolution of that geometry would read), cropped by the padding; then bias and
activation. Images are shared out to the threads (each writes only its own output image)."""

from __future__ import annotations

import weakref

import numpy as np
from numba import njit

from seqcli.kernels.activations import (
    _as_f32,
    _bias_act_inplace,
    _bias_or_empty,
    _check_code,
    bias_activation_inplace,
)
from seqcli.kernels.conv3d import _col2im3d, _triple
from seqcli.kernels.dense import _blas, _sgemm
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# Upper bound on one tile's window buffer (bytes).
_CHUNK_BYTES = 1 << 20

# (id of the array that owns the kernel's data, data address, shape) ->
# (weak reference to that array, a copy of the kernel, the kernel transposed)
_TRANSPOSED: dict = {}


def _cached_transposed(kernel: np.ndarray) -> np.ndarray:
    """kernel (KD, KH, KW, F, C) as (C, KD*KH*KW*F), kept while the array that owns its data
    lives and the kernel holds the same values (training changes weights in place: the values
    are compared, not trusted); a small batch would otherwise spend as long transposing."""
    owner = kernel
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    key = (id(owner), kernel.__array_interface__["data"][0], kernel.shape)
    entry = _TRANSPOSED.get(key)
    if entry is not None:
        alive, values, transposed = entry
        if alive() is owner and np.array_equal(values, kernel):  # NaN: recomputed
            return transposed
    transposed = np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T)
    try:
        alive = weakref.ref(owner, lambda _, key=key, cache=_TRANSPOSED: cache.pop(key, None))
    except TypeError:  # not weakly referenceable: not kept
        return transposed
    _TRANSPOSED[key] = (alive, kernel.copy(), transposed)
    return transposed


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _conv_transpose_images(counter, address, ilp64, x2d, wt, bias, out, geometry, code, tile):
    # x2d (N*D*H*W, C), wt (C, KD*KH*KW*F) -> out (N, OD, OH, OW, F), one image at a time
    nb, f = out.shape[0], out.shape[4]
    c_n, width = wt.shape
    per_image = x2d.shape[0] // nb
    per_out = out.size // (nb * f)
    out2d = out.reshape(nb * per_out, f)
    cols = np.empty((1, tile, width), dtype=np.float32)  # this thread's
    n = _next_item(counter)
    while n < nb:
        out2d[n * per_out : (n + 1) * per_out] = 0.0
        end = (n + 1) * per_image
        for r0 in range(n * per_image, end, tile):
            rows = min(tile, end - r0)
            _sgemm(address, ilp64, rows, width, c_n, x2d[r0:], c_n, wt, width, cols[0], width,
                   np.float32(0.0))
            _col2im3d(cols, out, r0, rows, geometry)
        _bias_act_inplace(out2d, n * per_out, per_out, 0, bias, code)
        n = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def conv_transpose_forward(
    x, kernel, bias, strides, dilation, crops, output_shape, activation: int
) -> np.ndarray:
    """y[n,o,f] = act(b[f] + sum over o = i*s + j*d - crop of x[n,i,c] k[j,f,c]), per axis."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 5)  # (N, D, H, W, C)
    kernel = _as_f32(kernel, "kernel", 5)  # (KD, KH, KW, F, C)
    nb, d, h, w, c_n = x.shape
    k_d, k_h, k_w, f, kc = kernel.shape
    if kc != c_n:
        raise ValueError(f"kernel {kernel.shape} does not match {c_n} input channels")
    if min(k_d, k_h, k_w) < 1:
        raise ValueError(f"kernel {kernel.shape} has an empty spatial size")
    strides = _triple(strides, "strides", 1)
    dilation = _triple(dilation, "dilation", 1)
    crops = _triple(crops, "crops", 0)
    out_d, out_h, out_w = _triple(output_shape, "output_shape", 1)
    b = _bias_or_empty(bias, f)
    out = np.empty((nb, out_d, out_h, out_w, f), dtype=np.float32)  # (N, OD, OH, OW, F)
    if out.size == 0:
        return out
    # col2im's geometry: the convolution that reads `out` and has x's grid as its output
    geometry = (k_d, k_h, k_w, *strides, *dilation, *crops, d, h, w)
    width = k_d * k_h * k_w * f
    wt = _cached_transposed(kernel)  # (C, KD*KH*KW*F), columns in the order (kd, kh, kw, f)
    x2d = x.reshape(-1, c_n)
    full = b if len(b) else np.zeros(f, dtype=np.float32)
    found = _blas()
    if x2d.shape[0] == 0 or c_n == 0:
        out[...] = 0.0
        bias_activation_inplace(out.reshape(-1, f), b, code)
        return out
    if found is None:  # numpy's matmul in chunks, serial col2im, one epilogue
        out[...] = 0.0
        chunk = max(1, min(x2d.shape[0], _CHUNK_BYTES // (4 * width)))
        for r0 in range(0, x2d.shape[0], chunk):
            cols = np.matmul(x2d[r0 : r0 + chunk], wt)[None]  # (1, rows, width)
            _col2im3d(cols, out, r0, cols.shape[1], geometry)
        bias_activation_inplace(out.reshape(-1, f), b, code)
        return out
    tile = max(1, min(d * h * w, _CHUNK_BYTES // (4 * width)))
    with found.single_threaded():
        _parallel(_conv_transpose_images, nb, 2.0 * x.size * width, found.sgemm, found.ilp64,
                  x2d, wt, full, out, geometry, code, tile)
    return out
