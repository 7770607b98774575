"""Shape inference and parameter counts, layer by layer, as Keras 3 computes them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqcli.shapes import conv_output_length, same_padding
from tests.conftest import built_from
from tests.layer_table import CASES


def _one_layer_model(settings: dict, input_shape):
    return built_from({"input_shape": list(input_shape), "layers": [settings]})


@pytest.mark.parametrize(("settings", "input_shape", "output_shape", "params", "trainable"),
                         CASES, ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_layer_case(settings, input_shape, output_shape, params, trainable):
    model = _one_layer_model(settings, input_shape)
    (info,) = model.layers
    assert info.output_shape == output_shape
    assert info.params == params
    assert info.trainable_params == trainable
    assert model.total_params == params
    assert model.trainable_params == trainable


def test_weight_names_and_order():
    model = built_from({"input_shape": [5, 5, 3], "layers": [
        {"type": "SeparableConv2D", "filters": 4, "kernel_size": 3, "depth_multiplier": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "Sequential", "name": "head", "layers": [
            {"type": "Flatten"}, {"type": "Dense", "units": 2}]},
    ]})
    assert model.weight_shapes == {
        "separable_conv2d/depthwise_kernel": (3, 3, 3, 2),
        "separable_conv2d/pointwise_kernel": (1, 1, 6, 4),
        "separable_conv2d/bias": (4,),
        "batch_normalization/beta": (4,),
        "batch_normalization/moving_mean": (4,),
        "batch_normalization/moving_variance": (4,),
        "head/dense/kernel": (36, 2),
        "head/dense/bias": (2,),
    }
    assert model.trainable_keys == {
        "separable_conv2d/depthwise_kernel", "separable_conv2d/pointwise_kernel",
        "separable_conv2d/bias", "batch_normalization/beta", "head/dense/kernel",
        "head/dense/bias"}


def test_unknown_dimensions_propagate():
    model = built_from({"input_shape": [None, None, 3], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 2}]})
    assert [i.output_shape for i in model.layers] == [(None, None, 4), (4,), (2,)]
    assert model.total_params == 3 * 3 * 3 * 4 + 4 + 4 * 2 + 2


# ------------------------------------------------------------ properties (hypothesis)


def _windows(length, kernel, stride, padding, dilation):
    """Count window positions by brute force: every start whose dilated taps stay inside the
    (padded) input."""
    if padding == "valid":
        padded = length
    else:
        before, after = same_padding(length, kernel, stride, dilation)
        padded = length + before + after
    span = (kernel - 1) * dilation + 1
    return len(range(0, padded - span + 1, stride))


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       dilation=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]))
def test_conv_output_length_counts_windows(length, kernel, stride, dilation, padding):
    expected = _windows(length, kernel, stride, padding, dilation)
    assert max(conv_output_length(length, kernel, stride, padding, dilation), 0) == expected
    if padding == "same":
        assert expected == math.ceil(length / stride)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       dilation=st.integers(1, 3))
def test_same_padding_is_tensorflows(length, kernel, stride, dilation):
    before, after = same_padding(length, kernel, stride, dilation)
    assert after - before in (0, 1)  # the odd cell goes after
    total = max((math.ceil(length / stride) - 1) * stride + (kernel - 1) * dilation + 1 - length,
                0)
    assert before + after == total


_spatial_layers = st.one_of(
    st.builds(lambda f, k, s, p: {"type": "Conv2D", "filters": f, "kernel_size": k,
                                  "strides": s, "padding": p},
              st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
              st.sampled_from(["valid", "same"])),
    st.builds(lambda k, m, p: {"type": "DepthwiseConv2D", "kernel_size": k,
                               "depth_multiplier": m, "padding": p},
              st.integers(1, 3), st.integers(1, 2), st.sampled_from(["valid", "same"])),
    st.builds(lambda k, p: {"type": "MaxPooling2D", "pool_size": k, "padding": p},
              st.integers(1, 3), st.sampled_from(["valid", "same"])),
    st.builds(lambda k: {"type": "AveragePooling2D", "pool_size": k, "padding": "same"},
              st.integers(1, 3)),
    st.just({"type": "BatchNormalization"}),
    st.builds(lambda p: {"type": "ZeroPadding2D", "padding": p}, st.integers(0, 2)),
)


@settings(max_examples=150, deadline=None)
@given(height=st.integers(8, 24), width=st.integers(8, 24), channels=st.integers(1, 4),
       stack=st.lists(_spatial_layers, min_size=1, max_size=4), units=st.integers(1, 5))
def test_random_stacks(height, width, channels, stack, units):
    """Random valid stacks: shapes chain, names are unique, totals add up, Dense sees the
    flattened size."""
    layers = stack + [{"type": "Flatten"}, {"type": "Dense", "units": units}]
    try:
        model = built_from({"input_shape": [height, width, channels], "layers": layers})
    except Exception as exc:  # only a shape that became <= 0 may fail
        assert "zero or negative" in str(exc)
        return
    shape = (height, width, channels)
    for info in model.layers:
        assert info.input_shape == shape
        shape = info.output_shape
        assert all(d > 0 for d in shape)
    names = [info.name for info in model.layers]
    assert len(set(names)) == len(names)
    assert model.total_params == sum(math.prod(s) for s in model.weight_shapes.values())
    flat = model.layers[-2].output_shape[0]
    assert model.weight_shapes[f"{model.layers[-1].name}/kernel"] == (flat, units)


def test_layer_normalization_axes_are_sorted_as_keras_sorts_them():
    """Keras 3.15 shapes gamma by the sorted axes as written: [2, 1] -> (6, 5), and
    [-1, 1] -> (4, 6) since -1 sorts first (checked with Keras)."""
    for axis, shape in (([2, 1], (6, 5)), ([-1, 1], (4, 6)), ([1, 2], (6, 5))):
        model = built_from({"input_shape": [6, 5, 4],
                            "layers": [{"type": "LayerNormalization", "axis": axis}]})
        assert model.weight_shapes["layer_normalization/gamma"] == shape
