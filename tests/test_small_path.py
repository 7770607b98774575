"""The numpy path of small work (seqcli/kernels/small.py): the same numbers as the jitted
kernels and the float64 references, taken only below its thresholds, and a small model's
predict that never loads numba."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from seqcli.activations import ACTIVATIONS, activation_code
from seqcli.kernels import activations as k_act
from seqcli.kernels import dense as k_dense
from seqcli.kernels import small

try:
    from tests import naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive

COMPUTED = [name for name in ACTIVATIONS if activation_code(name) in small.SUPPORTED]
_SPECIAL = [-1e30, -100, -20, -5, -1, -1e-3, -0.0, 0, 1e-3, 1, 3, 5, 20, 88, 100, 1e30]


def _inputs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = [np.array(_SPECIAL, np.float32)]
    rows += [(rng.standard_normal(len(_SPECIAL)) * 4).astype(np.float32) for _ in range(5)]
    return np.stack(rows)


def test_every_activation_but_gelu_is_computed_here():
    assert set(ACTIVATIONS) - set(COMPUTED) == {"gelu"}


@pytest.mark.parametrize("name", COMPUTED)
def test_activation_equals_the_kernel_and_the_reference(name):
    x = _inputs()
    before = x.copy()
    got = small.small_activation_forward(x, activation_code(name))
    kernel = k_act.activation_forward(x, activation_code(name))
    np.testing.assert_array_equal(x, before)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == x.shape
    # the same float64 arithmetic rounded once: equal to the kernel's but for libm's last bit
    np.testing.assert_allclose(got, kernel, rtol=2e-7, atol=1e-30)
    moderate = x[:, np.abs(x[0]) <= 20]  # the references' math.exp overflows beyond
    np.testing.assert_allclose(small.small_activation_forward(moderate, activation_code(name)),
                               naive.naive_activation(moderate, name), rtol=1e-6, atol=1e-6)


def test_activation_hand_values():
    code = activation_code
    np.testing.assert_allclose(
        small.small_activation_forward(np.array([[0.0, math.log(3.0)]], np.float32), code("softmax")),
        [[0.25, 0.75]], rtol=1e-7)
    np.testing.assert_array_equal(
        small.small_activation_forward(np.array([-2, 0, 4, 7], np.float32), code("relu6")), [0, 0, 4, 6])
    np.testing.assert_allclose(
        small.small_activation_forward(np.array([-5, 0, 5], np.float32), code("leaky_relu")), [-1, 0, 5])
    np.testing.assert_allclose(
        small.small_activation_forward(np.array([[1.0, 1.0]], np.float32), code("log_softmax")),
        [[-math.log(2.0)] * 2], rtol=1e-7)
    big = np.array([-1e30, 1e30], np.float32)
    np.testing.assert_array_equal(small.small_activation_forward(big, code("sigmoid")), [0, 1])
    nan = small.small_activation_forward(np.array([np.nan, 1.0], np.float32), code("relu"))
    assert np.isnan(nan[0]) and nan[1] == 1


def test_activation_shapes():
    for shape in [(), (1,), (7,), (4, 1), (0, 3), (2, 0), (2, 3, 4)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        got = small.small_activation_forward(x, activation_code("softmax"))
        assert got.shape == shape
        np.testing.assert_allclose(got, k_act.activation_forward(x, activation_code("softmax")),
                                   rtol=2e-7)


@pytest.mark.parametrize("name", COMPUTED)
@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_equals_the_kernel_and_the_reference(name, with_bias):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    kernel = (rng.standard_normal((12, 7)) / 3).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32) if with_bias else None
    got = small.small_dense_forward(x, kernel, bias, activation_code(name))
    assert got.dtype == np.float32 and got.shape == (5, 7)
    np.testing.assert_allclose(got, k_dense.dense_forward(x, kernel, bias, activation_code(name)),
                               rtol=1e-6, atol=1e-6)
    scale = max(1.0, float(np.abs(naive.naive_dense(x, kernel, bias, "linear")).max()))
    reference = naive.naive_dense(x, kernel, bias, name)
    np.testing.assert_allclose(got, reference, rtol=1e-5,
                               atol=1e-5 * (scale if name == "exponential" else 1))


def test_dense_hand_values():
    got = small.small_dense_forward(np.array([[1.0, 2.0]], np.float32),
                      np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32),
                      np.array([0.5, 0, -3], np.float32), activation_code("relu"))
    np.testing.assert_array_equal(got, [[1.5, 2.0, 0.0]])


def test_big_work_other_dtypes_and_gelu_are_left_to_the_kernels():
    relu = activation_code("relu")
    side = int(round(small.SMALL_MACS ** (1 / 3)))
    at = np.ones((side, side), np.float32)
    assert small.small_dense_forward(at, np.ones((side, side), np.float32), None, relu) is not None
    wide = np.ones((side + 1, side + 1), np.float32)
    assert small.small_dense_forward(wide, np.ones((side + 1, side + 1), np.float32), None, relu) is None
    assert small.small_dense_forward(np.ones((2, 3)), np.ones((3, 2), np.float32), None, relu) is None
    assert small.small_dense_forward(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), None,
                       activation_code("gelu")) is None
    assert small.small_activation_forward(np.ones(small.SMALL_VALUES + 1, np.float32), relu) is None
    assert small.small_activation_forward(np.ones(small.SMALL_VALUES, np.float32), relu) is not None
    assert small.small_activation_forward(np.ones(3, np.float64), relu) is None


_NO_NUMBA = """
import json, sys
from seqcli.cli import main
code = main(["predict", sys.argv[1], sys.argv[2], "-o", sys.argv[3], *sys.argv[4:]])
print(json.dumps({"code": code, "numba": "numba" in sys.modules or "llvmlite" in sys.modules}))
"""


def test_small_model_predicts_without_numba(tmp_path):
    """The guide's Dense stack on a few rows: numba is never imported, nor LLVM, quiet or not
    (the notice of a compile waits for numba), and the outputs are those the jitted kernels
    give."""
    x = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    for quiet in (["-q"], []):
        run = subprocess.run([sys.executable, "-c", _NO_NUMBA, "configs/dense_stack.yaml",
                              str(tmp_path / "x.npy"), str(out), *quiet],
                             capture_output=True, text=True, check=True)
        assert json.loads(run.stdout.splitlines()[-1]) == {"code": 0, "numba": False}

    from seqcli.runtime.model import load

    model = load("configs/dense_stack.yaml")
    model.build()
    y = x
    for layer in model.layers:
        weights = {name.split("/")[-1]: array for name, array in model.weights.items()
                   if name.startswith(layer.name + "/")}
        y = k_dense.dense_forward(y, weights["kernel"], weights.get("bias"),
                                  activation_code(layer.activation))
    np.testing.assert_allclose(np.load(out), y, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- a small run

class _Built:
    """What `small_run` reads of a built model: each layer's multiply-accumulates."""

    def __init__(self, *macs):
        self.layers = [type("Info", (), {"macs": m})() for m in macs]


