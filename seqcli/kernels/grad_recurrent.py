"""Recurrent gradients (SimpleRNN, LSTM, GRU): backpropagation through time from the cache a
training forward of `recurrent` keeps.

`*_backward(cache, recurrent_kernel, dy)` returns dxproj (N, T, G*u), the gradient wrt the
input projection (the layer turns it into the kernel, bias and input gradients), and
drecurrent_kernel (u, G*u); GRU also drecurrent_bias (3u,) with reset_after, else None.

Each block of batch rows runs the steps backwards on one thread of the pool: it adds the
step's dy into the state gradient (dropped at a masked step with zero_output), differentiates
the gates into dxproj (zero at a masked step, whose state gradient passes through unchanged),
and takes the previous state's gradient dz @ U^T with one sgemm (a transposed copy of U).
drecurrent_kernel is then one GEMM over all steps, h_prev^T (u, N*T) @ dz (N*T, G*u)."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _LINEAR, _RELU, _SIGMOID, _TANH, _as_f32
from seqcli.kernels.grad_activations import _act_grad
from seqcli.kernels.grad_gemm import _product
from seqcli.kernels.recurrent import _GRU, _LSTM, _SIMPLE, RecurrentCache, _mm, _run
from seqcli.kernels.threads import _next_item

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _rec_grad(address, ilp64, d, kernel_t, rdrop, r0, g0, g1, tmp, acc):
    # acc += sum_g (d[:, g] @ kernel_t[g rows]) * rdrop[g, r0:] over gates g0..g1-1, d (rows,
    # G*u) and kernel_t (G*u, u) = U^T; without rdrop one sgemm over all those gates at once
    rows, units = acc.shape
    if rdrop.shape[0] == 0:
        _mm(address, ilp64, d[:, g0 * units:g1 * units], kernel_t[g0 * units:g1 * units],
            acc, 1.0)
        return
    for g in range(g0, g1):
        _mm(address, ilp64, d[:, g * units:(g + 1) * units],
            kernel_t[g * units:(g + 1) * units], tmp, 0.0)
        for i in range(rows):
            for j in range(units):
                acc[i, j] += tmp[i, j] * rdrop[g, r0 + i, j]


@njit(cache=True)
def _add_dy(dh_row, dy, n, t, steps, masked, seq, zero_output):
    # dy of step t's output into the state gradient: the output is the state after step t,
    # except at a masked step with zero_output (a constant 0)
    if (not seq and t != steps - 1) or (masked and zero_output):
        return
    ot = t if seq else 0
    for j in range(dh_row.shape[0]):
        dh_row[j] += dy[n, ot, j]


@njit(cache=True)
def _grad_row(x, y, out, a, b, code):
    # out[j] = act'(x[j]) for j in a..b-1 given y = act(x) (`_act_grad`'s rules); sigmoid, tanh,
    # linear and relu in loops that vectorise
    lo, hi = np.uintp(a), np.uintp(b)
    if code == _SIGMOID:
        for j in range(lo, hi):
            out[j] = y[j] * (np.float32(1.0) - y[j])
    elif code == _TANH:
        for j in range(lo, hi):
            out[j] = np.float32(1.0) - y[j] * y[j]
    elif code == _LINEAR:
        for j in range(lo, hi):
            out[j] = 1.0
    elif code == _RELU:
        for j in range(lo, hi):
            out[j] = np.float32(1.0) if x[j] > np.float32(0.0) else np.float32(0.0)
    else:
        for j in range(lo, hi):
            out[j] = np.float32(_act_grad(x[j], y[j], code))


@njit(cache=True, nogil=True)
def _simple_rnn_back_blocks(counter, address, ilp64, dy, kernel_t, mask, rdrop, pre, post, dx,
                            code, seq, zero_output, block):
    # dy (N, T or 1, u) -> dx (N, T, u); dz = dh act'(z), dh_prev = dz @ U^T
    n_b, steps, units = dx.shape
    has_mask = mask.shape[0] > 0
    u = np.uintp(units)
    b = _next_item(counter)
    while b * block < n_b:
        r0 = b * block
        rows = min(block, n_b - r0)
        dh = np.zeros((rows, units), dtype=np.float32)
        acc = np.empty((rows, units), dtype=np.float32)
        tmp = np.empty((rows, units), dtype=np.float32)
        dg = np.empty(units, dtype=np.float32)
        for t in range(steps - 1, -1, -1):
            for i in range(rows):
                n = r0 + i
                masked = has_mask and not mask[n, t]
                _add_dy(dh[i], dy, n, t, steps, masked, seq, zero_output)
                dxr = dx[n, t]
                if masked:  # h kept: its gradient passes through
                    for j in range(u):
                        dxr[j] = 0.0
                        acc[i, j] = dh[i, j]
                    continue
                _grad_row(pre[n, t], post[n, t], dg, 0, units, code)
                for j in range(u):
                    dxr[j] = dh[i, j] * dg[j]
                    acc[i, j] = 0.0
            _rec_grad(address, ilp64, dx[r0:r0 + rows, t], kernel_t, rdrop, r0, 0, 1, tmp, acc)
            dh, acc = acc, dh
        b = _next_item(counter)


@njit(cache=True, nogil=True)
def _lstm_back_blocks(counter, address, ilp64, dy, kernel_t, mask, rdrop, pre, post, cprev,
                      cnew, acell, dx, code, rcode, seq, zero_output, block):
    # dy (N, T or 1, u) -> dx (N, T, 4u); h = o act(c), c = f c_prev + i g
    n_b, steps, width = dx.shape
    units = width // 4
    has_mask = mask.shape[0] > 0
    u, w = np.uintp(units), np.uintp(width)
    b = _next_item(counter)
    while b * block < n_b:
        r0 = b * block
        rows = min(block, n_b - r0)
        dh = np.zeros((rows, units), dtype=np.float32)
        dc = np.zeros((rows, units), dtype=np.float32)
        acc = np.empty((rows, units), dtype=np.float32)
        tmp = np.empty((rows, units), dtype=np.float32)
        dg = np.empty(width, dtype=np.float32)
        dgc = np.empty(units, dtype=np.float32)
        for t in range(steps - 1, -1, -1):
            for i in range(rows):
                n = r0 + i
                masked = has_mask and not mask[n, t]
                _add_dy(dh[i], dy, n, t, steps, masked, seq, zero_output)
                dxr = dx[n, t]
                if masked:  # h and c kept: their gradients pass through
                    for j in range(w):
                        dxr[j] = 0.0
                    for j in range(u):
                        acc[i, j] = dh[i, j]
                    continue
                p, g = post[n, t], pre[n, t]
                _grad_row(g, p, dg, 0, 2 * units, rcode)
                _grad_row(g, p, dg, 2 * units, 3 * units, code)
                _grad_row(g, p, dg, 3 * units, width, rcode)
                ac, cp = acell[n, t], cprev[n, t]
                _grad_row(cnew[n, t], ac, dgc, 0, units, code)
                for j in range(u):
                    d = dh[i, j]
                    dct = dc[i, j] + d * p[3 * u + j] * dgc[j]
                    dxr[j] = dct * p[2 * u + j] * dg[j]
                    dxr[u + j] = dct * cp[j] * dg[u + j]
                    dxr[2 * u + j] = dct * p[j] * dg[2 * u + j]
                    dxr[3 * u + j] = d * ac[j] * dg[3 * u + j]
                    dc[i, j] = dct * p[u + j]
                    acc[i, j] = 0.0
            _rec_grad(address, ilp64, dx[r0:r0 + rows, t], kernel_t, rdrop, r0, 0, 4, tmp, acc)
            dh, acc = acc, dh
        b = _next_item(counter)


@njit(cache=True, nogil=True)
def _gru_back_blocks(counter, address, ilp64, dy, kernel_t, mask, rdrop, pre, post, hprev,
                     inner, dx, drec, code, rcode, reset_after, seq, zero_output, block):
    # dy (N, T or 1, u) -> dx (N, T, 3u), and drec (N, T, 3u) the gradient of the recurrent
    # products (reset_after: the h gate's is dx_h * r); h = z h_prev + (1 - z) hh
    n_b, steps, width = dx.shape
    units = width // 3
    has_mask = mask.shape[0] > 0
    has_rdrop = rdrop.shape[0] > 0
    u, w = np.uintp(units), np.uintp(width)
    b = _next_item(counter)
    while b * block < n_b:
        r0 = b * block
        rows = min(block, n_b - r0)
        dh = np.zeros((rows, units), dtype=np.float32)
        acc = np.empty((rows, units), dtype=np.float32)
        tmp = np.empty((rows, units), dtype=np.float32)
        q = np.zeros((rows, units), dtype=np.float32)
        dg = np.empty(width, dtype=np.float32)
        for t in range(steps - 1, -1, -1):
            for i in range(rows):
                n = r0 + i
                masked = has_mask and not mask[n, t]
                _add_dy(dh[i], dy, n, t, steps, masked, seq, zero_output)
                dxr, dre = dx[n, t], drec[n, t]
                if masked:
                    for j in range(w):
                        dxr[j] = 0.0
                        dre[j] = 0.0
                    for j in range(u):
                        acc[i, j] = dh[i, j]
                    continue
                p, g, hp = post[n, t], pre[n, t], hprev[n, t]
                _grad_row(g, p, dg, 0, 2 * units, rcode)
                _grad_row(g, p, dg, 2 * units, width, code)
                for j in range(u):
                    d = dh[i, j]
                    zg = p[j]
                    dz = d * (hp[j] - p[2 * u + j]) * dg[j]
                    dah = d * (np.float32(1.0) - zg) * dg[2 * u + j]
                    dxr[j] = dz
                    dre[j] = dz
                    dxr[2 * u + j] = dah
                    acc[i, j] = d * zg
                if reset_after:
                    rec = inner[n, t]
                    for j in range(u):
                        dah = dxr[2 * u + j]
                        dr = dah * rec[j] * dg[u + j]
                        dxr[u + j] = dr
                        dre[u + j] = dr
                        dre[2 * u + j] = dah * p[u + j]
                else:
                    for j in range(u):
                        dre[2 * u + j] = dxr[2 * u + j]
            if reset_after:
                _rec_grad(address, ilp64, drec[r0:r0 + rows, t], kernel_t, rdrop, r0, 0, 3, tmp,
                          acc)
            else:
                # hh = act(x_h + (r h_h) @ U_h): q = d(r h_h), then dr = q h_h, dh_h = q r
                _mm(address, ilp64, drec[r0:r0 + rows, t, 2 * units:], kernel_t[2 * units:], q,
                    0.0)
                for i in range(rows):
                    n = r0 + i
                    if has_mask and not mask[n, t]:
                        continue
                    p, hp, dxr, dre = post[n, t], hprev[n, t], dx[n, t], drec[n, t]
                    _grad_row(pre[n, t], p, dg, units, 2 * units, rcode)
                    for j in range(u):
                        keep = rdrop[2, n, j] if has_rdrop else np.float32(1.0)
                        dr = q[i, j] * (hp[j] * keep) * dg[u + j]
                        dxr[u + j] = dr
                        dre[u + j] = dr
                        acc[i, j] += q[i, j] * p[u + j] * keep
                _rec_grad(address, ilp64, drec[r0:r0 + rows, t], kernel_t, rdrop, r0, 0, 2, tmp,
                          acc)
            dh, acc = acc, dh
        b = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _checked(cache, recurrent_kernel, dy, cell: int, gates: int):
    """(U, U^T, dy as (N, T or 1, u)) for the cache of a `cell` forward; ValueError on misfit."""
    if not isinstance(cache, RecurrentCache) or cache.cell != cell:
        raise ValueError("cache must be the one the matching training forward returned")
    kernel = _as_f32(recurrent_kernel, "recurrent_kernel", 2)
    n, steps, width = cache.pre.shape
    units = width // gates
    if kernel.shape != (units, width):
        raise ValueError(f"recurrent_kernel must have shape ({units}, {width}), got "
                         f"{kernel.shape}")
    shape = (n, steps, units) if cache.return_sequences else (n, units)
    dy = _as_f32(dy, "dy")
    if dy.shape != shape:
        raise ValueError(f"dy must have the output's shape {shape}, got {dy.shape}")
    return kernel, np.ascontiguousarray(kernel.T), dy.reshape(n, -1, units)


def _kernel_grad(hprev, dz, rdrop, gates: int) -> np.ndarray:
    """dU (u, G*u) = sum over steps of (h_prev * rdrop[g])^T @ dz_g, one GEMM per gate with
    rdrop, one in all without."""
    n, steps, units = hprev.shape
    rows = np.ascontiguousarray(hprev).reshape(n * steps, units)
    dz2 = np.ascontiguousarray(dz).reshape(n * steps, gates * units)
    if rdrop.shape[0] == 0:
        return _product(rows, dz2, trans_a=True)
    out = np.empty((units, gates * units), dtype=np.float32)
    for g in range(gates):
        dropped = (hprev * rdrop[g][:, None, :]).reshape(n * steps, units)
        out[:, g * units:(g + 1) * units] = _product(
            dropped, np.ascontiguousarray(dz2[:, g * units:(g + 1) * units]), trans_a=True)
    return out


def _work(cache, gates: int) -> float:
    n, steps, width = cache.pre.shape
    units = width // gates
    return (2.0 * width + 60.0 * gates) * n * steps * units


def simple_rnn_backward(cache, recurrent_kernel, dy):
    """dz_t = (dy_t + dh_t) act'(z_t), dh_{t-1} = dz_t @ U^T; -> (dxproj, h_prev^T @ dz)."""
    kernel, kernel_t, dy = _checked(cache, recurrent_kernel, dy, _SIMPLE, 1)
    dx = np.empty(cache.pre.shape, dtype=np.float32)
    if dx.size == 0:
        return dx, np.zeros(kernel.shape, dtype=np.float32)
    _run(_simple_rnn_back_blocks, dx.shape[0], _work(cache, 1), dy, kernel_t, cache.mask,
         cache.rdrop, cache.pre, cache.post, dx, cache.activation, cache.return_sequences,
         cache.zero_output)
    return dx, _kernel_grad(cache.hprev, dx, cache.rdrop, 1)


