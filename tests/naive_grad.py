"""Float64 references for the gradient kernels: central finite differences of vectorised
float64 forwards (cross-checked against tests/naive.py), tests only."""

from __future__ import annotations

import numpy as np

try:
    from tests import naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive


def numeric_vjp(f, args, wrt: int, dy, step: float = 1e-6) -> np.ndarray:
    """d/d args[wrt] of sum(f(*args) * dy) by central differences, one element at a time."""
    args = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in args]
    dy = np.asarray(dy, dtype=np.float64)
    base = args[wrt]
    grad = np.zeros(base.shape)
    for index in np.ndindex(base.shape):
        keep = base[index]
        base[index] = keep + step
        up = np.sum(f(*args) * dy)
        base[index] = keep - step
        down = np.sum(f(*args) * dy)
        base[index] = keep
        grad[index] = (up - down) / (2.0 * step)
    return grad


def dense64(x, kernel, bias, name):
    """act(x @ kernel + bias) in float64."""
    z = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64)
    return naive.naive_activation(z, name)


def _windows(xp, size, strides, dilation, out):
    """xp[n, o*s + k*d, ...] gathered to (N, OH, OW, KH, KW, C)."""
    rows = np.arange(out[0])[:, None] * strides[0] + np.arange(size[0])[None, :] * dilation[0]
    cols = np.arange(out[1])[:, None] * strides[1] + np.arange(size[1])[None, :] * dilation[1]
    return xp[:, rows[:, None, :, None], cols[None, :, None, :], :]


def _out(padded, size, strides, dilation):
    return tuple((p - d * (k - 1) - 1) // s + 1
                 for p, k, s, d in zip(padded, size, strides, dilation))


def _pad(x, padding, fill=0.0):
    (pt, pb), (pl, pr) = padding
    return np.pad(np.asarray(x, np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)),
                  constant_values=fill)


