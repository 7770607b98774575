"""TensorFlow's image resizing in numpy: `tf.image.resize` (antialias=False) with its eight
methods, `tf.image.resize_with_pad`, and the crop box of Keras's `smart_resize`.

Each method is separable, as TensorFlow's kernels are: per axis a plan (the source indices and
weights of every output index, worked out with TensorFlow's float32 arithmetic, in its order),
then the image is contracted along one axis and then the other, in the order TensorFlow's kernel
takes them, summing terms in its order. The results agree with TensorFlow's to a few float32
units in the last place (TensorFlow's CPU build fuses no multiply-adds). The references are
`tensorflow/core/kernels/image/`: resize_bilinear_op.cc, resize_nearest_neighbor_op.cc,
resize_bicubic_op.cc, resize_area_op.cc, scale_and_translate_op.cc and sampling_kernels.h, and
`tensorflow/python/ops/image_ops_impl.py`.

Images are (height, width, channels) arrays of uint8 or float32 values; results are float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32
FLOAT_MIN = np.finfo(np.float32).tiny
"""C's FLT_MIN: TensorFlow leaves weights unnormalised when they sum to less than 1000 times
this."""
KEYS_TABLE_SIZE = 1024
"""Entries of resize_bicubic's table of Keys cubic coefficients (one more is kept)."""
PI = F32(3.14159265359)
"""sampling_kernels.h's kPI, a float."""


@dataclass(frozen=True)
class AxisPlan:
    """How one axis is resampled: output index i sums `weights[k, i] * source[indices[k, i]]`
    over k in order (k, i: (terms, output size)); TensorFlow's weights, zero where a term is
    padding."""

    indices: np.ndarray
    weights: np.ndarray


