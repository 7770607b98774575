"""The shape layers: Cropping1D/2D/3D, ZeroPadding1D/3D, UpSampling1D/3D, Resizing, CenterCrop
and UpSampling2D's interpolations. The resize weights against hand-computed cases and a slow
float64 transcription of jax.image.resize's `compute_weight_mat`; the separable kernel
against tests/naive.py; every layer's backward as the adjoint of its forward; Keras's
settings, errors and its aspect-ratio arithmetic. (Keras's own numbers for whole models are
the fixtures shape_* in tests/keras_reference and the Keras-made files in tests/keras_files.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from seqcli.kernels import resize as k_resize
from seqcli.layers import LAYER_TYPES
from seqcli.layers.shaping import (
    RESIZING_METHODS,
    aspect_crop,
    aspect_pad,
    resize_matrices,
    resize_weights,
)
from seqcli.shapes import ShapeError

try:
    from tests import naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive


def _layer(settings: dict):
    return LAYER_TYPES[settings["type"]].model_validate(settings)


def _naive_weights(in_size: int, out_size: int, method: str, antialias: bool) -> np.ndarray:
    """jax's compute_weight_mat, one weight at a time in float64 (nearest: floor of the
    centre's position, computed exactly)."""
    m, n = in_size, out_size
    if m == n:
        return np.eye(n)
    weights = np.zeros((n, m))
    if method == "nearest":
        for i in range(n):
            weights[i, min(math.floor((i + 0.5) * m / n), m - 1)] = 1.0
        return weights
    radius = {"bilinear": 1, "bicubic": 2, "lanczos3": 3, "lanczos5": 5}[method]
    widen = max(m / n, 1.0) if antialias else 1.0

    def kernel(x):
        if method == "bilinear":
            return max(0.0, 1.0 - x)
        if method == "bicubic":
            if x >= 2:
                return 0.0
            return ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0 if x >= 1 else \
                ((1.5 * x - 2.5) * x) * x + 1.0
        if x > radius:
            return 0.0
        if x <= 1e-3:
            return 1.0
        return radius * math.sin(math.pi * x) * math.sin(math.pi * x / radius) / (math.pi * x) ** 2

    for i in range(n):
        centre = (i + 0.5) * m / n - 0.5
        for p in range(m):
            weights[i, p] = kernel(abs(centre - p) / widen)
        total = weights[i].sum()
        weights[i] = weights[i] / total if abs(total) > 1000 * np.finfo(np.float32).eps else 0.0
    return weights


# ----------------------------------------------------------------------------- resize weights


