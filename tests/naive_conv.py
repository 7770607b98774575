"""Slow float64 references of the 3-D and transposed convolutions (tests only): the forward
references tests/naive.py exports, and the vectorised float64 forward that tests/naive_grad.py
exports for finite differences."""

from __future__ import annotations

import itertools

import numpy as np


def _activation(y, name):
    """tests/naive.py's activations (imported when called: naive.py imports this file)."""
    try:
        from tests.naive import naive_activation as activation
    except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
        from naive import naive_activation as activation
    return activation(y, name)


def naive_conv3d(x, kernel, bias, strides, dilation, padding, groups, name):
    """Grouped 3D cross-correlation: zero-pad, then one einsum per output cell and group."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    xp = np.pad(x, ((0, 0), *[tuple(p) for p in padding], (0, 0)))
    kd, kh, kw, cg, f = kernel.shape
    fg = f // groups
    out = [(p - d * (k - 1) - 1) // s + 1
           for p, k, s, d in zip(xp.shape[1:4], (kd, kh, kw), strides, dilation)]
    y = np.zeros((x.shape[0], *out, f))
    for o in itertools.product(*(range(n) for n in out)):
        # window[n, i, j, l, :] = xp[n, o0*s0 + i*d0, o1*s1 + j*d1, o2*s2 + l*d2, :]
        window = xp[:, o[0] * strides[0] : o[0] * strides[0] + dilation[0] * (kd - 1) + 1 :
                    dilation[0],
                    o[1] * strides[1] : o[1] * strides[1] + dilation[1] * (kh - 1) + 1 :
                    dilation[1],
                    o[2] * strides[2] : o[2] * strides[2] + dilation[2] * (kw - 1) + 1 :
                    dilation[2], :]
        for g in range(groups):
            y[:, o[0], o[1], o[2], g * fg : (g + 1) * fg] = np.einsum(
                "nijlc,ijlcf->nf", window[..., g * cg : (g + 1) * cg],
                kernel[..., g * fg : (g + 1) * fg])
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)
    return _activation(y, name)


def naive_conv_transpose(x, kernel, bias, strides, dilation, crops, output_shape, name):
    """Transposed 3D convolution by scattering: every input cell i adds x[i] k[j]^T at
    i*s + j*d of a large enough zero canvas, which is then cut at `crops` to `output_shape`."""
    x = np.asarray(x, dtype=np.float64)  # (N, D, H, W, C)
    kernel = np.asarray(kernel, dtype=np.float64)  # (KD, KH, KW, F, C)
    f = kernel.shape[3]
    size = [max((n - 1) * s + (k - 1) * d + 1, c + o)
            for n, k, s, d, c, o in zip(x.shape[1:4], kernel.shape[:3], strides, dilation,
                                        crops, output_shape)]
    canvas = np.zeros((x.shape[0], *size, f))
    for i in itertools.product(*(range(n) for n in x.shape[1:4])):
        for j in itertools.product(*(range(k) for k in kernel.shape[:3])):
            at = tuple(a * s + b * d for a, b, s, d in zip(i, j, strides, dilation))
            canvas[:, at[0], at[1], at[2], :] += x[:, i[0], i[1], i[2], :] @ kernel[j].T
    y = canvas[:, crops[0] : crops[0] + output_shape[0], crops[1] : crops[1] + output_shape[1],
               crops[2] : crops[2] + output_shape[2], :]
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return _activation(y, name)


def conv3d64(x, kernel, bias, strides, dilation, padding, groups):
    """Grouped, strided, dilated 3D cross-correlation in float64: one product per kernel cell
    over every output cell at once."""
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), *[tuple(p) for p in padding], (0, 0)))
    kernel = np.asarray(kernel, np.float64)
    kd, kh, kw, cg, f = kernel.shape
    out = [(p - d * (k - 1) - 1) // s + 1
           for p, k, s, d in zip(xp.shape[1:4], (kd, kh, kw), strides, dilation)]
    y = np.zeros((x.shape[0], *out, groups, f // groups))
    ker = kernel.reshape(kd, kh, kw, cg, groups, f // groups)
    for j in itertools.product(range(kd), range(kh), range(kw)):
        cells = tuple(slice(j[a] * dilation[a], j[a] * dilation[a] + (out[a] - 1) * strides[a] + 1,
                            strides[a]) for a in range(3))
        part = xp[(slice(None), *cells)].reshape(*xp.shape[:1], *out, groups, cg)
        y += np.einsum("nabcgk,kgf->nabcgf", part, ker[j])
    return y.reshape(*y.shape[:4], f) + np.asarray(bias, np.float64)
