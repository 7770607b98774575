"""Random image augmentation: RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness. Each is the identity at inference, as Keras; in `fit` each
image of a batch gets its own random parameters, drawn from the `rng` that `fit` seeds with
`--seed` (`draw`), and is transformed as Keras transforms it for those parameters
(`transform`); the backward pass is the exact adjoint of the transform applied.

The geometric layers build Keras's affine matrix per image (a0, a1, a2, b0, b1, b2: output
pixel (row i, col j) reads input (b0·j + b1·i + b2, a0·j + a1·i + a2)) and resample with the
affine kernel; flips, contrast and brightness are numpy."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, ValidationInfo

from seqcli.layers.base import DataFormat, Example, Layer, require_rank
from seqcli.shapes import Shape

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _number_or_pair(value, name: str, what: str):
    """`value` as Keras takes a factor: a number, or a list of two numbers."""
    if _is_number(value):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value)):
        return list(value)
    raise ValueError(f"The `{name}` argument should be a number (or a list of two numbers) "
                     f"{what}. Received: {name}={value!r}")


def _base_factor(bounds: tuple[float, float]):
    """Keras's `BaseImagePreprocessingLayer._set_factor`: a number within `bounds`, or a list
    of two whose first is at most the upper bound and second at least the lower one."""

    def check(value, info: ValidationInfo):
        low, high = bounds
        what = f"in the range [{low}, {high}]"
        value = _number_or_pair(value, info.field_name, what)
        outside = (value[0] > high or value[1] < low) if isinstance(value, list) else \
            not low <= value <= high
        if outside:
            raise ValueError(f"The `{info.field_name}` argument should be a number (or a list "
                             f"of two numbers) {what}. Received: {info.field_name}={value!r}")
        return value

    return check


def base_factor_range(factor, bounds: tuple[float, float]) -> tuple[float, float]:
    """(lower, upper) of a checked factor, as Keras's `_set_factor` stores it: a number f
    gives (max(-|f|, lower bound), |f|), a pair is sorted."""
    if isinstance(factor, list):
        low, high = sorted(factor)
        return float(low), float(high)
    return float(max(-abs(factor), bounds[0])), float(abs(factor))


def _each_factor(lower_open: bool):
    """RandomZoom's and RandomTranslation's factors: a number or a pair, each value in
    (-1, 1] (zoom) or [-1, 1] (translation)."""

    def check(value, info: ValidationInfo):
        if value is None and info.field_name == "width_factor" and lower_open:
            return None  # RandomZoom: the height's zoom for the width too
        what = "in the range (-1.0, 1.0]" if lower_open else "in the range [-1.0, 1.0]"
        value = _number_or_pair(value, info.field_name, what)
        for number in value if isinstance(value, list) else [value]:
            if number > 1 or (number <= -1 if lower_open else number < -1):
                raise ValueError(f"The `{info.field_name}` argument should be a number (or a "
                                 f"list of two numbers) {what}. Received: "
                                 f"{info.field_name}={value!r}")
        return value

    return check


def each_factor_range(factor) -> tuple[float, float]:
    """(lower, upper) of a zoom or translation factor: ±|f| for a number, a pair sorted."""
    if isinstance(factor, list):
        low, high = sorted(factor)
        return float(low), float(high)
    return -abs(float(factor)), abs(float(factor))


def _choice(choices: tuple[str, ...]):
    def check(value, info: ValidationInfo):
        if value not in choices:
            raise ValueError(f"Unknown `{info.field_name}` {value!r}. Expected one of "
                             f"{', '.join(choices)}. Received: {info.field_name}={value!r}")
        return value

    return check


def _value_range(value, info: ValidationInfo):
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(map(_is_number, value))):
        raise ValueError("The `value_range` argument should be a list of two numbers. "
                         f"Received: value_range={value!r}")
    return tuple(value)


FillMode = Annotated[str, BeforeValidator(_choice(FILL_MODES))]
Interpolation = Annotated[str, BeforeValidator(_choice(INTERPOLATIONS))]
ValueRange = Annotated[tuple, BeforeValidator(_value_range)]


def _clip_with_grad(u, low, high):
    """(jnp.clip(u, low, high) = min(max(u, low), high), its derivative as jax.grad gives it:
    1 inside, 0 outside, 1/2 at a tie with a bound)."""
    import numpy as np

    low, high = np.float32(low), np.float32(high)
    above = np.maximum(u, low)
    y = np.minimum(above, high)
    half = np.float32(0.5)
    grad = np.where(u > low, np.float32(1), np.where(u == low, half, np.float32(0))) * \
        np.where(above < high, np.float32(1), np.where(above == high, half, np.float32(0)))
    return y.astype(np.float32), grad.astype(np.float32)


class _ImageAugmentation(Layer):
    """What the augmentation layers share: (height, width, channels) images, the identity at
    inference, a random draw per image in training, no weights."""

    seed: int | None = None
    """Keras's seed; `fit` draws from its own `--seed` instead."""
    data_format: DataFormat = "channels_last"

    keras_build_config: ClassVar[bool] = False

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 3, "images of shape (height, width, channels)")
        return input_shape

    def forward(self, weights, x):
        return x

    def draw(self, rng, shape: tuple) -> dict:
        """The random parameters of each image of a batch of `shape`, as numpy arrays."""
        raise NotImplementedError

    def transform(self, x, parameters: dict):
        """(x transformed with the drawn `parameters`, what `backward` needs)."""
        raise NotImplementedError

    def forward_train(self, weights, x, rng):
        return self.transform(x, self.draw(rng, x.shape))


