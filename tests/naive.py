"""Slow, obviously-correct float64 references for the kernels in `seqcli.kernels` (tests only)."""

from __future__ import annotations

import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def _relu6(v):
    return min(max(v, 0.0), 6.0)


def _softplus(v):
    return math.log(1.0 + math.exp(v))


# Keras 3 definitions, one scalar formula each (softmax/log_softmax handled per row below).
SCALAR_ACTIVATIONS = {
    "linear": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "relu6": _relu6,
    "sigmoid": _sigmoid,
    "hard_sigmoid": lambda v: _relu6(v + 3.0) / 6.0,
    "tanh": math.tanh,
    "elu": lambda v: v if v > 0 else math.exp(v) - 1.0,
    "selu": lambda v: SELU_SCALE * (v if v > 0 else SELU_ALPHA * (math.exp(v) - 1.0)),
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    "silu": lambda v: v * _sigmoid(v),
    "hard_silu": lambda v: v * _relu6(v + 3.0) / 6.0,
    "softplus": _softplus,
    "softsign": lambda v: v / (1.0 + abs(v)),
    "leaky_relu": lambda v: v if v >= 0 else 0.2 * v,
    "exponential": math.exp,
    "mish": lambda v: v * math.tanh(_softplus(v)),
}


def _softmax_row(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _log_softmax_row(row):
    m = max(row)
    s = sum(math.exp(v - m) for v in row)
    return [v - m - math.log(s) for v in row]


def naive_activation(x, name):
    """act(x) in float64; softmax/log_softmax over the last axis; KeyError for unknown names."""
    x = np.asarray(x, dtype=np.float64)
    if name in ("softmax", "log_softmax"):
        fn = _softmax_row if name == "softmax" else _log_softmax_row
        rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
        return np.array([fn(list(r)) for r in rows], dtype=np.float64).reshape(x.shape)
    fn = SCALAR_ACTIVATIONS[name]
    return np.array([fn(float(v)) for v in x.ravel()], dtype=np.float64).reshape(x.shape)


def naive_bias_activation(y, bias, name):
    """act(y + bias) for (M, K) y; an empty bias means none."""
    y = np.asarray(y, dtype=np.float64)
    if len(bias):
        y = y + np.asarray(bias, dtype=np.float64)[None, :]
    return naive_activation(y, name)


def naive_dense(x, kernel, bias, name):
    """act(x @ kernel + bias), sums written out with explicit loops in float64."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    m, k = x.shape
    u = kernel.shape[1]
    y = np.zeros((m, u))
    for i in range(m):
        for j in range(u):
            y[i, j] = sum(x[i, t] * kernel[t, j] for t in range(k))
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)
    return naive_activation(y, name)


def naive_conv2d(x, kernel, bias, strides, dilation, padding, groups, name):
    """Grouped 2D cross-correlation: zero-pad, then one einsum per output pixel and group."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, hp, wp, _ = xp.shape
    kh, kw, cg, f = kernel.shape
    sh, sw = strides
    dh, dw = dilation
    fg = f // groups
    oh_n = (hp - dh * (kh - 1) - 1) // sh + 1
    ow_n = (wp - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, oh_n, ow_n, f))
    for oh in range(oh_n):
        for ow in range(ow_n):
            # window[n, i, j, :] = xp[n, oh*sh + i*dh, ow*sw + j*dw, :]
            window = xp[
                :,
                oh * sh : oh * sh + dh * (kh - 1) + 1 : dh,
                ow * sw : ow * sw + dw * (kw - 1) + 1 : dw,
                :,
            ]
            for g in range(groups):
                xs = window[..., g * cg : (g + 1) * cg]
                ks = kernel[..., g * fg : (g + 1) * fg]
                y[:, oh, ow, g * fg : (g + 1) * fg] = np.einsum("nijc,ijcf->nf", xs, ks)
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)
    return naive_activation(y, name)