def test_resize_weights_hand_computed():
    np.testing.assert_allclose(resize_weights(2, 4, "bilinear", False),
                               [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    # downscale 4 → 2: samples at 0.5 and 2.5
    np.testing.assert_allclose(resize_weights(4, 2, "bilinear", False),
                               [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # antialias widens the triangle by 2: distances 0.25, 0.25, 0.75, 1.25 → 3/7, 3/7, 1/7, 0
    np.testing.assert_allclose(resize_weights(4, 2, "bilinear", True),
                               [[3 / 7, 3 / 7, 1 / 7, 0], [0, 1 / 7, 3 / 7, 3 / 7]], rtol=1e-6)
    # Keys cubic at distances 0.25 and 0.75 (output 1 of 2 → 4), normalised
    near, far = 1 - 2.125 * 0.0625, 1 - 1.375 * 0.5625
    np.testing.assert_allclose(resize_weights(2, 4, "bicubic", False)[1],
                               [near / (near + far), far / (near + far)], rtol=1e-6)
    np.testing.assert_array_equal(resize_weights(3, 2, "nearest", False), [[1, 0, 0], [0, 0, 1]])
    for method in RESIZING_METHODS:  # an unchanged size is the identity
        np.testing.assert_array_equal(resize_weights(5, 5, method, True), np.eye(5))


def test_nearest_rounds_as_xla_compiles_jax():
    """jax's floor((i + 0.5) · 100 / 31) is compiled as a product by 100 · (1/31) in float32,
    which puts output 15 on input 49 (the exact quotient is 50): Keras on JAX says 49."""
    index = resize_weights(100, 31, "nearest", False).argmax(axis=1)
    assert index[15] == 49
    assert math.floor(15.5 * 100 / 31) == 50


@pytest.mark.parametrize("method", RESIZING_METHODS)
@pytest.mark.parametrize("antialias", [False, True])
def test_resize_weights_match_the_float64_transcription(method, antialias):
    for m in (1, 2, 3, 5, 7, 8, 13):
        for n in (1, 2, 3, 4, 6, 9, 16):
            got = resize_weights(m, n, method, antialias)
            assert got.shape == (n, m) and got.dtype == np.float32
            expected = _naive_weights(m, n, method, antialias)
            if method == "nearest":
                np.testing.assert_array_equal(got, expected)
            else:
                np.testing.assert_allclose(got, expected, atol=2e-6)
                np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_resize_weights_refuse_bad_arguments():
    with pytest.raises(ValueError, match="unknown resize method"):
        resize_weights(3, 4, "area", False)
    with pytest.raises(ValueError, match="positive"):
        resize_weights(0, 4, "bilinear", False)


# ----------------------------------------------------------------------------- the kernel


def test_separable_resize_hand_computed():
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)  # [[0, 1], [2, 3]]
    rows = np.array([[1, 0], [0.5, 0.5], [0, 1]], dtype=np.float32)
    cols = np.array([[0, 1]], dtype=np.float32)  # the right column
    got = k_resize.separable_resize(x, rows, cols)
    np.testing.assert_array_equal(got[0, :, :, 0], [[1], [2], [3]])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 3),
       st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_separable_resize_matches_naive(batch, h, w, c, out_h, out_w, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, h, w, c)).astype(np.float32)
    rows = rng.normal(size=(out_h, h)).astype(np.float32)
    cols = rng.normal(size=(out_w, w)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.4] = 0.0  # bands with holes, empty rows
    cols[:, : w // 2] = 0.0
    got = k_resize.separable_resize(x, rows, cols)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, naive.naive_separable_resize(x, rows, cols), rtol=1e-5,
                               atol=1e-5)


def test_separable_resize_threads_and_checks():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 40, 40, 8)).astype(np.float32)  # enough work for the pool
    rows, cols = resize_weights(40, 57, "lanczos3", False), resize_weights(40, 23, "bicubic", True)
    expected = np.einsum("ip,jq,npqc->nijc", rows.astype(np.float64), cols.astype(np.float64), x,
                         optimize=True)
    np.testing.assert_allclose(k_resize.separable_resize(x, rows, cols), expected, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        k_resize.separable_resize(x, rows[:, :3], cols)
    with pytest.raises(ValueError, match="4 dimensions"):
        k_resize.separable_resize(x[0], rows, cols)


# ----------------------------------------------------------------------------- layers

ADJOINT_CASES = [
    ({"type": "Cropping1D"}, (6, 2)),
    ({"type": "Cropping1D", "cropping": [0, 3]}, (6, 2)),
    ({"type": "Cropping2D", "cropping": [[1, 0], 2]}, (4, 6, 2)),
    ({"type": "Cropping3D", "cropping": [[0, 1], 1, [2, 0]]}, (3, 4, 5, 2)),
    ({"type": "ZeroPadding1D", "padding": [2, 0]}, (3, 2)),
    ({"type": "ZeroPadding3D", "padding": [[0, 1], 2, [1, 0]]}, (2, 3, 2, 2)),
    ({"type": "UpSampling1D", "size": 3}, (4, 2)),
    ({"type": "UpSampling3D", "size": [2, 1, 3]}, (2, 3, 2, 2)),
    ({"type": "UpSampling2D", "size": [2, 3], "interpolation": "bicubic"}, (3, 4, 2)),
    ({"type": "Resizing", "height": 4, "width": 7, "interpolation": "lanczos5",
      "antialias": True}, (9, 5, 2)),
    ({"type": "Resizing", "height": 5, "width": 5, "crop_to_aspect_ratio": True}, (4, 7, 1)),
    ({"type": "Resizing", "height": 3, "width": 6, "pad_to_aspect_ratio": True,
      "fill_value": -2.0, "interpolation": "bicubic"}, (4, 4, 2)),
    ({"type": "CenterCrop", "height": 3, "width": 2}, (5, 6, 2)),
    ({"type": "CenterCrop", "height": 7, "width": 3}, (5, 6, 1)),
]


@pytest.mark.parametrize(("settings", "shape"), ADJOINT_CASES,
                         ids=[f"{s['type']}-{i}" for i, (s, _) in enumerate(ADJOINT_CASES)])
def test_backward_is_the_adjoint_of_forward(settings, shape):
    """Each layer is affine, y = L x + c: backward must be Lᵀ, so ⟨L x, dy⟩ = ⟨x, backward(dy)⟩."""
    layer = _layer(settings)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    y, cache = layer.forward_train({}, x, rng)
    assert y.shape == (2, *layer.output_shape(shape))
    linear = y.astype(np.float64) - layer.forward({}, np.zeros_like(x)).astype(np.float64)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx, grads = layer.backward({}, cache, dy)
    assert grads == {} and dx.shape == x.shape and dx.dtype == np.float32
    assert np.vdot(linear, dy) == pytest.approx(np.vdot(x.astype(np.float64), dx), rel=1e-5)
    assert layer.backward({}, cache, dy, input_grad=False)[0] is None


def test_forwards_hand_computed():
    x = np.arange(12, dtype=np.float32).reshape(1, 6, 2)
    np.testing.assert_array_equal(_layer({"type": "Cropping1D"}).forward({}, x)[0],
                                  x[0, 1:5])
    np.testing.assert_array_equal(
        _layer({"type": "ZeroPadding1D", "padding": [1, 2]}).forward({}, x[:, :2])[0],
        [[0, 0], [0, 1], [2, 3], [0, 0], [0, 0]])
    np.testing.assert_array_equal(
        _layer({"type": "UpSampling1D", "size": 3}).forward({}, x[:, :2])[0, :, 0],
        [0, 0, 0, 2, 2, 2])
    volume = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2, 1)
    up = _layer({"type": "UpSampling3D", "size": [1, 1, 2]}).forward({}, volume)
    np.testing.assert_array_equal(up[0, 1, 0, :, 0], [4, 4, 5, 5])
    padded = _layer({"type": "ZeroPadding3D", "padding": [[1, 0], 0, 0]}).forward({}, volume)
    assert padded.shape == (1, 3, 2, 2, 1) and not padded[0, 0].any()
    image = np.arange(20, dtype=np.float32).reshape(1, 5, 4, 1)
    crop = _layer({"type": "CenterCrop", "height": 2, "width": 3}).forward({}, image)
    np.testing.assert_array_equal(crop[0, :, :, 0], image[0, 1:3, 0:3, 0])


