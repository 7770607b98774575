"""The shape layers: Cropping1D/2D/3D, ZeroPadding1D/3D, UpSampling1D/3D, Resizing and
CenterCrop (ZeroPadding2D and UpSampling2D are in `reshaping`).

Resizing and CenterCrop are separable linear maps: each output image is A · x · Bᵀ per
channel, with constant (out, in) matrices along the height (A) and the width (B) that depend
only on the sizes and the options (`resize_weights`: jax.image.resize's weights, which Keras 3
uses on JAX). A crop to the aspect ratio keeps only the crop's columns of those
matrices; a pad to it drops the pad's columns and adds their constant `fill_value` part."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import BeforeValidator, ValidationInfo, field_validator, model_validator

from seqcli.layers.base import (
    MAX_SIZE,
    Count,
    DataFormat,
    Example,
    IntTuple,
    Layer,
    require_rank,
)
from seqcli.shapes import Shape, ShapeError, format_shape

_ORDINALS = ("1st", "2nd", "3rd")
_AXES = {1: "(steps, channels)", 2: "(height, width, channels)",
         3: "(depth, height, width, channels)"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(value, name: str) -> tuple[int, int]:
    """An int n → (n, n); [a, b] → (a, b); each between 0 and MAX_SIZE (Keras's
    `standardize_tuple(..., 2, allow_zero=True)`)."""
    pair = (value, value) if _is_int(value) else value
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(map(_is_int, pair)):
        raise ValueError(f"the `{name}` argument must be an int or a list of 2 ints. "
                         f"Received: {name}={value!r}")
    if any(v < 0 or v > MAX_SIZE for v in pair):
        raise ValueError(f"the `{name}` argument must hold values between 0 and {MAX_SIZE}. "
                         f"Received: {name}={value!r}")
    return tuple(pair)


def _pairs(rank: int):
    """The type of a per-axis (before, after) amount (`cropping`, `padding` of the 2D and 3D
    layers): an int for every side, a list of `rank` ints (each for both sides of its axis),
    or a list of `rank` [before, after] pairs; the forms may mix, as in Keras."""

    def check(value, info: ValidationInfo):
        name = info.field_name
        if _is_int(value):
            if value < 0:
                raise ValueError(f"`{name}` cannot be negative. Received: {name}={value}")
            return tuple(_pair(value, name) for _ in range(rank))
        if not isinstance(value, (list, tuple)) or len(value) != rank:
            raise ValueError(f"`{name}` should be an int, a list of {rank} ints or a list of "
                             f"{rank} [before, after] pairs. Received: {name}={value!r}")
        return tuple(_pair(v, f"{_ORDINALS[i]} entry of {name}") for i, v in enumerate(value))

    return Annotated[tuple, BeforeValidator(check)]


def _one_pair(value, info: ValidationInfo):
    return _pair(value, info.field_name)


Pair = Annotated[tuple, BeforeValidator(_one_pair)]


# ------------------------------------------------------------------------------- cropping


class _Cropping(Layer):
    """Removes `cropping` cells from the start and end of each spatial axis."""

    def _amounts(self) -> tuple[tuple[int, int], ...]:
        return (self.cropping,) if self.type == "Cropping1D" else self.cropping

    def output_shape(self, input_shape: Shape) -> Shape:
        amounts = self._amounts()
        rank = len(amounts)
        require_rank(self, input_shape, rank + 1, f"inputs of shape {_AXES[rank]}")
        spatial = []
        for size, (before, after) in zip(input_shape[:rank], amounts):
            if size is not None and before + after >= size:
                raise ShapeError(
                    f"values in `cropping` must be smaller than the input's spatial "
                    f"dimensions. Received: input_shape={format_shape(input_shape)}, "
                    f"cropping={self.keras_options()['cropping']}")
            spatial.append(None if size is None else size - before - after)
        return (*spatial, input_shape[-1])

    def forward(self, weights, x):
        import numpy as np

        index = tuple(slice(before, size - after)
                      for size, (before, after) in zip(x.shape[1:], self._amounts()))
        return np.ascontiguousarray(x[(slice(None), *index)])

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        if not input_grad:
            return None, {}
        return np.pad(dy, ((0, 0), *self._amounts(), (0, 0))), {}


class Cropping1D(_Cropping):
    """Crops steps: `cropping` = [start, end] (an int for both) from (steps, channels)."""

    type: Literal["Cropping1D"] = "Cropping1D"
    cropping: Pair = (1, 1)
    """Steps removed at the start and at the end."""

    examples = (Example({}, (5, 2)), Example({"cropping": [0, 2]}, (5, 2)))


class Cropping2D(_Cropping):
    """Crops rows and columns: `cropping` = [[top, bottom], [left, right]]."""

    type: Literal["Cropping2D"] = "Cropping2D"
    cropping: _pairs(2) = ((0, 0), (0, 0))
    """An int, [rows, columns] or [[top, bottom], [left, right]]."""
    data_format: DataFormat = "channels_last"

    examples = (Example({"cropping": [[1, 0], [2, 1]]}, (4, 5, 2)),)


class Cropping3D(_Cropping):
    """Crops the three spatial axes: `cropping` = [[d1, d2], [h1, h2], [w1, w2]]."""

    type: Literal["Cropping3D"] = "Cropping3D"
    cropping: _pairs(3) = ((1, 1), (1, 1), (1, 1))
    """An int, three ints or three [before, after] pairs."""
    data_format: DataFormat = "channels_last"

    examples = (Example({}, (3, 4, 5, 2)),)


# ------------------------------------------------------------------------------- zero padding


class ZeroPadding1D(Layer):
    """Adds zero steps at the start and end: (steps, channels) → (steps + a + b, channels)."""

    type: Literal["ZeroPadding1D"] = "ZeroPadding1D"
    padding: Pair = (1, 1)
    """Zero steps added at the start and at the end (an int for both)."""
    data_format: DataFormat = "channels_last"

    examples = (Example({}, (4, 2)), Example({"padding": [0, 2]}, (4, 2)))

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 2, "inputs of shape (steps, channels)")
        steps, channels = input_shape
        return (None if steps is None else steps + sum(self.padding), channels)

    def forward(self, weights, x):
        from seqcli.kernels.reshaping import zero_pad2d_forward

        y = zero_pad2d_forward(x[:, None], ((0, 0), self.padding))  # as one row of an image
        return y.reshape(y.shape[0], y.shape[2], y.shape[3])

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_reshaping import zero_pad2d_backward

        if not input_grad:
            return None, {}
        dx = zero_pad2d_backward(((0, 0), self.padding), dy[:, None])
        return dx.reshape(dx.shape[0], dx.shape[2], dx.shape[3]), {}


class ZeroPadding3D(Layer):
    """Adds zeros around each volume: padding [[d1, d2], [h1, h2], [w1, w2]]."""

    type: Literal["ZeroPadding3D"] = "ZeroPadding3D"
    padding: _pairs(3) = ((1, 1), (1, 1), (1, 1))
    """An int, three ints or three [before, after] pairs."""
    data_format: DataFormat = "channels_last"

    examples = (Example({"padding": [[0, 1], 1, [2, 0]]}, (2, 3, 2, 2)),)

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 4, "inputs of shape (depth, height, width, channels)")
        return (*(None if size is None else size + before + after
                  for size, (before, after) in zip(input_shape[:3], self.padding)),
                input_shape[3])

    def forward(self, weights, x):
        import numpy as np

        return np.pad(x, ((0, 0), *self.padding, (0, 0)))

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        if not input_grad:
            return None, {}
        index = tuple(slice(before, size - after)
                      for size, (before, after) in zip(dy.shape[1:], self.padding))
        return np.ascontiguousarray(dy[(slice(None), *index)]), {}


# ------------------------------------------------------------------------------- upsampling


class UpSampling1D(Layer):
    """Repeats each step `size` times: (steps, channels) → (steps · size, channels)."""

    type: Literal["UpSampling1D"] = "UpSampling1D"
    size: Count = 2
    """How many times each step is repeated."""

    examples = (Example({}, (3, 2)), Example({"size": 3}, (2, 4)))

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 2, "inputs of shape (steps, channels)")
        steps, channels = input_shape
        return (None if steps is None else steps * self.size, channels)

    def forward(self, weights, x):
        from seqcli.kernels.reshaping import upsample2d_nearest_forward

        y = upsample2d_nearest_forward(x[:, None], (1, self.size))  # as one row of an image
        return y.reshape(y.shape[0], y.shape[2], y.shape[3])

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_reshaping import upsample2d_nearest_backward

        if not input_grad:
            return None, {}
        dx = upsample2d_nearest_backward((1, self.size), dy[:, None])
        return dx.reshape(dx.shape[0], dx.shape[2], dx.shape[3]), {}


class UpSampling3D(Layer):
    """Repeats each cell `size[0]`, `size[1]`, `size[2]` times along depth, height, width."""

    type: Literal["UpSampling3D"] = "UpSampling3D"
    size: IntTuple(3) = (2, 2, 2)
    data_format: DataFormat = "channels_last"

    examples = (Example({"size": [1, 2, 3]}, (2, 2, 3, 2)),)

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 4, "inputs of shape (depth, height, width, channels)")
        return (*(None if size is None else size * factor
                  for size, factor in zip(input_shape[:3], self.size)), input_shape[3])

    def forward(self, weights, x):
        import numpy as np

        for axis, factor in enumerate(self.size, start=1):
            x = np.repeat(x, factor, axis=axis)
        return np.ascontiguousarray(x)

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        if not input_grad:
            return None, {}
        n, depth, height, width, channels = dy.shape
        (sd, sh, sw) = self.size
        blocks = dy.reshape(n, depth // sd, sd, height // sh, sh, width // sw, sw, channels)
        return np.ascontiguousarray(blocks.sum(axis=(2, 4, 6), dtype=np.float32)), {}


# ------------------------------------------------------------------------------- resizing

RESIZING_METHODS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")
"""The interpolations of Keras 3's `ops.image.resize` on JAX."""