def naive_depthwise_conv2d(x, kernel, bias, strides, dilation, padding, name):
    """Depthwise conv: out[..., c*DM + m] = sum_ij window[i, j, c] * kernel[i, j, c, m]."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, hp, wp, c = xp.shape
    kh, kw, _, dm = kernel.shape
    sh, sw = strides
    dh, dw = dilation
    oh_n = (hp - dh * (kh - 1) - 1) // sh + 1
    ow_n = (wp - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, oh_n, ow_n, c * dm))
    for oh in range(oh_n):
        for ow in range(ow_n):
            for ch in range(c):
                for m in range(dm):
                    total = np.zeros(n)
                    for i in range(kh):
                        for j in range(kw):
                            v = xp[:, oh * sh + i * dh, ow * sw + j * dw, ch]
                            total += v * kernel[i, j, ch, m]
                    y[:, oh, ow, ch * dm + m] = total
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)
    return naive_activation(y, name)


def _pool_windows(x, pool, strides, padding, fill):
    """Yield (oh, ow, window) over x padded with `fill`; window is (N, ph, pw, C)."""
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    ph, pw = pool
    sh, sw = strides
    oh_n = (xp.shape[1] - ph) // sh + 1
    ow_n = (xp.shape[2] - pw) // sw + 1
    for oh in range(oh_n):
        for ow in range(ow_n):
            yield oh, ow, xp[:, oh * sh : oh * sh + ph, ow * sw : ow * sw + pw, :]


def _pool_out(x, pool, strides, padding):
    (pt, pb), (pl, pr) = padding
    oh_n = (x.shape[1] + pt + pb - pool[0]) // strides[0] + 1
    ow_n = (x.shape[2] + pl + pr - pool[1]) // strides[1] + 1
    return np.zeros((x.shape[0], oh_n, ow_n, x.shape[3]))


def naive_max_pool2d(x, pool, strides, padding):
    """Max over each window of x padded with -inf."""
    x = np.asarray(x, dtype=np.float64)
    y = _pool_out(x, pool, strides, padding)
    for oh, ow, win in _pool_windows(x, pool, strides, padding, -np.inf):
        y[:, oh, ow, :] = win.max(axis=(1, 2))
    return y


def naive_avg_pool2d(x, pool, strides, padding):
    """Sum over each zero-padded window divided by the count of real cells in it."""
    x = np.asarray(x, dtype=np.float64)
    y = _pool_out(x, pool, strides, padding)
    real = np.ones_like(x)
    sums = _pool_windows(x, pool, strides, padding, 0.0)
    counts = _pool_windows(real, pool, strides, padding, 0.0)
    for (oh, ow, win), (_, _, cnt) in zip(sums, counts, strict=True):
        y[:, oh, ow, :] = win.sum(axis=(1, 2)) / cnt.sum(axis=(1, 2))
    return y


def naive_global_max_pool(x):
    """max over axis 1 of (N, S, C)."""
    return np.asarray(x, dtype=np.float64).max(axis=1)


def naive_global_avg_pool(x):
    """mean over axis 1 of (N, S, C)."""
    return np.asarray(x, dtype=np.float64).mean(axis=1)


def naive_batch_norm(x, gamma, beta, moving_mean, moving_variance, epsilon):
    """(x - mean) / sqrt(var + eps) * gamma + beta over axis 1 of (A, C, B)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    for c in range(x.shape[1]):
        inv = 1.0 / math.sqrt(float(moving_variance[c]) + epsilon)
        y[:, c, :] = (x[:, c, :] - float(moving_mean[c])) * inv * float(gamma[c]) + float(beta[c])
    return y


def naive_layer_norm(x, gamma, beta, epsilon):
    """Per row: (x - mean) / sqrt(biased var + eps) * gamma + beta, in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    for i, row in enumerate(x):
        mean = row.sum() / len(row)
        var = ((row - mean) ** 2).sum() / len(row)
        y[i] = (row - mean) / math.sqrt(var + epsilon) * gamma + beta
    return y


def naive_zero_pad2d(x, padding):
    """np.pad with zeros on axes 1 and 2."""
    (pt, pb), (pl, pr) = padding
    return np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))


def naive_upsample2d_nearest(x, size):
    """Each pixel repeated size[0] times down and size[1] times across."""
    x = np.asarray(x, dtype=np.float64)
    return np.repeat(np.repeat(x, size[0], axis=1), size[1], axis=2)


def naive_separable_resize(x, rows, cols):
    """y[n, i, j, c] = sum over p, q of rows[i, p] * cols[j, q] * x[n, p, q, c], in float64."""
    x = np.asarray(x, dtype=np.float64)
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    out = np.zeros((x.shape[0], rows.shape[0], cols.shape[0], x.shape[3]))
    for i in range(rows.shape[0]):
        for j in range(cols.shape[0]):
            for p in range(x.shape[1]):
                for q in range(x.shape[2]):
                    out[:, i, j, :] += rows[i, p] * cols[j, q] * x[:, p, q, :]
    return out


def naive_rescale(x, scale, offset):
    """x * scale + offset in float64."""
    return np.asarray(x, dtype=np.float64) * scale + offset


# The recurrent references live in their own file (they use the activations above).
try:  # the recurrent references, in their own file
    from tests.naive_recurrent import naive_gru, naive_lstm, naive_simple_rnn  # noqa: E402, F401
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from naive_recurrent import naive_gru, naive_lstm, naive_simple_rnn  # noqa: E402, F401


def naive_normalization(x, mean, variance, invert=False):
    """Per column of (N, M): (x - mean) / max(sqrt(variance), 1e-7), or the inverse, float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    for m in range(x.shape[1]):
        deviation = max(math.sqrt(float(variance[m])), 1e-7)
        for n in range(x.shape[0]):
            y[n, m] = mean[m] + x[n, m] * deviation if invert else \
                (x[n, m] - mean[m]) / deviation
    return y


