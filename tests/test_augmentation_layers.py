"""The random image-augmentation layers (RandomFlip, RandomRotation, RandomZoom,
RandomTranslation, RandomContrast, RandomBrightness): hand-computed resampling cases, the
kernels against the slow references and the transpose against finite differences, Keras's
training transform replayed for fixed draws (outputs and gradients), the identity at
inference, the distribution of the draws, Keras's refusals, and the Keras-made flowers
tutorial trained one SGD step as Keras trains it with the same draws."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from seqcli.io.weights import read_weights
from seqcli.kernels import augmentation as k_aug
from seqcli.kernels import grad_augmentation as g_aug
from seqcli.layers import (
    RandomBrightness,
    RandomContrast,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from seqcli.layers.base import LAYER_REGISTRY
from seqcli.shapes import ShapeError

try:
    from tests import naive, naive_grad
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive
    import naive_grad

F32 = np.float32
FILES = Path(__file__).parent / "keras_files"
KERAS = np.load(Path(__file__).parent / "augmentation_reference" / "keras_transforms.npz")
NEAREST, BILINEAR = k_aug.INTERPOLATIONS["nearest"], k_aug.INTERPOLATIONS["bilinear"]
CONSTANT, EDGE, WRAP, REFLECT = (k_aug.FILL_MODES[m] for m in
                                 ("constant", "nearest", "wrap", "reflect"))


def _shift(dx: float, dy: float = 0.0, n: int = 1) -> np.ndarray:
    """Matrices that read input (i - dy, j - dx): a shift right by dx and down by dy."""
    return np.tile(F32([1, 0, -dx, 0, 1, -dy]), (n, 1))


class FixedDraws:
    """An rng whose uniform draws are given: `random(size, dtype)` returns them in turn."""

    def __init__(self, draws):
        self.draws = [np.asarray(u, F32) for u in draws]

    def random(self, size, dtype=None):
        u = self.draws.pop(0)
        assert u.shape == (size,)
        return u


# ------------------------------------------------------------------------ the kernels


def test_affine_kernel_hand_cases():
    row = F32([1, 2, 3, 4]).reshape(1, 1, 4, 1)
    assert np.array_equal(k_aug.affine_transform_forward(row, _shift(0), BILINEAR, REFLECT, 0),
                          row)  # the identity
    right = lambda mode, fill=9.0: k_aug.affine_transform_forward(  # noqa: E731
        row, _shift(2), NEAREST, mode, fill).ravel().tolist()
    assert right(CONSTANT) == [9, 9, 1, 2]  # (k k | a b c d)
    assert right(EDGE) == [1, 1, 1, 2]  # (a a | a b c d)
    assert right(WRAP) == [3, 4, 1, 2]  # (c d | a b c d)
    assert right(REFLECT) == [2, 1, 1, 2]  # (b a | a b c d): about the edge of the pixel
    left = k_aug.affine_transform_forward(row, _shift(-3), NEAREST, REFLECT, 0).ravel()
    assert left.tolist() == [4, 4, 3, 2]
    half = k_aug.affine_transform_forward(row, _shift(0.5), BILINEAR, EDGE, 0).ravel()
    assert half.tolist() == [1.0, 1.5, 2.5, 3.5]  # the mean of the two pixels read
    # nearest rounds halves away from zero (lax.round): -0.5 reads -1 (the fill), 0.5 reads 1
    assert k_aug.affine_transform_forward(row, _shift(0.5), NEAREST, CONSTANT,
                                          7).ravel().tolist() == [7, 2, 3, 4]
    assert k_aug.affine_transform_forward(row, _shift(-0.5), NEAREST, CONSTANT,
                                          7).ravel().tolist() == [2, 3, 4, 7]
    # a quarter turn about the centre of a 2x2 image, channels kept apart
    image = F32([[[1, 10], [2, 20]], [[3, 30], [4, 40]]])[None]
    turn = RandomRotation(factor=0.25).matrices({"angle": F32([90])}, image.shape)
    got = k_aug.affine_transform_forward(image, turn, BILINEAR, CONSTANT, 0)
    np.testing.assert_allclose(got[0, :, :, 0], [[2, 4], [1, 3]], atol=1e-6)
    np.testing.assert_allclose(got[0, :, :, 1], [[20, 40], [10, 30]], atol=1e-5)


def test_affine_backward_hand_cases():
    dy = F32([1, 2, 3, 4]).reshape(1, 1, 4, 1)
    dx = g_aug.affine_transform_backward(dy, _shift(2), NEAREST, CONSTANT).ravel()
    assert dx.tolist() == [3, 4, 0, 0]  # outputs 0 and 1 read the fill: no gradient
    dx = g_aug.affine_transform_backward(dy, _shift(2), NEAREST, EDGE).ravel()
    assert dx.tolist() == [1 + 2 + 3, 4, 0, 0]
    dx = g_aug.affine_transform_backward(dy, _shift(0.5), BILINEAR, EDGE).ravel()
    assert dx.tolist() == [0.5 + 0.5 + 1, 1 + 1.5, 1.5 + 2, 2]  # -0.5 reads pixel 0 twice


def _transforms(rng, n):
    angle, scale = rng.uniform(-3, 3, n), rng.uniform(0.5, 1.7, n)
    return np.stack([scale * np.cos(angle), -scale * np.sin(angle), rng.uniform(-4, 4, n),
                     np.sin(angle), np.cos(angle) * rng.uniform(0.6, 1.4, n),
                     rng.uniform(-4, 4, n)], axis=1).astype(F32)


@pytest.mark.parametrize("interpolation", [NEAREST, BILINEAR])
@pytest.mark.parametrize("fill_mode", [CONSTANT, EDGE, WRAP, REFLECT])
@pytest.mark.parametrize("shape", [(3, 5, 7, 2), (2, 1, 3, 1), (2, 4, 1, 3)])
def test_affine_kernels_against_references(interpolation, fill_mode, shape):
    rng = np.random.default_rng([interpolation, fill_mode, *shape])
    x = rng.normal(size=shape).astype(F32)
    transforms = _transforms(rng, shape[0])
    got = k_aug.affine_transform_forward(x, transforms, interpolation, fill_mode, -0.25)
    want = naive.naive_affine_transform(x, transforms, interpolation, fill_mode, -0.25)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    dy = rng.normal(size=shape).astype(F32)
    dx = g_aug.affine_transform_backward(dy, transforms, interpolation, fill_mode)
    for n in range(shape[0]):  # the transpose of the sampling matrix, channel by channel
        matrix = naive_grad.affine_sampling_matrix(shape[1:3], transforms[n], interpolation,
                                                   fill_mode)
        for c in range(shape[3]):
            np.testing.assert_allclose(dx[n, :, :, c].ravel(),
                                       matrix.T @ dy[n, :, :, c].ravel().astype(np.float64),
                                       rtol=1e-5, atol=1e-5)
    if shape == (2, 1, 3, 1):  # finite differences of the float64 forward too
        numeric = naive_grad.numeric_vjp(naive_grad.affine_transform64,
                                         [x, transforms, interpolation, fill_mode, -0.25], 0, dy)
        np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-5)


def test_affine_kernel_refusals():
    x = np.zeros((2, 3, 3, 1), F32)
    with pytest.raises(ValueError, match="transforms must have shape"):
        k_aug.affine_transform_forward(x, _shift(0), BILINEAR, REFLECT, 0)
    with pytest.raises(ValueError, match="unknown interpolation"):
        g_aug.affine_transform_backward(x, _shift(0, n=2), 3, REFLECT)


# ------------------------------------------------------- Keras's transforms, fixed draws


KERAS_CASES = sorted({key.split("/")[0] for key in KERAS.files})


@pytest.mark.parametrize("case", KERAS_CASES)
def test_training_transform_is_keras_for_the_same_draws(case):
    """Keras's layer in training, its uniform draws fixed (u per call), against seqcli's layer
    fed the same u: the ranges, parameters, matrices, resampling and clipping are Keras's, and
    the backward pass is jax.vjp's."""
    record = {key.split("/", 1)[1]: KERAS[key] for key in KERAS.files
              if key.startswith(case + "/")}
    settings = json.loads(str(record["config"]))
    layer = LAYER_REGISTRY[settings.pop("type")](**settings)
    draws = [record[f"u{i}"] for i in range(3) if f"u{i}" in record]
    x = record["x"]
    y, cache = layer.forward_train({}, x, FixedDraws(draws))
    scale = max(1.0, float(np.abs(record["y"]).max()))
    assert y.dtype == F32 and y.shape == x.shape
    assert float(np.abs(y - record["y"]).max()) <= 2e-6 * scale
    dx, grads = layer.backward({}, cache, record["dy"])
    assert grads == {} and dx.dtype == F32
    scale = max(1.0, float(np.abs(record["dx"]).max()))
    assert float(np.abs(dx - record["dx"]).max()) <= 2e-6 * scale
    assert layer.forward({}, x) is x  # inference: the identity, as Keras


