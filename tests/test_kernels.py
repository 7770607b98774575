"""Kernels against the slow float64 references in tests/naive.py, plus hand-computed cases."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqcli.kernels
from seqcli.activations import ACTIVATIONS, activation_code
from seqcli.kernels import activations as k_act
from seqcli.kernels import conv as k_conv
from seqcli.kernels import cpu as k_cpu
from seqcli.kernels import dense as k_dense
from seqcli.kernels import normalization as k_norm
from seqcli.kernels import pooling as k_pool
from seqcli.kernels import reshaping as k_resh
from seqcli.kernels import small as k_small
from seqcli.kernels import winograd as k_winograd

try:
    from tests import layer_table, naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import layer_table
    import naive

# Every public kernel function -> its slow reference, from the layer table (checked by
# test_every_kernel_has_reference).
KERNEL_REFERENCES = layer_table.KERNEL_REFERENCES

RTOL = 1e-5
ATOL = 1e-5


def _rng(salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([0, salt])


def _normal(rng, shape, scale=1.0, loc=0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + loc).astype(np.float32)


def _check(got, ref, scale=None, rtol=RTOL, atol=ATOL) -> None:
    """`got` is a float32 C-contiguous array close to `ref`; atol grows with `scale` (>= 1)."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32
    assert got.flags.c_contiguous
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * max(1.0, scale or 1.0))


def _magnitude(a) -> float:
    return float(np.max(np.abs(a))) if np.size(a) else 1.0


def _act_for(i: int) -> str:
    """Activation used by grid case i: the grid cycles through all of them."""
    return ACTIVATIONS[(3 * i + 1) % len(ACTIVATIONS)]


# ----------------------------------------------------------------------------- completeness


# Modules of seqcli.kernels that hold no kernels: what the kernels run on (CPU features, threads,
# numba's start-up, LLVM helpers, size checks); their public functions are used elsewhere.
NOT_KERNELS = ("cpu", "threads", "numba_startup", "intrinsics", "geometry", "memory", "notices")
# Public functions of kernel modules that are not kernels: the switch to a small run's numpy path,
# and whether it could be on.
NOT_KERNEL_FUNCTIONS = ("small_run", "numpy_may_run")


def _public_kernel_functions():
    """(qualified name, object) of each public function defined in a seqcli.kernels forward
    module (the grad_* modules have their own table in tests/test_grad_kernels.py; the modules
    in NOT_KERNELS hold no kernels)."""
    found = []
    for info in pkgutil.iter_modules(seqcli.kernels.__path__):
        if info.name.startswith("grad_") or info.name in NOT_KERNELS:
            continue
        module = importlib.import_module(f"seqcli.kernels.{info.name}")
        for name, obj in vars(module).items():
            func = getattr(obj, "py_func", obj)  # numba dispatchers wrap a Python function
            if name.startswith("_") or name in NOT_KERNEL_FUNCTIONS or not inspect.isfunction(func):
                continue
            if func.__module__ == module.__name__:
                found.append((f"{module.__name__}.{name}", obj))
    return found


def test_every_kernel_has_reference():
    found = _public_kernel_functions()
    missing = [name for name, obj in found if obj not in KERNEL_REFERENCES]
    assert not missing, f"public kernels without a reference in KERNEL_REFERENCES: {missing}"
    stale = set(KERNEL_REFERENCES) - {obj for _, obj in found}
    assert not stale, f"KERNEL_REFERENCES entries that are not public kernels: {stale}"
    for ref in KERNEL_REFERENCES.values():
        assert getattr(naive, ref.__name__) is ref


def test_every_kernel_has_docstring():
    for name, obj in _public_kernel_functions():
        doc = getattr(obj, "py_func", obj).__doc__
        assert doc and "\n" not in doc.strip(), f"{name} needs a one-line docstring"


def test_every_activation_has_reference():
    for name in ACTIVATIONS:
        if name not in ("softmax", "log_softmax"):
            assert name in naive.SCALAR_ACTIVATIONS, name


# ----------------------------------------------------------------------------- activations

_SPECIAL = [-20, -10, -5, -3, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 3, 5, 10, 20]


def _activation_input() -> np.ndarray:
    rng = _rng(1)
    rows = [np.array(_SPECIAL, dtype=np.float32), np.array(_SPECIAL[::-1], dtype=np.float32)]
    rows += [_normal(rng, len(_SPECIAL), 3.0) for _ in range(4)]
    return np.stack(rows).reshape(2, 3, len(_SPECIAL))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_forward(name):
    x = _activation_input()
    before = x.copy()
    got = k_act.activation_forward(x, activation_code(name))
    _check(got, naive.naive_activation(x, name), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(got, x)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_forward_shapes(name):
    code = activation_code(name)
    for shape in [(), (1,), (7,), (4, 1), (0, 3), (2, 0)]:
        x = _normal(_rng(2), shape, 2.0)
        got = k_act.activation_forward(x, code)
        assert got.shape == shape
        _check(got, naive.naive_activation(x, name) if x.size else x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_activation_inplace(name, with_bias):
    rng = _rng(3)
    y = _normal(rng, (5, 7), 2.0)
    bias = _normal(rng, 7) if with_bias else np.zeros(0, dtype=np.float32)
    ref = naive.naive_bias_activation(y, bias, name)
    assert k_act.bias_activation_inplace(y, bias, activation_code(name)) is None
    _check(y, ref, scale=_magnitude(ref) if name == "exponential" else None)


def test_activation_hand_values():
    got = k_act.activation_forward(np.array([[0.0, math.log(3.0)]]), activation_code("softmax"))
    np.testing.assert_allclose(got, [[0.25, 0.75]], rtol=1e-6)
    got = k_act.activation_forward([-2.0, -1.0, 0.0, 1.0, 4.0, 7.0], activation_code("relu6"))
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 4, 6])
    got = k_act.activation_forward([-5.0, 0.0, 5.0], activation_code("leaky_relu"))
    np.testing.assert_allclose(got, [-1.0, 0.0, 5.0], rtol=1e-7)
    got = k_act.activation_forward([-4.0, -3.0, 0.0, 3.0, 4.0], activation_code("hard_sigmoid"))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.5, 1.0, 1.0], rtol=1e-7)
    # stable at the extremes of float32: no overflow, no NaN
    big = np.array([-1e30, -100.0, 100.0, 1e30], dtype=np.float32)
    for name in ("sigmoid", "softplus", "silu", "mish", "softmax", "log_softmax", "tanh"):
        assert not np.isnan(k_act.activation_forward(big, activation_code(name))).any(), name
    np.testing.assert_allclose(
        k_act.activation_forward(big, activation_code("sigmoid")), [0, 0, 1, 1], atol=1e-30
    )