_RADIUS = {"bilinear": 1, "bicubic": 2, "lanczos3": 3, "lanczos5": 5}


def _filter(method: str, x):
    """The method's filter at distances `x` >= 0 (float64), as jax's `_fill_*_kernel`."""
    import numpy as np

    if method == "bilinear":  # triangle
        return np.maximum(0.0, 1.0 - np.abs(x))
    if method == "bicubic":  # Keys, a = -0.5
        near = ((1.5 * x - 2.5) * x) * x + 1.0
        far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
        return np.where(x >= 2.0, 0.0, np.where(x >= 1.0, far, near))
    radius = float(_RADIUS[method])  # lanczos3, lanczos5
    y = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius)
    out = np.where(x > 1e-3, y / np.where(x != 0, np.pi**2 * x**2, 1.0), 1.0)
    return np.where(x > radius, 0.0, out)


def resize_weights(in_size: int, out_size: int, method: str, antialias: bool):
    """The (out, in) float32 matrix A of jax.image.resize along one axis: out = A · in.

    jax's `compute_weight_mat`: half-pixel centres, the sample position of output i is
    (i + 0.5) · in/out - 0.5 (float32), the filter at its distance to each input cell (widened
    by in/out when antialiasing a downscale), each row normalised to sum to 1; an axis whose
    size does not change is left as it is. `nearest` takes input floor((i + 0.5) · in / out)
    in float32, the division as XLA compiles it (a product by in · (1 / out))."""
    import numpy as np

    if method not in RESIZING_METHODS:
        raise ValueError(f"unknown resize method {method!r} (expected one of {RESIZING_METHODS})")
    m, n = int(in_size), int(out_size)
    if m <= 0 or n <= 0:
        raise ValueError(f"sizes must be positive, got in_size={m}, out_size={n}")
    if m == n:
        return np.eye(n, dtype=np.float32)
    if method == "nearest":
        step = np.float32(m) * (np.float32(1.0) / np.float32(n))
        index = np.floor((np.arange(n, dtype=np.float32) + np.float32(0.5)) * step)
        weights = np.zeros((n, m), dtype=np.float32)
        weights[np.arange(n), np.minimum(index.astype(np.int64), m - 1)] = 1.0
        return weights
    inv_scale = 1.0 / (n / m)  # as jax: from the Python float scale out / in
    kernel_scale = np.float32(max(inv_scale, 1.0) if antialias else 1.0)
    inv_scale = np.float32(inv_scale)
    sample = (np.arange(n, dtype=np.float32) + np.float32(0.5)) * inv_scale - np.float32(0.5)
    distance = np.abs(sample[:, None] - np.arange(m, dtype=np.float32)[None, :]) / kernel_scale
    weights = _filter(method, distance.astype(np.float64))
    total = weights.sum(axis=1, keepdims=True)
    tiny = 1000.0 * float(np.finfo(np.float32).eps)  # jax: all but zero weights → zeros
    weights = np.where(np.abs(total) > tiny, weights / np.where(total != 0, total, 1.0), 0.0)
    weights[~((sample >= -0.5) & (sample <= m - 0.5))] = 0.0
    return weights.astype(np.float32)