def naive_group_norm(x, gamma, beta, groups, epsilon):
    """(N, P, C, Q), per sample and group of C / groups channels: (x - mean) / sqrt(biased
    var + eps) * gamma[c] + beta[c], in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    size = x.shape[2] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            block = x[n, :, g * size:(g + 1) * size, :]
            mean = block.sum() / block.size
            var = ((block - mean) ** 2).sum() / block.size
            for c in range(g * size, (g + 1) * size):
                y[n, :, c, :] = (x[n, :, c, :] - mean) / math.sqrt(var + epsilon) * gamma[c] \
                    + beta[c]
    return y


def naive_unit_norm(x):
    """Each row of (M, K) times min(1 / ||row||, 1e12), in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    for i, row in enumerate(x):
        norm = math.sqrt((row * row).sum())
        y[i] = row * (1e12 if norm == 0 else min(1 / norm, 1e12))
    return y


try:  # the 3-D and transposed convolutions' references, in their own file
    from tests.naive_conv import naive_conv3d, naive_conv_transpose  # noqa: E402, F401
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from naive_conv import naive_conv3d, naive_conv_transpose  # noqa: E402, F401


_AFFINE_FILL_NAMES = ("constant", "nearest", "wrap", "reflect")


def _jax_fixed_index(index, size, mode):
    """jax.scipy.ndimage.map_coordinates' index fixers, as written there (reflect through
    the whole-sample mirror of 2·index + 1)."""
    def mirror(i, n):
        s = n - 1
        return abs((i + s) % (2 * s) - s)

    if mode == "nearest":
        return min(max(index, 0), size - 1)
    if mode == "wrap":
        return index % size
    if mode == "reflect":
        return (mirror(2 * index + 1, 2 * size + 1) - 1) // 2
    return index


def naive_affine_transform(x, transforms, interpolation, fill_mode, fill_value):
    """(N, H, W, C): output (i, j) of image n samples input (b0·j + b1·i + b2, a0·j + a1·i +
    a2) by map_coordinates (order 0 rounds halves away from zero, order 1 is bilinear; fill
    modes constant/nearest/wrap/reflect by code 0-3), float64."""
    x = np.asarray(x, dtype=np.float64)
    mode = _AFFINE_FILL_NAMES[fill_mode]
    n_b, h, w, c_n = x.shape
    y = np.zeros_like(x)
    for n in range(n_b):
        a0, a1, a2, b0, b1, b2 = (float(v) for v in transforms[n][:6])
        for i in range(h):
            for j in range(w):
                row, col = b0 * j + b1 * i + b2, a0 * j + a1 * i + a2
                if interpolation == 0:
                    nodes = [(int(math.copysign(math.floor(abs(row) + 0.5), row)),
                              int(math.copysign(math.floor(abs(col) + 0.5), col)), 1.0)]
                else:
                    r0, c0 = math.floor(row), math.floor(col)
                    fr, fc = row - r0, col - c0
                    nodes = [(r0, c0, (1 - fr) * (1 - fc)), (r0, c0 + 1, (1 - fr) * fc),
                             (r0 + 1, c0, fr * (1 - fc)), (r0 + 1, c0 + 1, fr * fc)]
                for r, c, weight in nodes:
                    if mode == "constant" and not (0 <= r < h and 0 <= c < w):
                        y[n, i, j] += weight * fill_value
                    else:
                        y[n, i, j] += weight * x[n, _jax_fixed_index(r, h, mode),
                                                 _jax_fixed_index(c, w, mode)]
    return y


# The optimizers' updates: Keras 3's element-wise float32 ops, one numpy op at a time (their
# roundings are the contract, so these stay in float32).


def naive_sgd_update(variable, gradient, momentum, learning_rate, factor, nesterov):
    lr = np.float32(learning_rate)
    if momentum is None:
        variable -= gradient * lr
        return
    factor = np.float32(factor)
    momentum[...] = momentum * factor - gradient * lr
    if nesterov:
        variable += momentum * factor - gradient * lr
    else:
        variable += momentum


def naive_adam_update(variable, gradient, m, v, alpha, beta_1, beta_2, epsilon):
    m += (gradient - m) * np.float32(1 - beta_1)
    v += (np.square(gradient) - v) * np.float32(1 - beta_2)
    variable -= (m * np.float32(alpha)) / (np.sqrt(v) + np.float32(epsilon))


def naive_rmsprop_update(variable, gradient, v, momentum, learning_rate, rho, epsilon, factor):
    v[...] = v * np.float32(rho) + np.float32(1 - rho) * np.square(gradient)
    step = (np.float32(learning_rate) * gradient) / np.sqrt(v + np.float32(epsilon))
    if momentum is None:
        variable -= step
    else:
        momentum[...] = momentum * np.float32(factor) + step
        variable -= momentum