def test_activation_rejects_unknown_code():
    with pytest.raises(ValueError):
        k_act.activation_forward(np.ones(3), len(ACTIVATIONS))
    with pytest.raises(ValueError):
        k_act.activation_forward(np.ones(3), -1)


# ----------------------------------------------------------------------------- dense

DENSE_CASES = [(1, 1, 1, True), (3, 5, 4, True), (7, 16, 3, False), (2, 64, 10, True)]


def _dense_args(m, k, u, with_bias, salt=4):
    rng = _rng(salt)
    x = _normal(rng, (m, k))
    kernel = _normal(rng, (k, u), 1.0 / math.sqrt(k))
    bias = _normal(rng, u, 0.5) if with_bias else None
    return x, kernel, bias


def _run_dense(case, name):
    x, kernel, bias = _dense_args(*case)
    got = k_dense.dense_forward(x, kernel, bias, activation_code(name))
    ref = naive.naive_dense(x, kernel, bias, name)
    _check(got, ref, scale=_magnitude(naive.naive_dense(x, kernel, bias, "linear")))


@pytest.mark.parametrize("i", range(len(DENSE_CASES)))
def test_dense_grid(i):
    _run_dense(DENSE_CASES[i], _act_for(i))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_all_activations(name):
    _run_dense((4, 6, 5, True), name)


