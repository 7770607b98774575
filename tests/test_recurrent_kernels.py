"""Recurrent kernels (seqcli/kernels/recurrent.py, grad_recurrent.py) against the float64
references of tests/naive_recurrent.py, their finite differences, and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from seqcli.activations import ACTIVATION_CODES
from seqcli.kernels import grad_recurrent as g_rec
from seqcli.kernels import recurrent as k_rec
from seqcli.kernels.threads import set_threads, thread_count

try:
    from tests import naive_grad, naive_recurrent
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive_grad
    import naive_recurrent

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# (activation, recurrent_activation) pairs, taken in turn by the flag combinations
PAIRS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("linear", "sigmoid"),
         ("sigmoid", "hard_sigmoid"), ("hard_sigmoid", "linear"), ("tanh", "relu")]
ELEMENTWISE = ["tanh", "sigmoid", "relu", "hard_sigmoid", "linear"]


def _code(name):
    return ACTIVATION_CODES[name]


def _mask(rng, n, steps):
    """A random (N, T) mask with a row fully masked, one masked at its start and end (and one
    row at least all real), when there are rows for them."""
    mask = rng.random((n, steps)) > 0.35
    if steps > 2:
        mask[-1, :] = True
        mask[-1, 0] = mask[-1, -1] = False
    if n > 1:
        mask[0, :] = False
    if n > 2:
        mask[1, :] = True
    return mask


def _case(cell, n, steps, units, seed, use_mask, use_rdrop, reset_after=True):
    """Random xproj, U, recurrent bias (GRU reset_after), mask and rdrop for one case."""
    rng = np.random.default_rng(seed)
    gates = GATES[cell]
    xproj = rng.normal(0.0, 1.0, (n, steps, gates * units)).astype(np.float32)
    kernel = rng.normal(0.0, 0.8 / math.sqrt(units), (units, gates * units)).astype(np.float32)
    bias = (rng.normal(0.0, 0.5, gates * units).astype(np.float32)
            if cell == "gru" and reset_after else None)
    mask = _mask(rng, n, steps) if use_mask else None
    rdrop = ((rng.random((gates, n, units)) > 0.3) / np.float32(0.7)).astype(np.float32) \
        if use_rdrop else None
    return xproj, kernel, bias, mask, rdrop


def _forward(cell, xproj, kernel, bias, mask, act, ract, seq, zero_output, rdrop,
             reset_after=True, train=False):
    if cell == "simple_rnn":
        return k_rec.simple_rnn_forward(xproj, kernel, mask, _code(act), seq, zero_output, rdrop,
                                        train)
    if cell == "lstm":
        return k_rec.lstm_forward(xproj, kernel, mask, _code(act), _code(ract), seq, zero_output,
                                  rdrop, train)
    return k_rec.gru_forward(xproj, kernel, bias, mask, _code(act), _code(ract), reset_after,
                             seq, zero_output, rdrop, train)


def _reference(cell, xproj, kernel, bias, mask, act, ract, seq, zero_output, rdrop,
               reset_after=True):
    if cell == "simple_rnn":
        return naive_recurrent.naive_simple_rnn(xproj, kernel, mask, act, seq, zero_output, rdrop)
    if cell == "lstm":
        return naive_recurrent.naive_lstm(xproj, kernel, mask, act, ract, seq, zero_output, rdrop)
    return naive_recurrent.naive_gru(xproj, kernel, bias, mask, act, ract, reset_after, seq,
                                     zero_output, rdrop)


def _backward(cell, cache, kernel, dy):
    if cell == "simple_rnn":
        return g_rec.simple_rnn_backward(cache, kernel, dy)
    if cell == "lstm":
        return g_rec.lstm_backward(cache, kernel, dy)
    return g_rec.gru_backward(cache, kernel, dy)


def _close(got, want, rtol=1e-4, atol=1e-5):
    want = np.asarray(want, np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


# (cell, reset_after) for every cell and both GRU variants
CELLS = [("simple_rnn", True), ("lstm", True), ("gru", True), ("gru", False)]
FLAGS = [(m, z, r, s) for m, z, r, s in itertools.product([False, True], repeat=4)
         if m or not z]  # zero_output matters only with a mask


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("cell,reset_after", CELLS)
@pytest.mark.parametrize("n,steps", [(1, 1), (1, 7), (3, 1), (3, 7), (37, 1), (37, 7)])
def test_forward_matches_reference(cell, reset_after, n, steps):
    for k, (use_mask, zero_output, use_rdrop, seq) in enumerate(FLAGS):
        act, ract = PAIRS[(k + n + steps) % len(PAIRS)]
        xproj, kernel, bias, mask, rdrop = _case(cell, n, steps, 3, 100 * k + n + steps,
                                                 use_mask, use_rdrop, reset_after)
        args = (cell, xproj, kernel, bias, mask, act, ract, seq, zero_output, rdrop, reset_after)
        want = _reference(*args)
        _close(_forward(*args), want)
        y, cache = _forward(*args, train=True)
        _close(y, want)
        assert isinstance(cache, tuple)


@pytest.mark.parametrize("cell,reset_after,act,ract", [
    (cell, reset_after, act, ract) for cell, reset_after in CELLS for act in ELEMENTWISE
    for ract in (["sigmoid"] if cell == "simple_rnn" else ELEMENTWISE)])
def test_forward_activations(cell, reset_after, act, ract):
    xproj, kernel, bias, mask, rdrop = _case(cell, 4, 5, 3, 7, True, True, reset_after)
    args = (cell, xproj, kernel, bias, mask, act, ract, True, False, rdrop, reset_after)
    _close(_forward(*args), _reference(*args))


def test_forward_blocks_threads_and_plain_loops(monkeypatch):
    """Many row blocks (uneven last), two threads sharing them, and the plain-loop product
    that runs without a BLAS: all equal the reference."""
    before = thread_count()
    try:
        for blocks, threads, blas in ((5, 1, True), (None, 2, True), (5, 2, False)):
            set_threads(threads)
            with monkeypatch.context() as patch:
                if blocks:
                    patch.setattr(k_rec, "_block_rows", lambda n, work, b=blocks: b)
                if not blas:
                    patch.setattr(k_rec, "_blas", lambda: None)
                for cell, reset_after in CELLS:
                    xproj, kernel, bias, mask, rdrop = _case(cell, 37, 7, 48, 3, True,
                                                             cell != "lstm", reset_after)
                    args = (cell, xproj, kernel, bias, mask, "tanh", "sigmoid", True, False,
                            rdrop, reset_after)
                    _close(_forward(*args), _reference(*args))
    finally:
        set_threads(before)


@pytest.mark.parametrize("units", [1, 4, 5, 8, 17, 37])
@pytest.mark.parametrize("cell,reset_after", CELLS)
def test_forward_products_of_every_width(cell, reset_after, units):
    """Gate widths that are and are not whole vectors of 16 (the micro-kernel's 32 and 16
    columns, then loops), 29 rows in one block (tiles of 12, 4 and 1 rows), with and without
    recurrent dropout (one product per gate)."""
    before = thread_count()
    try:
        set_threads(1)
        for use_rdrop in (False, True):
            xproj, kernel, bias, mask, rdrop = _case(cell, 29, 4, units, units, True, use_rdrop,
                                                     reset_after)
            args = (cell, xproj, kernel, bias, mask, "tanh", "sigmoid", True, False, rdrop,
                    reset_after)
            _close(_forward(*args), _reference(*args))
    finally:
        set_threads(before)


def test_forward_split_sgemm():
    """A block of 70 rows by a (64, 256) kernel is over `_SMALL_SGEMM`: two sgemm calls a
    step, forward and backward."""
    before = thread_count()
    try:
        set_threads(1)
        xproj, kernel, _, mask, _ = _case("lstm", 70, 3, 64, 9, True, False)
        assert 70 * 256 * 64 > k_rec._SMALL_SGEMM
        args = ("lstm", xproj, kernel, None, mask, "tanh", "sigmoid", True, False, None)
        y, cache = _forward(*args, train=True)
        _close(y, _reference(*args))
        dy = np.random.default_rng(3).normal(0.0, 1.0, y.shape).astype(np.float32)
        dx, dk = g_rec.lstm_backward(cache, kernel, dy)
        # the same rows in blocks of 10 (one call each) give the same gradients
        k_rec_rows = k_rec._block_rows
        k_rec._block_rows = lambda n, work: 10
        try:
            dx2, dk2 = g_rec.lstm_backward(cache, kernel, dy)
        finally:
            k_rec._block_rows = k_rec_rows
        _close(dx, dx2)
        _close(dk, dk2)
    finally:
        set_threads(before)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float32_sigmoid_tanh(name):
    """The vectorised float32 sigmoid and tanh of the cells: within a few float32 ulps of
    float64 over the whole range, saturated far out, NaN kept."""
    x = np.concatenate([np.linspace(-100.0, 100.0, 200001), np.linspace(-0.2, 0.2, 40001),
                        np.geomspace(1e-30, 1.0, 2000), -np.geomspace(1e-30, 1.0, 2000),
                        [0.0, np.inf, -np.inf]]).astype(np.float32)
    got = x.copy()
    k_rec._act_row(got, 0, len(got), _code(name))
    x64 = x.astype(np.float64)
    e = np.exp(-np.abs(x64))
    sigmoid = np.where(x64 >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    want = np.tanh(x64) if name == "tanh" else sigmoid
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=2e-38)  # sigmoid stops at exp(87)
    nan = np.array([np.nan], np.float32)
    k_rec._act_row(nan, 0, 1, _code(name))
    assert np.isnan(nan[0])


def test_forward_empty_batch():
    y = k_rec.lstm_forward(np.zeros((0, 3, 8), np.float32), np.zeros((2, 8), np.float32), None,
                           _code("tanh"), _code("sigmoid"), True)
    assert y.shape == (0, 3, 2)
    y = k_rec.simple_rnn_forward(np.zeros((0, 3, 2), np.float32), np.zeros((2, 2), np.float32),
                                 None, _code("tanh"), False)
    assert y.shape == (0, 2)


# ----------------------------------------------------------------------------- backward


def _check_grads(cell, reset_after, n, steps, units, seed, use_mask, zero_output, use_rdrop,
                 seq, act, ract):
    xproj, kernel, bias, mask, rdrop = _case(cell, n, steps, units, seed, use_mask, use_rdrop,
                                             reset_after)
    y, cache = _forward(cell, xproj, kernel, bias, mask, act, ract, seq, zero_output, rdrop,
                        reset_after, train=True)
    dy = np.random.default_rng(seed + 1).normal(0.0, 1.0, y.shape).astype(np.float32)
    got = _backward(cell, cache, kernel, dy)

    def ref(xp, ker, b):
        return _reference(cell, xp, ker, b, mask, act, ract, seq, zero_output, rdrop,
                          reset_after)

    args = [xproj, kernel, np.zeros(3 * units) if bias is None else bias]
    _close(got[0], naive_grad.numeric_vjp(ref, args, 0, dy), rtol=1e-3, atol=1e-4)
    _close(got[1], naive_grad.numeric_vjp(ref, args, 1, dy), rtol=1e-3, atol=1e-4)
    if cell == "gru":
        if reset_after:
            _close(got[2], naive_grad.numeric_vjp(ref, args, 2, dy), rtol=1e-3, atol=1e-4)
        else:
            assert got[2] is None
    else:
        assert len(got) == 2


@pytest.mark.parametrize("cell,reset_after", CELLS)
@pytest.mark.parametrize("use_mask,zero_output,use_rdrop,seq", FLAGS)
def test_backward_matches_finite_differences(cell, reset_after, use_mask, zero_output,
                                             use_rdrop, seq):
    k = FLAGS.index((use_mask, zero_output, use_rdrop, seq))
    act, ract = PAIRS[(k + len(cell)) % len(PAIRS)]
    _check_grads(cell, reset_after, 3, 4, 2, 10 + k, use_mask, zero_output, use_rdrop, seq, act,
                 ract)


@pytest.mark.parametrize("cell,reset_after", CELLS)
@pytest.mark.parametrize("act", ELEMENTWISE)
def test_backward_activations(cell, reset_after, act):
    ract = {"tanh": "sigmoid", "sigmoid": "hard_sigmoid", "relu": "sigmoid",
            "hard_sigmoid": "linear", "linear": "relu"}[act]
    _check_grads(cell, reset_after, 2, 3, 2, 5, True, False, True, True, act, ract)


@pytest.mark.parametrize("cell,reset_after", CELLS)
@pytest.mark.parametrize("n,steps", [(1, 1), (1, 3), (4, 1)])
def test_backward_edge_shapes(cell, reset_after, n, steps):
    _check_grads(cell, reset_after, n, steps, 3, 3, True, True, True, False, "tanh", "sigmoid")
    _check_grads(cell, reset_after, n, steps, 3, 4, False, False, False, True, "tanh",
                 "sigmoid")


def test_backward_blocks_threads_and_plain_loops(monkeypatch):
    """Backward over many row blocks, on two threads and without a BLAS equals the default."""
    before = thread_count()
    try:
        for cell, reset_after in CELLS:
            xproj, kernel, bias, mask, rdrop = _case(cell, 37, 6, 40, 8, True, True, reset_after)
            args = (cell, xproj, kernel, bias, mask, "tanh", "sigmoid", True, False, rdrop,
                    reset_after)
            set_threads(1)
            y, cache = _forward(*args, train=True)
            dy = np.random.default_rng(2).normal(0.0, 1.0, y.shape).astype(np.float32)
            want = _backward(cell, cache, kernel, dy)
            for blocks, threads, blas in ((5, 1, True), (None, 2, True), (7, 2, False)):
                set_threads(threads)
                with monkeypatch.context() as patch:
                    if blocks:
                        patch.setattr(k_rec, "_block_rows", lambda n, work, b=blocks: b)
                    if not blas:
                        patch.setattr(k_rec, "_blas", lambda: None)
                    y2, cache2 = _forward(*args, train=True)
                    got = _backward(cell, cache2, kernel, dy)
                _close(y2, y)
                for g, w in zip(got, want):
                    if w is not None:
                        _close(g, w, rtol=1e-4, atol=1e-5)
    finally:
        set_threads(before)


# ----------------------------------------------------------------------------- by hand


def test_simple_rnn_linear_by_hand():
    """u = 1, U = 0.5, xproj = 1, 2, 3: h = 1, 2 + 0.5 = 2.5, 3 + 1.25 = 4.25. Backward of the
    last output: dxproj = U^2, U, 1 = 0.25, 0.5, 1; dU = d/dU (x3 + U x2 + U^2 x1) = x2 + 2 U x1
    = 3."""
    x = np.array([[[1.0], [2.0], [3.0]]], np.float32)
    kernel = np.array([[0.5]], np.float32)
    linear = _code("linear")
    seq = k_rec.simple_rnn_forward(x, kernel, None, linear, True)
    np.testing.assert_allclose(seq, [[[1.0], [2.5], [4.25]]])
    last, cache = k_rec.simple_rnn_forward(x, kernel, None, linear, False, train=True)
    np.testing.assert_allclose(last, [[4.25]])
    dx, dk = g_rec.simple_rnn_backward(cache, kernel, np.ones((1, 1), np.float32))
    np.testing.assert_allclose(dx, [[[0.25], [0.5], [1.0]]])
    np.testing.assert_allclose(dk, [[3.0]])
    # step 2 masked: h = 1, (1 kept), 3 + 0.5 = 3.5; its output is the kept 1, or 0
    mask = np.array([[True, False, True]])
    np.testing.assert_allclose(k_rec.simple_rnn_forward(x, kernel, mask, linear, True),
                               [[[1.0], [1.0], [3.5]]])
    np.testing.assert_allclose(k_rec.simple_rnn_forward(x, kernel, mask, linear, True, True),
                               [[[1.0], [0.0], [3.5]]])
    # dy = 1 on every output: h3 = x3 + U x1, out2 = x1 (kept): dx = U + 1 + 1, 0, 1
    y, cache = k_rec.simple_rnn_forward(x, kernel, mask, linear, True, train=True)
    dx, dk = g_rec.simple_rnn_backward(cache, kernel, np.ones((1, 3, 1), np.float32))
    np.testing.assert_allclose(dx, [[[2.5], [0.0], [1.0]]])
    np.testing.assert_allclose(dk, [[1.0]])  # d/dU of U x1 = x1


def test_lstm_step_by_hand():
    """u = 1, linear activation, hard_sigmoid (x/6 + 1/2) gates, one step from zero states:
    xproj = (1.5, -1.5, 2, 0) -> i = 0.75, f = 0.25, g = 2, o = 0.5; c = 0 f + i g = 1.5,
    h = o c = 0.75. Backward of dh = 1: dz_o = c / 6 = 0.25, dc = o = 0.5, dz_i = dc g / 6 = 1/6,
    dz_f = dc c_prev / 6 = 0, dz_c = dc i = 0.375; dU = h_prev dz = 0."""
    x = np.array([[[1.5, -1.5, 2.0, 0.0]]], np.float32)
    kernel = np.full((1, 4), 0.3, np.float32)
    y, cache = k_rec.lstm_forward(x, kernel, None, _code("linear"), _code("hard_sigmoid"), False,
                                  train=True)
    np.testing.assert_allclose(y, [[0.75]])
    dx, dk = g_rec.lstm_backward(cache, kernel, np.ones((1, 1), np.float32))
    np.testing.assert_allclose(dx, [[[1 / 6, 0.0, 0.375, 0.25]]], rtol=1e-6)
    np.testing.assert_allclose(dk, np.zeros((1, 4)))


# ----------------------------------------------------------------------------- errors


def test_argument_errors():
    tanh, sig = _code("tanh"), _code("sigmoid")
    x4 = np.zeros((2, 3, 8), np.float32)
    u4 = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4[0], u4, None, tanh, sig, True)  # xproj rank 2
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, u4[0], None, tanh, sig, True)  # kernel rank 1
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, np.zeros((2, 6), np.float32), None, tanh, sig, True)
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, u4, None, _code("softmax"), sig, True)
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, u4, None, tanh, _code("log_softmax"), True)
    with pytest.raises(ValueError):
        k_rec.simple_rnn_forward(x4[..., :2], u4[:, :2], None, _code("softmax"), True)
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, u4, None, 99, sig, True)  # unknown code
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, u4, np.ones((2, 4), bool), tanh, sig, True)  # mask shape
    with pytest.raises(ValueError):
        k_rec.lstm_forward(x4, u4, None, tanh, sig, True, rdrop=np.ones((3, 2, 2), np.float32))
    with pytest.raises(ValueError):
        k_rec.lstm_forward(np.zeros((2, 0, 8), np.float32), u4, None, tanh, sig, True)
    x3, u3 = x4[..., :6], u4[:, :6]
    with pytest.raises(ValueError):
        k_rec.gru_forward(x3, u3, None, None, tanh, sig, True, True)  # reset_after: bias needed
    with pytest.raises(ValueError):
        k_rec.gru_forward(x3, u3, np.zeros(6, np.float32), None, tanh, sig, False, True)
    with pytest.raises(ValueError):
        k_rec.gru_forward(x3, u3, np.zeros(4, np.float32), None, tanh, sig, True, True)
    with pytest.raises(ValueError):
        k_rec.gru_forward(x3, u3, np.zeros(6, np.float32), None, tanh, _code("softmax"), True,
                          True)
    _, cache = k_rec.lstm_forward(x4, u4, None, tanh, sig, False, train=True)
    with pytest.raises(ValueError):
        g_rec.lstm_backward(cache, u4, np.zeros((2, 3, 2), np.float32))  # dy: (N, u) expected
    with pytest.raises(ValueError):
        g_rec.gru_backward(cache, u4, np.zeros((2, 2), np.float32))  # an LSTM's cache
    with pytest.raises(ValueError):
        g_rec.lstm_backward(cache, u4[:, :6], np.zeros((2, 2), np.float32))