def test_flip_modes_and_both_flips_share_one_draw():
    x = np.arange(2 * 2 * 3, dtype=F32).reshape(1, 2, 3, 2)
    flipped = lambda mode, u: RandomFlip(mode=mode).forward_train(  # noqa: E731
        {}, x, FixedDraws([[u]]))[0]
    assert np.array_equal(flipped("horizontal", 0.5), x[:, :, ::-1])  # u <= 0.5 flips
    assert np.array_equal(flipped("horizontal", 0.51), x)
    assert np.array_equal(flipped("vertical", 0.1), x[:, ::-1])
    assert np.array_equal(flipped("horizontal_and_vertical", 0.1), x[:, ::-1, ::-1])
    assert np.array_equal(flipped("horizontal_and_vertical", 0.9), x)


@pytest.mark.parametrize("layer", [
    RandomFlip(), RandomRotation(factor=0.3), RandomZoom(height_factor=0.4, width_factor=0.2),
    RandomTranslation(height_factor=0.3, width_factor=0.3, fill_mode="constant"),
    RandomContrast(factor=0.5, value_range=[-1.5, 1.5]), RandomBrightness(factor=0.3,
                                                                      value_range=[-1, 1]),
], ids=lambda layer: layer.type)
def test_exact_gradient_for_a_fixed_draw(layer):
    """Finite differences of the training forward with the draw held fixed (the contrast's
    mean depends on every pixel; clipped values have no gradient)."""
    rng = np.random.default_rng(3)
    shape = (3, 4, 5, 2)
    x = rng.uniform(-0.9, 0.9, shape).astype(F32)
    dy = rng.normal(size=shape).astype(F32)
    _, cache = layer.forward_train({}, x, np.random.default_rng(8))
    dx, _ = layer.backward({}, cache, dy)

    def loss(values):
        out, _ = layer.forward_train({}, np.asarray(values, F32), np.random.default_rng(8))
        return float(np.sum(np.asarray(out, np.float64) * dy))

    numeric = np.zeros(shape)
    step = 1e-3
    for index in np.ndindex(shape):
        up, down = x.astype(np.float64), x.astype(np.float64)
        up[index] += step
        down[index] -= step
        numeric[index] = (loss(up) - loss(down)) / (2 * step)
    np.testing.assert_allclose(dx, numeric, rtol=2e-3, atol=2e-3)