def conv2d64(x, kernel, bias, strides, dilation, padding, groups):
    """Grouped, strided, dilated 2D cross-correlation in float64, one einsum."""
    xp = _pad(x, padding)
    kernel = np.asarray(kernel, np.float64)
    kh, kw, cg, f = kernel.shape
    out = _out(xp.shape[1:3], (kh, kw), strides, dilation)
    win = _windows(xp, (kh, kw), strides, dilation, out)  # (N, OH, OW, KH, KW, C)
    win = win.reshape(*win.shape[:5], groups, cg)
    ker = kernel.reshape(kh, kw, cg, groups, f // groups)
    y = np.einsum("nhwpqgc,pqcgf->nhwgf", win, ker).reshape(*win.shape[:3], f)
    return y + np.asarray(bias, np.float64)


def conv2d64_vjp(x, kernel, strides, dilation, padding, groups, dy):
    """(dx, dkernel, dbias) of `conv2d64` for the output gradient dy, in float64: conv2d64 is
    linear in x and in kernel, so these are its adjoints (the windows' einsum transposed, and
    each window's input gradient added back where the window reads)."""
    xp = _pad(x, padding)
    kernel = np.asarray(kernel, np.float64)
    dy = np.asarray(dy, np.float64)
    kh, kw, cg, f = kernel.shape
    out = dy.shape[1:3]
    win = _windows(xp, (kh, kw), strides, dilation, out).reshape(
        *dy.shape[:3], kh, kw, groups, cg)
    dyg = dy.reshape(*dy.shape[:3], groups, f // groups)
    dkernel = np.einsum("nhwpqgc,nhwgf->pqcgf", win, dyg).reshape(kh, kw, cg, f)
    dwin = np.einsum("nhwgf,pqcgf->nhwpqgc", dyg, kernel.reshape(kh, kw, cg, groups, f // groups))
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dilation[0], i * dilation[0] + (out[0] - 1) * strides[0] + 1,
                         strides[0])
            cols = slice(j * dilation[1], j * dilation[1] + (out[1] - 1) * strides[1] + 1,
                         strides[1])
            dxp[:, rows, cols, :] += dwin[:, :, :, i, j].reshape(*dy.shape[:3], groups * cg)
    (pt, _), (pl, _) = padding
    dx = dxp[:, pt:pt + np.shape(x)[1], pl:pl + np.shape(x)[2], :]
    return dx, dkernel, dy.sum(axis=(0, 1, 2))


def depthwise_conv2d64(x, kernel, bias, strides, dilation, padding):
    """Depthwise conv in float64: output channel c*DM + m."""
    xp = _pad(x, padding)
    kernel = np.asarray(kernel, np.float64)
    kh, kw, c, dm = kernel.shape
    out = _out(xp.shape[1:3], (kh, kw), strides, dilation)
    win = _windows(xp, (kh, kw), strides, dilation, out)
    y = np.einsum("nhwpqc,pqcm->nhwcm", win, kernel).reshape(*win.shape[:3], c * dm)
    return y + np.asarray(bias, np.float64)


def max_pool2d64(x, pool, strides, padding):
    """Max over each window of x padded with -inf."""
    xp = _pad(x, padding, -np.inf)
    out = _out(xp.shape[1:3], pool, strides, (1, 1))
    return _windows(xp, pool, strides, (1, 1), out).max(axis=(3, 4))


def avg_pool2d64(x, pool, strides, padding):
    """Window sums of zero-padded x over the count of real cells."""
    xp = _pad(x, padding)
    real = _pad(np.ones_like(x), padding)
    out = _out(xp.shape[1:3], pool, strides, (1, 1))
    sums = _windows(xp, pool, strides, (1, 1), out).sum(axis=(3, 4))
    return sums / _windows(real, pool, strides, (1, 1), out).sum(axis=(3, 4))


def batch_norm64(x, gamma, beta, mean, var, epsilon):
    """(x - mean) / sqrt(var + eps) * gamma + beta over axis 1 of (A, C, B), float64."""
    def col(v):
        return np.asarray(v, np.float64)[None, :, None]

    return (np.asarray(x, np.float64) - col(mean)) / np.sqrt(col(var) + epsilon) * col(gamma) + col(beta)


def batch_norm_train64(x, gamma, beta, epsilon):
    """Batch norm with the batch mean and biased batch variance of (A, C, B) over A and B."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    return batch_norm64(x, gamma, beta, mean, var, epsilon)


def layer_norm64(x, gamma, beta, epsilon):
    """Per row of (M, K): (x - mean) / sqrt(biased var + eps) * gamma + beta, float64."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)


def moving_update64(moving_mean, moving_variance, batch_mean, batch_var, momentum):
    """Keras 3: moving * momentum + batch * (1 - momentum), biased batch variance."""
    def mix(old, new):
        return np.asarray(old, np.float64) * momentum + np.asarray(new, np.float64) * (1 - momentum)

    return mix(moving_mean, batch_mean), mix(moving_variance, batch_var)


def max_pool2d_route(x, pool, strides, padding, dy):
    """Max-pool gradient by the rule, slowly: each window's dy to its first row-major maximum."""
    x = np.asarray(x, np.float64)
    (pt, pb), (pl, pr) = padding
    n_b, h, w, c_n = x.shape
    out_h = (h + pt + pb - pool[0]) // strides[0] + 1
    out_w = (w + pl + pr - pool[1]) // strides[1] + 1
    dx = np.zeros_like(x)
    for n in range(n_b):
        for oh in range(out_h):
            for ow in range(out_w):
                for c in range(c_n):
                    cells = [(i, j)
                             for i in range(oh * strides[0] - pt, oh * strides[0] - pt + pool[0])
                             for j in range(ow * strides[1] - pl, ow * strides[1] - pl + pool[1])
                             if 0 <= i < h and 0 <= j < w]
                    best = max(x[n, i, j, c] for i, j in cells)
                    i, j = next((i, j) for i, j in cells if x[n, i, j, c] == best)
                    dx[n, i, j, c] += dy[n, oh, ow, c]
    return dx


def global_max_route(x, dy):
    """Global max gradient by the rule: dy shared equally by the tied maxima of (N, S, C)."""
    x = np.asarray(x, np.float64)
    hit = x == x.max(axis=1, keepdims=True)
    return hit * np.asarray(dy, np.float64)[:, None, :] / hit.sum(axis=1, keepdims=True)


def group_norm64(x, gamma, beta, groups, epsilon):
    """(N, P, C, Q): per sample and group of channels, (x - mean) / sqrt(biased var + eps)
    * gamma[c] + beta[c], float64."""
    x = np.asarray(x, np.float64)
    n, p, c, q = x.shape
    grouped = x.reshape(n, p, groups, c // groups, q)
    mean = grouped.mean(axis=(1, 3, 4), keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=(1, 3, 4), keepdims=True)
    normalised = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    return normalised * np.asarray(gamma, np.float64)[None, None, :, None] + \
        np.asarray(beta, np.float64)[None, None, :, None]


def unit_norm64(x):
    """Each row of (M, K) divided by its L2 norm (inverse capped at 1e12), float64."""
    x = np.asarray(x, np.float64)
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x * np.minimum(1 / np.maximum(norm, 1e-300), 1e12)


try:  # the 3-D convolution's float64 forward, beside its reference
    from tests.naive_conv import conv3d64  # noqa: E402, F401
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from naive_conv import conv3d64  # noqa: E402, F401


def affine_sampling_matrix(shape, transform, interpolation, fill_mode):
    """The (H·W, H·W) matrix S of one image's affine resampling (y = S x + fill per channel),
    built from naive.naive_affine_transform applied to each unit image."""
    h, w = shape
    matrix = np.zeros((h * w, h * w))
    for p in range(h * w):
        unit = np.zeros((1, h, w, 1))
        unit.flat[p] = 1.0
        matrix[:, p] = naive.naive_affine_transform(unit, [transform], interpolation,
                                                    fill_mode, 0.0).reshape(-1)
    return matrix


def affine_transform64(x, transforms, interpolation, fill_mode, fill_value):
    """(N, H, W, C): naive.naive_affine_transform in float64 (linear in x: the fill values are
    constants), for finite differences."""
    return naive.naive_affine_transform(x, transforms, interpolation, fill_mode, fill_value)