def resize(image: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    """`tf.image.resize(image, (height, width), method)`, antialias off: (h, w, c) ->
    (height, width, c) float32."""
    in_height, in_width = image.shape[:2]
    if method == "bilinear":
        return _bilinear(image, height, width)
    if method == "nearest":
        rows = _nearest_indices(in_height, height)
        columns = _nearest_indices(in_width, width)
        return image[rows][:, columns].astype(F32)
    if method == "bicubic":  # rows, then columns
        return _contract(_contract(image, _keys_cubic_plan(in_height, height), axis=0),
                         _keys_cubic_plan(in_width, width), axis=1)
    if method == "area":  # columns, then rows, then one scale
        rows_plan, row_scale = _area_plan(in_height, height)
        columns_plan, column_scale = _area_plan(in_width, width)
        summed = _contract(_contract(image, columns_plan, axis=1), rows_plan, axis=0)
        return summed * F32(1.0 / np.float64(row_scale * column_scale))
    kernel = SAMPLING_KERNELS[method]  # scale_and_translate: rows, then columns
    return _contract(_contract(image, _span_plan(in_height, height, kernel), axis=0),
                     _span_plan(in_width, width, kernel), axis=1)


def resize_with_pad(image: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    """`tf.image.resize_with_pad`: resized to fit (height, width) without distortion, then
    zero-padded around (its float32 arithmetic); None when the image would shrink to nothing
    on one axis, which TensorFlow refuses."""
    in_height, in_width = (F32(size) for size in image.shape[:2])
    ratio = max(in_width / F32(width), in_height / F32(height))
    fitted_height, fitted_width = in_height / ratio, in_width / ratio
    rows, columns = int(np.floor(fitted_height)), int(np.floor(fitted_width))
    if rows < 1 or columns < 1:
        return None
    top = max(0, int(np.floor((F32(height) - fitted_height) / F32(2))))
    left = max(0, int(np.floor((F32(width) - fitted_width) / F32(2))))
    padded = np.zeros((height, width, image.shape[2]), dtype=F32)
    padded[top:top + rows, left:left + columns] = resize(image, rows, columns, method)
    return padded


def aspect_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred window of `image` with the aspect ratio of (height, width) that Keras's
    `smart_resize` takes before resizing (its float32 arithmetic; a view)."""
    in_height, in_width = image.shape[:2]
    crop_height = max(min(in_height, int(F32(in_width * height) / F32(width))), 1)
    crop_width = max(min(in_width, int(F32(in_height * width) / F32(height))), 1)
    top = int(F32(in_height - crop_height) / F32(2))
    left = int(F32(in_width - crop_width) / F32(2))
    return image[top:top + crop_height, left:left + crop_width]


# ----------------------------------------------------------------------------- the methods


def _half_pixel_positions(in_size: int, out_size: int) -> np.ndarray:
    """HalfPixelScaler: `(x + 0.5f) * scale - 0.5f`, scale = in / out in float32."""
    scale = F32(in_size) / F32(out_size)
    return (np.arange(out_size, dtype=F32) + F32(0.5)) * scale - F32(0.5)


def _bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """resize_bilinear with half-pixel centres: the lerp along x of the two rows each output
    row reads, then their lerp: `top + (bottom - top) * y_lerp`."""
    if image.shape[:2] == (height, width):
        return image.astype(F32)
    low_x, high_x, lerp_x = _bilinear_plan(image.shape[1], width)
    low_y, high_y, lerp_y = _bilinear_plan(image.shape[0], height)

    def along_x(rows: np.ndarray) -> np.ndarray:
        left, right = rows[:, low_x].astype(F32), rows[:, high_x].astype(F32)
        return left + (right - left) * lerp_x[None, :, None]

    top, bottom = along_x(image[low_y]), along_x(image[high_y])
    return top + (bottom - top) * lerp_y[:, None, None]


def _bilinear_plan(in_size: int, out_size: int):
    """(lower index, upper index, lerp) of each output index along one axis."""
    position = _half_pixel_positions(in_size, out_size)
    floor = np.floor(position)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
    return lower, upper, position - floor


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """resize_nearest_neighbor with half-pixel centres: `floor((x + 0.5f) * scale)`, clamped."""
    scale = F32(in_size) / F32(out_size)
    position = (np.arange(out_size, dtype=F32) + F32(0.5)) * scale
    return np.clip(np.floor(position).astype(np.int64), 0, in_size - 1)


def _keys_table() -> tuple[np.ndarray, np.ndarray]:
    """resize_bicubic's coefficients for a = -0.5, computed in double and kept as float: the
    weight at distance t (near) and 1 + t (far), t = i / 1024."""
    a = -0.5
    t = np.arange(KEYS_TABLE_SIZE + 1, dtype=np.float64) / KEYS_TABLE_SIZE
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far_t = t + 1.0
    far = ((a * far_t - 5 * a) * far_t + 8 * a) * far_t - 4 * a
    return near.astype(F32), far.astype(F32)


KEYS_NEAR, KEYS_FAR = _keys_table()


def _keys_cubic_plan(in_size: int, out_size: int) -> AxisPlan:
    """resize_bicubic (half-pixel centres, Keys cubic): four taps from the table; a tap outside
    the image weighs 0 and the four weights are renormalised to sum to 1."""
    position = _half_pixel_positions(in_size, out_size)
    start = np.floor(position).astype(np.int64)
    offset = np.rint((position - start.astype(F32)) * F32(KEYS_TABLE_SIZE)).astype(np.int64)
    taps = np.stack([start - 1, start, start + 1, start + 2])
    table = np.stack([KEYS_FAR[offset], KEYS_NEAR[offset], KEYS_NEAR[KEYS_TABLE_SIZE - offset],
                      KEYS_FAR[KEYS_TABLE_SIZE - offset]])
    weights = np.where((taps >= 0) & (taps < in_size), table, F32(0))
    return AxisPlan(np.clip(taps, 0, in_size - 1), _normalised(weights, False))


def _normalised(weights: np.ndarray, tiny_sums_zeroed: bool) -> np.ndarray:
    """Each column of `weights` times `1.0f / its sum` (summed in order), as TensorFlow does;
    where the sum is below 1000 FLT_MIN, zeros (scale_and_translate) or the weights as they are
    (resize_bicubic)."""
    total = weights[0].copy()
    for row in weights[1:]:
        total += row
    usable = np.abs(total) >= F32(1000.0) * FLOAT_MIN
    inverse = F32(1) / np.where(usable, total, F32(1))
    unusable = F32(0) if tiny_sums_zeroed else weights
    return np.where(usable, weights * inverse, unusable).astype(F32)


def _area_plan(in_size: int, out_size: int) -> tuple[AxisPlan, np.float32]:
    """resize_area along one axis: output i covers [i * scale, (i + 1) * scale); each source
    cell weighs the part of it covered (TensorFlow's float32 arithmetic). Also the scale."""
    scale = F32(in_size) / F32(out_size)
    begin = np.arange(out_size, dtype=F32) * scale
    end = np.arange(1, out_size + 1, dtype=F32) * scale
    first = np.floor(begin).astype(np.int64)
    count = np.ceil(end).astype(np.int64) - first
    cells = first[None, :] + np.arange(count.max())[:, None]
    cell = cells.astype(F32)
    after = (cells + 1).astype(F32)  # `i + 1` as a float
    weights = np.where(cell < begin,
                       np.where(after > end, scale, after - begin),
                       np.where(after > end, end - cell, F32(1))).astype(F32)
    weights = np.where(cells < (first + count)[None, :], weights, F32(0))
    return AxisPlan(np.clip(cells, 0, in_size - 1), weights), scale


@dataclass(frozen=True)
class SamplingKernel:
    """One of scale_and_translate's kernels: its radius and its function of |distance|."""

    radius: np.float32
    function: object


def _lanczos(radius: float):
    """LanczosKernelFunc: `radius sin(pi x) sin(pi x / radius) / (pi^2 x^2)`, 1 near 0."""
    radius = F32(radius)

    def weight(x: np.ndarray) -> np.ndarray:
        pi_x = PI * x
        with np.errstate(divide="ignore", invalid="ignore"):  # x = 0 is taken below
            value = (radius * _sinf(pi_x)) * _sinf(pi_x / radius) / ((PI * PI) * x * x)
        near_zero = x.astype(np.float64) <= 1e-3  # a float against the double 1e-3
        return np.where(x > radius, F32(0), np.where(near_zero, F32(1), value))

    return SamplingKernel(radius, weight)


def _sinf(x: np.ndarray) -> np.ndarray:
    """sinf, correctly rounded (computed in double)."""
    return np.sin(x.astype(np.float64)).astype(F32)


def _gaussian(x: np.ndarray) -> np.ndarray:
    """GaussianKernelFunc (radius 1.5, sigma 0.5): `exp(-x*x / (2.0 sigma sigma))` in double."""
    value = np.exp((-x * x).astype(np.float64) / 0.5).astype(F32)
    return np.where(x >= F32(1.5), F32(0), value)


def _mitchell_cubic(x: np.ndarray) -> np.ndarray:
    """MitchellCubicKernelFunc, with its float constants."""
    outer = (((F32(-7.0) / F32(18.0)) * x + F32(2.0)) * x - F32(10.0) / F32(3.0)) * x \
        + F32(16.0) / F32(9.0)
    inner = (((F32(7.0) / F32(6.0)) * x - F32(2.0)) * x) * x + F32(8.0) / F32(9.0)
    return np.where(x >= F32(2), F32(0), np.where(x >= F32(1), outer, inner))


SAMPLING_KERNELS = {
    "lanczos3": _lanczos(3.0),
    "lanczos5": _lanczos(5.0),
    "gaussian": SamplingKernel(F32(1.5), _gaussian),
    "mitchellcubic": SamplingKernel(F32(2.0), _mitchell_cubic),
}
"""The kernels `tf.image.resize` runs through scale_and_translate."""


def _span_plan(in_size: int, out_size: int, kernel: SamplingKernel) -> AxisPlan:
    """scale_and_translate's span of one axis (translation 0, no antialiasing): the source
    cells within the kernel's radius of each sample point, weighted by the kernel and
    normalised."""
    scale = F32(out_size) / F32(in_size)
    inverse_scale = F32(1.0 / np.float64(scale))
    sample = (np.arange(out_size, dtype=F32) + F32(0.5)) * inverse_scale
    start = np.clip(np.ceil(sample - kernel.radius - F32(0.5)).astype(np.int64), 0, in_size - 1)
    stop = np.clip(np.floor(sample + kernel.radius - F32(0.5)).astype(np.int64), 0,
                   in_size - 1) + 1
    cells = start[None, :] + np.arange((stop - start).max())[:, None]
    distance = np.abs((cells.astype(F32) + F32(0.5)) - sample[None, :])
    weights = np.where(cells < stop[None, :], kernel.function(distance), F32(0)).astype(F32)
    return AxisPlan(np.clip(cells, 0, in_size - 1), _normalised(weights, True))


def _contract(image: np.ndarray, plan: AxisPlan, axis: int) -> np.ndarray:
    """`image` resampled along `axis` (0: rows, 1: columns) by `plan`, in float32, each output
    the sum of its terms taken in order (a padding term adds 0). Only the rows or columns
    taken are converted to float32, so memory holds a few (output size x other side) planes."""
    shape = (-1, 1, 1) if axis == 0 else (1, -1, 1)
    total = None
    for indices, weights in zip(plan.indices, plan.weights):
        term = np.take(image, indices, axis=axis).astype(F32) * weights.reshape(shape)
        total = term if total is None else total + term
    return total