def lstm_backward(cache, recurrent_kernel, dy):
    """Back through c = f c_prev + i g, h = o act(c) per step; -> (dxproj, h_prev^T @ dz)."""
    kernel, kernel_t, dy = _checked(cache, recurrent_kernel, dy, _LSTM, 4)
    dx = np.empty(cache.pre.shape, dtype=np.float32)
    if dx.size == 0:
        return dx, np.zeros(kernel.shape, dtype=np.float32)
    _run(_lstm_back_blocks, dx.shape[0], _work(cache, 4), dy, kernel_t, cache.mask,
         cache.rdrop, cache.pre, cache.post, cache.cprev, cache.cnew, cache.acell, dx,
         cache.activation, cache.recurrent_activation, cache.return_sequences,
         cache.zero_output)
    return dx, _kernel_grad(cache.hprev, dx, cache.rdrop, 4)


def gru_backward(cache, recurrent_kernel, dy):
    """Back through h = z h_prev + (1 - z) hh per step; -> (dxproj, dU, db_rec or None)."""
    kernel, kernel_t, dy = _checked(cache, recurrent_kernel, dy, _GRU, 3)
    dx = np.empty(cache.pre.shape, dtype=np.float32)
    reset_after = cache.reset_after
    units = kernel.shape[0]
    if dx.size == 0:
        return (dx, np.zeros(kernel.shape, dtype=np.float32),
                np.zeros(3 * units, dtype=np.float32) if reset_after else None)
    drec = np.empty_like(dx)
    _run(_gru_back_blocks, dx.shape[0], _work(cache, 3), dy, kernel_t, cache.mask, cache.rdrop,
         cache.pre, cache.post, cache.hprev, cache.inner, dx, drec, cache.activation,
         cache.recurrent_activation, reset_after, cache.return_sequences, cache.zero_output)
    if reset_after:
        dkernel = _kernel_grad(cache.hprev, drec, cache.rdrop, 3)
        dbias = drec.reshape(-1, 3 * units).sum(axis=0, dtype=np.float64).astype(np.float32)
        return dx, dkernel, dbias
    # z and r gates from h_prev (* rdrop); the h gate's product is (r * h_prev * rdrop[2]) @ U_h
    dkernel = np.empty(kernel.shape, dtype=np.float32)
    dkernel[:, :2 * units] = _kernel_grad(cache.hprev, drec[:, :, :2 * units],
                                          cache.rdrop[:2], 2)
    hh = cache.hprev * cache.post[:, :, units:2 * units]
    if cache.rdrop.shape[0]:
        hh *= cache.rdrop[2][:, None, :]
    dkernel[:, 2 * units:] = _product(
        hh.reshape(-1, units), np.ascontiguousarray(drec[:, :, 2 * units:]).reshape(-1, units),
        trans_a=True)
    return dx, dkernel, None