# ------------------------------------------------------------------ the random draws


def _draws(layer, key, batch=20000, shape=(10, 8, 3)):
    return layer.draw(np.random.default_rng(0), (batch, *shape))[key]


def test_draw_distributions_follow_keras_ranges():
    angle = _draws(RandomRotation(factor=0.1), "angle")
    assert -36 <= angle.min() < -35.5 and 35.5 < angle.max() < 36  # ±10% of a turn
    assert abs(float(angle.mean())) < 0.5
    angle = _draws(RandomRotation(factor=[0.3, -0.2]), "angle")  # a pair is sorted
    assert -72 <= angle.min() < -71 and 107 < angle.max() < 108
    flips = _draws(RandomFlip(), "flips")
    assert flips.dtype == bool and abs(float(flips.mean()) - 0.5) < 0.02
    zoom = RandomZoom(height_factor=0.2).draw(np.random.default_rng(0), (5000, 4, 4, 1))
    assert np.array_equal(zoom["height_zoom"], zoom["width_zoom"])  # one zoom for both
    assert 0.8 <= zoom["height_zoom"].min() < 0.81 and 1.19 < zoom["height_zoom"].max() < 1.2
    zoom = RandomZoom(height_factor=[-0.5, 0.1], width_factor=0.3).draw(
        np.random.default_rng(0), (5000, 4, 4, 1))
    assert 0.5 <= zoom["height_zoom"].min() and zoom["height_zoom"].max() < 1.1
    assert 0.7 <= zoom["width_zoom"].min() and zoom["width_zoom"].max() < 1.3
    shifts = RandomTranslation(height_factor=0.25, width_factor=[0, 0.5]).draw(
        np.random.default_rng(0), (5000, 8, 10, 1))
    assert -2 <= shifts["height_translate"].min() < -1.9  # a fraction of the height, pixels
    assert 0 <= shifts["width_translate"].min() and 4.9 < shifts["width_translate"].max() < 5
    # RandomContrast(f) stores (0, f) as Keras does: the factor only grows contrast
    contrast = _draws(RandomContrast(factor=0.4), "contrast_factor")
    assert 1.0 <= contrast.min() < 1.001 and 1.399 < contrast.max() < 1.4
    contrast = _draws(RandomContrast(factor=[0.2, 0.3]), "contrast_factor")
    assert 0.8 <= contrast.min() < 0.801 and 1.299 < contrast.max() < 1.3
    delta = _draws(RandomBrightness(factor=0.2), "rgb_delta")  # of the 0-255 range
    assert -51 <= delta.min() < -50.9 and 50.9 < delta.max() < 51
    delta = _draws(RandomBrightness(factor=[-0.1, 0.5], value_range=[1, -1]), "rgb_delta")
    assert -0.2 <= delta.min() < -0.199 and 0.999 < delta.max() < 1.0