@pytest.fixture(autouse=True)
def _fresh_process(numpy_small_runs):
    """Every test here sees small runs as a process that has not loaded numba does."""


def _in_small_run(function, *args):
    with small.small_run(_Built(1), 1) as on:
        assert on
        return function(*args)


def test_small_run_is_decided_by_the_whole_runs_work():
    with small.small_run(_Built(small.RUN_MACS // 4, 0), 4) as on:
        assert on
    with small.small_run(_Built(small.RUN_MACS // 4, 1), 4) as on:
        assert not on
    with small.small_run(_Built(10, None), 1) as on:  # unknown work: the kernels
        assert not on


def test_a_process_that_keeps_predicting_moves_to_the_kernels(monkeypatch):
    """Small runs add up: once a process has run RUN_MACS in numpy, or has loaded numba,
    later runs take the kernels."""
    quarter = _Built(small.RUN_MACS // 4)
    for _ in range(4):
        with small.small_run(quarter, 1) as on:
            assert on
    with small.small_run(quarter, 1) as on:
        assert not on
    monkeypatch.setattr(small, "_SPENT", [0])
    monkeypatch.setattr(small, "_kernels_loaded", lambda: True)
    with small.small_run(_Built(1), 1) as on:
        assert not on
    x = np.ones((1, 4, 4, 1), np.float32)
    geometry = ((1, 1), (1, 1), ((0, 0), (0, 0)))
    kernel = np.ones((2, 2, 1, 1), np.float32)
    assert small.small_conv2d_forward(x, kernel, None, *geometry, 1, 0) is None  # outside
    assert small.small_pool2d_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "max") is None
    assert small.small_global_pool_forward(x.reshape(1, 16, 1), "max") is None


CONV_CASES = [  # (N, H, W, C), (KH, KW, C/groups, F), strides, dilation, padding, groups
    ((2, 9, 8, 3), (3, 3, 3, 4), (1, 1), (1, 1), ((0, 0), (0, 0)), 1),
    ((1, 11, 10, 2), (5, 3, 2, 6), (2, 3), (1, 1), ((2, 2), (1, 1)), 1),
    ((3, 12, 12, 4), (3, 3, 2, 6), (1, 2), (2, 1), ((2, 3), (0, 1)), 2),
    ((1, 1, 17, 5), (1, 4, 5, 7), (1, 3), (1, 2), ((0, 0), (3, 3)), 1),  # 1-D as 2-D
    ((2, 6, 6, 8), (1, 1, 8, 16), (1, 1), (1, 1), ((0, 0), (0, 0)), 1),
    ((1, 7, 7, 6), (2, 2, 1, 6), (1, 1), (3, 3), ((1, 2), (2, 1)), 6),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("name", ["linear", "relu", "softmax", "tanh"])
def test_conv2d_equals_the_kernel_and_the_reference(case, name, monkeypatch):
    from seqcli.kernels import conv as k_conv

    shape, kernel_shape, strides, dilation, padding, groups = CONV_CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape).astype(np.float32)
    bias = rng.standard_normal(kernel_shape[-1]).astype(np.float32)
    args = (x, kernel, bias, strides, dilation, padding, groups, activation_code(name))
    got = _in_small_run(small.small_conv2d_forward, *args)
    np.testing.assert_allclose(got, k_conv.conv2d_forward(*args), rtol=1e-5, atol=1e-5)
    reference = naive.naive_conv2d(x, kernel, bias, strides, dilation, padding, groups, name)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)
    # im2col in slices of one output row each gives the same numbers (but for BLAS's order)
    monkeypatch.setattr(small, "WINDOW_VALUES", 1)
    np.testing.assert_allclose(_in_small_run(small.small_conv2d_forward, *args), got,
                               rtol=1e-6, atol=1e-6)


POOL_CASES = [  # (N, H, W, C), pool, strides, padding
    ((2, 9, 9, 3), (3, 3), (3, 3), ((0, 0), (0, 0))),
    ((1, 7, 8, 2), (2, 3), (2, 2), ((0, 1), (1, 1))),
    ((3, 5, 5, 4), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ((1, 1, 11, 2), (1, 4), (1, 3), ((0, 0), (1, 2))),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
@pytest.mark.parametrize("mode", ["max", "average"])
def test_pool2d_equals_the_kernel_and_the_reference(case, mode):
    from seqcli.kernels import pooling as k_pool

    shape, pool, strides, padding = POOL_CASES[case]
    x = np.random.default_rng(case).standard_normal(shape).astype(np.float32)
    got = _in_small_run(small.small_pool2d_forward, x, pool, strides, padding, mode)
    kernel = k_pool.max_pool2d_forward if mode == "max" else k_pool.avg_pool2d_forward
    np.testing.assert_allclose(got, kernel(x, pool, strides, padding), rtol=1e-6, atol=1e-6)
    reference = naive.naive_max_pool2d if mode == "max" else naive.naive_avg_pool2d
    np.testing.assert_allclose(got, reference(x, pool, strides, padding), rtol=1e-6, atol=1e-6)
    assert got.dtype == np.float32


@pytest.mark.parametrize("mode", ["max", "average"])
def test_global_pool_equals_the_kernel(mode):
    from seqcli.kernels import pooling as k_pool

    x = np.random.default_rng(5).standard_normal((3, 40, 6)).astype(np.float32)
    got = _in_small_run(small.small_global_pool_forward, x, mode)
    kernel = k_pool.global_max_pool_forward if mode == "max" else k_pool.global_avg_pool_forward
    np.testing.assert_allclose(got, kernel(x), rtol=1e-6, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (3, 6)


def test_hand_computed_conv_and_pools():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    kernel = np.ones((2, 2, 1, 1), np.float32)
    got = _in_small_run(small.small_conv2d_forward, x, kernel, np.array([-1], np.float32),
                        (2, 2), (1, 1), ((0, 0), (0, 0)), 1, activation_code("linear"))
    np.testing.assert_array_equal(got[0, :, :, 0], [[9, 17], [41, 49]])
    got = _in_small_run(small.small_pool2d_forward, x, (3, 3), (2, 2), ((0, 1), (0, 1)),
                        "average")
    np.testing.assert_array_equal(got[0, :, :, 0], [[5, 6.5], [11, 12.5]])
    got = _in_small_run(small.small_pool2d_forward, x, (3, 3), (2, 2), ((0, 1), (0, 1)),
                        "max")
    np.testing.assert_array_equal(got[0, :, :, 0], [[10, 11], [14, 15]])


@pytest.mark.parametrize("model", ["configs/guide_convnet.yaml",
                                   "tests/keras_reference/models/conv1d_strides.yaml"])
def test_a_small_run_of_a_convnet_needs_no_numba(tmp_path, model):
    """Two images through a convnet run in numpy (no numba) and give what the kernels give;
    a run above RUN_MACS takes the kernels."""
    from seqcli.runtime.model import load

    network = load(model)
    network.build()
    x = (np.random.default_rng(6).random((2, *network.input_shape[1:]), dtype=np.float32) * 255)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    run = subprocess.run([sys.executable, "-c", _NO_NUMBA, model, str(tmp_path / "x.npy"),
                          str(out)], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout.splitlines()[-1]) == {"code": 0, "numba": False}
    expected = network.predict(x)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5 * scale)
    rows = small.RUN_MACS // network.built_model.macs + 1
    with small.small_run(network.built_model, rows) as on:
        assert not on


def test_padding_beyond_the_input_is_left_to_the_kernels():
    """A huge dilation or pool 'same'-pads far beyond the input: the kernels, which skip the
    taps that read only padding, take it."""
    x = np.ones((1, 8, 8, 2), np.float32)
    kernel = np.ones((3, 3, 2, 1), np.float32)
    huge = ((20_000, 20_000), (20_000, 20_000))
    assert _in_small_run(small.small_conv2d_forward, x, kernel, None, (1, 1),
                         (20_000, 20_000), huge, 1, 0) is None
    assert _in_small_run(small.small_pool2d_forward, x, (40_001, 40_001), (1, 1), huge,
                         "max") is None
    same = ((1, 1), (1, 1))
    assert _in_small_run(small.small_conv2d_forward, x, kernel, None, (1, 1), (1, 1), same,
                         1, 0) is not None