def test_keras_aspect_ratio_arithmetic():
    # crop: the largest centred window of the target's ratio
    assert aspect_crop(340, 500, 200, 200) == (0, 80, 340, 340)
    assert aspect_crop(5, 9, 4, 4) == (0, 2, 5, 5)
    # pad: Keras (JAX) puts floor(half) of the difference on each side, so an odd difference
    # pads one row less than the target ratio asks for, and only one axis is padded
    assert aspect_pad(3, 5, 4, 4) == (1, 0)
    assert aspect_pad(2, 5, 4, 4) == (1, 0)  # 2 + 2 · 1 = 4 rows, not 5
    assert aspect_pad(3, 4, 4, 4) == (0, 0)
    assert aspect_pad(6, 2, 3, 3) == (0, 2)
    rows, cols, constant = resize_matrices(2, 5, 4, 4, "bilinear", False, "pad", 1.0)
    full = resize_weights(4, 4, "bilinear", False)
    np.testing.assert_array_equal(rows, full[:, 1:3])
    np.testing.assert_allclose(constant[:, 0], full[:, [0, 3]].sum(axis=1) * 1.0, atol=1e-7)
    assert not rows.flags.writeable  # cached: shared between calls


def test_pad_fill_value_reaches_the_output():
    layer = _layer({"type": "Resizing", "height": 4, "width": 4, "pad_to_aspect_ratio": True,
                    "fill_value": 3.0, "interpolation": "nearest"})
    y = layer.forward({}, np.zeros((1, 2, 4, 1), dtype=np.float32))  # one row on each side
    np.testing.assert_array_equal(y[0, :, 0, 0], [3, 0, 0, 3])


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("settings", "expected"), [
    ({"type": "Cropping1D"}, {"cropping": (1, 1)}),
    ({"type": "Cropping1D", "cropping": 2}, {"cropping": (2, 2)}),
    ({"type": "Cropping2D"}, {"cropping": ((0, 0), (0, 0))}),
    ({"type": "Cropping2D", "cropping": [1, [2, 3]]}, {"cropping": ((1, 1), (2, 3))}),
    ({"type": "Cropping3D"}, {"cropping": ((1, 1), (1, 1), (1, 1))}),
    ({"type": "ZeroPadding1D"}, {"padding": (1, 1)}),
    ({"type": "ZeroPadding2D", "padding": [1, [2, 3]]}, {"padding": ((1, 1), (2, 3))}),
    ({"type": "ZeroPadding3D", "padding": 2}, {"padding": ((2, 2), (2, 2), (2, 2))}),
    ({"type": "UpSampling1D"}, {"size": 2}),
    ({"type": "UpSampling3D", "size": 3}, {"size": (3, 3, 3)}),
    ({"type": "UpSampling2D", "interpolation": "BILINEAR"}, {"interpolation": "bilinear"}),
    ({"type": "Resizing", "height": 2, "width": 3},
     {"interpolation": "bilinear", "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False,
      "fill_mode": "constant", "fill_value": 0.0, "antialias": False}),
])
def test_keras_defaults_and_spellings(settings, expected):
    layer = _layer(settings)
    for key, value in expected.items():
        assert getattr(layer, key) == value