@pytest.mark.parametrize("m, k, u", [(1, 6, 5), (1, 784, 512), (4, 784, 512), (1, 2048, 2049)])
@pytest.mark.parametrize("name", ["linear", "relu", "softmax", "tanh"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_rows_is_dense_forward_with_its_weights_bound(m, k, u, name, with_bias):
    """A tiny row, a row of up to 2^22 multiply-accumulates (its own path for linear and
    relu), several rows, and a row beyond: the numbers of dense_forward and the reference."""
    x, kernel, bias = _dense_args(m, k, u, with_bias, salt=k + u)
    rows = k_small.dense_rows(kernel, bias, activation_code(name))
    got = rows(x)
    ref = naive.naive_dense(x, kernel, bias, name)
    _check(got, ref, scale=_magnitude(naive.naive_dense(x, kernel, bias, "linear")))
    np.testing.assert_allclose(got, k_dense.dense_forward(x, kernel, bias, activation_code(name)),
                               rtol=1e-6, atol=1e-6)
    assert rows(x[:, :]).shape == (m, u)


def test_dense_rows_and_dense_forward_agree_on_the_numpy_size():
    assert k_small.DENSE_NUMPY_MACS == k_dense._SMALL_MACS


def test_dense_rows_leaves_weights_it_cannot_use_to_the_layer():
    kernel, bias = np.ones((3, 2), np.float32), np.zeros(2, np.float32)
    assert k_small.dense_rows(kernel.astype(np.float64), bias, 0) is None
    assert k_small.dense_rows(np.asfortranarray(np.ones((3, 2), np.float32)), None, 0) is None
    assert k_small.dense_rows(kernel, bias.astype(np.float64), 0) is None
    rows = k_small.dense_rows(kernel, bias, 0)
    np.testing.assert_array_equal(rows(np.array([[1.0, 2.0, 3.0]])), [[6.0, 6.0]])  # float64 x


def test_dense_hand_values():
    got = k_dense.dense_forward([[1.0, 2.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [0.5, 0, -3], 0)
    np.testing.assert_array_equal(got, [[1.5, 2.0, 0.0]])
    with pytest.raises(ValueError):
        k_dense.dense_forward(np.ones((2, 3)), np.ones((4, 2)), None, 0)


# ----------------------------------------------------------------------------- conv2d

# (N, H, W, C, KH, KW, F, strides, dilation, padding, groups, bias)
CONV_CASES = [
    (1, 5, 5, 1, 1, 1, 2, (1, 1), (1, 1), ((0, 0), (0, 0)), 1, True),  # 1x1 fast path
    (3, 7, 5, 3, 2, 2, 4, (1, 1), (1, 1), ((0, 1), (0, 1)), 1, True),  # even kernel, 'same'
    (2, 7, 5, 2, 4, 3, 3, (2, 3), (1, 1), ((1, 2), (0, 1)), 1, False),
    (1, 6, 6, 4, 3, 3, 4, (2, 2), (1, 1), ((1, 1), (1, 1)), 2, True),  # groups 2
    (3, 8, 7, 2, 3, 3, 2, (1, 1), (2, 2), ((2, 2), (2, 2)), 1, True),  # dilation 2
    (2, 1, 9, 3, 1, 3, 5, (1, 2), (1, 1), ((0, 0), (1, 1)), 1, True),  # Conv1D as H=1
    (2, 7, 5, 4, 2, 3, 6, (1, 2), (2, 1), ((0, 1), (1, 1)), 2, True),
    (1, 7, 5, 1, 5, 3, 1, (1, 1), (1, 1), ((0, 0), (0, 0)), 1, True),  # odd kernel, valid
    (2, 5, 6, 3, 3, 2, 6, (1, 1), (1, 1), ((1, 1), (0, 1)), 3, True),  # groups = C
    (3, 5, 5, 4, 1, 1, 2, (2, 2), (1, 1), ((0, 0), (0, 0)), 2, False),  # 1x1 stride 2 grouped
    (1, 4, 4, 2, 2, 2, 3, (2, 2), (1, 1), ((0, 0), (0, 0)), 1, True),
    (2, 1, 8, 2, 1, 4, 4, (1, 1), (1, 3), ((0, 0), (2, 1)), 2, True),  # dilated grouped Conv1D
]


def _conv_args(case, salt=5):
    n, h, w, c, kh, kw, f, strides, dilation, padding, groups, with_bias = case
    rng = _rng(salt)
    x = _normal(rng, (n, h, w, c))
    kernel = _normal(rng, (kh, kw, c // groups, f), 1.0 / math.sqrt(kh * kw * c // groups))
    bias = _normal(rng, f, 0.5) if with_bias else None
    return x, kernel, bias, strides, dilation, padding, groups


def _run_conv(case, name):
    x, kernel, bias, strides, dilation, padding, groups = _conv_args(case)
    got = k_conv.conv2d_forward(
        x, kernel, bias, strides, dilation, padding, groups, activation_code(name)
    )
    args = (x, kernel, bias, strides, dilation, padding, groups)
    ref = naive.naive_conv2d(*args, name)
    _check(got, ref, scale=_magnitude(naive.naive_conv2d(*args, "linear")))


@pytest.mark.parametrize("chunk_bytes", [None, 1000])
@pytest.mark.parametrize("i", range(len(CONV_CASES)))
def test_conv2d_grid(i, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:  # many small im2col chunks, the last one partial
        monkeypatch.setattr(k_conv, "_CHUNK_BYTES", chunk_bytes)
    _run_conv(CONV_CASES[i], _act_for(i))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_conv2d_all_activations(name):
    _run_conv((2, 5, 4, 4, 3, 2, 4, (1, 1), (1, 1), ((1, 1), (0, 1)), 2, True), name)


def test_conv2d_hand_values():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    same = ((1, 1), (1, 1))
    got = k_conv.conv2d_forward(x, np.ones((3, 3, 1, 1)), None, (1, 1), (1, 1), same, 1, 0)
    np.testing.assert_array_equal(got[0, :, :, 0], [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    # cross-correlation (not flipped): a kernel with a single 1 right of centre shifts left
    right = np.zeros((3, 3, 1, 1))
    right[1, 2] = 1.0
    got = k_conv.conv2d_forward(x, right, [0.5], (1, 1), (1, 1), same, 1, 0)
    np.testing.assert_array_equal(
        got[0, :, :, 0], [[2.5, 3.5, 0.5], [5.5, 6.5, 0.5], [8.5, 9.5, 0.5]]
    )
    # groups 2: filters 0-1 see channels 0-1, filters 2-3 see channels 2-3
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    kernel = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]).reshape(1, 1, 2, 4)
    got = k_conv.conv2d_forward(x, kernel, None, (1, 1), (1, 1), ((0, 0), (0, 0)), 2, 0)
    np.testing.assert_array_equal(got.reshape(4), [11, 14, 37, 44])


@pytest.mark.parametrize("strides", [(1, 1), (2, 1)])
def test_conv2d_1x1_is_matmul(strides):
    got = k_conv.conv2d_forward(
        [[[[1.0, 2.0]]]],
        [[[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]],
        None,
        strides,
        (1, 1),
        ((0, 0), (0, 0)),
        1,
        0,
    )
    np.testing.assert_array_equal(got, [[[[1.0, 2.0, 3.0]]]])
    rng = _rng(6)
    x = _normal(rng, (2, 3, 4, 5))
    kernel = _normal(rng, (1, 1, 5, 6))
    got = k_conv.conv2d_forward(x, kernel, None, strides, (1, 1), ((0, 0), (0, 0)), 1, 0)
    sub = x[:, :: strides[0], :: strides[1], :].astype(np.float64)
    ref = (sub.reshape(-1, 5) @ kernel.reshape(5, 6).astype(np.float64)).reshape(got.shape)
    _check(got, ref)


# Winograd F(4x4, 3x3) (3x3 stride-1 convolutions from 16 input channels and 16 output
# columns): (N, H, W, C, F, padding) covering every block of tiles (12, 8, 6, 4, 2, 1), 1-4
# rows in the last row of tiles, channels and filters off multiples of 16, more than 32 filters
WINOGRAD_CASES = [
    (1, 18, 18, 16, 16, ((0, 0), (0, 0))),  # 16x16 out: 4 tiles a row, 4 rows each
    (2, 21, 23, 16, 32, ((1, 1), (1, 1))),  # 6 tiles; the last row of tiles has 1 row
    (1, 10, 52, 32, 48, ((0, 0), (0, 0))),  # 13 tiles: 12 + 1; 48 filters: 32 + 16
    (3, 19, 38, 20, 20, ((1, 1), (1, 1))),  # 10 tiles: 8 + 2; 3 rows left; C, F off 16
    (1, 9, 40, 17, 40, ((0, 1), (2, 0))),  # asymmetric padding
    (2, 22, 30, 64, 16, ((1, 1), (1, 1))),  # 8 tiles; 2 rows left
    (1, 7, 46, 16, 16, ((0, 0), (0, 0))),  # 11 tiles: 8 + 2 + 1
]


def _run_winograd(case, name, salt=9):
    n, h, w, c, f, padding = case
    rng = _rng(salt)
    x = _normal(rng, (n, h, w, c))
    kernel = _normal(rng, (3, 3, c, f), 1.0 / math.sqrt(9 * c))
    bias = _normal(rng, f, 0.5)
    out_w = w + padding[1][0] + padding[1][1] - 2
    assert k_winograd._winograd_fits(3, 3, 1, 1, 1, 1, c, f, out_w)
    args = (x, kernel, bias, (1, 1), (1, 1), padding, 1)
    got = k_conv.conv2d_forward(*args, activation_code(name))
    _check(got, naive.naive_conv2d(*args, name),
           scale=_magnitude(naive.naive_conv2d(*args, "linear")))


@pytest.mark.parametrize("i", range(len(WINOGRAD_CASES)))
def test_conv2d_winograd_grid(i):
    _run_winograd(WINOGRAD_CASES[i], _act_for(i))


@pytest.mark.parametrize("name", ["linear", "relu", "sigmoid"])
@pytest.mark.parametrize("filters", [32, 20])
def test_conv2d_winograd_epilogues(name, filters):
    """linear and relu fused into the output transform (filters a multiple of 16), else the
    epilogue; with other filter counts through the buffer of 16-multiple columns."""
    _run_winograd((2, 12, 20, 16, filters, ((1, 1), (1, 1))), name)


def test_conv2d_winograd_filters_follow_kernels_changed_in_place():
    """The transformed filters are kept between calls for the same kernel array, but never
    outlive a change to its values (training updates weights in place)."""
    rng = _rng(10)
    x = _normal(rng, (1, 10, 20, 16))
    kernel = _normal(rng, (3, 3, 16, 16), 0.1)
    same = ((1, 1), (1, 1))
    for _ in range(2):
        first = k_conv.conv2d_forward(x, kernel, None, (1, 1), (1, 1), same, 1, 0)
        _check(first, naive.naive_conv2d(x, kernel, None, (1, 1), (1, 1), same, 1, "linear"))
        kernel *= -0.5  # in place
        second = k_conv.conv2d_forward(x, kernel, None, (1, 1), (1, 1), same, 1, 0)
        _check(second, naive.naive_conv2d(x, kernel, None, (1, 1), (1, 1), same, 1, "linear"))
        kernel[1, 1, 3, 7] = 2.0  # one value
        third = k_conv.conv2d_forward(x, kernel, None, (1, 1), (1, 1), same, 1, 0)
        _check(third, naive.naive_conv2d(x, kernel, None, (1, 1), (1, 1), same, 1, "linear"))
    assert (id(kernel) in k_winograd._FILTERS) == k_cpu.wide_vectors()  # Winograd: AVX-512 only
    del kernel
    assert all(entry[0]() is not None for entry in k_winograd._FILTERS.values())


def test_conv2d_winograd_takes_only_its_convolutions():
    fits = k_winograd._winograd_fits
    assert fits(3, 3, 1, 1, 1, 1, 32, 32, 121)  # the Keras guide's convnet
    assert fits(3, 3, 1, 1, 1, 1, 256, 256, 30)  # 9 MB of transformed filters
    assert not fits(3, 3, 2, 2, 1, 1, 32, 32, 121)  # strided
    assert not fits(3, 3, 1, 1, 2, 2, 32, 32, 121)  # dilated
    assert not fits(5, 5, 1, 1, 1, 1, 32, 32, 121)  # another window
    assert not fits(3, 3, 1, 1, 1, 1, 8, 32, 121)  # few channels: the direct kernel
    assert not fits(3, 3, 1, 1, 1, 1, 32, 32, 8)  # narrow
    assert not fits(3, 3, 1, 1, 1, 1, 256, 512, 56)  # 18 MB of filters: beyond the cache


def test_conv2d_rejects_bad_shapes():
    x = np.ones((1, 4, 4, 4), dtype=np.float32)
    no_pad = ((0, 0), (0, 0))
    with pytest.raises(ValueError):  # kernel channels != C // groups
        k_conv.conv2d_forward(x, np.ones((1, 1, 4, 2)), None, (1, 1), (1, 1), no_pad, 2, 0)
    with pytest.raises(ValueError):  # filters not divisible by groups
        k_conv.conv2d_forward(x, np.ones((1, 1, 2, 3)), None, (1, 1), (1, 1), no_pad, 2, 0)
    with pytest.raises(ValueError):  # window larger than the input
        k_conv.conv2d_forward(x, np.ones((5, 1, 4, 1)), None, (1, 1), (1, 1), no_pad, 1, 0)
    with pytest.raises(ValueError):  # wrong bias length
        k_conv.conv2d_forward(x, np.ones((1, 1, 4, 2)), np.ones(3), (1, 1), (1, 1), no_pad, 1, 0)
    with pytest.raises(ValueError):  # depthwise kernel channels != C
        k_conv.depthwise_conv2d_forward(x, np.ones((1, 1, 3, 1)), None, (1, 1), (1, 1), no_pad, 0)


@st.composite
def _conv_geometry(draw):
    """A random small grouped conv whose window fits the padded input."""
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pads[0] - pads[1]), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pads[2] - pads[3]), 7))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    n = draw(st.integers(1, 2))
    return (n, h, w, c, kh, kw, f, strides, (dh, dw), padding, groups, draw(st.booleans()))


@settings(max_examples=40, deadline=None)
@given(case=_conv_geometry(), act=st.sampled_from(ACTIVATIONS))
def test_conv2d_random_geometry(case, act):
    _run_conv(case, act)


# ----------------------------------------------------------------------------- depthwise

# (N, H, W, C, KH, KW, DM, strides, dilation, padding, bias)
DEPTHWISE_CASES = [
    (1, 5, 5, 1, 1, 1, 1, (1, 1), (1, 1), ((0, 0), (0, 0)), True),
    (3, 7, 5, 2, 2, 2, 2, (1, 1), (1, 1), ((0, 1), (0, 1)), True),
    (2, 7, 5, 3, 3, 3, 3, (2, 2), (1, 1), ((1, 1), (1, 1)), True),
    (1, 8, 7, 2, 3, 3, 1, (1, 1), (2, 2), ((2, 2), (2, 2)), False),
    (2, 7, 5, 2, 4, 3, 2, (2, 3), (1, 1), ((1, 2), (0, 1)), True),
    (2, 1, 9, 3, 1, 3, 2, (1, 2), (1, 1), ((0, 0), (1, 1)), True),  # DepthwiseConv1D as H=1
    (3, 6, 6, 4, 2, 3, 3, (1, 2), (2, 1), ((0, 1), (1, 1)), False),
    (1, 7, 5, 1, 5, 3, 2, (1, 1), (1, 1), ((0, 0), (0, 0)), True),
]


def _run_depthwise(case, name, place=lambda x: x):
    """The depthwise kernel on `case` with activation `name` against the reference; `place`
    gives the array the kernel gets in place of x (same values)."""
    n, h, w, c, kh, kw, dm, strides, dilation, padding, with_bias = case
    rng = _rng(7)
    x = _normal(rng, (n, h, w, c))
    kernel = _normal(rng, (kh, kw, c, dm), 1.0 / math.sqrt(kh * kw))
    bias = _normal(rng, c * dm, 0.5) if with_bias else None
    got = k_conv.depthwise_conv2d_forward(
        place(x), kernel, bias, strides, dilation, padding, activation_code(name)
    )
    args = (x, kernel, bias, strides, dilation, padding)
    ref = naive.naive_depthwise_conv2d(*args, name)
    _check(got, ref, scale=_magnitude(naive.naive_depthwise_conv2d(*args, "linear")))
    return got


@pytest.mark.parametrize("i", range(len(DEPTHWISE_CASES)))
def test_depthwise_grid(i):
    _run_depthwise(DEPTHWISE_CASES[i], _act_for(i + 5))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_depthwise_all_activations(name):
    _run_depthwise((2, 5, 4, 3, 3, 2, 2, (1, 1), (1, 1), ((1, 1), (0, 1)), True), name)


def test_depthwise_channel_order_by_hand():
    # x: one row of two pixels, channels c0, c1; kernel 1x2, depth multiplier 2
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)  # x[0, 0, w, c]
    kernel = np.zeros((1, 2, 2, 2))  # kernel[0, kw, c, m]
    kernel[0, 0] = [[1.0, 10.0], [100.0, 1000.0]]
    kernel[0, 1] = [[2.0, 20.0], [200.0, 2000.0]]
    bias = [0.5, 0.25, 0.0, -1.0]
    got = k_conv.depthwise_conv2d_forward(x, kernel, bias, (1, 1), (1, 1), ((0, 0), (0, 0)), 0)
    # channel c*2 + m: (c0,m0) 1*1+3*2, (c0,m1) 1*10+3*20,
    #                  (c1,m0) 2*100+4*200, (c1,m1) 2*1000+4*2000
    np.testing.assert_array_equal(got.reshape(4), [7.5, 70.25, 1000.0, 9999.0])


def _same(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: (before, after), the odd cell after."""
    total = max((-(-size // stride) - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _same2(h, w, kh, kw, strides, dilation):
    return (_same(h, kh, strides[0], dilation[0]), _same(w, kw, strides[1], dilation[1]))


VALID = ((0, 0), (0, 0))

# Each path of the register-blocked depthwise kernel (AVX-512; the direct loop elsewhere): rows
# cut into blocks of 8 pixels (the last moved back), of 4, single pixels; edge columns whose
# window is partly padding, rows and columns whose window is all padding (the bias alone);
# channel blocks of 32 and 16 with whole or partial last vectors (1-3, 7, 17, 20, 33, 40
# channels); depth multipliers (channels repeated); strides, dilations, 'same' and 'valid';
# fused clamps (linear, relu, relu6) and the other activations after the sums.
# (N, H, W, C, KH, KW, DM, strides, dilation, padding, bias, activation)
DEPTHWISE_PATH_CASES = [
    (1, 6, 19, 32, 3, 3, 1, (1, 1), (1, 1), _same2(6, 19, 3, 3, (1, 1), (1, 1)), True,
     "relu6"),  # interior 17: two blocks of 8, the last moved back; 2 whole vectors
    (2, 7, 13, 48, 3, 3, 1, (2, 2), (1, 1), _same2(7, 13, 3, 3, (2, 2), (1, 1)), True,
     "relu"),  # stride 2; 32 then 16 channels
    (1, 5, 7, 16, 3, 3, 1, (1, 1), (1, 1), _same2(5, 7, 3, 3, (1, 1), (1, 1)), True,
     "linear"),  # interior 5: blocks of 4
    (3, 4, 2, 17, 3, 3, 1, (1, 1), (1, 1), _same2(4, 2, 3, 3, (1, 1), (1, 1)), True,
     "tanh"),  # width 2: edge columns only; 16 + 1 channels
    (1, 5, 3, 3, 3, 3, 1, (1, 1), (1, 1), _same2(5, 3, 3, 3, (1, 1), (1, 1)), True,
     "relu6"),  # width 3: one interior pixel; 3 channels
    (2, 3, 1, 40, 3, 1, 1, (1, 1), (1, 1), ((1, 1), (0, 0)), True,
     "sigmoid"),  # width 1; 32 + 8 channels
    (2, 9, 14, 33, 3, 3, 1, (1, 1), (2, 2), _same2(9, 14, 3, 3, (1, 1), (2, 2)), True,
     "gelu"),  # dilation 2 'same'; 32 + 1 channels
    (1, 8, 12, 20, 5, 3, 1, (2, 1), (1, 3), ((2, 2), (3, 3)), True,
     "relu"),  # strides and dilations differ per axis
    (1, 2, 2, 5, 2, 2, 1, (1, 1), (3, 3), _same2(2, 2, 2, 2, (1, 1), (3, 3)), True,
     "relu6"),  # row 0 and column 0 read only padding
    (2, 6, 10, 7, 3, 3, 2, (1, 1), (1, 1), _same2(6, 10, 3, 3, (1, 1), (1, 1)), True,
     "sigmoid"),  # depth multiplier 2: 14 channels
    (1, 7, 9, 16, 3, 3, 4, (2, 2), (1, 1), _same2(7, 9, 3, 3, (2, 2), (1, 1)), True,
     "relu6"),  # depth multiplier 4: two blocks of 32
    (1, 5, 8, 1, 3, 3, 3, (1, 1), (2, 1), ((2, 2), (1, 1)), False,
     "linear"),  # one channel, depth multiplier 3, dilated rows
    (2, 9, 17, 64, 3, 3, 1, (1, 1), (1, 1), VALID, False,
     "relu"),  # 'valid' without bias
    (1, 4, 6, 24, 2, 2, 2, (1, 1), (1, 1), VALID, True,
     "softmax"),  # an activation over the channels, after the sums
    (2, 6, 21, 40, 3, 3, 1, (2, 2), (1, 1), _same2(6, 21, 3, 3, (2, 2), (1, 1)), True,
     "relu6"),  # 3 taps, stride 2, blocks of 8: each input column read once; 32 + 8 channels
    (1, 5, 20, 16, 3, 5, 1, (1, 1), (1, 1), _same2(5, 20, 3, 5, (1, 1), (1, 1)), True,
     "relu"),  # 5 taps a row: blocks of 8 reading each pixel's window
    (1, 4, 30, 24, 3, 3, 1, (3, 3), (1, 1), _same2(4, 30, 3, 3, (3, 3), (1, 1)), True,
     "linear"),  # stride 3: blocks of 8 reading each pixel's window
]


@pytest.mark.parametrize("i", range(len(DEPTHWISE_PATH_CASES)))
def test_depthwise_conv_paths(i):
    *case, name = DEPTHWISE_PATH_CASES[i]
    _run_depthwise(tuple(case), name)


def _placed(a: np.ndarray, floats: int) -> np.ndarray:
    """A copy of `a` whose data starts `floats` float32 past a cache line (64 bytes)."""
    buffer = np.empty(a.size + 16, dtype=np.float32)
    start = (floats - buffer.ctypes.data // 4) % 16
    placed = buffer[start:start + a.size].reshape(a.shape)
    placed[...] = a
    return placed


# Inputs whose data starts anywhere on a cache line (numpy's arrays start 16 bytes past one at
# best), so that each block's vectors of channels straddle two.
DEPTHWISE_OFF_LINE_CASES = [
    (1, 6, 19, 32, 3, 3, 1, (1, 1), (1, 1), _same2(6, 19, 3, 3, (1, 1), (1, 1)), True,
     "relu6"),  # 3 taps, stride 1, blocks of 8, edges
    (2, 5, 21, 16, 3, 3, 1, (2, 2), (1, 1), _same2(5, 21, 3, 3, (2, 2), (1, 1)), True,
     "relu"),  # 3 taps, stride 2; 16 channels: a head vector and a tail vector
    (1, 5, 20, 48, 3, 5, 1, (1, 1), (1, 1), _same2(5, 20, 3, 5, (1, 1), (1, 1)), True,
     "tanh"),  # 5 taps: each pixel's window; an activation after the sums
    (1, 4, 6, 64, 3, 3, 1, (1, 1), (2, 2), _same2(4, 6, 3, 3, (1, 1), (2, 2)), False,
     "linear"),  # dilated: single pixels
    (1, 2, 2, 16, 2, 2, 1, (1, 1), (3, 3), _same2(2, 2, 2, 2, (1, 1), (3, 3)), True,
     "relu6"),  # windows of padding only
]


@pytest.mark.parametrize("floats", [1, 4, 8, 12, 15])
@pytest.mark.parametrize("i", range(len(DEPTHWISE_OFF_LINE_CASES)))
def test_depthwise_conv_input_off_a_cache_line(i, floats):
    *case, name = DEPTHWISE_OFF_LINE_CASES[i]
    _run_depthwise(tuple(case), name, lambda x: _placed(x, floats))



def _depthwise_by_taps(x, kernel, bias, strides, dilation, padding):
    """An independent float64 depthwise convolution: one strided slice of the padded input
    per kernel tap, times that tap's weights, summed (channels repeated DM times)."""
    (pt, pb), (pl, pr) = padding
    kh, kw, c, dm = kernel.shape
    xp = np.pad(np.repeat(x.astype(np.float64), dm, axis=3), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    (sh, sw), (dh, dw) = strides, dilation
    out_h = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], out_h, out_w, c * dm)) + bias
    for i in range(kh):
        for j in range(kw):
            taps = xp[:, i * dh : i * dh + (out_h - 1) * sh + 1 : sh,
                      j * dw : j * dw + (out_w - 1) * sw + 1 : sw]
            y += taps * kernel[i, j].reshape(c * dm).astype(np.float64)
    return y


def test_depthwise_conv_threads_share_rows(monkeypatch):
    """Rows in tiles taken by two threads (tiles straddling images, a short last one) give the
    reference, and the same bits as one thread."""
    from seqcli.kernels import depthwise as k_depthwise
    from seqcli.kernels.threads import _parallel, set_threads, thread_count

    def shared(kernel, items, work, *args):  # every item count worth both threads
        _parallel(kernel, items, 1e12, *args)

    monkeypatch.setattr(k_depthwise, "_parallel", shared)
    rng = _rng(31)
    x = _normal(rng, (3, 40, 38, 24))
    kernel = _normal(rng, (3, 3, 24, 1), 0.4)
    bias = _normal(rng, 24, 0.5)
    padding = _same2(40, 38, 3, 3, (1, 1), (1, 1))
    ref = naive.naive_activation(
        _depthwise_by_taps(x, kernel, bias, (1, 1), (1, 1), padding), "relu6")
    before = thread_count()
    got = {}
    try:
        for threads in (1, 2):
            set_threads(threads)
            got[threads] = k_conv.depthwise_conv2d_forward(
                x, kernel, bias, (1, 1), (1, 1), padding, activation_code("relu6"))
    finally:
        set_threads(before)
    _check(got[2], ref, scale=6.0)
    np.testing.assert_array_equal(got[1], got[2])


@pytest.mark.parametrize("case", [
    # (n, h, w, c, kh, kw, f, strides, padded, activation, filters per item at 2 threads)
    (1, 1, 500, 16, 1, 7, 128, (1, 3), False, "relu", 32),  # Conv1D at batch 1: 4 parts
    (1, 1, 60, 8, 1, 5, 80, (1, 1), True, "tanh", 32),  # parts of 32, 32 and 16 filters
    (2, 9, 9, 8, 3, 3, 64, (2, 2), True, "linear", 32),  # 2 tiles: each in 2 parts
    (1, 1, 40, 8, 1, 3, 64, (1, 1), False, "softmax", 64),  # whole rows: no split
    (1, 1, 40, 8, 1, 3, 48, (1, 1), False, "relu", 48),  # under 64 filters: no split
])
def test_direct_conv_splits_few_tiles_by_filters(monkeypatch, case):
    """A direct convolution with fewer row tiles than its threads want (a Conv1D, or a small
    feature map, at batch 1) shares each tile's filters out in parts of 32: the reference,
    and the same bits as one thread."""
    from seqcli.kernels.threads import _parallel, set_threads, thread_count

    n, h, w, c, kh, kw, f, strides, padded, name, f_block = case
    items = []

    def shared(kernel, count, work, *args):  # every item count worth both threads
        items.append((kernel, count))
        _parallel(kernel, count, 1e12, *args)

    monkeypatch.setattr(k_conv, "_parallel", shared)
    rng = _rng(33)
    x = _normal(rng, (n, h, w, c))
    kernel = _normal(rng, (kh, kw, c, f), 1.0 / math.sqrt(kh * kw * c))
    bias = _normal(rng, f, 0.5)
    padding = _same2(h, w, kh, kw, strides, (1, 1)) if padded else ((0, 0), (0, 0))
    args = (x, kernel, bias, strides, (1, 1), padding, 1)
    before = thread_count()
    got = {}
    try:
        for threads in (1, 2):
            set_threads(threads)
            got[threads] = k_conv.conv2d_forward(*args, activation_code(name))
    finally:
        set_threads(before)
    ref = naive.naive_conv2d(*args, name)
    _check(got[2], ref, scale=_magnitude(naive.naive_conv2d(*args, "linear")))
    np.testing.assert_array_equal(got[1], got[2])
    if k_conv.wide_vectors():  # the direct kernel (none of these is a 3x3 stride-1 Winograd)
        (kernel_1, one), (kernel_2, two) = items
        assert kernel_1 is kernel_2 is k_conv._conv_direct
        assert two == one * -(-f // f_block)


def test_direct_filter_block():
    """Filters per item: all of them on one thread, with tiles enough, for softmax, or for a
    layer whose filters are not a multiple of 16; else parts of 32 filters, a few items a
    thread."""
    relu, softmax = activation_code("relu"), activation_code("softmax")
    assert k_conv._direct_filter_block(1, 128, 128, relu, 1) == 128
    assert k_conv._direct_filter_block(1, 128, 128, relu, 2) == 32
    assert k_conv._direct_filter_block(2, 128, 128, relu, 2) == 64
    assert k_conv._direct_filter_block(4, 128, 128, relu, 2) == 128
    assert k_conv._direct_filter_block(1, 256, 256, relu, 4) == 32
    assert k_conv._direct_filter_block(3, 256, 256, relu, 2) == 128
    assert k_conv._direct_filter_block(1, 128, 128, softmax, 2) == 128
    assert k_conv._direct_filter_block(1, 72, 80, relu, 2) == 80
    assert k_conv._direct_filter_block(1, 48, 48, relu, 2) == 48


def test_depthwise_conv_mobilenet_layers():
    """The shapes of a MobileNet block at batch 2: 3x3 'same', stride 1 and 2, 32-128
    channels, relu6, against the tap-by-tap reference."""
    rng = _rng(32)
    for h, c, stride in ((28, 32, 1), (28, 64, 2), (14, 128, 1), (7, 128, 2)):
        x = _normal(rng, (2, h, h, c))
        kernel = _normal(rng, (3, 3, c, 1), 0.4)
        bias = _normal(rng, c, 0.5)
        strides = (stride, stride)
        padding = _same2(h, h, 3, 3, strides, (1, 1))
        got = k_conv.depthwise_conv2d_forward(x, kernel, bias, strides, (1, 1), padding,
                                              activation_code("relu6"))
        ref = _depthwise_by_taps(x, kernel, bias, strides, (1, 1), padding)
        _check(got, naive.naive_activation(ref, "relu6"), scale=_magnitude(ref))


# ----------------------------------------------------------------------------- pooling

# (N, H, W, C, pool, strides, padding); padding < pool, windows hit it at the borders
POOL_CASES = [
    (1, 3, 3, 1, (2, 2), (2, 2), ((0, 1), (0, 1))),
    (3, 7, 5, 2, (2, 2), (2, 2), ((0, 1), (0, 1))),
    (2, 7, 5, 3, (3, 3), (1, 1), ((1, 1), (1, 1))),
    (1, 7, 5, 1, (3, 2), (2, 1), ((1, 2), (0, 1))),
    (2, 6, 7, 2, (1, 1), (1, 1), ((0, 0), (0, 0))),
    (3, 7, 5, 2, (2, 3), (2, 3), ((0, 1), (1, 1))),
    (2, 9, 8, 2, (4, 3), (3, 2), ((1, 2), (1, 1))),
    (1, 5, 5, 2, (5, 5), (1, 1), ((2, 2), (2, 2))),
    (2, 1, 9, 3, (1, 3), (1, 2), ((0, 0), (1, 1))),  # 1D pooling as H=1
    (2, 8, 6, 2, (2, 2), (2, 2), ((0, 0), (0, 0))),
]

POOLS = {"max": k_pool.max_pool2d_forward, "avg": k_pool.avg_pool2d_forward}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("i", range(len(POOL_CASES)))
def test_pool2d_grid(i, kind):
    n, h, w, c, pool, strides, padding = POOL_CASES[i]
    x = _normal(_rng(8), (n, h, w, c), 2.0, -1.0)  # mostly negative: zero padding would show
    got = POOLS[kind](x, pool, strides, padding)
    ref_fn = naive.naive_max_pool2d if kind == "max" else naive.naive_avg_pool2d
    _check(got, ref_fn(x, pool, strides, padding))


@settings(max_examples=40, deadline=None)
@given(
    pool=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    kind=st.sampled_from(["max", "avg"]),
)
def test_pool2d_random_geometry(pool, strides, extra, pads, kind):
    pt, pb, pl, pr = (min(p, pool[i // 2] - 1) for i, p in enumerate(pads))  # padding < pool
    padding = ((pt, pb), (pl, pr))
    x = _normal(_rng(14), (2, pool[0] + extra[0], pool[1] + extra[1], 2), 2.0, -1.0)
    ref_fn = naive.naive_max_pool2d if kind == "max" else naive.naive_avg_pool2d
    _check(POOLS[kind](x, pool, strides, padding), ref_fn(x, pool, strides, padding))


def test_pool2d_hand_values():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    pad = ((0, 1), (0, 1))
    avg = k_pool.avg_pool2d_forward(x, (2, 2), (2, 2), pad)
    np.testing.assert_array_equal(avg[0, :, :, 0], [[3.0, 4.5], [7.5, 9.0]])
    mx = k_pool.max_pool2d_forward(x, (2, 2), (2, 2), pad)
    np.testing.assert_array_equal(mx[0, :, :, 0], [[5.0, 6.0], [8.0, 9.0]])
    mx = k_pool.max_pool2d_forward(-x, (2, 2), (2, 2), pad)  # padding never wins a max
    np.testing.assert_array_equal(mx[0, :, :, 0], [[-1.0, -3.0], [-7.0, -9.0]])


def test_pool2d_rejects_all_padding_windows():
    x = np.ones((1, 4, 4, 1), dtype=np.float32)
    for fn in POOLS.values():
        with pytest.raises(ValueError):
            fn(x, (2, 2), (1, 1), ((2, 0), (0, 0)))
        with pytest.raises(ValueError):
            fn(x, (5, 1), (1, 1), ((0, 0), (0, 0)))


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 4), (2, 35, 3)])
def test_global_pools(shape):
    x = _normal(_rng(9), shape, 2.0, -3.0)
    _check(k_pool.global_max_pool_forward(x), naive.naive_global_max_pool(x))
    _check(k_pool.global_avg_pool_forward(x), naive.naive_global_avg_pool(x))
    with pytest.raises(ValueError):
        k_pool.global_avg_pool_forward(np.ones((2, 0, 3)))


# ----------------------------------------------------------------------------- normalization


@pytest.mark.parametrize("shape", [(1, 3, 1), (5, 4, 1), (2, 3, 6), (3, 1, 7)])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_batch_norm(shape, epsilon):
    rng = _rng(10)
    c = shape[1]
    x = _normal(rng, shape, 3.0, 2.0)
    gamma, beta, mean = _normal(rng, c), _normal(rng, c), _normal(rng, c, 1.0, 2.0)
    var = rng.uniform(0.1, 4.0, c).astype(np.float32)
    got = k_norm.batch_norm_forward(x, gamma, beta, mean, var, epsilon)
    _check(got, naive.naive_batch_norm(x, gamma, beta, mean, var, epsilon))
    ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)  # scale/center off
    got = k_norm.batch_norm_forward(x, ones, zeros, zeros, ones, epsilon)
    _check(got, x / math.sqrt(1.0 + epsilon))


@pytest.mark.parametrize(
    ("shape", "loc"), [((1, 1), 0.0), ((3, 7), 0.0), ((4, 64), 0.0), ((2, 33), 1000.0)]
)
@pytest.mark.parametrize("epsilon", [1e-3, 1e-6])
def test_layer_norm(shape, loc, epsilon):
    rng = _rng(11)
    x = _normal(rng, shape, 1.0, loc)  # loc 1000: a one-pass float32 variance would fail
    gamma, beta = _normal(rng, shape[1]), _normal(rng, shape[1])
    got = k_norm.layer_norm_forward(x, gamma, beta, epsilon)
    _check(got, naive.naive_layer_norm(x, gamma, beta, epsilon))


# ----------------------------------------------------------------------------- reshaping

RESHAPE_CASES = [
    ((1, 3, 3, 1), ((0, 0), (0, 0)), (1, 1)),
    ((3, 7, 5, 2), ((0, 1), (1, 1)), (2, 2)),
    ((2, 4, 6, 3), ((1, 2), (0, 1)), (2, 3)),
    ((1, 1, 9, 2), ((0, 0), (2, 3)), (1, 2)),
]


@pytest.mark.parametrize("i", range(len(RESHAPE_CASES)))
def test_zero_pad_and_upsample(i):
    shape, padding, size = RESHAPE_CASES[i]
    x = _normal(_rng(12), shape)
    _check(k_resh.zero_pad2d_forward(x, padding), naive.naive_zero_pad2d(x, padding), atol=0)
    got = k_resh.upsample2d_nearest_forward(x, size)
    _check(got, naive.naive_upsample2d_nearest(x, size), atol=0, rtol=0)


def test_reshaping_hand_values():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32).reshape(1, 2, 2, 1)
    got = k_resh.zero_pad2d_forward(x, ((1, 0), (0, 1)))
    np.testing.assert_array_equal(got[0, :, :, 0], [[0, 0, 0], [1, 2, 0], [3, 4, 0]])
    got = k_resh.upsample2d_nearest_forward(x, (1, 2))
    np.testing.assert_array_equal(got[0, :, :, 0], [[1, 1, 2, 2], [3, 3, 4, 4]])


@pytest.mark.parametrize("shape", [(), (5,), (3, 7, 5, 2)])
@pytest.mark.parametrize(("scale", "offset"), [(1 / 255, 0.0), (1 / 127.5, -1.0), (2.0, 0.5)])
def test_rescale(shape, scale, offset):
    x = (_rng(13).uniform(0, 255, shape)).astype(np.float32)
    got = k_resh.rescale_forward(x, scale, offset)
    _check(got, naive.naive_rescale(x, scale, offset), rtol=1e-6, atol=1e-6)