def aspect_crop(height: int, width: int, target_height: int, target_width: int):
    """Keras's largest centred window of the target's aspect ratio: (top, left, rows, cols)."""
    rows = max(min(height, int(float(width * target_height) / target_width)), 1)
    cols = max(min(width, int(float(height * target_width) / target_height)), 1)
    return int(float(height - rows) / 2), int(float(width - cols) / 2), rows, cols


def aspect_pad(height: int, width: int, target_height: int, target_width: int):
    """Keras's (JAX backend) padding to the target's aspect ratio: (rows, cols) added on each
    side; only the rows when there are any, and each side gets the floor of half."""
    rows = max(height, int(float(width * target_height) / target_width))
    cols = max(width, int(float(height * target_width) / target_height))
    top, left = int(float(rows - height) / 2), int(float(cols - width) / 2)
    return (top, 0) if top > 0 else (0, left)


@functools.lru_cache(maxsize=256)
def resize_matrices(height: int, width: int, target_height: int, target_width: int,
                    method: str, antialias: bool, fit: str, fill_value: float):
    """(rows (target_height, height), cols (target_width, width), constant (target_height,
    target_width) or None): a resize of an (height, width) image is rows · x · colsᵀ + constant
    per channel. `fit` is "stretch", "crop" (crop_to_aspect_ratio), "pad" (pad_to_aspect_ratio)
    or "center" (the central window, no resize)."""
    import numpy as np

    def axis(size, target, start, length):  # resize `length` cells from `start` to `target`
        inner = resize_weights(length, target, method, antialias)
        full = np.zeros((target, size), dtype=np.float32)
        full[:, start:start + length] = inner
        return full

    constant = None
    if fit == "center":  # the central window, no resize
        rows_m = axis(height, target_height, (height - target_height) // 2, target_height)
        cols_m = axis(width, target_width, (width - target_width) // 2, target_width)
    elif fit == "crop":
        top, left, rows, cols = aspect_crop(height, width, target_height, target_width)
        rows_m = axis(height, target_height, top, rows)
        cols_m = axis(width, target_width, left, cols)
    elif fit == "pad":
        top, left = aspect_pad(height, width, target_height, target_width)
        rows_full = resize_weights(height + 2 * top, target_height, method, antialias)
        cols_full = resize_weights(width + 2 * left, target_width, method, antialias)
        rows_m = np.ascontiguousarray(rows_full[:, top:top + height])
        cols_m = np.ascontiguousarray(cols_full[:, left:left + width])
        if fill_value != 0 and (top or left):  # the padded cells' share, times fill_value
            both = np.outer(rows_full.sum(1, dtype=np.float64), cols_full.sum(1, dtype=np.float64))
            inner = np.outer(rows_m.sum(1, dtype=np.float64), cols_m.sum(1, dtype=np.float64))
            constant = (np.float32(fill_value) * (both - inner)).astype(np.float32)
    else:
        rows_m = resize_weights(height, target_height, method, antialias)
        cols_m = resize_weights(width, target_width, method, antialias)
    for array in (rows_m, cols_m, constant):
        if array is not None:
            array.setflags(write=False)
    return rows_m, cols_m, constant


class _Resize(Layer):
    """A separable resize to (height, width): `resize_plan` gives its matrices."""

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 3, "inputs of shape (height, width, channels)")
        return (self.height, self.width, input_shape[2])

    def resize_plan(self, input_shape: Shape):
        """(rows, cols, constant or None) for a per-sample input shape (height, width, _)."""
        raise NotImplementedError

    def forward(self, weights, x):
        from seqcli.kernels.resize import separable_resize

        rows, cols, constant = self.resize_plan(x.shape[1:])
        y = separable_resize(x, rows, cols)
        if constant is not None:
            y += constant[None, :, :, None]
        return y

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.resize import separable_resize

        if not input_grad:
            return None, {}
        rows, cols, _ = self.resize_plan(cache.shape[1:])
        return separable_resize(dy, rows.T, cols.T), {}  # the transposed linear map


def check_interpolation(value: str) -> str:
    """`value` if Keras's `ops.image.resize` on JAX takes it; a ValueError otherwise."""
    if value == "area":
        raise ValueError("interpolation 'area' exists only on Keras's TensorFlow backend "
                         "(Keras on JAX refuses it), so seqcli has no numbers to match. "
                         f"Expected one of {RESIZING_METHODS}. Received: interpolation='area'")
    if value not in RESIZING_METHODS:
        raise ValueError(f"invalid interpolation. Expected one of {RESIZING_METHODS}. "
                         f"Received: interpolation={value!r}")
    return value


class Resizing(_Resize):
    """Resizes images to (height, width) as Keras 3 on JAX (jax.image.resize)."""

    type: Literal["Resizing"] = "Resizing"
    height: Count
    """Output height."""
    width: Count
    """Output width."""
    interpolation: str = "bilinear"
    """bilinear, nearest, bicubic, lanczos3 or lanczos5."""
    crop_to_aspect_ratio: bool = False
    """Resize the largest centred window of the target's aspect ratio (no distortion)."""
    pad_to_aspect_ratio: bool = False
    """Pad the short side with `fill_value` to the target's aspect ratio first."""
    fill_mode: str = "constant"
    """Only 'constant'."""
    fill_value: float = 0.0
    """The value of the padding (pad_to_aspect_ratio)."""
    antialias: bool = False
    """Widen the filter when downscaling (no effect on nearest, nor when upscaling)."""
    data_format: DataFormat = "channels_last"

    examples = (
        Example({"height": 3, "width": 5}, (5, 4, 2)),
        Example({"height": 4, "width": 3, "interpolation": "lanczos3", "antialias": True,
                 "pad_to_aspect_ratio": True, "fill_value": 1.5}, (6, 2, 1)),
    )

    @field_validator("interpolation")
    @classmethod
    def _known_interpolation(cls, value):
        return check_interpolation(value)

    @field_validator("fill_mode")
    @classmethod
    def _constant_only(cls, value):
        if value != "constant":
            raise ValueError("only fill_mode 'constant' is supported (as on Keras's JAX "
                             f"backend). Received: fill_mode={value!r}")
        return value

    @model_validator(mode="after")
    def _crop_or_pad(self):
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError("only one of `pad_to_aspect_ratio` and `crop_to_aspect_ratio` can "
                             "be true. Received: crop_to_aspect_ratio=True, "
                             "pad_to_aspect_ratio=True")
        return self

    def resize_plan(self, input_shape: Shape):
        fit = ("crop" if self.crop_to_aspect_ratio else
               "pad" if self.pad_to_aspect_ratio else "stretch")
        return resize_matrices(int(input_shape[0]), int(input_shape[1]), self.height,
                               self.width, self.interpolation, self.antialias, fit,
                               float(self.fill_value))


class CenterCrop(_Resize):
    """The central (height, width) window; an image smaller than that on either axis is first
    cropped to the target's aspect ratio and resized (bilinear), as Keras."""

    type: Literal["CenterCrop"] = "CenterCrop"
    height: Count
    """Output height."""
    width: Count
    """Output width."""
    data_format: DataFormat = "channels_last"

    examples = (Example({"height": 2, "width": 3}, (5, 4, 2)),
                Example({"height": 4, "width": 3}, (3, 5, 1)))

    def resize_plan(self, input_shape: Shape):
        height, width = int(input_shape[0]), int(input_shape[1])
        if height >= self.height and width >= self.width:  # a plain crop
            return resize_matrices(height, width, self.height, self.width, "nearest", False,
                                   "center", 0.0)
        return resize_matrices(height, width, self.height, self.width, "bilinear", False,
                               "crop", 0.0)


class RandomCrop(CenterCrop):
    """In `fit`, a random (height, width) window of the batch (one place for every image of
    it, as Keras draws it); at inference, the central window as CenterCrop, as Keras documents
    it (Keras 3 returns the uncropped image at inference, which does not fit the
    (height, width) it declares and builds the next layers for)."""

    type: Literal["RandomCrop"] = "RandomCrop"
    seed: int | None = None
    """Keras's seed; `fit` draws from its own `--seed` instead."""

    examples = (Example({"height": 2, "width": 3}, (5, 4, 2)),
                Example({"height": 4, "width": 3}, (3, 5, 1)))

    def keras_difference(self, input_shape: Shape) -> str | None:
        if tuple(input_shape[:2]) == (self.height, self.width):
            return None
        return (f"at inference seqcli crops the centre {self.height}x{self.width} of the "
                f"{input_shape[0]}x{input_shape[1]} images, where Keras 3 returns them "
                "uncropped (not the shape it declares), so predictions differ from Keras's "
                "wherever the next layers accept either size")

    def draw(self, rng, shape: tuple) -> tuple[int, int] | None:
        """The window's top-left corner, Keras's uniform [0, n - size + 1) cast to int; None
        when the image is not larger than the window on both axes (then Keras resizes)."""
        import numpy as np

        height, width = shape[1], shape[2]
        if not (height > self.height and width > self.width):
            return None
        top = int(np.float32(rng.random(dtype=np.float32)) * np.float32(height - self.height + 1))
        left = int(np.float32(rng.random(dtype=np.float32)) * np.float32(width - self.width + 1))
        return min(top, height - self.height), min(left, width - self.width)

    def forward_train(self, weights, x, rng):
        corner = self.draw(rng, x.shape)
        if corner is None:
            return self.forward(weights, x), (x, None)
        top, left = corner
        return x[:, top:top + self.height, left:left + self.width].copy(), (x, corner)

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        x, corner = cache
        if corner is None:
            return super().backward(weights, x, dy, input_grad)
        if not input_grad:
            return None, {}
        top, left = corner
        dx = np.zeros_like(x)
        dx[:, top:top + self.height, left:left + self.width] = dy
        return dx, {}