class RandomFlip(_ImageAugmentation):
    """Flips each image left-right and/or top-bottom with probability 1/2 while training."""

    type: Literal["RandomFlip"] = "RandomFlip"
    mode: Annotated[str, BeforeValidator(_choice(FLIP_MODES))] = "horizontal_and_vertical"
    """horizontal (left-right), vertical (top-bottom), or horizontal_and_vertical: both flips
    together or neither (Keras draws one decision per image for both)."""

    examples = (Example({"mode": "horizontal"}, (3, 4, 2), batch=4),
                Example({}, (2, 3, 1), batch=4))

    def draw(self, rng, shape):
        """Keras: flip where uniform(0, 1) <= 0.5, one draw per image."""
        import numpy as np

        return {"flips": rng.random(shape[0], dtype=np.float32) <= np.float32(0.5)}

    def _flip(self, x, flips):
        import numpy as np

        y = x.copy()
        axes = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}
        y[flips] = np.flip(x[flips], axis=axes[self.mode])
        return y

    def transform(self, x, parameters):
        flips = parameters["flips"]
        return self._flip(x, flips), flips

    def backward(self, weights, cache, dy, input_grad=True):
        """A flip is its own inverse and adjoint: dx = dy flipped back."""
        return (self._flip(dy, cache) if input_grad else None), {}


class _AffineAugmentation(_ImageAugmentation):
    """Rotation, zoom and translation: an affine matrix per image, then resampling with Keras's
    interpolation and fill mode."""

    fill_mode: FillMode = "reflect"
    interpolation: Interpolation = "bilinear"
    fill_value: float = 0.0

    def matrices(self, parameters: dict, shape: tuple):
        """Keras's (N, 6) float32 affine matrices (a0, a1, a2, b0, b1, b2) for the draw."""
        raise NotImplementedError

    def _codes(self) -> tuple[int, int]:
        from seqcli.kernels.augmentation import FILL_MODES as CODES
        from seqcli.kernels.augmentation import INTERPOLATIONS as ORDERS

        return ORDERS[self.interpolation], CODES[self.fill_mode]

    def transform(self, x, parameters):
        from seqcli.kernels.augmentation import affine_transform_forward

        transforms = self.matrices(parameters, x.shape)
        y = affine_transform_forward(x, transforms, *self._codes(), self.fill_value)
        return y, transforms

    def backward(self, weights, cache, dy, input_grad=True):
        """The transpose of the resampling: each output's gradient back to the pixels it read,
        with the same weights."""
        from seqcli.kernels.grad_augmentation import affine_transform_backward

        if not input_grad:
            return None, {}
        return affine_transform_backward(dy, cache, *self._codes()), {}


def _uniform(rng, low: float, high: float, size: int):
    """float32 draws in [low, high), as Keras's random.uniform (float32 bounds)."""
    import numpy as np

    low32, high32 = np.float32(low), np.float32(high)
    return (low32 + (high32 - low32) * rng.random(size, dtype=np.float32)).astype(np.float32)