def test_each_image_gets_its_own_draw():
    x = np.tile(np.arange(16, dtype=F32).reshape(1, 4, 4, 1), (6, 1, 1, 1))
    y, _ = RandomRotation(factor=0.5).forward_train({}, x, np.random.default_rng(1))
    assert len({y[n].tobytes() for n in range(6)}) == 6


def test_contrast_and_brightness_clip_to_value_range():
    x = F32([[0.0, 100.0], [200.0, 250.0]]).reshape(1, 2, 2, 1)
    y, _ = RandomBrightness(factor=0.5).transform(x, {"rgb_delta": F32([20.0])})
    assert y.ravel().tolist() == [20, 120, 220, 255]
    y, _ = RandomContrast(factor=1.0).transform(x, {"contrast_factor": F32([2.0])})
    assert y.ravel().tolist() == [0, 62.5, 255, 255]  # mean 137.5
    # a reversed value_range: Keras's clip(x, 255, 0) gives 0 everywhere for contrast
    y, _ = RandomContrast(factor=0.5, value_range=[255, 0]).transform(
        x, {"contrast_factor": F32([1.0])})
    assert not y.any()


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("cls, settings, words", [
    (RandomRotation, {"factor": 1.5}, "in the range [-1, 1]. Received: factor=1.5"),
    (RandomRotation, {"factor": [2, 3]}, "Received: factor=[2, 3]"),
    (RandomRotation, {"factor": [0.1, 0.2, 0.3]}, "a list of two numbers"),
    (RandomRotation, {"factor": True}, "Received: factor=True"),
    (RandomRotation, {"factor": 0.1, "fill_mode": "mirror"}, "Received: fill_mode='mirror'"),
    (RandomRotation, {"factor": 0.1, "interpolation": "bicubic"},
     "Received: interpolation='bicubic'"),
    (RandomRotation, {"factor": 0.1, "data_format": "channels_first"}, "channels_last"),
    (RandomZoom, {"height_factor": -1.0}, "(-1.0, 1.0]. Received: height_factor=-1.0"),
    (RandomZoom, {"height_factor": 0.1, "width_factor": [0.1, 1.2]},
     "Received: width_factor=[0.1, 1.2]"),
    (RandomTranslation, {"height_factor": 0.1, "width_factor": -1.5},
     "[-1.0, 1.0]. Received: width_factor=-1.5"),
    (RandomTranslation, {"height_factor": 0.1}, "width_factor"),
    (RandomContrast, {"factor": -0.2}, "in the range [0, 1]. Received: factor=-0.2"),
    (RandomContrast, {"factor": [1.5, 2]}, "Received: factor=[1.5, 2]"),
    (RandomContrast, {"factor": 0.2, "value_range": 255}, "Received: value_range=255"),
    (RandomBrightness, {"factor": 0.2, "value_range": [0, 1, 2]},
     "a list of two numbers. Received: value_range=[0, 1, 2]"),
    (RandomBrightness, {"factor": -1.1}, "Received: factor=-1.1"),
    (RandomFlip, {"mode": "diagonal"}, "Received: mode='diagonal'"),
])
def test_keras_refusals(cls, settings, words):
    with pytest.raises(ValidationError) as error:
        cls(**settings)
    assert words in str(error.value)


