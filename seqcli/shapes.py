"""Size arithmetic shared by shape inference and execution (Keras 3 / TensorFlow rules).

Shapes are per-sample tuples; a dimension may be `None` (unknown until data arrives).
"""

from __future__ import annotations

import math

Shape = tuple  # tuple[int | None, ...], per sample, no batch axis


class ShapeError(ValueError):
    """A layer cannot accept an input shape."""


def effective_kernel(kernel: int, dilation: int) -> int:
    """Extent of a dilated window: (k - 1)·d + 1."""
    return (kernel - 1) * dilation + 1


def conv_output_length(length, kernel, stride, padding, dilation=1):
    """Output length of a convolution or pooling along one axis.

    valid: floor((n - (k-1)·d - 1) / s) + 1;  same/causal: ceil(n / s).
    """
    if length is None:
        return None
    if padding == "valid":
        return (length - effective_kernel(kernel, dilation)) // stride + 1
    return (length - 1) // stride + 1


def same_padding(length, kernel, stride, dilation=1):
    """TensorFlow 'same' padding (before, after): total max((ceil(n/s)-1)·s + (k-1)·d + 1 - n, 0),
    the odd cell after."""
    out = math.ceil(length / stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - length, 0)
    return total // 2, total - total // 2


def paddings(spatial, kernel, strides, padding, dilation):
    """Per-axis (before, after) padding for 'valid', 'same' or 'causal' (1-D, all before)."""
    if padding == "valid":
        return tuple((0, 0) for _ in spatial)
    if padding == "causal":
        return tuple((effective_kernel(k, d) - 1, 0) for k, d in zip(kernel, dilation))
    return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation))


def format_shape(shape, batch=True) -> str:
    """Keras's display of a shape: `(None, 123, 123, 32)`."""
    dims = ([None] if batch else []) + list(shape)
    text = ", ".join("None" if d is None else str(d) for d in dims)
    return f"({text},)" if len(dims) == 1 else f"({text})"


def num_elements(shape) -> int | None:
    """Product of the dimensions, or None when one is unknown."""
    if any(d is None for d in shape):
        return None
    return math.prod(shape)


def empty_axis_problem(sample, what: str = "input") -> str | None:
    """Why samples of shape `sample` from an `what` array cannot be fed to a model, an axis of
    size 0 (a model takes no empty samples), or None."""
    if 0 not in sample:
        return None
    axis = list(sample).index(0) + 1
    return (f"{what} samples of shape {tuple(sample)} are empty: axis {axis} of the {what} has "
            "size 0, and a model cannot take empty samples (every axis after the batch axis "
            "needs a size of at least 1)")


def fits(sample, expected) -> bool:
    """True when the per-sample shape `sample` meets `expected` (None matches any size)."""
    sample, expected = tuple(sample), tuple(expected)
    return sample == expected or len(sample) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, sample))


def input_shape_fix(received: tuple, expected) -> str | None:
    """The one-axis change that makes an array of shape `received` (batch first) fit a model
    whose per-sample input shape is `expected`, said with its numpy code; None when there is
    no such change."""
    received, expected = tuple(received), tuple(expected)
    if fits(received, expected):
        return "add a batch axis (x[None]): it is a single sample"
    if expected and expected[-1] == 1 and fits(received[1:], expected[:-1]):
        axis = "a channel axis" if len(expected) > 1 else "a last axis of size 1"
        return f"add {axis} (x[..., None])"
    if expected and expected[-1] == 1 and fits(received, expected[:-1]):
        return "add a batch and a channel axis (x[None, ..., None]): it is a single sample"
    for axis in reversed(range(len(received))):
        if received[axis] == 1 and len(received) > 1 and fits(
                (received[:axis] + received[axis + 1:])[1:], expected):
            return f"drop axis {axis} (np.squeeze(x, {axis}))"
    if len(expected) > 1 and len(received) == len(expected) + 1 and fits(
            received[2:] + received[1:2], expected):
        return ("move the channel axis last (np.moveaxis(x, 1, -1)): seqcli is channels_last, "
                "as Keras by default")
    return None