class RandomRotation(_AffineAugmentation):
    """Rotates each image about its centre by a random angle while training: `factor` is a
    fraction of a full turn (a number f: within ±f; a pair: between them); positive is
    counter-clockwise."""

    type: Literal["RandomRotation"] = "RandomRotation"
    factor: Annotated[Any, BeforeValidator(_base_factor((-1, 1)))]

    examples = (Example({"factor": 0.2}, (5, 4, 2), batch=3),
                Example({"factor": [-0.5, 0.1], "fill_mode": "constant",
                         "interpolation": "nearest", "fill_value": 1.0}, (4, 4, 1), batch=3))

    def draw(self, rng, shape):
        """Keras: angle ~ uniform(lower·360, upper·360) degrees, one per image."""
        lower, upper = base_factor_range(self.factor, (-1, 1))
        return {"angle": _uniform(rng, lower * 360.0, upper * 360.0, shape[0])}

    def matrices(self, parameters, shape):
        """Rotation by θ about ((W-1)/2, (H-1)/2): a0 = b1 = cos θ, a1 = -sin θ, b0 = sin θ,
        a2 = cx - cx·cos θ + cy·sin θ, b2 = cy - cx·sin θ - cy·cos θ (float32, as Keras)."""
        import numpy as np

        f32 = np.float32
        angle = parameters["angle"].astype(f32) * f32(math.pi / 180.0)
        cx, cy = f32(0.5) * f32(shape[2] - 1), f32(0.5) * f32(shape[1] - 1)
        cos, sin = np.cos(angle), np.sin(angle)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = (cx - cx * a0) - cy * a1
        b2 = (cy - cx * b0) - cy * b1
        return np.stack([a0, a1, a2, b0, b1, b2], axis=1).astype(f32)


class RandomZoom(_AffineAugmentation):
    """Zooms each image about its centre by a random factor while training: a positive
    `height_factor` zooms out (up to 1 + f times more of the image), a negative one zooms in;
    `width_factor` null keeps the aspect ratio."""

    type: Literal["RandomZoom"] = "RandomZoom"
    height_factor: Annotated[Any, BeforeValidator(_each_factor(True))]
    width_factor: Annotated[Any, BeforeValidator(_each_factor(True))] = None

    examples = (Example({"height_factor": 0.3}, (4, 5, 2), batch=3),
                Example({"height_factor": [-0.5, 0.2], "width_factor": 0.4,
                         "fill_mode": "wrap"}, (5, 3, 1), batch=3))

    def draw(self, rng, shape):
        """Keras: zoom ~ uniform(1 + lower, 1 + upper) per image, the width's drawn after the
        height's (or the height's again when width_factor is null)."""
        low, high = each_factor_range(self.height_factor)
        height = _uniform(rng, 1.0 + low, 1.0 + high, shape[0])
        if self.width_factor is None:
            return {"height_zoom": height, "width_zoom": height}
        low, high = each_factor_range(self.width_factor)
        return {"height_zoom": height, "width_zoom": _uniform(rng, 1.0 + low, 1.0 + high,
                                                              shape[0])}

    def matrices(self, parameters, shape):
        """Scaling about the centre: a0 = zw, b1 = zh, a2 = (W-1)/2·(1 - zw),
        b2 = (H-1)/2·(1 - zh)."""
        import numpy as np

        f32 = np.float32
        zw = parameters["width_zoom"].astype(f32)
        zh = parameters["height_zoom"].astype(f32)
        zeros = np.zeros_like(zw)
        x_offset = (f32(shape[2]) - f32(1)) / f32(2) * (f32(1) - zw)
        y_offset = (f32(shape[1]) - f32(1)) / f32(2) * (f32(1) - zh)
        return np.stack([zw, zeros, x_offset, zeros, zh, y_offset], axis=1).astype(f32)


