"""Recurrent kernels (SimpleRNN, LSTM, GRU; Keras 3's cells, implementation 1), forward for
inference and for training (which keeps what `grad_recurrent` needs).

The layer computes the input projection of every step as one GEMM first, so a kernel gets
xproj (N, T, G*u) = x_t @ kernel + input_bias (G gates: SimpleRNN 1, LSTM 4 in the order i, f,
c, o, GRU 3 in the order z, r, h), the recurrent kernel U (u, G*u), an optional (N, T) mask
(True = a real step: at a masked step the states keep their values and the output is the kept
h, or 0 with `zero_output`) and optional recurrent-dropout masks rdrop (G, N, u): gate g's
recurrent product is then (h * rdrop[g]) @ U[:, g*u:(g+1)*u]. Initial states are zeros; the
layer reverses x and mask for go_backwards.

The batch is cut into blocks of rows, one a thread of the pool (`_parallel`), each running all
T steps by itself: per step the product of its rows' states by U into a (rows, G*u) scratch,
then one fused loop over the gates. On AVX-512 CPUs the product is the register-blocked
micro-kernel of the direct convolution (`_rows_product`: U read in place, 12 rows x 32
columns of sums in registers), a third faster than a BLAS call a step at these sizes;
elsewhere one single-threaded BLAS sgemm, or a plain loop without a BLAS numba can call
(`_blas()` is None).

Sigmoid and tanh (the cells' defaults) are computed in float32 by loops that vectorise
(`_sigmoid32`, `_tanh32`, within 3 ulp of the exact values); every other activation goes
through `_act` in float64, as in the other kernels."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from seqcli.kernels.activations import (
    _LINEAR,
    _LOG_SOFTMAX,
    _RELU,
    _SIGMOID,
    _SOFTMAX,
    _TANH,
    _act,
    _as_f32,
    _check_code,
)
from seqcli.kernels.cpu import wide_vectors
from seqcli.kernels.dense import _blas, _sgemm
from seqcli.kernels.intrinsics import _conv_block
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _WORK_PER_THREAD, _next_item, _parallel, thread_count

# Fewest rows a block of the batch gets (below this BLAS runs far under its peak), unless the
# batch itself is smaller.
_MIN_BLOCK_ROWS = 8
# OpenBLAS multiplies matrices of up to 100**3 multiply-adds with its small-matrix kernels (on
# AVX-512 CPUs), which skip packing: a third faster for one step's (rows, u) @ (u, G*u). A
# bigger product is cut into calls of at least this many rows that fit under it.
_SMALL_SGEMM = 1_000_000
_MIN_SPLIT_ROWS = 6

# The recurrent product in the micro-kernel (AVX-512), else through BLAS; a constant of the
# compiled kernels (numba keys its cache on the CPU they were compiled for)
_WIDE = wide_vectors()

_SIMPLE, _LSTM, _GRU = 0, 1, 2
_GATES = (1, 4, 3)
_NO_MASK = np.zeros((0, 0), dtype=np.bool_)
_NO_RDROP = np.zeros((0, 0, 0), dtype=np.float32)
_NO_BIAS = np.zeros(0, dtype=np.float32)
_NO_STEPS = np.zeros((0, 0, 0), dtype=np.float32)  # an unused cache array (inference)


class RecurrentCache(NamedTuple):
    """What a training forward keeps for its backward, all per (n, t) of the (N, T) steps:
    pre (N, T, G*u) the gates' pre-activations, post (N, T, G*u) their activations (LSTM i, f,
    g, o; GRU z, r, hh), hprev (N, T, u) the state h before each step; LSTM also cprev (N, T, u)
    the cell state before the step, cnew the step's cell value f*c + i*g and acell act(cnew);
    GRU reset_after also inner (N, T, u), the h gate's recurrent product h @ U_h + b_h. Unused
    arrays are empty; mask (N, T) and rdrop (G, N, u) are empty when not given."""

    cell: int
    activation: int
    recurrent_activation: int
    return_sequences: bool
    zero_output: bool
    reset_after: bool
    mask: np.ndarray
    rdrop: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    hprev: np.ndarray
    cprev: np.ndarray
    cnew: np.ndarray
    acell: np.ndarray
    inner: np.ndarray


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _mm(address, ilp64, a, b, c, beta):
    # c = a @ b + beta * c on 2D float32 views with unit column strides: one BLAS sgemm when
    # `address` is set (single-threaded: the caller's threads share the cores), loops otherwise
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if address != 0:
        step = m  # rows a call: under _SMALL_SGEMM multiply-adds when that leaves enough rows
        if m * n * k > _SMALL_SGEMM and _SMALL_SGEMM // (n * k) >= _MIN_SPLIT_ROWS:
            calls = -(-m // (_SMALL_SGEMM // (n * k)))
            step = -(-m // calls)
        lda, ldb, ldc = a.strides[0] // 4, b.strides[0] // 4, c.strides[0] // 4
        for i0 in range(0, m, step):
            _sgemm(address, ilp64, min(step, m - i0), n, k, a[i0:], lda, b, ldb, c[i0:], ldc,
                   np.float32(beta))
        return
    for i in range(m):
        if beta == 0.0:
            for j in range(n):
                c[i, j] = 0.0
        elif beta != 1.0:
            for j in range(n):
                c[i, j] *= beta
        for p in range(k):
            v = a[i, p]
            for j in range(n):
                c[i, j] += v * b[p, j]


@njit(cache=True, nogil=True)
def _rows_product(a, kernel, c0, c1, z):
    # z[:, c0:c1] = a @ kernel[:, c0:c1] for C-contiguous a (rows, k), kernel (k, width) and z
    # (rows, width): tiles of 12, 4 and 1 rows by 32 or 16 columns in the micro-kernel, the
    # last columns (fewer than 16) by loops
    rows, k = a.shape
    width = kernel.shape[1]
    ldz = z.shape[1]
    af = a.reshape(rows * k)
    kf = kernel.reshape(k * width)
    zf = z.reshape(rows * ldz)
    f = c0
    while f + 16 <= c1:
        vectors = 2 if f + 32 <= c1 else 1
        r = 0
        while r + 12 <= rows:
            _conv_block(af, r * k, k, 0, 1, k, kf, f, 0, width, zf, r * ldz + f, ldz, False, 12,
                        vectors)
            r += 12
        while r + 4 <= rows:
            _conv_block(af, r * k, k, 0, 1, k, kf, f, 0, width, zf, r * ldz + f, ldz, False, 4,
                        vectors)
            r += 4
        while r < rows:
            _conv_block(af, r * k, k, 0, 1, k, kf, f, 0, width, zf, r * ldz + f, ldz, False, 1,
                        vectors)
            r += 1
        f += 16 * vectors
    if f < c1:
        for i in range(rows):
            for j in range(f, c1):
                z[i, j] = 0.0
            for p in range(k):
                v = a[i, p]
                for j in range(f, c1):
                    z[i, j] += v * kernel[p, j]


@njit(cache=True, nogil=True)
def _product(address, ilp64, a, kernel, c0, c1, z):
    # z[:, c0:c1] = a @ kernel[:, c0:c1] (a (rows, k) and z C-contiguous): the micro-kernel on
    # AVX-512, else BLAS (or loops)
    if _WIDE:
        _rows_product(a, kernel, c0, c1, z)
    else:
        _mm(address, ilp64, a, kernel[:, c0:c1], z[:, c0:c1], 0.0)


@njit(cache=True, nogil=True)
def _rec_product(address, ilp64, h, rdrop, r0, kernel, g0, g1, hd, z):
    # z[:, g0*u:g1*u] = h @ kernel[:, g0*u:g1*u] for h (rows, u), batch rows r0.. ; with rdrop,
    # gate g's product is (h * rdrop[g, r0:]) @ its columns (hd a (rows, u) scratch)
    rows, units = h.shape
    if rdrop.shape[0] == 0:
        _product(address, ilp64, h, kernel, g0 * units, g1 * units, z)
        return
    for g in range(g0, g1):
        for i in range(rows):
            for j in range(units):
                hd[i, j] = h[i, j] * rdrop[g, r0 + i, j]
        _product(address, ilp64, hd, kernel, g * units, (g + 1) * units, z)


@intrinsic
def _pow2(typingctx, k):
    """2**k as a float32 for an integer -126 <= k <= 127 (its exponent bits set directly)."""
    if not isinstance(k, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        v = context.cast(builder, args[0], sig.args[0], types.int32)
        bits = builder.shl(builder.add(v, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(k), codegen


@njit(cache=True)
def _exp32(x):
    # exp of a float32 in float32 arithmetic that vectorises (Cephes' expf: x = k ln2 + r,
    # degree-7 polynomial in r, times 2**k); x clamped to [-87, 88], within 2 ulp
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _pow2(np.int32(k))


@njit(cache=True, error_model="numpy")
def _sigmoid32(x):
    # 1 / (1 + exp(-x)) in float32 (error_model numpy: no zero-division branch, so it vectorises)
    return np.float32(1.0) / (np.float32(1.0) + _exp32(-x))


@njit(cache=True, error_model="numpy")
def _tanh32(x):
    # tanh in float32: (1 - e) / (1 + e), e = exp(-2|x|), and its Taylor series near 0 (where
    # 1 - e would cancel); within 3 ulp
    a = abs(x)
    e = _exp32(np.float32(-2.0) * a)
    far = (np.float32(1.0) - e) / (np.float32(1.0) + e)
    a2 = a * a
    near = a + a * a2 * (np.float32(-1.0 / 3.0) + a2 * (np.float32(2.0 / 15.0)
                                                       + a2 * np.float32(-17.0 / 315.0)))
    v = near if a < np.float32(0.125) else far
    return v if x >= np.float32(0.0) else -v


@njit(cache=True)
def _act_row(v, a, b, code):
    # v[a:b] = act(v[a:b]) in place on a contiguous row; sigmoid and tanh in float32 loops that
    # vectorise (`_sigmoid32`, `_tanh32`), the other activations through `_act` in float64
    lo, hi = np.uintp(a), np.uintp(b)
    if code == _SIGMOID:
        for j in range(lo, hi):
            v[j] = _sigmoid32(v[j])
    elif code == _TANH:
        for j in range(lo, hi):
            v[j] = _tanh32(v[j])
    elif code == _RELU:
        for j in range(lo, hi):
            v[j] = np.float32(0.0) if v[j] < np.float32(0.0) else v[j]
    elif code != _LINEAR:
        for j in range(lo, hi):
            v[j] = np.float32(_act(v[j], code))


@njit(cache=True)
def _copy_row(src, dst, a, b):
    # dst[a:b] = src[a:b]
    for j in range(np.uintp(a), np.uintp(b)):
        dst[j] = src[j]


@njit(cache=True)
def _emit(out, n, t, steps, h_row, masked, seq, zero_output):
    # the output of step t for batch row n: the state h (kept at a masked step), or 0 at a
    # masked step with zero_output; every step with seq, else only the last
    if not seq and t != steps - 1:
        return
    ot = t if seq else 0
    units = h_row.shape[0]
    if masked and zero_output:
        for j in range(units):
            out[n, ot, j] = 0.0
    else:
        for j in range(units):
            out[n, ot, j] = h_row[j]


@njit(cache=True, nogil=True)
def _simple_rnn_blocks(counter, address, ilp64, xproj, kernel, mask, rdrop, out, pre, post,
                       hprev, code, seq, zero_output, train, block):
    # xproj (N, T, u) -> out (N, T or 1, u); h = act(xproj_t + h @ U), blocks of rows in turn
    n_b, steps, units = xproj.shape
    has_mask = mask.shape[0] > 0
    u = np.uintp(units)
    b = _next_item(counter)
    while b * block < n_b:
        r0 = b * block
        rows = min(block, n_b - r0)
        h = np.zeros((rows, units), dtype=np.float32)
        z = np.empty((rows, units), dtype=np.float32)
        hd = np.empty((rows, units), dtype=np.float32)
        for t in range(steps):
            _rec_product(address, ilp64, h, rdrop, r0, kernel, 0, 1, hd, z)
            for i in range(rows):
                n = r0 + i
                masked = has_mask and not mask[n, t]
                for j in range(u):
                    z[i, j] += xproj[n, t, j]
                if train:
                    _copy_row(z[i], pre[n, t], 0, units)
                    _copy_row(h[i], hprev[n, t], 0, units)
                _act_row(z[i], 0, units, code)
                if train:
                    _copy_row(z[i], post[n, t], 0, units)
                if not masked:
                    _copy_row(z[i], h[i], 0, units)
                _emit(out, n, t, steps, h[i], masked, seq, zero_output)
        b = _next_item(counter)


@njit(cache=True, nogil=True)
def _lstm_blocks(counter, address, ilp64, xproj, kernel, mask, rdrop, out, pre, post, hprev,
                 cprev, cnew, acell, code, rcode, seq, zero_output, train, block):
    # xproj (N, T, 4u) -> out (N, T or 1, u); gates i, f, c, o; c = f*c + i*act(z_c),
    # h = o*act(c); blocks of rows in turn
    n_b, steps, width = xproj.shape
    units = width // 4
    has_mask = mask.shape[0] > 0
    u, w = np.uintp(units), np.uintp(width)
    b = _next_item(counter)
    while b * block < n_b:
        r0 = b * block
        rows = min(block, n_b - r0)
        h = np.zeros((rows, units), dtype=np.float32)
        c = np.zeros((rows, units), dtype=np.float32)
        z = np.empty((rows, width), dtype=np.float32)
        hd = np.empty((rows, units), dtype=np.float32)
        cn = np.empty(units, dtype=np.float32)
        ac = np.empty(units, dtype=np.float32)
        for t in range(steps):
            _rec_product(address, ilp64, h, rdrop, r0, kernel, 0, 4, hd, z)
            for i in range(rows):
                n = r0 + i
                masked = has_mask and not mask[n, t]
                zi = z[i]
                for j in range(w):
                    zi[j] += xproj[n, t, j]
                if train:
                    _copy_row(zi, pre[n, t], 0, width)
                    _copy_row(h[i], hprev[n, t], 0, units)
                    _copy_row(c[i], cprev[n, t], 0, units)
                _act_row(zi, 0, 2 * units, rcode)
                _act_row(zi, 2 * units, 3 * units, code)
                _act_row(zi, 3 * units, width, rcode)
                for j in range(u):
                    v = zi[u + j] * c[i, j] + zi[j] * zi[2 * u + j]
                    cn[j] = v
                    ac[j] = v
                _act_row(ac, 0, units, code)
                if train:
                    _copy_row(zi, post[n, t], 0, width)
                    _copy_row(cn, cnew[n, t], 0, units)
                    _copy_row(ac, acell[n, t], 0, units)
                if not masked:
                    for j in range(u):
                        c[i, j] = cn[j]
                        h[i, j] = zi[3 * u + j] * ac[j]
                _emit(out, n, t, steps, h[i], masked, seq, zero_output)
        b = _next_item(counter)


@njit(cache=True, nogil=True)
def _gru_blocks(counter, address, ilp64, xproj, kernel, rbias, mask, rdrop, out, pre, post,
                hprev, inner, code, rcode, reset_after, seq, zero_output, train, block):
    # xproj (N, T, 3u) -> out (N, T or 1, u); gates z, r, h; h = z*h + (1-z)*hh with
    # hh = act(x_h + r*(h @ U_h + b_h)) (reset_after) or act(x_h + (r*h) @ U_h)
    n_b, steps, width = xproj.shape
    units = width // 3
    has_mask = mask.shape[0] > 0
    has_rdrop = rdrop.shape[0] > 0
    u = np.uintp(units)
    b = _next_item(counter)
    while b * block < n_b:
        r0 = b * block
        rows = min(block, n_b - r0)
        h = np.zeros((rows, units), dtype=np.float32)
        z = np.empty((rows, width), dtype=np.float32)
        hd = np.empty((rows, units), dtype=np.float32)
        for t in range(steps):
            _rec_product(address, ilp64, h, rdrop, r0, kernel, 0, 3 if reset_after else 2, hd,
                         z)
            for i in range(rows):
                n = r0 + i
                zi = z[i]
                if reset_after:
                    for j in range(2 * u):
                        zi[j] += xproj[n, t, j] + rbias[j]
                else:
                    for j in range(2 * u):
                        zi[j] += xproj[n, t, j]
                if train:
                    _copy_row(zi, pre[n, t], 0, 2 * units)
                    _copy_row(h[i], hprev[n, t], 0, units)
                _act_row(zi, 0, 2 * units, rcode)
                if not reset_after:  # r * h_h for the h gate's product, h_h = h*rdrop[2]
                    if has_rdrop:
                        for j in range(u):
                            hd[i, j] = zi[u + j] * (h[i, j] * rdrop[2, n, j])
                    else:
                        for j in range(u):
                            hd[i, j] = zi[u + j] * h[i, j]
            if not reset_after:
                _product(address, ilp64, hd, kernel, 2 * units, 3 * units, z)
            for i in range(rows):
                n = r0 + i
                masked = has_mask and not mask[n, t]
                zi = z[i]
                if reset_after:
                    for j in range(u):
                        rec = zi[2 * u + j] + rbias[2 * u + j]
                        hd[i, j] = rec
                        zi[2 * u + j] = xproj[n, t, 2 * u + j] + zi[u + j] * rec
                    if train:
                        _copy_row(hd[i], inner[n, t], 0, units)
                else:
                    for j in range(u):
                        zi[2 * u + j] += xproj[n, t, 2 * u + j]
                if train:
                    _copy_row(zi[2 * units:], pre[n, t, 2 * units:], 0, units)
                _act_row(zi, 2 * units, width, code)
                if train:
                    _copy_row(zi, post[n, t], 0, width)
                if not masked:
                    for j in range(u):
                        zg = zi[j]
                        h[i, j] = zg * h[i, j] + (np.float32(1.0) - zg) * zi[2 * u + j]
                _emit(out, n, t, steps, h[i], masked, seq, zero_output)
        b = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _elementwise_code(code, name: str) -> int:
    """`code` checked: a known activation that acts elementwise (not softmax/log_softmax)."""
    c = _check_code(code)
    if c in (_SOFTMAX, _LOG_SOFTMAX):
        raise ValueError(f"{name} must be an elementwise activation, not softmax/log_softmax")
    return c


def _checked(xproj, recurrent_kernel, mask, rdrop, gates: int):
    """xproj (N, T, G*u), U (u, G*u), mask (N, T) bool and rdrop (G, N, u) as the kernels take
    them (empty arrays for None); ValueError when they do not fit."""
    xproj = _as_f32(xproj, "xproj", 3)
    kernel = _as_f32(recurrent_kernel, "recurrent_kernel", 2)
    n, steps, width = xproj.shape
    units = kernel.shape[0]
    if kernel.shape != (units, gates * units) or width != gates * units:
        raise ValueError(f"recurrent_kernel {kernel.shape} and xproj {xproj.shape} do not fit "
                         f"(u, {gates}*u) and (N, T, {gates}*u)")
    if steps == 0:
        raise ValueError("xproj must have at least one time step")
    if mask is None:
        mask = _NO_MASK
    else:
        mask = np.ascontiguousarray(mask, dtype=np.bool_)
        if mask.shape != (n, steps):
            raise ValueError(f"mask must have shape ({n}, {steps}), got {mask.shape}")
    if rdrop is None:
        rdrop = _NO_RDROP
    else:
        rdrop = _as_f32(rdrop, "rdrop", 3)
        if rdrop.shape != (gates, n, units):
            raise ValueError(f"rdrop must have shape ({gates}, {n}, {units}), got {rdrop.shape}")
    return xproj, kernel, mask, rdrop


def _block_rows(n: int, work: float) -> int:
    """Rows of one block of the batch: the batch shared by the threads that `work` (float
    operations) is worth, none under `_MIN_BLOCK_ROWS` rows."""
    blocks = max(1, min(thread_count(), n // _MIN_BLOCK_ROWS, int(work // _WORK_PER_THREAD)))
    return -(-n // blocks)


def _run(kernel, n: int, work: float, *args) -> None:
    """kernel(counter, sgemm address, ilp64, *args, block rows) over the batch's row blocks."""
    found = _blas()
    block = _block_rows(n, work)
    numba_ready()
    if found is None:
        _parallel(kernel, -(-n // block), work, 0, False, *args, block)
        return
    with found.single_threaded():
        _parallel(kernel, -(-n // block), work, found.sgemm, found.ilp64, *args, block)


def _outputs(n, steps, units, seq, train, gates, cell, reset_after):
    """out (N, T or 1, u) and the cache's step arrays for a forward (empty when not training)."""
    out = np.empty((n, steps if seq else 1, units), dtype=np.float32)
    if not train:
        return out, (_NO_STEPS,) * 7

    def per_step(width, used=True):
        return np.empty((n, steps, width), dtype=np.float32) if used else _NO_STEPS

    lstm = cell == _LSTM
    return out, (per_step(gates * units), per_step(gates * units), per_step(units),
                 per_step(units, lstm), per_step(units, lstm), per_step(units, lstm),
                 per_step(units, cell == _GRU and reset_after))


def _finish(out, seq, train, cache_head, mask, rdrop, steps_arrays):
    y = out if seq else out.reshape(out.shape[0], out.shape[2])
    if not train:
        return y
    return y, RecurrentCache(*cache_head, mask, rdrop, *steps_arrays)


def simple_rnn_forward(xproj, recurrent_kernel, mask, activation, return_sequences,
                       zero_output=False, rdrop=None, train=False):
    """h_t = act(xproj_t + h_{t-1} @ U) (kept at masked steps); (N, T, u) -> h per step or last."""
    code = _elementwise_code(activation, "activation")
    xproj, kernel, mask, rdrop = _checked(xproj, recurrent_kernel, mask, rdrop, 1)
    seq, zero_output, train = bool(return_sequences), bool(zero_output), bool(train)
    n, steps, units = xproj.shape
    out, arrays = _outputs(n, steps, units, seq, train, 1, _SIMPLE, False)
    if out.size:
        pre, post, hprev = arrays[:3]
        _run(_simple_rnn_blocks, n, (2.0 * units + 40.0) * n * steps * units, xproj, kernel,
             mask, rdrop, out, pre, post, hprev, code, seq, zero_output, train)
    return _finish(out, seq, train, (_SIMPLE, code, code, seq, zero_output, False), mask, rdrop,
                   arrays)


def lstm_forward(xproj, recurrent_kernel, mask, activation, recurrent_activation,
                 return_sequences, zero_output=False, rdrop=None, train=False):
    """z = xproj_t + h @ U; c = ract(z_f) c + ract(z_i) act(z_c); h = ract(z_o) act(c)."""
    code = _elementwise_code(activation, "activation")
    rcode = _elementwise_code(recurrent_activation, "recurrent_activation")
    xproj, kernel, mask, rdrop = _checked(xproj, recurrent_kernel, mask, rdrop, 4)
    seq, zero_output, train = bool(return_sequences), bool(zero_output), bool(train)
    n, steps, width = xproj.shape
    units = width // 4
    out, arrays = _outputs(n, steps, units, seq, train, 4, _LSTM, False)
    if out.size:
        pre, post, hprev, cprev, cnew, acell, _ = arrays
        _run(_lstm_blocks, n, (8.0 * units + 200.0) * n * steps * units, xproj, kernel, mask,
             rdrop, out, pre, post, hprev, cprev, cnew, acell, code, rcode, seq, zero_output,
             train)
    return _finish(out, seq, train, (_LSTM, code, rcode, seq, zero_output, False), mask, rdrop,
                   arrays)


def gru_forward(xproj, recurrent_kernel, recurrent_bias, mask, activation, recurrent_activation,
                reset_after, return_sequences, zero_output=False, rdrop=None, train=False):
    """GRU over all steps: z, r gates and candidate hh (reset before or after the product)."""
    code = _elementwise_code(activation, "activation")
    rcode = _elementwise_code(recurrent_activation, "recurrent_activation")
    xproj, kernel, mask, rdrop = _checked(xproj, recurrent_kernel, mask, rdrop, 3)
    seq, zero_output, train = bool(return_sequences), bool(zero_output), bool(train)
    reset_after = bool(reset_after)
    n, steps, width = xproj.shape
    units = width // 3
    if reset_after:
        if recurrent_bias is None:
            raise ValueError("gru_forward with reset_after needs recurrent_bias (3u,)")
        rbias = _as_f32(recurrent_bias, "recurrent_bias", 1)
        if rbias.shape != (width,):
            raise ValueError(f"recurrent_bias must have shape ({width},), got {rbias.shape}")
    elif recurrent_bias is not None:
        raise ValueError("gru_forward without reset_after takes no recurrent_bias")
    else:
        rbias = _NO_BIAS
    out, arrays = _outputs(n, steps, units, seq, train, 3, _GRU, reset_after)
    if out.size:
        pre, post, hprev, _, _, _, inner = arrays
        _run(_gru_blocks, n, (6.0 * units + 150.0) * n * steps * units, xproj, kernel, rbias,
             mask, rdrop, out, pre, post, hprev, inner, code, rcode, reset_after, seq,
             zero_output, train)
    return _finish(out, seq, train, (_GRU, code, rcode, seq, zero_output, reset_after), mask,
                   rdrop, arrays)