@pytest.mark.parametrize(("settings", "message"), [
    ({"type": "Resizing", "height": 2, "width": 2, "interpolation": "area"},
     "Keras's TensorFlow backend"),
    ({"type": "Resizing", "height": 2, "width": 2, "interpolation": "cubic"},
     "Received: interpolation='cubic'"),
    ({"type": "Resizing", "height": 2, "width": 2, "crop_to_aspect_ratio": True,
      "pad_to_aspect_ratio": True}, "only one of"),
    ({"type": "Resizing", "height": 2, "width": 2, "fill_mode": "reflect"},
     "Received: fill_mode='reflect'"),
    ({"type": "Resizing", "height": 0, "width": 2}, "Received: height=0"),
    ({"type": "UpSampling2D", "interpolation": "area"}, "interpolation='area'"),
    ({"type": "UpSampling1D", "size": [2]}, "valid integer"),
    ({"type": "UpSampling1D", "size": 0}, "Received: size=0"),
    ({"type": "Cropping1D", "cropping": -1}, "Received: cropping=-1"),
    ({"type": "Cropping2D", "cropping": [1, 2, 3]}, "Received: cropping=[1, 2, 3]"),
    ({"type": "Cropping3D", "cropping": [1, [2, -1], 0]}, "2nd entry of cropping"),
    ({"type": "ZeroPadding3D", "padding": [[1, 2]]}, "Received: padding=[[1, 2]]"),
    ({"type": "CenterCrop", "height": 2, "width": 2, "data_format": "channels_first"},
     "channels_last"),
])
def test_refused_settings_say_what_was_received(settings, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
        _layer(settings)


@pytest.mark.parametrize(("settings", "shape", "message"), [
    ({"type": "Cropping1D", "cropping": [2, 2]}, (4, 1), "must be smaller"),
    ({"type": "Cropping2D", "cropping": [[0, 0], [3, 0]]}, (4, 3, 1), "must be smaller"),
    ({"type": "Cropping3D"}, (2, 5, 5, 1), "must be smaller"),
    ({"type": "Cropping1D"}, (4, 2, 1), "rank of 2"),
    ({"type": "ZeroPadding3D"}, (4, 4, 1), "rank of 4"),
    ({"type": "Resizing", "height": 2, "width": 2}, (4, 4), "rank of 3"),
])
def test_shape_errors(settings, shape, message):
    with pytest.raises(ShapeError, match=message):
        _layer(settings).output_shape(shape)


def test_unknown_sizes_pass_through_shape_inference():
    assert _layer({"type": "Cropping1D"}).output_shape((None, 3)) == (None, 3)
    assert _layer({"type": "UpSampling3D"}).output_shape((None, 2, None, 1)) == \
        (None, 4, None, 1)
    assert _layer({"type": "Resizing", "height": 4, "width": 5}).output_shape(
        (None, None, 3)) == (4, 5, 3)


def test_python_api_builds_and_predicts():
    import seqcli
    from seqcli.layers import CenterCrop, Resizing, UpSampling2D

    model = seqcli.Sequential([Resizing(height=6, width=6, interpolation="bicubic"),
                               UpSampling2D(interpolation="bilinear"),
                               CenterCrop(height=5, width=4)])
    y = model.predict(np.random.default_rng(0).random((2, 9, 7, 3), dtype=np.float32))
    assert y.shape == (2, 5, 4, 3)


# --------------------------------------------------------------------------- RandomCrop


def test_random_crop_at_inference_is_the_centre_crop():
    from seqcli.layers import CenterCrop, RandomCrop

    x = np.random.default_rng(0).normal(size=(3, 9, 10, 2)).astype(np.float32)
    for height, width in ((6, 8), (9, 10), (12, 4)):  # smaller, the same, larger on one axis
        crop = RandomCrop(height=height, width=width, seed=4)
        centre = CenterCrop(height=height, width=width)
        np.testing.assert_array_equal(crop.forward({}, x), centre.forward({}, x))
        assert crop.output_shape((9, 10, 2)) == (height, width, 2)


def test_random_crop_in_fit_takes_one_window_of_the_batch_at_a_uniform_place():
    from seqcli.layers import RandomCrop

    crop = RandomCrop(height=2, width=3)
    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5, 1)
    rng = np.random.default_rng(1)
    seen = {}
    for _ in range(600):
        y, (_, (top, left)) = crop.forward_train({}, x, rng)
        np.testing.assert_array_equal(y, x[:, top:top + 2, left:left + 3])  # both images
        seen[top, left] = seen.get((top, left), 0) + 1
    assert sorted(seen) == [(t, left) for t in range(3) for left in range(3)]
    assert min(seen.values()) > 600 / 9 * 0.6  # each corner about as often