class RandomTranslation(_AffineAugmentation):
    """Shifts each image by a random fraction of its height and width while training
    (positive: down and right)."""

    type: Literal["RandomTranslation"] = "RandomTranslation"
    height_factor: Annotated[Any, BeforeValidator(_each_factor(False))]
    width_factor: Annotated[Any, BeforeValidator(_each_factor(False))]

    examples = (Example({"height_factor": 0.3, "width_factor": [-0.2, 0.5]}, (4, 5, 2),
                        batch=3),
                Example({"height_factor": 0.5, "width_factor": 0.5, "fill_mode": "nearest",
                         "interpolation": "nearest"}, (3, 3, 1), batch=3))

    def draw(self, rng, shape):
        """Keras: shifts ~ uniform(lower, upper) times the height (then the width), pixels."""
        import numpy as np

        low, high = each_factor_range(self.height_factor)
        height = _uniform(rng, low, high, shape[0]) * np.float32(shape[1])
        low, high = each_factor_range(self.width_factor)
        width = _uniform(rng, low, high, shape[0]) * np.float32(shape[2])
        return {"height_translate": height, "width_translate": width}

    def matrices(self, parameters, shape):
        """A shift: a0 = b1 = 1, a2 = -width shift, b2 = -height shift."""
        import numpy as np

        tx = parameters["width_translate"].astype(np.float32)
        ty = parameters["height_translate"].astype(np.float32)
        ones, zeros = np.ones_like(tx), np.zeros_like(tx)
        return np.stack([ones, zeros, -tx, zeros, ones, -ty], axis=1).astype(np.float32)


class RandomContrast(_ImageAugmentation):
    """Scales each image's deviation from its per-channel mean by a random factor while
    training, then clips to `value_range`. The factor is drawn from
    [1 - lower, 1 + upper] of Keras's stored factor: a number f is stored as (0, f), so
    contrast only grows; a pair is taken sorted."""

    type: Literal["RandomContrast"] = "RandomContrast"
    factor: Annotated[Any, BeforeValidator(_base_factor((0, 1)))]
    value_range: ValueRange = (0, 255)

    examples = (Example({"factor": 0.5}, (3, 2, 2), batch=3),
                Example({"factor": [0.2, 0.9], "value_range": [-1, 1]}, (2, 3, 1), batch=2))

    def draw(self, rng, shape):
        """Keras: contrast factor ~ uniform(1 - lower, 1 + upper), one per image."""
        lower, upper = base_factor_range(self.factor, (0, 1))
        return {"contrast_factor": _uniform(rng, 1.0 - lower, 1.0 + upper, shape[0])}

    def transform(self, x, parameters):
        """y = clip((x - mean) · factor + mean, value_range), mean over height and width."""
        import numpy as np

        factor = parameters["contrast_factor"].astype(np.float32)[:, None, None, None]
        mean = x.mean(axis=1, keepdims=True, dtype=np.float32).mean(axis=2, keepdims=True,
                                                                       dtype=np.float32)
        u = (x - mean) * factor + mean
        y, grad = _clip_with_grad(u, *self.value_range)
        return y, (factor, grad)

    def backward(self, weights, cache, dy, input_grad=True):
        """g = dy · clip', dx = factor · g + (1 - factor) · mean over height and width of g."""
        import numpy as np

        if not input_grad:
            return None, {}
        factor, grad = cache
        g = dy * grad
        dx = factor * g + (np.float32(1) - factor) * g.mean(axis=(1, 2), keepdims=True)
        return dx.astype(np.float32), {}


class RandomBrightness(_ImageAugmentation):
    """Adds a random amount to each image while training: `factor` (a number f: within ±f; a
    pair: between them) times the width of `value_range`, then clips to it."""

    type: Literal["RandomBrightness"] = "RandomBrightness"
    factor: Annotated[Any, BeforeValidator(_base_factor((-1, 1)))]
    value_range: ValueRange = (0, 255)

    examples = (Example({"factor": 0.3}, (3, 2, 3), batch=3),
                Example({"factor": [-0.5, 0.8], "value_range": [1, -1]}, (2, 2, 1), batch=2))

    def draw(self, rng, shape):
        """Keras: delta ~ uniform(lower, upper) · (high - low of the sorted value_range)."""
        import numpy as np

        lower, upper = base_factor_range(self.factor, (-1, 1))
        low, high = sorted(self.value_range)
        delta = _uniform(rng, lower, upper, shape[0]) * np.float32(high - low)
        return {"rgb_delta": delta.astype(np.float32)}

    def transform(self, x, parameters):
        """y = clip(x + delta, sorted value_range)."""
        import numpy as np

        delta = parameters["rgb_delta"].astype(np.float32)[:, None, None, None]
        y, grad = _clip_with_grad(x + delta, *sorted(self.value_range))
        return y, grad

    def backward(self, weights, cache, dy, input_grad=True):
        """dx = dy where x + delta lies inside value_range (1/2 on its bounds), else 0."""
        import numpy as np

        return ((dy * cache).astype(np.float32) if input_grad else None), {}
