"""Gradient kernels against central finite differences of float64 forwards (tests/naive_grad.py)
and against jax.grad of Keras 3 recorded in tests/grad_reference/jax_grads.npz (no JAX here)."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqcli.kernels
from seqcli.activations import ACTIVATIONS, activation_code
from seqcli.kernels import activations as k_act
from seqcli.kernels import dense as k_dense
from seqcli.kernels import grad_activations as g_act
from seqcli.kernels import grad_augmentation as g_aug
from seqcli.kernels import grad_conv as g_conv
from seqcli.kernels import grad_conv3d as g_conv3d
from seqcli.kernels import grad_dense as g_dense
from seqcli.kernels import grad_gemm as g_gemm
from seqcli.kernels import grad_normalization as g_norm
from seqcli.kernels import grad_normalization_more as g_norm_more
from seqcli.kernels import grad_pooling as g_pool
from seqcli.kernels import grad_recurrent as g_rec
from seqcli.kernels import grad_reshaping as g_resh
from seqcli.kernels import pooling as k_pool
from seqcli.kernels import threads as k_threads
from seqcli.shapes import paddings

try:
    from tests import layer_table, naive, naive_grad
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import layer_table
    import naive
    import naive_grad

# Every public gradient kernel -> the float64 forward whose finite differences it must match,
# from the layer table (checked by test_every_grad_kernel_has_reference).
GRAD_REFERENCES = layer_table.GRAD_REFERENCES

JAX = np.load(Path(__file__).parent / "grad_reference" / "jax_grads.npz")
F32 = np.float32


def _rng(salt: int) -> np.random.Generator:
    return np.random.default_rng([1, salt])


def _normal(rng, shape, scale=1.0, loc=0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + loc).astype(F32)


def _check(got, ref, rtol=1e-4, atol=1e-5) -> None:
    """`got` is a float32 C-contiguous array close to `ref`; atol scales with max |ref| (>= 1)."""
    ref = np.asarray(ref)
    assert isinstance(got, np.ndarray)
    assert got.dtype == F32
    assert got.flags.c_contiguous
    assert got.shape == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * scale)


def _fd(f, args, wrt, dy):
    return naive_grad.numeric_vjp(f, args, wrt, dy)


# ----------------------------------------------------------------------------- completeness


def _public_grad_functions():
    """(qualified name, object) of each public function defined in a seqcli.kernels.grad_* module."""
    found = []
    for info in pkgutil.iter_modules(seqcli.kernels.__path__):
        if not info.name.startswith("grad_"):
            continue
        module = importlib.import_module(f"seqcli.kernels.{info.name}")
        for name, obj in vars(module).items():
            func = getattr(obj, "py_func", obj)
            if name.startswith("_") or not inspect.isfunction(func):
                continue
            if func.__module__ == module.__name__:
                found.append((f"{module.__name__}.{name}", obj))
    return found


def test_every_grad_kernel_has_reference():
    found = _public_grad_functions()
    missing = [name for name, obj in found if obj not in GRAD_REFERENCES]
    assert not missing, f"public gradient kernels without an entry in GRAD_REFERENCES: {missing}"
    stale = set(GRAD_REFERENCES) - {obj for _, obj in found}
    assert not stale, f"GRAD_REFERENCES entries that are not public gradient kernels: {stale}"


def test_every_grad_kernel_has_docstring():
    for name, obj in _public_grad_functions():
        doc = getattr(obj, "py_func", obj).__doc__
        assert doc and "\n" not in doc.strip(), f"{name} needs a one-line docstring"


def test_every_grad_kernel_is_checked_against_jax():
    covered = {fn for _, fns in JAX_CASES.values() for fn in fns}
    assert covered == set(GRAD_REFERENCES), set(GRAD_REFERENCES) - covered
    stored = {key.split("/")[0] for key in JAX.files} - {"activation"}
    assert stored == set(JAX_CASES), stored ^ set(JAX_CASES)


def test_every_activation_has_backward_cases():
    assert set(ACTIVATION_HAND_CASES) == set(ACTIVATIONS)
    assert {f"activation/{name}/dx" for name in ACTIVATIONS} <= set(JAX.files)


def test_float64_forwards_match_naive():
    """The vectorised forwards used for finite differences agree with tests/naive.py."""
    rng = _rng(0)
    x = _normal(rng, (2, 7, 6, 4))
    pad = ((1, 2), (0, 1))
    kernel = _normal(rng, (3, 2, 2, 6))
    bias = _normal(rng, 6)
    np.testing.assert_allclose(
        naive_grad.conv2d64(x, kernel, bias, (2, 1), (1, 2), pad, 2),
        naive.naive_conv2d(x, kernel, bias, (2, 1), (1, 2), pad, 2, "linear"), atol=1e-12)
    dk = _normal(rng, (2, 3, 4, 3))
    np.testing.assert_allclose(
        naive_grad.depthwise_conv2d64(x, dk, np.zeros(12), (1, 2), (2, 1), pad),
        naive.naive_depthwise_conv2d(x, dk, None, (1, 2), (2, 1), pad, "linear"), atol=1e-12)
    for ours, theirs in [(naive_grad.max_pool2d64, naive.naive_max_pool2d),
                         (naive_grad.avg_pool2d64, naive.naive_avg_pool2d)]:
        np.testing.assert_allclose(ours(x, (3, 2), (2, 2), ((1, 1), (0, 1))),
                                   theirs(x, (3, 2), (2, 2), ((1, 1), (0, 1))), atol=1e-12)
    x3 = _normal(rng, (3, 4, 5), 2.0, 1.0)
    g, b, m, v = (_normal(rng, 4) for _ in range(4))
    np.testing.assert_allclose(naive_grad.batch_norm64(x3, g, b, m, np.abs(v), 1e-3),
                               naive.naive_batch_norm(x3, g, b, m, np.abs(v), 1e-3), atol=1e-12)
    x2 = _normal(rng, (3, 20), 2.0, 1.0)
    g, b = _normal(rng, 20), _normal(rng, 20)
    np.testing.assert_allclose(naive_grad.layer_norm64(x2, g, b, 1e-3),
                               naive.naive_layer_norm(x2, g, b, 1e-3), atol=1e-12)


# ----------------------------------------------------------------------------- activations

SELU = naive.SELU_SCALE
SELU_NEG = naive.SELU_SCALE * naive.SELU_ALPHA
BELOW_3 = float(np.nextafter(F32(3), F32(0)))  # float32(x + 3) rounds to 6: outside (-3, 3)
ABOVE_M3 = float(np.nextafter(F32(-3), F32(0)))

# name -> (x, dy, expected dx): the kinks as jax.grad of Keras 3 gives them, and easy values.
ACTIVATION_HAND_CASES = {
    "linear": ([-2.0, 0.0, 5.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
    "relu": ([-0.0, 0.0, 1e-30, -1.0, 2.0], [1.0] * 5, [0, 0, 1, 0, 1]),
    "relu6": ([0.0, 6.0, 1e-30, 5.5, 7.0, -1.0], [1.0] * 6, [0, 0, 1, 1, 0, 0]),
    "sigmoid": ([0.0], [2.0], [0.5]),
    "hard_sigmoid": ([-3.0, 3.0, BELOW_3, ABOVE_M3, 0.0, 4.0], [6.0] * 6, [0, 0, 0, 1, 1, 0]),
    "tanh": ([0.0], [3.0], [3.0]),
    "softmax": ([[0.0, math.log(3.0)]], [[1.0, 0.0]], [[0.1875, -0.1875]]),
    "log_softmax": ([[0.0, math.log(3.0)]], [[1.0, 0.0]], [[0.75, -0.75]]),
    "elu": ([0.0, -1e-30, 1.0, math.log(0.5)], [1.0] * 4, [1.0, 1.0, 1.0, 0.5]),
    "selu": ([0.0, 1e-30, -1e-30], [1.0] * 3, [SELU_NEG, SELU, SELU_NEG]),
    "gelu": ([0.0], [1.0], [0.5]),
    "silu": ([0.0], [1.0], [0.5]),
    "hard_silu": ([-3.0, 3.0, 0.0, -4.0, 4.0, 1.5], [1.0] * 6, [0, 1, 0.5, 0, 1, 1]),
    "softplus": ([0.0], [1.0], [0.5]),
    "softsign": ([0.0, 1.0, -3.0], [1.0] * 3, [1.0, 0.25, 0.0625]),
    "leaky_relu": ([0.0, -0.0, -1e-30, 2.0], [1.0] * 4, [1.0, 1.0, 0.2, 1.0]),
    "exponential": ([0.0, math.log(2.0)], [1.0, 3.0], [1.0, 6.0]),
    "mish": ([0.0], [1.0], [0.6]),  # tanh(log 2) = 0.6
}
_KINKS = np.array([-3.0, 0.0, 3.0, 6.0])


def _smooth_input(salt: int, shape=(2, 3, 7), scale=2.5) -> np.ndarray:
    """Random values kept 2e-3 away from every kink, so central differences are meaningful."""
    x = _normal(_rng(salt), shape, scale)
    for k in _KINKS:
        near = np.abs(x - k) < 2e-3
        x[near] = F32(k + 4e-3)
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_hand_values(name):
    x, dy, expected = ACTIVATION_HAND_CASES[name]
    x, dy = np.array(x, F32), np.array(dy, F32)
    code = activation_code(name)
    got = g_act.activation_backward(x, k_act.activation_forward(x, code), dy, code)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_fd(name):
    code = activation_code(name)
    x = _smooth_input(1, scale=2.0 if name == "exponential" else 2.5)
    dy = _normal(_rng(2), x.shape)
    y = k_act.activation_forward(x, code)
    got = g_act.activation_backward(x, y, dy, code)
    _check(got, _fd(naive.naive_activation, [x, name], 0, dy), rtol=1e-5, atol=1e-6)
    # what is not read may be left out: y is recomputed, x is not needed for output codes
    np.testing.assert_array_equal(g_act.activation_backward(x, None, dy, code), got)
    if code in g_act.OUTPUT_ACTIVATION_CODES or name == "linear":
        np.testing.assert_array_equal(g_act.activation_backward(None, y, dy, code), got)
    else:
        with pytest.raises(ValueError):
            g_act.activation_backward(None, y, dy, code)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_jax(name):
    code = activation_code(name)
    if name in ("softmax", "log_softmax"):
        x, dy = JAX[f"activation/{name}/x"], JAX[f"activation/{name}/dy"]
    else:
        x, dy = JAX["activation/x"], JAX["activation/dy"]
    expected = JAX[f"activation/{name}/dx"]
    got = g_act.activation_backward(x, k_act.activation_forward(x, code), dy, code)
    # XLA on CPU flushes subnormals to zero (relu'(1e-45) = 0 there); these kernels do not.
    # atol: tanh' = 1 - y^2 from a float32 y is only good to ~1e-7 absolute, in JAX as here.
    normal = (x == 0) | (np.abs(x) >= np.finfo(F32).tiny)
    assert normal.sum() >= x.size - 2
    np.testing.assert_allclose(got[normal], expected[normal], rtol=2e-6, atol=5e-7)


def test_activation_backward_shapes_and_extremes():
    big = np.array([-1e30, -100.0, 100.0, 1e30], F32)
    for name in ACTIVATIONS:
        code = activation_code(name)
        got = g_act.activation_backward(big, k_act.activation_forward(big, code), np.ones(4), code)
        if name != "exponential":  # exp overflows, as in Keras
            assert np.isfinite(got).all(), name
        for shape in [(), (1,), (4, 1), (0, 3)]:
            x = _normal(_rng(3), shape)
            dx = g_act.activation_backward(x, None, np.ones(shape, F32), code)
            assert dx.shape == shape and dx.dtype == F32
    with pytest.raises(ValueError):
        g_act.activation_backward(np.ones(3), None, np.ones(4), activation_code("relu"))
    with pytest.raises(ValueError):
        g_act.activation_backward(np.ones(3), None, np.ones(3), len(ACTIVATIONS))


# ----------------------------------------------------------------------------- dense

# (M, K, U), activation cycling through all of them
DENSE_CASES = [(1, 1, 1), (3, 5, 4), (2, 6, 3), (4, 3, 7)]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_backward_fd(name):
    m, k, u = DENSE_CASES[ACTIVATIONS.index(name) % len(DENSE_CASES)]
    rng = _rng(4)
    x, kernel, bias = _normal(rng, (m, k)), _normal(rng, (k, u), 0.7), _normal(rng, u, 0.5)
    dy = _normal(rng, (m, u))
    code = activation_code(name)
    z = k_dense.dense_forward(x, kernel, bias, activation_code("linear"))
    y = k_dense.dense_forward(x, kernel, bias, code)
    dx, dkernel, dbias = g_dense.dense_backward(x, kernel, z, y, dy, code)
    args = [x, kernel, bias, name]
    for got, wrt in ((dx, 0), (dkernel, 1), (dbias, 2)):
        _check(got, _fd(naive_grad.dense64, args, wrt, dy))
    no_dx = g_dense.dense_backward(x, kernel, z, y, dy, code, input_grad=False)
    assert no_dx[0] is None
    np.testing.assert_array_equal(no_dx[1], dkernel)


def test_dense_backward_needs_what_it_reads():
    x, kernel, dy = np.ones((2, 3), F32), np.ones((3, 4), F32), np.ones((2, 4), F32)
    z = x @ kernel
    with pytest.raises(ValueError):  # gelu is differentiated from z
        g_dense.dense_backward(x, kernel, None, z, dy, activation_code("gelu"))
    with pytest.raises(ValueError):
        g_dense.dense_backward(x, kernel.T, z, None, dy, activation_code("gelu"))
    dx, _, _ = g_dense.dense_backward(x, kernel, None, None, dy, activation_code("linear"))
    np.testing.assert_array_equal(dx, np.full((2, 3), 4.0))


# ----------------------------------------------------------------------------- conv2d

# (N, H, W, C, KH, KW, F, strides, dilation, padding, groups)
CONV_CASES = [
    (1, 5, 5, 2, 1, 1, 3, (1, 1), (1, 1), ((0, 0), (0, 0)), 1),  # 1x1 matmul path
    (3, 7, 5, 3, 2, 2, 4, (1, 1), (1, 1), ((0, 1), (0, 1)), 1),  # even kernel, 'same'
    (2, 7, 6, 3, 3, 3, 4, (2, 2), (1, 1), ((1, 1), (0, 1)), 1),  # 'same' stride 2, asymmetric
    (1, 6, 6, 4, 3, 3, 4, (2, 2), (1, 1), ((1, 1), (1, 1)), 2),  # groups 2
    (3, 8, 7, 2, 3, 3, 2, (1, 1), (2, 2), ((2, 2), (2, 2)), 1),  # dilation 2, 'same'
    (2, 1, 9, 3, 1, 3, 5, (1, 2), (1, 1), ((0, 0), (1, 1)), 1),  # Conv1D as H=1
    (2, 1, 10, 2, 1, 3, 4, (1, 1), (1, 2), ((0, 0), (4, 0)), 2),  # causal dilated grouped Conv1D
    (2, 7, 5, 4, 2, 3, 6, (1, 2), (2, 1), ((0, 1), (1, 1)), 2),
    (1, 5, 6, 3, 3, 2, 6, (1, 1), (1, 1), ((1, 1), (0, 1)), 3),  # groups = C
    (3, 5, 5, 4, 1, 1, 2, (2, 2), (1, 1), ((0, 0), (0, 0)), 2),  # 1x1 stride 2 grouped
    (2, 7, 5, 2, 4, 3, 3, (2, 3), (1, 1), ((1, 2), (0, 1)), 1),  # windows skip cells
    (1, 7, 5, 1, 5, 3, 1, (1, 1), (1, 1), ((0, 0), (0, 0)), 1),
]


def _conv_problem(case, salt=5):
    n, h, w, c, kh, kw, f, strides, dilation, padding, groups = case
    rng = _rng(salt)
    x = _normal(rng, (n, h, w, c))
    kernel = _normal(rng, (kh, kw, c // groups, f), 0.5)
    bias = _normal(rng, f, 0.5)
    out = naive_grad.conv2d64(x, kernel, bias, strides, dilation, padding, groups)
    return x, kernel, bias, _normal(rng, out.shape)


@pytest.mark.parametrize("chunk_bytes", [None, 600])
@pytest.mark.parametrize("i", range(len(CONV_CASES)))
def test_conv2d_backward_fd(i, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:  # many small im2col and col2im chunks, the last one partial
        monkeypatch.setattr(g_conv, "_CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(g_conv, "_TILE_BYTES", chunk_bytes)
    _, _, _, _, _, _, _, strides, dilation, padding, groups = CONV_CASES[i]
    x, kernel, bias, dy = _conv_problem(CONV_CASES[i])
    dx, dkernel, dbias = g_conv.conv2d_backward(x, kernel, strides, dilation, padding, groups, dy)
    args = [x, kernel, bias, strides, dilation, padding, groups]
    for got, wrt in ((dx, 0), (dkernel, 1), (dbias, 2)):
        _check(got, _fd(naive_grad.conv2d64, args, wrt, dy))
    no_dx = g_conv.conv2d_backward(
        x, kernel, strides, dilation, padding, groups, dy, input_grad=False
    )
    assert no_dx[0] is None
    np.testing.assert_allclose(no_dx[1], dkernel, rtol=1e-6, atol=1e-6)


@st.composite
def _conv_geometry(draw):
    """A random small grouped conv whose window fits the padded input."""
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pads[0] - pads[1]), 6))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pads[2] - pads[3]), 6))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    return (draw(st.integers(1, 2)), h, w, c, kh, kw, f, strides, (dh, dw), padding, groups)


@settings(max_examples=25, deadline=None)
@given(case=_conv_geometry())
def test_conv2d_backward_random_geometry(case):
    strides, dilation, padding, groups = case[7:]
    x, kernel, bias, dy = _conv_problem(case)
    got = g_conv.conv2d_backward(x, kernel, strides, dilation, padding, groups, dy)
    args = [x, kernel, bias, strides, dilation, padding, groups]
    for g, wrt in zip(got, (0, 1, 2)):
        _check(g, _fd(naive_grad.conv2d64, args, wrt, dy))


def test_conv2d_backward_hand_values():
    # 3x3 ones kernel, 'same': dx = box sums of dy over the valid 3x3 neighbourhood
    x = np.zeros((1, 3, 3, 1), F32)
    dy = np.ones((1, 3, 3, 1), F32)
    dx, dk, db = g_conv.conv2d_backward(
        x, np.ones((3, 3, 1, 1)), (1, 1), (1, 1), ((1, 1), (1, 1)), 1, dy
    )
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    np.testing.assert_array_equal(db, [9.0])
    x = np.arange(1, 10, dtype=F32).reshape(1, 3, 3, 1)
    _, dk, _ = g_conv.conv2d_backward(x, np.ones((3, 3, 1, 1)), (1, 1), (1, 1),
                                      ((0, 0), (0, 0)), 1, np.ones((1, 1, 1, 1), F32))
    np.testing.assert_array_equal(dk[:, :, 0, 0], x[0, :, :, 0])
    with pytest.raises(ValueError):  # dy of the wrong shape
        g_conv.conv2d_backward(x, np.ones((3, 3, 1, 1)), (1, 1), (1, 1), ((0, 0), (0, 0)), 1,
                               np.ones((1, 2, 2, 1)))


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def kernel_threads(request, monkeypatch):
    """The kernels' threads for one test: one, or two, shared out even for small work (tiles
    taken in turn, partial sums added up)."""
    before = k_threads.thread_count()
    k_threads.set_threads(request.param)
    monkeypatch.setattr(k_threads, "_WORK_PER_THREAD", 1)
    yield request.param
    k_threads.set_threads(before)


@pytest.mark.parametrize("i", range(len(CONV_CASES)))
def test_conv2d_vjp_reference_matches_finite_differences(i):
    strides, dilation, padding, groups = CONV_CASES[i][7:]
    x, kernel, bias, dy = _conv_problem(CONV_CASES[i])
    exact = naive_grad.conv2d64_vjp(x, kernel, strides, dilation, padding, groups, dy)
    args = [x, kernel, bias, strides, dilation, padding, groups]
    for got, wrt in zip(exact, (0, 1, 2)):
        np.testing.assert_allclose(got, _fd(naive_grad.conv2d64, args, wrt, dy), rtol=1e-6,
                                   atol=1e-6)


# Bigger geometries for the paths of conv2d_backward, against the float64 adjoints: the direct
# kernel gradient (runs of kernel rows in blocks of 12, 4, 3 and 1; 32 and 16 filters; a
# padded band; dilation; several tiles an image), the input gradient as a mirrored forward
# convolution (stride 1) or by col2im (strides, a padding wider than the kernel), and grouped
# convolutions through im2col.
CONV_PATH_CASES = [
    (2, 9, 7, 5, 3, 3, 48, (1, 1), (1, 1), ((1, 1), (1, 1)), 1),  # 32+16 filters, padded
    (1, 42, 18, 2, 3, 3, 35, (1, 1), (1, 1), ((0, 0), (0, 0)), 1),  # 3 tiles, run 6, 35 -> 48
    (2, 11, 12, 3, 3, 3, 16, (1, 1), (2, 2), ((2, 2), (2, 2)), 1),  # dilated: runs of C
    (2, 12, 11, 8, 3, 3, 32, (2, 2), (1, 1), ((1, 1), (0, 1)), 1),  # stride 2: dx by col2im
    (3, 10, 10, 4, 1, 1, 20, (1, 1), (1, 1), ((1, 1), (1, 1)), 1),  # padding > kernel extent
    (2, 8, 8, 6, 3, 3, 12, (1, 1), (1, 1), ((0, 0), (0, 0)), 3),  # grouped
    (1, 6, 30, 1, 1, 5, 16, (1, 1), (1, 1), ((0, 0), (2, 2)), 1),  # one channel, run 5
    (1, 29, 29, 1, 3, 3, 17, (1, 1), (1, 1), ((0, 0), (0, 0)), 1),  # one channel, runs of 3
    (2, 10, 9, 5, 3, 3, 16, (1, 1), (1, 1), ((0, 0), (0, 0)), 1),  # run 15 = 12 + 3
]


def _check_conv_paths(case, input_grad=True):
    strides, dilation, padding, groups = case[7:]
    x, kernel, _, dy = _conv_problem(case, salt=11)
    got = g_conv.conv2d_backward(x, kernel, strides, dilation, padding, groups, dy,
                                 input_grad=input_grad)
    want = naive_grad.conv2d64_vjp(x, kernel, strides, dilation, padding, groups, dy)
    if input_grad:
        _check(got[0], want[0])
    else:
        assert got[0] is None
    _check(got[1], want[1])
    _check(got[2], want[2])


@pytest.mark.parametrize("case", CONV_PATH_CASES, ids=str)
def test_conv2d_backward_paths(case, kernel_threads):
    _check_conv_paths(case)
    _check_conv_paths(case, input_grad=False)


@pytest.mark.parametrize("case", CONV_PATH_CASES, ids=str)
def test_conv2d_backward_without_avx512_or_numba_blas(case, kernel_threads, monkeypatch):
    monkeypatch.setattr(g_conv, "wide_vectors", lambda: False)  # kernel gradient by im2col
    monkeypatch.setattr(g_conv, "_TILE_BYTES", 3000)  # several tiles and col2im chunks
    monkeypatch.setattr(g_conv, "_MIRRORED_WASTE", 0.5)  # every input gradient by col2im
    _check_conv_paths(case)
    monkeypatch.setattr(g_conv, "_blas", lambda: None)  # products by numpy's matmul
    monkeypatch.setattr(g_gemm, "_blas", lambda: None)
    _check_conv_paths(case)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m, n, k", [(300, 70, 90), (40, 260, 33), (1, 1, 1)])
def test_products_in_tiles(m, n, k, trans_a, trans_b, kernel_threads, monkeypatch):
    monkeypatch.setattr(g_gemm, "_ONE_CALL_MACS", 0)  # tiles even for small products
    rng = _rng(13)
    a = _normal(rng, (k, m) if trans_a else (m, k))
    b = _normal(rng, (n, k) if trans_b else (k, n))
    want = ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b))
    _check(g_gemm._product(a, b, trans_a, trans_b), want)
    out = np.ones((m, n), F32)  # added into
    _check(g_gemm._product(a, b, trans_a, trans_b, out=out), want + 1)
    monkeypatch.setattr(g_gemm, "_ONE_CALL_MACS", 1 << 40)  # one BLAS call
    _check(g_gemm._product(a, b, trans_a, trans_b), want)


# ----------------------------------------------------------------------------- depthwise

# (N, H, W, C, KH, KW, DM, strides, dilation, padding)
DEPTHWISE_CASES = [
    (1, 5, 5, 1, 1, 1, 1, (1, 1), (1, 1), ((0, 0), (0, 0))),
    (3, 7, 5, 2, 2, 2, 2, (1, 1), (1, 1), ((0, 1), (0, 1))),
    (2, 7, 6, 3, 3, 3, 3, (2, 2), (1, 1), ((1, 1), (0, 1))),  # 'same' stride 2, asymmetric
    (1, 8, 7, 2, 3, 3, 1, (1, 1), (2, 2), ((2, 2), (2, 2))),
    (2, 7, 5, 2, 4, 3, 2, (2, 3), (1, 1), ((1, 2), (0, 1))),
    (3, 1, 9, 3, 1, 3, 2, (1, 2), (1, 1), ((0, 0), (1, 1))),  # DepthwiseConv1D as H=1
    (3, 6, 6, 4, 2, 3, 3, (1, 2), (2, 1), ((0, 1), (1, 1))),
    (1, 7, 5, 1, 5, 3, 2, (3, 1), (1, 1), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("i", range(len(DEPTHWISE_CASES)))
def test_depthwise_backward_fd(i):
    n, h, w, c, kh, kw, dm, strides, dilation, padding = DEPTHWISE_CASES[i]
    rng = _rng(6)
    x = _normal(rng, (n, h, w, c))
    kernel = _normal(rng, (kh, kw, c, dm), 0.5)
    bias = _normal(rng, c * dm)
    args = [x, kernel, bias, strides, dilation, padding]
    dy = _normal(rng, naive_grad.depthwise_conv2d64(*args).shape)
    dx, dkernel, dbias = g_conv.depthwise_conv2d_backward(x, kernel, strides, dilation, padding, dy)
    for got, wrt in ((dx, 0), (dkernel, 1), (dbias, 2)):
        _check(got, _fd(naive_grad.depthwise_conv2d64, args, wrt, dy))
    no_dx = g_conv.depthwise_conv2d_backward(
        x, kernel, strides, dilation, padding, dy, input_grad=False
    )
    assert no_dx[0] is None
    np.testing.assert_allclose(no_dx[1], dkernel, rtol=1e-6, atol=1e-6)


def test_depthwise_backward_channel_order_by_hand():
    # dy only on output channel c*DM + m = 1*2 + 1 = 3: dkernel[..., 1, 1] = x[..., 1]
    x = np.array([[1.0, 2.0], [3.0, 4.0]], F32).reshape(1, 1, 2, 2)  # x[0, 0, w, c]
    dy = np.zeros((1, 1, 1, 4), F32)
    dy[..., 3] = 1.0
    kernel = np.arange(8, dtype=F32).reshape(1, 2, 2, 2)
    dx, dk, db = g_conv.depthwise_conv2d_backward(x, kernel, (1, 1), (1, 1), ((0, 0), (0, 0)), dy)
    expected = np.zeros((1, 2, 2, 2), F32)
    expected[0, :, 1, 1] = [2.0, 4.0]
    np.testing.assert_array_equal(dk, expected)
    np.testing.assert_array_equal(db, [0, 0, 0, 1])
    np.testing.assert_array_equal(dx[0, 0, :, 1], kernel[0, :, 1, 1])
    np.testing.assert_array_equal(dx[0, 0, :, 0], [0, 0])


# ----------------------------------------------------------------------------- pooling

# (N, H, W, C, pool, strides, padding); padding < pool, windows hit it at the borders
POOL_CASES = [
    (1, 3, 3, 1, (2, 2), (2, 2), ((0, 1), (0, 1))),
    (3, 7, 5, 2, (2, 2), (2, 2), ((0, 1), (0, 1))),
    (2, 7, 5, 3, (3, 3), (1, 1), ((1, 1), (1, 1))),  # overlapping windows
    (1, 7, 5, 1, (3, 2), (2, 1), ((1, 2), (0, 1))),
    (2, 6, 7, 2, (1, 1), (1, 1), ((0, 0), (0, 0))),
    (3, 7, 5, 2, (2, 3), (2, 3), ((0, 1), (1, 1))),
    (2, 9, 8, 2, (4, 3), (3, 2), ((1, 2), (1, 1))),
    (1, 5, 5, 2, (5, 5), (1, 1), ((2, 2), (2, 2))),
    (2, 1, 9, 3, (1, 3), (1, 2), ((0, 0), (1, 1))),  # 1D pooling as H=1
    (2, 8, 6, 2, (2, 2), (3, 3), ((0, 0), (0, 0))),  # stride > pool: cells no window sees
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("i", range(len(POOL_CASES)))
def test_pool2d_backward_fd(i, kind):
    n, h, w, c, pool, strides, padding = POOL_CASES[i]
    rng = _rng(7)
    x = _normal(rng, (n, h, w, c), 2.0, -1.0)  # mostly negative: a zero from padding would show
    ref_fn = naive_grad.max_pool2d64 if kind == "max" else naive_grad.avg_pool2d64
    dy = _normal(rng, ref_fn(x, pool, strides, padding).shape)
    if kind == "max":
        got = g_pool.max_pool2d_backward(x, pool, strides, padding, dy)
    else:
        got = g_pool.avg_pool2d_backward(x.shape, pool, strides, padding, dy)
    _check(got, _fd(ref_fn, [x, pool, strides, padding], 0, dy))


@pytest.mark.parametrize("i", range(len(POOL_CASES)))
def test_max_pool2d_backward_ties(i):
    """Integer inputs tie everywhere: each window's dy goes to its first row-major maximum."""
    n, h, w, c, pool, strides, padding = POOL_CASES[i]
    rng = _rng(8)
    x = rng.integers(-2, 1, (n, h, w, c)).astype(F32)  # <= 0: padding would win if it could
    dy = _normal(rng, naive_grad.max_pool2d64(x, pool, strides, padding).shape)
    got = g_pool.max_pool2d_backward(x, pool, strides, padding, dy)
    _check(got, naive_grad.max_pool2d_route(x, pool, strides, padding, dy), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("i", range(len(POOL_CASES)))
def test_max_pool2d_backward_from_recorded_argmax(i):
    """The training forward's argmax routes each window's dy to its first row-major maximum,
    and its y is the inference forward's, NaN included."""
    n, h, w, c, pool, strides, padding = POOL_CASES[i]
    rng = _rng(18)
    x = rng.integers(-2, 1, (n, h, w, c)).astype(F32)
    x.flat[::7] = -0.0  # ties with 0.0
    y, argmax = k_pool.max_pool2d_forward(x, pool, strides, padding, argmax=True)
    dy = _normal(rng, y.shape)
    got = g_pool.max_pool2d_backward(x, pool, strides, padding, dy, argmax)
    _check(got, naive_grad.max_pool2d_route(x, pool, strides, padding, dy), rtol=1e-6, atol=1e-6)
    x.flat[3::11] = np.nan
    y, argmax = k_pool.max_pool2d_forward(x, pool, strides, padding, argmax=True)
    np.testing.assert_array_equal(y, k_pool.max_pool2d_forward(x, pool, strides, padding))


@settings(max_examples=25, deadline=None)
@given(
    pool=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    extra=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
)
def test_pool2d_backward_random_geometry(pool, strides, extra, pads):
    pt, pb, pl, pr = (min(p, pool[i // 2] - 1) for i, p in enumerate(pads))  # padding < pool
    padding = ((pt, pb), (pl, pr))
    rng = _rng(17)
    shape = (2, pool[0] + extra[0], pool[1] + extra[1], 2)
    ties = rng.integers(-2, 1, shape).astype(F32)
    dy = _normal(rng, naive_grad.max_pool2d64(ties, pool, strides, padding).shape)
    got = g_pool.max_pool2d_backward(ties, pool, strides, padding, dy)
    _check(got, naive_grad.max_pool2d_route(ties, pool, strides, padding, dy), atol=1e-6)
    got = g_pool.avg_pool2d_backward(shape, pool, strides, padding, dy)
    _check(got, _fd(naive_grad.avg_pool2d64, [ties, pool, strides, padding], 0, dy))


def test_max_pool2d_backward_ties_by_hand():
    x = np.array([[1, 2, 2], [2, 2, 0], [0, 2, 1]], F32).reshape(1, 3, 3, 1)
    # 2x2 windows, stride 1: (0,0) and (0,1) pick the 2 at (0,1), (1,0) picks (1,0), (1,1) (1,1)
    got = g_pool.max_pool2d_backward(x, (2, 2), (1, 1), ((0, 0), (0, 0)), np.ones((1, 2, 2, 1)))
    np.testing.assert_array_equal(got[0, :, :, 0], [[0, 2, 0], [1, 1, 0], [0, 0, 0]])
    # 'same' adds a padded row and column: the windows there route to real cells only
    got = g_pool.max_pool2d_backward(x, (2, 2), (1, 1), ((0, 1), (0, 1)), np.ones((1, 3, 3, 1)))
    np.testing.assert_array_equal(got[0, :, :, 0], [[0, 2, 1], [1, 1, 0], [0, 2, 2]])
    # all equal and negative, 'same' stride 2: the first real cell of each window
    got = g_pool.max_pool2d_backward(-np.ones((1, 3, 3, 1)), (2, 2), (2, 2), ((0, 1), (0, 1)),
                                     np.ones((1, 2, 2, 1)))
    np.testing.assert_array_equal(got[0, :, :, 0], [[1, 0, 1], [0, 0, 0], [1, 0, 1]])


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 4), (2, 35, 3)])
def test_global_pool_backward_fd(shape):
    rng = _rng(9)
    x = _normal(rng, shape, 2.0, -3.0)
    dy = _normal(rng, (shape[0], shape[2]))
    got = g_pool.global_max_pool_backward(x, dy)
    _check(got, _fd(naive.naive_global_max_pool, [x], 0, dy))
    got = g_pool.global_avg_pool_backward(x.shape, dy)
    _check(got, _fd(naive.naive_global_avg_pool, [x], 0, dy))


def test_global_max_pool_backward_splits_ties():
    x = np.array([1.0, 3.0, 3.0, 2.0, -1.0, -1.0, -1.0, -1.0], F32).reshape(2, 4, 1)
    got = g_pool.global_max_pool_backward(x, [[1.0], [2.0]])
    np.testing.assert_array_equal(got.reshape(2, 4), [[0, 0.5, 0.5, 0], [0.5, 0.5, 0.5, 0.5]])
    x = _rng(10).integers(0, 2, (3, 6, 2)).astype(F32)
    dy = _normal(_rng(11), (3, 2))
    _check(g_pool.global_max_pool_backward(x, dy), naive_grad.global_max_route(x, dy))


def test_pool_backward_rejects_bad_shapes():
    with pytest.raises(ValueError):  # dy does not match the pooled shape
        g_pool.max_pool2d_backward(np.ones((1, 4, 4, 1)), (2, 2), (2, 2), ((0, 0), (0, 0)),
                                   np.ones((1, 3, 2, 1)))
    with pytest.raises(ValueError):  # a window of padding only
        g_pool.avg_pool2d_backward((1, 4, 4, 1), (2, 2), (1, 1), ((2, 0), (0, 0)),
                                   np.ones((1, 5, 3, 1)))
    with pytest.raises(ValueError):
        g_pool.global_avg_pool_backward((2, 0, 3), np.ones((2, 3)))


# ----------------------------------------------------------------------------- normalization

# (A, C, B) as the layers reshape: (N*H*W, C, 1) for axis=-1, (N, C, H*W) for axis=1
BN_SHAPES = [(2, 3, 1), (5, 4, 1), (2, 3, 6), (3, 1, 7), (1, 2, 5), (24, 2, 1)]


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_backward_inference_fd(shape):
    rng = _rng(12)
    c = shape[1]
    x, dy = _normal(rng, shape, 3.0, 2.0), _normal(rng, shape)
    gamma, beta, mean = _normal(rng, c), _normal(rng, c), _normal(rng, c, 1.0, 2.0)
    var = rng.uniform(0.1, 4.0, c).astype(F32)
    got = g_norm.batch_norm_backward_inference(x, gamma, mean, var, 1e-3, dy)
    args = [x, gamma, beta, mean, var, 1e-3]
    for g, wrt in zip(got, (0, 1, 2)):
        _check(g, _fd(naive_grad.batch_norm64, args, wrt, dy))


@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_train_fd(shape, epsilon):
    """Gradients flow through the batch mean and variance too."""
    rng = _rng(13)
    c = shape[1]
    x, dy = _normal(rng, shape, 3.0, 2.0), _normal(rng, shape)
    gamma, beta = _normal(rng, c, 0.5, 1.0), _normal(rng, c)
    y, mean, var, cache = g_norm.batch_norm_train_forward(x, gamma, beta, epsilon)
    x64 = x.astype(np.float64)
    _check(y, naive_grad.batch_norm_train64(x, gamma, beta, epsilon))
    _check(mean, x64.mean(axis=(0, 2)), rtol=1e-6, atol=1e-6)
    _check(var, x64.var(axis=(0, 2)), rtol=1e-5, atol=1e-6)  # biased
    _check(cache, 1.0 / np.sqrt(x64.var(axis=(0, 2)) + epsilon), rtol=1e-5)
    got = g_norm.batch_norm_train_backward(x, gamma, mean, cache, dy)
    args = [x, gamma, beta, epsilon]
    for g, wrt in zip(got, (0, 1, 2)):
        _check(g, _fd(naive_grad.batch_norm_train64, args, wrt, dy), atol=2e-5)


def test_batch_norm_train_large_offset():
    """A two-pass float64 variance: values around 1000 with spread 1 keep their precision."""
    x = _normal(_rng(14), (64, 3, 1), 1.0, 1000.0)
    _, _, var, _ = g_norm.batch_norm_train_forward(x, np.ones(3), np.zeros(3), 1e-3)
    _check(var, x.astype(np.float64).var(axis=(0, 2)), rtol=1e-5)


def test_batch_norm_moving_update():
    got = g_norm.batch_norm_moving_update([0.0, 1.0], [1.0, 2.0], [4.0, 3.0], [9.5, 0.0], 0.5)
    np.testing.assert_array_equal(got[0], [2.0, 2.0])
    np.testing.assert_array_equal(got[1], [5.25, 1.0])
    args = ([0.3, -1.0], [1.5, 0.2], [2.0, 0.1], [0.7, 3.0], 0.99)
    for g, ref in zip(g_norm.batch_norm_moving_update(*args), naive_grad.moving_update64(*args)):
        _check(g, ref, rtol=1e-6, atol=1e-7)


# (x shape, normalised trailing axes): several axes flattened to K, as the layer does
LN_CASES = [((1, 1), 1), ((3, 7), 1), ((2, 3, 4, 5), 2), ((4, 2, 3, 2), 3), ((2, 33), 1)]


@pytest.mark.parametrize("epsilon", [1e-3, 1e-6])
@pytest.mark.parametrize("i", range(len(LN_CASES)))
def test_layer_norm_backward_fd(i, epsilon):
    shape, n_axes = LN_CASES[i]
    k = math.prod(shape[-n_axes:])
    rng = _rng(15)
    x = _normal(rng, shape, 2.0, 1.0).reshape(-1, k)
    dy = _normal(rng, x.shape)
    gamma, beta = _normal(rng, k, 0.5, 1.0), _normal(rng, k)
    got = g_norm.layer_norm_backward(x, gamma, epsilon, dy)
    args = [x, gamma, beta, epsilon]
    for g, wrt in zip(got, (0, 1, 2)):
        _check(g, _fd(naive_grad.layer_norm64, args, wrt, dy), atol=2e-5)


def test_normalization_backward_rejects_bad_shapes():
    with pytest.raises(ValueError):
        g_norm.layer_norm_backward(np.ones((2, 3)), np.ones(3), 1e-3, np.ones((3, 2)))
    with pytest.raises(ValueError):
        g_norm.batch_norm_train_backward(np.ones((2, 3, 1)), np.ones(2), np.ones(3), np.ones(3),
                                         np.ones((2, 3, 1)))


# ----------------------------------------------------------------------------- reshaping

RESHAPE_CASES = [
    ((1, 3, 3, 1), ((0, 0), (0, 0)), (1, 1)),
    ((3, 7, 5, 2), ((0, 1), (1, 1)), (2, 2)),
    ((2, 4, 6, 3), ((1, 2), (0, 1)), (2, 3)),
    ((1, 1, 9, 2), ((0, 0), (2, 3)), (1, 2)),  # 1D as H=1
]


@pytest.mark.parametrize("i", range(len(RESHAPE_CASES)))
def test_reshaping_backward_fd(i):
    shape, padding, size = RESHAPE_CASES[i]
    rng = _rng(16)
    x = _normal(rng, shape)
    dy = _normal(rng, naive.naive_zero_pad2d(x, padding).shape)
    got = g_resh.zero_pad2d_backward(padding, dy)
    _check(got, _fd(naive.naive_zero_pad2d, [x, padding], 0, dy))
    dy = _normal(rng, naive.naive_upsample2d_nearest(x, size).shape)
    got = g_resh.upsample2d_nearest_backward(size, dy)
    _check(got, _fd(naive.naive_upsample2d_nearest, [x, size], 0, dy))
    dy = _normal(rng, shape)
    for scale, offset in [(1 / 255, 0.0), (-2.0, 0.5)]:
        got = g_resh.rescale_backward(scale, dy)
        _check(got, _fd(naive.naive_rescale, [x, scale, offset], 0, dy), rtol=1e-6, atol=1e-6)
    _check(g_resh.rescale_backward(0.5, np.float32(3.0)), np.array(1.5))


# ----------------------------------------------------------------------------- against jax.grad


def _case(name: str) -> dict:
    prefix = f"{name}/"
    return {k[len(prefix):]: JAX[k] for k in JAX.files if k.startswith(prefix)}


def _jax_dense(r):
    code = activation_code(str(r["activation"]))
    z = k_dense.dense_forward(r["x"], r["kernel"], r["bias"], activation_code("linear"))
    y = k_dense.dense_forward(r["x"], r["kernel"], r["bias"], code)
    dx, dkernel, dbias = g_dense.dense_backward(r["x"], r["kernel"], z, y, r["dy"], code)
    return {"dx": dx, "dkernel": dkernel, "dbias": dbias}


def _as_2d(r):
    """x, kernel, dy (Conv1D's given an H=1 axis) and the explicit padding Keras used."""
    x, kernel, dy = r["x"], r["kernel"], r["dy"]
    if x.ndim == 3:
        x, dy, kernel = x[:, None], dy[:, None], kernel[None]
    pads = paddings(x.shape[1:3], tuple(r["kernel_size"]), tuple(r["strides"]),
                    str(r["padding_mode"]), tuple(r["dilation"]))
    return x, kernel, dy, pads


def _jax_conv(r):
    x, kernel, dy, pads = _as_2d(r)
    dx, dkernel, dbias = g_conv.conv2d_backward(
        x, kernel, r["strides"], r["dilation"], pads, int(r["groups"]), dy
    )
    return {"dx": dx.reshape(r["x"].shape), "dkernel": dkernel.reshape(r["kernel"].shape),
            "dbias": dbias}


def _jax_depthwise(r):
    x, kernel, dy, pads = _as_2d(r)
    dx, dkernel, dbias = g_conv.depthwise_conv2d_backward(
        x, kernel, r["strides"], r["dilation"], pads, dy
    )
    return {"dx": dx, "dkernel": dkernel, "dbias": dbias}


def _pool_pads(r):
    return paddings(r["x"].shape[1:3], tuple(r["pool"]), tuple(r["strides"]),
                    str(r["padding_mode"]), (1, 1))


def _jax_max_pool(r):
    return {"dx": g_pool.max_pool2d_backward(r["x"], r["pool"], r["strides"], _pool_pads(r),
                                             r["dy"])}


def _jax_avg_pool(r):
    return {"dx": g_pool.avg_pool2d_backward(r["x"].shape, r["pool"], r["strides"],
                                             _pool_pads(r), r["dy"])}


def _jax_global(r):
    x = r["x"].reshape(r["x"].shape[0], -1, r["x"].shape[-1])  # (N, S, C)
    if "max" in str(r["kind"]):
        dx = g_pool.global_max_pool_backward(x, r["dy"])
    else:
        dx = g_pool.global_avg_pool_backward(x.shape, r["dy"])
    return {"dx": dx.reshape(r["x"].shape)}


def _jax_batch_norm_train(r):
    x = r["x"].reshape(-1, r["x"].shape[-1], 1)  # axis=-1: (N*H*W, C, 1)
    eps = float(r["epsilon"])
    y, mean, var, cache = g_norm.batch_norm_train_forward(x, r["gamma"], r["beta"], eps)
    dx, dgamma, dbeta = g_norm.batch_norm_train_backward(
        x, r["gamma"], mean, cache, r["dy"].reshape(x.shape)
    )
    new_mean, new_var = g_norm.batch_norm_moving_update(
        r["moving_mean"], r["moving_variance"], mean, var, float(r["momentum"])
    )
    return {"y": y.reshape(r["x"].shape), "dx": dx.reshape(r["x"].shape), "dgamma": dgamma,
            "dbeta": dbeta, "new_moving_mean": new_mean, "new_moving_variance": new_var}


def _jax_batch_norm_inference(r):
    x = r["x"].reshape(-1, r["x"].shape[-1], 1)
    dx, dgamma, dbeta = g_norm.batch_norm_backward_inference(
        x, r["gamma"], r["moving_mean"], r["moving_variance"], float(r["epsilon"]),
        r["dy"].reshape(x.shape)
    )
    return {"dx": dx.reshape(r["x"].shape), "dgamma": dgamma, "dbeta": dbeta}


def _jax_layer_norm(r):
    k = r["gamma"].size  # the trailing axes flattened
    dx, dgamma, dbeta = g_norm.layer_norm_backward(
        r["x"].reshape(-1, k), r["gamma"].reshape(k), float(r["epsilon"]), r["dy"].reshape(-1, k)
    )
    return {"dx": dx.reshape(r["x"].shape), "dgamma": dgamma.reshape(r["gamma"].shape),
            "dbeta": dbeta.reshape(r["beta"].shape)}


def _jax_reshaping(r):
    if "padding" in r:
        return {"dx": g_resh.zero_pad2d_backward(r["padding"], r["dy"])}
    if "size" in r:
        return {"dx": g_resh.upsample2d_nearest_backward(r["size"], r["dy"])}
    return {"dx": g_resh.rescale_backward(float(r["scale"]), r["dy"])}


def _jax_moving_average(r):
    """Keras 3 with momentum 0.5 on [1, 2, 4, 9] from (0, 1): the biased variance (9.5)."""
    x = r["x"].reshape(-1, 1, 1)
    _, mean, var, _ = g_norm.batch_norm_train_forward(x, np.ones(1), np.zeros(1), 1e-3)
    new_mean, new_var = g_norm.batch_norm_moving_update(
        np.zeros(1), np.ones(1), mean, var, float(r["momentum"])
    )
    return {"new_moving_mean": new_mean, "new_moving_variance": new_var}


# case stored by make_references.py -> (how to replay it, the kernels it checks)
def _jax_recurrent(r):
    """A recurrent layer's training forward and backward, through the layer (its input
    projection GEMMs around the kernels), as Keras's layer computes them."""
    import json

    from seqcli.layers import LAYER_TYPES

    config = json.loads(str(r["config"]))
    layer = LAYER_TYPES[config["type"]].model_validate(config)
    weights = {name: r[name] for name in ("kernel", "recurrent_kernel", "bias")}
    mask = r["mask"] if "mask" in r else None
    y, cache = layer.forward_train(weights, r["x"], np.random.default_rng(0), mask=mask)
    dx, grads = layer.backward(weights, cache, r["dy"])
    return {"y": y, "dx": dx, **{f"d{name}": grad for name, grad in grads.items()}}


def _jax_normalization_more(r):
    """GroupNormalization / UnitNormalization forward and backward, through the layer."""
    from seqcli.layers import GroupNormalization, UnitNormalization

    if "groups" in r:
        layer = GroupNormalization(groups=int(r["groups"]), axis=int(r["axis"]),
                                   epsilon=float(r["epsilon"]))
        weights = {"gamma": r["gamma"], "beta": r["beta"]}
    else:
        axis = r["axis"].tolist()
        layer = UnitNormalization(axis=axis)
        weights = {}
    y = layer.forward(weights, r["x"])
    dx, grads = layer.backward(weights, r["x"], r["dy"])
    return {"y": y, "dx": dx, **{f"d{name}": grad for name, grad in grads.items()}}


def _jax_conv_family(r):
    """A 3-D or transposed convolution or a 3-D pooling's training forward and backward,
    through the layer (the transposed ones train with the convolutions' kernels)."""
    import json

    from seqcli.layers import LAYER_TYPES

    config = json.loads(str(r["config"]))
    layer = LAYER_TYPES[config["type"]].model_validate(config)
    weights = {name: r[name] for name in layer.param_shapes(r["x"].shape[1:])}
    y, cache = layer.forward_train(weights, r["x"], np.random.default_rng(0))
    dx, grads = layer.backward(weights, cache, r["dy"])
    return {"y": y, "dx": dx, **{f"d{name}": grad for name, grad in grads.items()}}


def _jax_affine(r):
    """keras.ops.image.affine_transform and its vjp: the resampling kernel and its transpose."""
    from seqcli.kernels import augmentation as k_aug

    codes = (k_aug.INTERPOLATIONS[str(r["interpolation"])], k_aug.FILL_MODES[str(r["fill_mode"])])
    transforms = r["transforms"][:, :6]
    return {"y": k_aug.affine_transform_forward(r["x"], transforms, *codes, float(r["fill_value"])),
            "dx": g_aug.affine_transform_backward(r["dy"], transforms, *codes)}


JAX_CASES = {
    "dense_gelu": (_jax_dense, [g_dense.dense_backward]),
    "dense_softmax": (_jax_dense, [g_dense.dense_backward, g_act.activation_backward]),
    "conv2d_stride2_same": (_jax_conv, [g_conv.conv2d_backward]),
    "conv2d_dilated_groups": (_jax_conv, [g_conv.conv2d_backward]),
    "conv1d_stride2_same": (_jax_conv, [g_conv.conv2d_backward]),
    "depthwise_dm2_stride2_same": (_jax_depthwise, [g_conv.depthwise_conv2d_backward]),
    "depthwise_dm3_dilated": (_jax_depthwise, [g_conv.depthwise_conv2d_backward]),
    "max_pool_ties_valid": (_jax_max_pool, [g_pool.max_pool2d_backward]),
    "max_pool_ties_same": (_jax_max_pool, [g_pool.max_pool2d_backward]),
    "max_pool_many_ties_same": (_jax_max_pool, [g_pool.max_pool2d_backward]),
    "max_pool_many_ties_overlap": (_jax_max_pool, [g_pool.max_pool2d_backward]),
    "max_pool_negative_same": (_jax_max_pool, [g_pool.max_pool2d_backward]),
    "avg_pool_same": (_jax_avg_pool, [g_pool.avg_pool2d_backward]),
    "avg_pool_same_overlap": (_jax_avg_pool, [g_pool.avg_pool2d_backward]),
    "global_max_ties": (_jax_global, [g_pool.global_max_pool_backward]),
    "global_max_1d": (_jax_global, [g_pool.global_max_pool_backward]),
    "global_avg": (_jax_global, [g_pool.global_avg_pool_backward]),
    "batch_norm_train": (_jax_batch_norm_train, [
        g_norm.batch_norm_train_forward, g_norm.batch_norm_train_backward,
        g_norm.batch_norm_moving_update]),
    "batch_norm_inference": (_jax_batch_norm_inference, [g_norm.batch_norm_backward_inference]),
    "layer_norm_two_axes": (_jax_layer_norm, [g_norm.layer_norm_backward]),
    "layer_norm_last_axis": (_jax_layer_norm, [g_norm.layer_norm_backward]),
    "zero_pad": (_jax_reshaping, [g_resh.zero_pad2d_backward]),
    "upsample": (_jax_reshaping, [g_resh.upsample2d_nearest_backward]),
    "rescaling": (_jax_reshaping, [g_resh.rescale_backward]),
    "moving_average_evidence": (_jax_moving_average, [g_norm.batch_norm_moving_update]),
    "lstm_masked_sequences": (_jax_recurrent, [g_rec.lstm_backward]),
    "lstm_backwards_last": (_jax_recurrent, [g_rec.lstm_backward]),
    "gru_masked_zero_output": (_jax_recurrent, [g_rec.gru_backward]),
    "gru_reset_before_backwards": (_jax_recurrent, [g_rec.gru_backward]),
    "simple_rnn_relu_masked": (_jax_recurrent, [g_rec.simple_rnn_backward]),
    "group_norm_two_groups": (_jax_normalization_more, [g_norm_more.group_norm_backward]),
    "group_norm_instance_axis1": (_jax_normalization_more, [g_norm_more.group_norm_backward]),
    "unit_norm_two_axes": (_jax_normalization_more, [g_norm_more.unit_norm_backward]),
    "unit_norm_last_axis": (_jax_normalization_more, [g_norm_more.unit_norm_backward]),
    "conv3d_groups_same": (_jax_conv_family, [g_conv3d.conv3d_backward]),
    "conv3d_transpose_same": (_jax_conv_family, [g_conv3d.conv3d_backward]),
    "conv2d_transpose_output_padding": (_jax_conv_family, [g_conv.conv2d_backward]),
    "conv1d_transpose_same_dilated": (_jax_conv_family, [g_conv.conv2d_backward]),
    "max_pool3d_ties_same": (_jax_conv_family, [g_pool.max_pool2d_backward]),
    "avg_pool3d_same": (_jax_conv_family, [g_pool.avg_pool2d_backward]),
    "affine_rotation_bilinear_reflect": (_jax_affine, [g_aug.affine_transform_backward]),
    "affine_zoom_nearest_constant": (_jax_affine, [g_aug.affine_transform_backward]),
    "affine_shear_bilinear_wrap": (_jax_affine, [g_aug.affine_transform_backward]),
}


@pytest.mark.parametrize("name", sorted(JAX_CASES))
def test_backward_matches_jax(name):
    replay, _ = JAX_CASES[name]
    record = _case(name) | {"kind": np.array(name)}
    got = replay(record)
    assert got
    for key, value in got.items():
        np.testing.assert_allclose(value, record[key], rtol=1e-4, atol=2e-6, err_msg=key)