def test_random_crop_backward_is_the_adjoint_of_its_crop():
    from seqcli.layers import RandomCrop

    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    for crop in (RandomCrop(height=3, width=4), RandomCrop(height=9, width=4)):
        y, cache = crop.forward_train({}, x, rng)
        dy = rng.normal(size=y.shape).astype(np.float32)
        dx, grads = crop.backward({}, cache, dy)
        assert grads == {} and dx.shape == x.shape
        np.testing.assert_allclose(float((y * dy).sum()), float((x * dx).sum()), rtol=1e-5)


def test_import_and_export_say_where_random_crop_differs_from_keras(cli, tmp_path):
    """Keras 3 returns RandomCrop's input uncropped at inference: import-keras and
    export-keras note it where that changes predictions (the image is not the crop's size)."""
    reference = Path(__file__).parent / "keras_reference" / "models" / "random_crop.yaml"
    result = cli("export-keras", reference, "-o", tmp_path / "crop.keras")
    assert result.code == 0, result
    assert "layer 'random_crop' (RandomCrop): at inference seqcli crops the centre 6x8 of " \
           "the 9x10 images" in result.err
    same_size = Path(__file__).parent / "keras_files" / "augmentation_crop.keras"
    result = cli("import-keras", same_size, "-o", tmp_path / "same.yaml")
    assert result.code == 0 and "RandomCrop" not in result.err, result