def test_keras_accepts_what_it_accepts():
    # Keras checks only factor[0] <= upper bound and factor[1] >= lower bound of a pair
    assert RandomRotation(factor=[-3, 0.5]).factor == [-3, 0.5]
    assert RandomZoom(height_factor=1.0).height_factor == 1.0  # (-1, 1]: 1 is in
    assert RandomTranslation(height_factor=-1, width_factor=[-1.0, 1.0]).height_factor == -1


def test_images_only():
    for layer in (RandomFlip(), RandomContrast(factor=0.1)):
        with pytest.raises(ShapeError, match=r"\(height, width, channels\)"):
            layer.output_shape((4, 4))
        assert layer.output_shape((None, None, 3)) == (None, None, 3)


# ----------------------------------------------------------- Keras-made files in fit


@pytest.mark.parametrize("stem, seed", [("flowers_augmented", 0), ("augmentation_stack", 3)])
def test_keras_made_augmented_model_trains_one_step_as_keras(cli, tmp_path, stem, seed):
    """tests/keras_files/<stem>.keras: imported, then one full-batch SGD step with
    `--seed SEED` equals Keras's train_on_batch when Keras draws what seqcli draws (its
    augmentation parameters and Dropout mask, recorded by make_keras_files.py); another seed
    gives other draws and another step."""
    result = cli("import-keras", FILES / f"{stem}.keras", "-o", tmp_path / "m.yaml")
    assert result.code == 0, result
    keras_step = np.load(FILES / f"{stem}.sgd.npz")
    np.save(tmp_path / "y.npy", keras_step["y"])

    def step(run_seed):
        out = tmp_path / f"out{run_seed}.npz"
        result = cli("fit", tmp_path / "m.yaml", FILES / f"{stem}.input.npy",
                     tmp_path / "y.npy", "--loss", "mse", "--optimizer", "sgd",
                     "--learning-rate", "0.1", "--epochs", "1", "--batch-size", "3",
                     "--no-shuffle", "--seed", run_seed, "--history", tmp_path / "h.json",
                     "-o", out, "-q")
        assert result.code == 0, result
        return read_weights(out), json.loads((tmp_path / "h.json").read_text())["loss"][0]

    def error(got):
        return max(float(np.abs(got[key.removeprefix("after/")] - keras_step[key]).max()) /
                   max(float(np.abs(keras_step[key]).max()), 1e-3)
                   for key in keras_step.files if key.startswith("after/"))

    got, loss = step(seed)
    assert error(got) <= 2e-4
    assert math.isclose(loss, float(keras_step["loss"]), rel_tol=1e-4)
    other, _ = step(seed + 1)
    assert error(other) > 1e-3
