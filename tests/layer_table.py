"""The test table: one row per layer type, everything the tests know about it.

A row holds the layer's shape/parameter cases (Keras 3's numbers: settings without `type`,
per-sample input shape, output shape, params, trainable params), the kernels its forward
pass calls with their slow references (tests/naive.py), the kernels its training step
calls with the float64 forwards whose finite differences they must match
(tests/naive_grad.py), and the Keras-made fixtures (tests/keras_reference/manifest.json)
that hold it. Its ONNX case is its shape cases, exported and run in onnxruntime.

The per-concern tables the tests use (`CASES`, `KERNEL_REFERENCES`, `GRAD_REFERENCES`) are
derived from these rows; tests/test_layer_table.py fails for a registered layer type without
a row, for a row missing a part, and for a row whose kernels are not those the layer calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqcli.kernels import activations as k_act
from seqcli.kernels import augmentation as k_aug
from seqcli.kernels import conv as k_conv
from seqcli.kernels import conv3d as k_conv3d
from seqcli.kernels import conv_transpose as k_convt
from seqcli.kernels import dense as k_dense
from seqcli.kernels import grad_activations as g_act
from seqcli.kernels import grad_augmentation as g_aug
from seqcli.kernels import grad_conv as g_conv
from seqcli.kernels import grad_conv3d as g_conv3d
from seqcli.kernels import grad_dense as g_dense
from seqcli.kernels import grad_normalization as g_norm
from seqcli.kernels import grad_normalization_more as g_norm_more
from seqcli.kernels import grad_pooling as g_pool
from seqcli.kernels import grad_recurrent as g_rec
from seqcli.kernels import grad_reshaping as g_resh
from seqcli.kernels import normalization as k_norm
from seqcli.kernels import normalization_more as k_norm_more
from seqcli.kernels import pooling as k_pool
from seqcli.kernels import recurrent as k_rec
from seqcli.kernels import reshaping as k_resh
from seqcli.kernels import resize as k_resize
from seqcli.kernels import small as k_small
from seqcli.kernels import updates as k_upd

try:
    from tests import naive, naive_grad
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive
    import naive_grad


@dataclass(frozen=True)
class Row:
    """Everything the tests know about one layer type."""

    cases: list[tuple]
    """(settings without `type`, input shape, output shape, params, trainable params)."""
    kernels: dict
    """Forward kernel → its slow reference ({} for a layer that computes nothing)."""
    grads: dict
    """Training kernel (training forward, backward) → the float64 function it is checked
    against ({} for a layer without any)."""
    keras: tuple[str, ...]
    """Fixtures recorded with Keras that hold the layer (stems of the manifest)."""


ACTIVATION = {k_act.activation_forward: naive.naive_activation}
SMALL_DENSE = {k_small.small_dense_forward: naive.naive_dense}
"""The numpy path a Dense layer of small work takes (no numba)."""
ACTIVATION_GRAD = {g_act.activation_backward: naive.naive_activation}

ROWS: dict[str, Row] = {
    "Dense": Row(
        cases=[
            ({"units": 2}, (4,), (2,), 10, 10),
            ({"units": 5, "use_bias": False}, (3, 4), (3, 5), 20, 20),
            ({"units": 3, "activation": "softmax"}, (2, 3, 7), (2, 3, 3), 24, 24),
        ],
        kernels={k_dense.dense_forward: naive.naive_dense, **SMALL_DENSE, **ACTIVATION,
                 k_small.dense_rows: naive.naive_dense},
        grads={g_dense.dense_backward: naive_grad.dense64},
        keras=("dense_activations_a", "dense_rank4_no_bias"),
    ),
    "Conv2D": Row(
        cases=[  # valid/same, even kernels, strides > 1, dilation, groups, 1x1, non-square
            ({"filters": 32, "kernel_size": 5, "strides": 2}, (250, 250, 3), (123, 123, 32),
             2432, 2432),
            ({"filters": 8, "kernel_size": 3, "strides": 2, "padding": "same"}, (7, 5, 3),
             (4, 3, 8), 224, 224),
            ({"filters": 4, "kernel_size": 2, "padding": "same"}, (6, 6, 2), (6, 6, 4), 36, 36),
            ({"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same"}, (10, 7, 1),
             (4, 3, 4), 68, 68),
            ({"filters": 6, "kernel_size": 3, "dilation_rate": 2}, (9, 9, 2), (5, 5, 6),
             114, 114),
            ({"filters": 4, "kernel_size": 1}, (5, 5, 3), (5, 5, 4), 16, 16),
            ({"filters": 4, "kernel_size": 3, "groups": 2}, (6, 6, 4), (4, 4, 4), 76, 76),
            ({"filters": 5, "kernel_size": [2, 3], "strides": [2, 1]}, (7, 8, 1), (3, 6, 5),
             35, 35),
            ({"filters": 3, "kernel_size": 3, "use_bias": False, "padding": "SAME"},
             (4, 4, 2), (4, 4, 3), 54, 54),
        ],
        kernels={k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("conv2d_same_even", "conv2d_groups", "winograd_convnet"),
    ),
    "Conv1D": Row(
        cases=[  # causal padding too
            ({"filters": 4, "kernel_size": 3}, (10, 2), (8, 4), 28, 28),
            ({"filters": 4, "kernel_size": 3, "padding": "causal", "dilation_rate": 2},
             (10, 2), (10, 4), 28, 28),
            ({"filters": 3, "kernel_size": 2, "strides": 2, "padding": "same"}, (9, 1),
             (5, 3), 9, 9),
        ],
        kernels={k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("conv1d_strides", "conv1d_dilation_groups"),
    ),
    "DepthwiseConv2D": Row(
        cases=[
            ({"kernel_size": 3, "depth_multiplier": 2}, (8, 8, 3), (6, 6, 6), 60, 60),
            ({"kernel_size": 3, "strides": 2, "padding": "same"}, (7, 7, 4), (4, 4, 4), 40, 40),
            ({"kernel_size": 2, "depth_multiplier": 3, "use_bias": False}, (5, 4, 2),
             (4, 3, 6), 24, 24),
        ],
        kernels={k_conv.depthwise_conv2d_forward: naive.naive_depthwise_conv2d, **ACTIVATION},
        grads={g_conv.depthwise_conv2d_backward: naive_grad.depthwise_conv2d64,
               **ACTIVATION_GRAD},
        keras=("depthwise", "depthwise_stride_dilation"),
    ),
    "SeparableConv2D": Row(
        cases=[
            ({"filters": 8, "kernel_size": 3}, (8, 8, 3), (6, 6, 8), 59, 59),
            ({"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
             (5, 5, 2), (5, 5, 4), 56, 56),
        ],
        kernels={k_conv.depthwise_conv2d_forward: naive.naive_depthwise_conv2d,
                 k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_conv.depthwise_conv2d_backward: naive_grad.depthwise_conv2d64,
               g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("separable",),
    ),
    "Conv3D": Row(
        cases=[  # valid/same, uneven kernels and strides, dilation with groups, 1x1x1
            ({"filters": 8, "kernel_size": 3}, (10, 10, 10, 1), (8, 8, 8, 8), 224, 224),
            ({"filters": 4, "kernel_size": [2, 3, 1], "strides": [2, 1, 2], "padding": "same"},
             (5, 6, 7, 3), (3, 6, 4, 4), 76, 76),
            ({"filters": 6, "kernel_size": 3, "dilation_rate": 2, "groups": 3, "use_bias": False},
             (7, 6, 5, 3), (3, 2, 1, 6), 162, 162),
            ({"filters": 2, "kernel_size": 1}, (2, 3, 4, 5), (2, 3, 4, 2), 12, 12),
        ],
        kernels={k_conv3d.conv3d_forward: naive.naive_conv3d, **ACTIVATION},
        grads={g_conv3d.conv3d_backward: naive_grad.conv3d64, **ACTIVATION_GRAD},
        keras=("conv3d_layers", "volume_classifier_3d"),
    ),
    "Conv2DTranspose": Row(
        cases=[  # kernel (kh, kw, filters, in); 'same' is in*strides unless output_padding
            ({"filters": 128, "kernel_size": 4, "strides": 2, "padding": "same"}, (7, 7, 128),
             (14, 14, 128), 262272, 262272),
            ({"filters": 3, "kernel_size": 3}, (4, 5, 2), (6, 7, 3), 57, 57),
            ({"filters": 2, "kernel_size": [3, 2], "strides": [3, 2], "output_padding": [2, 1],
              "use_bias": False}, (3, 4, 3), (11, 9, 2), 36, 36),
            ({"filters": 2, "kernel_size": 5, "strides": 2, "padding": "same",
              "output_padding": 0}, (3, 4, 2), (5, 7, 2), 102, 102),
            ({"filters": 2, "kernel_size": 1, "strides": 3}, (3, 3, 2), (9, 9, 2), 6, 6),
            ({"filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
             (4, 4, 2), (4, 4, 3), 57, 57),
        ],
        kernels={k_convt.conv_transpose_forward: naive.naive_conv_transpose,
                 k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("conv2d_transpose", "dcgan_generator"),
    ),
    "Conv1DTranspose": Row(
        cases=[
            ({"filters": 16, "kernel_size": 7, "strides": 2, "padding": "same"}, (72, 16),
             (144, 16), 1808, 1808),
            ({"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 1}, (5, 3),
             (12, 2), 20, 20),
            ({"filters": 2, "kernel_size": 4, "dilation_rate": 3}, (5, 2), (14, 2), 18, 18),
        ],
        kernels={k_convt.conv_transpose_forward: naive.naive_conv_transpose,
                 k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("conv1d_transpose_separable", "timeseries_conv_autoencoder"),
    ),
    "Conv3DTranspose": Row(
        cases=[
            ({"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, (3, 4, 3, 2),
             (6, 8, 6, 3), 165, 165),
            ({"filters": 2, "kernel_size": [2, 3, 2], "strides": [1, 2, 2],
              "output_padding": [0, 1, 0]}, (3, 3, 2, 3), (4, 8, 4, 2), 74, 74),
        ],
        kernels={k_convt.conv_transpose_forward: naive.naive_conv_transpose,
                 k_conv3d.conv3d_forward: naive.naive_conv3d, **ACTIVATION},
        grads={g_conv3d.conv3d_backward: naive_grad.conv3d64, **ACTIVATION_GRAD},
        keras=("conv3d_transpose",),
    ),
    "DepthwiseConv1D": Row(
        cases=[  # kernel (k, in, depth_multiplier)
            ({"kernel_size": 3, "depth_multiplier": 2}, (9, 3), (7, 6), 24, 24),
            ({"kernel_size": 3, "strides": 2, "padding": "same", "use_bias": False}, (10, 4),
             (5, 4), 12, 12),
        ],
        kernels={k_conv.depthwise_conv2d_forward: naive.naive_depthwise_conv2d, **ACTIVATION},
        grads={g_conv.depthwise_conv2d_backward: naive_grad.depthwise_conv2d64,
               **ACTIVATION_GRAD},
        keras=("conv1d_transpose_separable",),
    ),
    "SeparableConv1D": Row(
        cases=[  # pointwise_kernel (1, in*dm, filters)
            ({"filters": 8, "kernel_size": 3}, (10, 3), (8, 8), 41, 41),
            ({"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
              "strides": 2}, (7, 2), (4, 4), 32, 32),
        ],
        kernels={k_conv.depthwise_conv2d_forward: naive.naive_depthwise_conv2d,
                 k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_conv.depthwise_conv2d_backward: naive_grad.depthwise_conv2d64,
               g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("conv1d_transpose_separable",),
    ),
    "MaxPooling2D": Row(
        cases=[  # strides default to the pool size; 'same' rounds up
            ({}, (5, 5, 3), (2, 2, 3), 0, 0),
            ({"pool_size": 3, "strides": 2, "padding": "same"}, (7, 6, 1), (4, 3, 1), 0, 0),
            ({"pool_size": 3, "strides": 1}, (5, 4, 2), (3, 2, 2), 0, 0),
        ],
        kernels={k_pool.max_pool2d_forward: naive.naive_max_pool2d},
        grads={g_pool.max_pool2d_backward: naive_grad.max_pool2d64},
        keras=("pooling2d_same", "guide_convnet"),
    ),
    "AveragePooling2D": Row(
        cases=[
            ({"pool_size": [2, 3]}, (6, 9, 1), (3, 3, 1), 0, 0),
            ({"pool_size": 2, "padding": "same"}, (5, 3, 2), (3, 2, 2), 0, 0),
        ],
        kernels={k_pool.avg_pool2d_forward: naive.naive_avg_pool2d},
        grads={g_pool.avg_pool2d_backward: naive_grad.avg_pool2d64},
        keras=("pooling2d_valid", "pooling2d_same_uneven"),
    ),
    "MaxPooling1D": Row(
        cases=[
            ({}, (9, 2), (4, 2), 0, 0),
            ({"pool_size": 3, "strides": 2, "padding": "same"}, (10, 4), (5, 4), 0, 0),
        ],
        kernels={k_pool.max_pool2d_forward: naive.naive_max_pool2d},
        grads={g_pool.max_pool2d_backward: naive_grad.max_pool2d64},
        keras=("pooling1d", "text_conv1d"),
    ),
    "AveragePooling1D": Row(
        cases=[({"pool_size": 2, "strides": 1}, (5, 3), (4, 3), 0, 0)],
        kernels={k_pool.avg_pool2d_forward: naive.naive_avg_pool2d},
        grads={g_pool.avg_pool2d_backward: naive_grad.avg_pool2d64},
        keras=("pooling1d", "pooling1d_strides"),
    ),
    "GlobalMaxPooling2D": Row(
        cases=[
            ({}, (4, 4, 3), (3,), 0, 0),
            ({"keepdims": True}, (4, 4, 3), (1, 1, 3), 0, 0),
        ],
        kernels={k_pool.global_max_pool_forward: naive.naive_global_max_pool},
        grads={g_pool.global_max_pool_backward: naive.naive_global_max_pool},
        keras=("global_pooling2d", "global_pooling2d_keepdims"),
    ),
    "GlobalAveragePooling2D": Row(
        cases=[({}, (2, 5, 7), (7,), 0, 0), ({"keepdims": True}, (2, 5, 7), (1, 1, 7), 0, 0)],
        kernels={k_pool.global_avg_pool_forward: naive.naive_global_avg_pool},
        grads={g_pool.global_avg_pool_backward: naive.naive_global_avg_pool},
        keras=("global_pooling2d", "mobilenet_block"),
    ),
    "GlobalMaxPooling1D": Row(
        cases=[({}, (7, 5), (5,), 0, 0), ({"keepdims": True}, (7, 5), (1, 5), 0, 0)],
        kernels={k_pool.global_max_pool_forward: naive.naive_global_max_pool},
        grads={g_pool.global_max_pool_backward: naive.naive_global_max_pool},
        keras=("global_pooling1d", "text_conv1d"),
    ),
    "GlobalAveragePooling1D": Row(
        cases=[({}, (7, 5), (5,), 0, 0)],
        kernels={k_pool.global_avg_pool_forward: naive.naive_global_avg_pool},
        grads={g_pool.global_avg_pool_backward: naive.naive_global_avg_pool},
        keras=("global_pooling1d", "nested_deep"),
    ),
    "MaxPooling3D": Row(
        cases=[  # the 2-D kernels twice: over (height, width), then over depth
            ({}, (5, 5, 5, 3), (2, 2, 2, 3), 0, 0),
            ({"pool_size": [3, 2, 3], "strides": [2, 1, 2], "padding": "same"}, (5, 4, 7, 2),
             (3, 4, 4, 2), 0, 0),
        ],
        kernels={k_pool.max_pool2d_forward: naive.naive_max_pool2d},
        grads={g_pool.max_pool2d_backward: naive_grad.max_pool2d64},
        keras=("pooling3d", "volume_classifier_3d"),
    ),
    "AveragePooling3D": Row(
        cases=[  # pool_size has no default (Keras 3)
            ({"pool_size": 2}, (4, 5, 6, 1), (2, 2, 3, 1), 0, 0),
            ({"pool_size": 3, "strides": 2, "padding": "same"}, (5, 4, 5, 2), (3, 2, 3, 2), 0, 0),
        ],
        kernels={k_pool.avg_pool2d_forward: naive.naive_avg_pool2d},
        grads={g_pool.avg_pool2d_backward: naive_grad.avg_pool2d64},
        keras=("pooling3d", "conv3d_layers"),
    ),
    "GlobalMaxPooling3D": Row(
        cases=[({}, (3, 4, 2, 5), (5,), 0, 0), ({"keepdims": True}, (3, 4, 2, 5), (1, 1, 1, 5), 0, 0)],
        kernels={k_pool.global_max_pool_forward: naive.naive_global_max_pool},
        grads={g_pool.global_max_pool_backward: naive.naive_global_max_pool},
        keras=("pooling3d", "conv3d_transpose"),
    ),
    "GlobalAveragePooling3D": Row(
        cases=[({}, (3, 4, 2, 5), (5,), 0, 0), ({"keepdims": True}, (3, 4, 2, 5), (1, 1, 1, 5), 0, 0)],
        kernels={k_pool.global_avg_pool_forward: naive.naive_global_avg_pool},
        grads={g_pool.global_avg_pool_backward: naive.naive_global_avg_pool},
        keras=("pooling3d", "volume_classifier_3d"),
    ),
    "Flatten": Row(
        cases=[({}, (3, 4, 5), (60,), 0, 0)],
        kernels={},
        grads={},
        keras=("flatten_reshape_dropout", "dense_rank4_no_bias"),
    ),
    "Reshape": Row(
        cases=[
            ({"target_shape": [3, -1]}, (12,), (3, 4), 0, 0),
            ({"target_shape": [2, 2, 3]}, (4, 3), (2, 2, 3), 0, 0),
        ],
        kernels={},
        grads={},
        keras=("flatten_reshape_dropout", "reshape_to_image"),
    ),
    "Dropout": Row(
        cases=[({"rate": 0.5}, (5,), (5,), 0, 0)],
        kernels={},
        grads={},
        keras=("flatten_reshape_dropout", "small_convnet"),
    ),
    "Activation": Row(
        cases=[({"activation": "gelu"}, (3, 4), (3, 4), 0, 0)],
        kernels={**ACTIVATION, k_small.small_activation_forward: naive.naive_activation},
        grads=ACTIVATION_GRAD,
        keras=("activation_layers_a", "activation_layers_b"),
    ),
    "Rescaling": Row(
        cases=[({"scale": 0.5, "offset": 1.0}, (4,), (4,), 0, 0)],
        kernels={k_resh.rescale_forward: naive.naive_rescale},
        grads={g_resh.rescale_backward: naive.naive_rescale},
        keras=("rescaling", "small_convnet"),
    ),
    "ZeroPadding2D": Row(
        cases=[
            ({}, (3, 3, 2), (5, 5, 2), 0, 0),
            ({"padding": [1, 2]}, (3, 3, 2), (5, 7, 2), 0, 0),
            ({"padding": [[0, 1], [2, 3]]}, (3, 3, 2), (4, 8, 2), 0, 0),
        ],
        kernels={k_resh.zero_pad2d_forward: naive.naive_zero_pad2d},
        grads={g_resh.zero_pad2d_backward: naive.naive_zero_pad2d},
        keras=("zeropadding",),
    ),
    "UpSampling2D": Row(
        cases=[
            ({}, (3, 4, 1), (6, 8, 1), 0, 0),
            ({"size": [2, 3]}, (3, 4, 1), (6, 12, 1), 0, 0),
            ({"size": [2, 3], "interpolation": "bilinear"}, (3, 4, 2), (6, 12, 2), 0, 0),
            ({"interpolation": "lanczos5"}, (2, 5, 1), (4, 10, 1), 0, 0),
        ],
        kernels={k_resh.upsample2d_nearest_forward: naive.naive_upsample2d_nearest,
                 k_resize.separable_resize: naive.naive_separable_resize},
        grads={g_resh.upsample2d_nearest_backward: naive.naive_upsample2d_nearest},
        keras=("upsampling", "shape_resize"),
    ),
    "Cropping1D": Row(
        cases=[({}, (5, 2), (3, 2), 0, 0), ({"cropping": [0, 2]}, (6, 3), (4, 3), 0, 0)],
        kernels={},  # a slice
        grads={},
        keras=("shape_conv1d_autoencoder",),
    ),
    "Cropping2D": Row(
        cases=[
            ({}, (4, 5, 2), (4, 5, 2), 0, 0),
            ({"cropping": 1}, (4, 5, 2), (2, 3, 2), 0, 0),
            ({"cropping": [[1, 0], 2]}, (4, 6, 1), (3, 2, 1), 0, 0),
        ],
        kernels={},  # a slice
        grads={},
        keras=("shape_layers_2d",),
    ),
    "Cropping3D": Row(
        cases=[
            ({}, (3, 4, 5, 2), (1, 2, 3, 2), 0, 0),
            ({"cropping": [[0, 1], [2, 0], 1]}, (3, 4, 5, 1), (2, 2, 3, 1), 0, 0),
        ],
        kernels={},  # a slice
        grads={},
        keras=("shape_volumes",),
    ),
    "ZeroPadding1D": Row(
        cases=[({}, (4, 2), (6, 2), 0, 0), ({"padding": [0, 3]}, (4, 2), (7, 2), 0, 0)],
        kernels={k_resh.zero_pad2d_forward: naive.naive_zero_pad2d},
        grads={g_resh.zero_pad2d_backward: naive.naive_zero_pad2d},
        keras=("shape_conv1d_autoencoder",),
    ),
    "ZeroPadding3D": Row(
        cases=[
            ({}, (2, 3, 2, 2), (4, 5, 4, 2), 0, 0),
            ({"padding": [[0, 1], 2, [1, 0]]}, (2, 3, 2, 1), (3, 7, 3, 1), 0, 0),
        ],
        kernels={},  # numpy's pad
        grads={},
        keras=("shape_volumes",),
    ),
    "UpSampling1D": Row(
        cases=[({}, (3, 2), (6, 2), 0, 0), ({"size": 3}, (4, 1), (12, 1), 0, 0)],
        kernels={k_resh.upsample2d_nearest_forward: naive.naive_upsample2d_nearest},
        grads={g_resh.upsample2d_nearest_backward: naive.naive_upsample2d_nearest},
        keras=("shape_conv1d_autoencoder",),
    ),
    "UpSampling3D": Row(
        cases=[({}, (2, 2, 3, 2), (4, 4, 6, 2), 0, 0),
               ({"size": [1, 3, 2]}, (2, 2, 2, 1), (2, 6, 4, 1), 0, 0)],
        kernels={},  # numpy's repeat
        grads={},
        keras=("shape_volumes",),
    ),
    "Resizing": Row(
        cases=[
            ({"height": 3, "width": 5}, (6, 4, 2), (3, 5, 2), 0, 0),
            ({"height": 5, "width": 4, "interpolation": "bicubic", "antialias": True},
             (9, 7, 1), (5, 4, 1), 0, 0),
            ({"height": 4, "width": 4, "interpolation": "nearest", "crop_to_aspect_ratio": True},
             (5, 9, 2), (4, 4, 2), 0, 0),
            ({"height": 6, "width": 3, "interpolation": "lanczos3", "pad_to_aspect_ratio": True,
              "fill_value": 0.5}, (4, 4, 1), (6, 3, 1), 0, 0),
        ],
        kernels={k_resize.separable_resize: naive.naive_separable_resize},
        grads={},  # the backward is the same kernel with the transposed matrices
        keras=("shape_resize", "shape_resize_antialias", "shape_preprocessing_head"),
    ),
    "CenterCrop": Row(
        cases=[({"height": 2, "width": 3}, (5, 4, 2), (2, 3, 2), 0, 0),
               ({"height": 6, "width": 2}, (4, 5, 1), (6, 2, 1), 0, 0)],
        kernels={k_resize.separable_resize: naive.naive_separable_resize},
        grads={},  # the backward is the same kernel with the transposed matrices
        keras=("shape_resize",),
    ),
    "RandomCrop": Row(
        cases=[({"height": 2, "width": 3}, (5, 4, 2), (2, 3, 2), 0, 0),
               ({"height": 6, "width": 2, "seed": 1}, (4, 5, 1), (6, 2, 1), 0, 0)],
        kernels={k_resize.separable_resize: naive.naive_separable_resize},  # CenterCrop's
        grads={},  # in fit, a slice of the batch; its backward puts dy back in place
        keras=("random_crop",),
    ),
    "RepeatVector": Row(
        cases=[({"n": 3}, (4,), (3, 4), 0, 0), ({"n": 1}, (7,), (1, 7), 0, 0)],
        kernels={},  # a copy: numpy's broadcast
        grads={},
        keras=("repeat_permute",),
    ),
    "Permute": Row(
        cases=[
            ({"dims": [2, 1]}, (3, 4), (4, 3), 0, 0),
            ({"dims": [3, 1, 2]}, (2, 3, 4), (4, 2, 3), 0, 0),
            ({"dims": [1]}, (5,), (5,), 0, 0),
        ],
        kernels={},  # numpy's transpose
        grads={},
        keras=("repeat_permute",),
    ),
    "BatchNormalization": Row(
        cases=[  # the moving statistics are never trainable
            ({}, (4, 4, 3), (4, 4, 3), 12, 6),
            ({"axis": 1}, (4, 5, 3), (4, 5, 3), 16, 8),
            ({"center": False}, (6,), (6,), 18, 6),
            ({"trainable": False}, (6,), (6,), 24, 0),
        ],
        kernels={k_norm.batch_norm_forward: naive.naive_batch_norm},
        grads={g_norm.batch_norm_train_forward: naive_grad.batch_norm_train64,
               g_norm.batch_norm_train_backward: naive_grad.batch_norm_train64,
               g_norm.batch_norm_moving_update: naive_grad.moving_update64,
               g_norm.batch_norm_backward_inference: naive_grad.batch_norm64},
        keras=("batchnorm", "batchnorm_axes", "batchnorm_frozen"),
    ),
    "LayerNormalization": Row(
        cases=[
            ({}, (5,), (5,), 10, 10),
            ({"axis": [1, 2]}, (2, 3, 4), (2, 3, 4), 12, 12),
            ({"axis": [-2, -1], "scale": False}, (2, 3, 4), (2, 3, 4), 12, 12),
        ],
        kernels={k_norm.layer_norm_forward: naive.naive_layer_norm},
        grads={g_norm.layer_norm_backward: naive_grad.layer_norm64},
        keras=("layernorm", "layernorm_dense"),
    ),
    "Embedding": Row(
        cases=[
            ({"input_dim": 10, "output_dim": 3}, (5,), (5, 3), 30, 30),
            ({"input_dim": 7, "output_dim": 4, "mask_zero": True}, (2, 3), (2, 3, 4), 28, 28),
            ({"input_dim": 20000, "output_dim": 2, "input_length": 6}, (6,), (6, 2), 40000,
             40000),
        ],
        kernels={},  # numpy's take; its gradient, numpy's add.at
        grads={},
        keras=("imdb_bidirectional_lstm", "text_classification", "simple_rnn_masked"),
    ),
    "Masking": Row(
        cases=[({}, (4, 3), (4, 3), 0, 0), ({"mask_value": -1.0}, (5, 2), (5, 2), 0, 0)],
        kernels={},  # numpy's where
        grads={},
        keras=("masking_gru",),
    ),
    "SimpleRNN": Row(
        cases=[  # kernel (in, u), recurrent_kernel (u, u), bias (u)
            ({"units": 4}, (6, 3), (4,), 32, 32),
            ({"units": 5, "return_sequences": True, "use_bias": False}, (7, 2), (7, 5), 35, 35),
            ({"units": 2, "go_backwards": True, "trainable": False}, (3, 4), (2,), 14, 0),
        ],
        kernels={k_dense.dense_forward: naive.naive_dense,
                 k_rec.simple_rnn_forward: naive.naive_simple_rnn},
        grads={g_rec.simple_rnn_backward: naive.naive_simple_rnn},
        keras=("simple_rnn_masked", "bidirectional_merges"),
    ),
    "LSTM": Row(
        cases=[  # 4 gates: kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u)
            ({"units": 4}, (6, 3), (4,), 128, 128),
            ({"units": 128}, (200, 128), (128,), 131584, 131584),
            ({"units": 3, "return_sequences": True, "use_bias": False}, (5, 2), (5, 3), 60, 60),
            ({"units": 2, "dropout": 0.5, "recurrent_dropout": 0.5, "unroll": True,
              "use_cudnn": False}, (4, 1), (2,), 32, 32),
        ],
        kernels={k_dense.dense_forward: naive.naive_dense, k_rec.lstm_forward: naive.naive_lstm},
        grads={g_rec.lstm_backward: naive.naive_lstm},
        keras=("imdb_bidirectional_lstm", "addition_rnn", "lstm_autoencoder", "char_lstm",
               "time_series_lstm", "time_distributed_conv"),
    ),
    "GRU": Row(
        cases=[  # reset_after (Keras 3's default): bias (2, 3u); else (3u,)
            ({"units": 4}, (6, 3), (4,), 108, 108),
            ({"units": 4, "reset_after": False}, (6, 3), (4,), 96, 96),
            ({"units": 3, "return_sequences": True, "go_backwards": True}, (5, 2), (5, 3), 63,
             63),
        ],
        kernels={k_dense.dense_forward: naive.naive_dense, k_rec.gru_forward: naive.naive_gru},
        grads={g_rec.gru_backward: naive.naive_gru},
        keras=("conv1d_gru", "gru_recurrent_dropout", "masking_gru", "sequence_tagger"),
    ),
    "Bidirectional": Row(
        cases=[  # both directions' weights; concat doubles the units
            ({"layer": {"type": "LSTM", "units": 4}}, (6, 3), (8,), 256, 256),
            ({"layer": {"type": "GRU", "units": 3, "return_sequences": True},
              "merge_mode": "sum"}, (5, 2), (5, 3), 126, 126),
            ({"layer": {"type": "SimpleRNN", "units": 2},
              "backward_layer": {"type": "LSTM", "units": 3, "go_backwards": True},
              "merge_mode": "concat", "trainable": False}, (4, 2), (5,), 82, 0),
        ],
        kernels={k_dense.dense_forward: naive.naive_dense, k_rec.lstm_forward: naive.naive_lstm,
                 k_rec.gru_forward: naive.naive_gru,
                 k_rec.simple_rnn_forward: naive.naive_simple_rnn},
        grads={g_rec.lstm_backward: naive.naive_lstm, g_rec.gru_backward: naive.naive_gru,
               g_rec.simple_rnn_backward: naive.naive_simple_rnn},
        keras=("imdb_bidirectional_lstm", "bidirectional_merges", "sequence_tagger"),
    ),
    "TimeDistributed": Row(
        cases=[
            ({"layer": {"type": "Dense", "units": 3}}, (5, 4), (5, 3), 15, 15),
            ({"layer": {"type": "Conv2D", "filters": 2, "kernel_size": 3}}, (4, 6, 6, 1),
             (4, 4, 4, 2), 20, 20),
            ({"layer": {"type": "Flatten"}}, (3, 2, 2), (3, 4), 0, 0),
        ],
        kernels={k_dense.dense_forward: naive.naive_dense, **SMALL_DENSE,
                 k_conv.conv2d_forward: naive.naive_conv2d, **ACTIVATION},
        grads={g_dense.dense_backward: naive_grad.dense64,
               g_conv.conv2d_backward: naive_grad.conv2d64, **ACTIVATION_GRAD},
        keras=("lstm_autoencoder", "time_distributed_conv", "sequence_tagger"),
    ),
    "ReLU": Row(
        cases=[({}, (3, 4), (3, 4), 0, 0), ({"max_value": 6}, (5,), (5,), 0, 0),
               ({"max_value": 2.5, "negative_slope": 0.1, "threshold": 0.5}, (2, 3, 4),
                (2, 3, 4), 0, 0)],
        kernels={},  # numpy, Keras's formula step by step; backward checked by finite
        grads={},    # differences (tests/test_activation_layers.py) and Keras's SGD step
        keras=("activation_layer_types",),
    ),
    "LeakyReLU": Row(
        cases=[({}, (3, 4), (3, 4), 0, 0), ({"negative_slope": 0.2}, (4, 4, 2), (4, 4, 2), 0, 0)],
        kernels={},  # numpy's where
        grads={},
        keras=("activation_layer_types",),
    ),
    "PReLU": Row(
        cases=[({}, (3, 4), (3, 4), 12, 12), ({"shared_axes": [1, 2]}, (5, 4, 3), (5, 4, 3), 3, 3),
               ({"shared_axes": 1, "trainable": False}, (6, 2), (6, 2), 2, 0)],
        kernels={},  # numpy: max(x, 0) - alpha·max(-x, 0)
        grads={},
        keras=("activation_layer_types",),
    ),
    "ELU": Row(
        cases=[({}, (3, 4), (3, 4), 0, 0), ({"alpha": 0.5}, (2, 5), (2, 5), 0, 0)],
        kernels={},  # numpy's expm1
        grads={},
        keras=("activation_layer_types",),
    ),
    "Softmax": Row(
        cases=[({}, (3, 4), (3, 4), 0, 0), ({"axis": 1}, (3, 4), (3, 4), 0, 0),
               ({"axis": [1, 3]}, (2, 3, 4), (2, 3, 4), 0, 0)],
        kernels={},  # numpy: exp(x - max) / sum, or exp(x - logsumexp) over several axes
        grads={},
        keras=("activation_layer_types",),
    ),
    "Normalization": Row(
        cases=[  # adapted: mean and variance per kept index, and a count; never trainable
            ({}, (4,), (4,), 9, 0),
            ({"axis": [1, 3]}, (2, 3, 4), (2, 3, 4), 17, 0),
            ({"axis": None}, (3, 2), (3, 2), 3, 0),
            ({"mean": [1.0, 2.0], "variance": [1.0, 4.0]}, (3, 2), (3, 2), 0, 0),
            ({"axis": None, "mean": 2.0, "variance": 4.0, "invert": True}, (5,), (5,), 0, 0),
            ({"axis": [-2, -1], "mean": [[1.0], [2.0], [3.0]], "variance": [[1.0], [4.0], [9.0]]},
             (3, 2), (3, 2), 0, 0),
        ],
        kernels={k_norm_more.normalization_forward: naive.naive_normalization},
        grads={},  # the statistics are constants: dx = dy / deviation, numpy
        keras=("normalization_adapted", "normalization_given", "regression_adapted",
               "regression_given"),
    ),
    "GroupNormalization": Row(
        cases=[
            ({"groups": 2}, (3, 3, 4), (3, 3, 4), 8, 8),
            ({"groups": -1, "axis": 1, "center": False}, (3, 2), (3, 2), 3, 3),
            ({"groups": 4, "axis": -2, "scale": False}, (3, 8, 2), (3, 8, 2), 8, 8),
            ({"groups": 1}, (6,), (6,), 12, 12),
        ],
        kernels={k_norm_more.group_norm_forward: naive.naive_group_norm},
        grads={g_norm_more.group_norm_backward: naive_grad.group_norm64},
        keras=("group_unit_norm", "groupnorm_convnet"),
    ),
    "UnitNormalization": Row(
        cases=[
            ({}, (5,), (5,), 0, 0),
            ({"axis": [1, 2]}, (3, 2, 4), (3, 2, 4), 0, 0),
            ({"axis": -2}, (3, 4), (3, 4), 0, 0),
        ],
        kernels={k_norm_more.unit_norm_forward: naive.naive_unit_norm},
        grads={g_norm_more.unit_norm_backward: naive_grad.unit_norm64},
        keras=("group_unit_norm",),
    ),
    "GaussianNoise": Row(
        cases=[({"stddev": 0.1}, (3, 4), (3, 4), 0, 0)],
        kernels={},  # the identity at inference; numpy's normal draws in training
        grads={},
        keras=("noise_layers", "denoising_autoencoder"),
    ),
    "GaussianDropout": Row(
        cases=[({"rate": 0.3}, (5,), (5,), 0, 0)],
        kernels={},  # the identity at inference; numpy's normal draws in training
        grads={},
        keras=("noise_layers",),
    ),
    "AlphaDropout": Row(
        cases=[({"rate": 0.1}, (5,), (5,), 0, 0),
               ({"rate": 0.5, "noise_shape": [None, 1, 3]}, (4, 3), (4, 3), 0, 0)],
        kernels={},  # the identity at inference; numpy's uniform draws in training
        grads={},
        keras=("noise_layers", "selu_mlp"),
    ),
    "SpatialDropout1D": Row(
        cases=[({"rate": 0.2}, (6, 3), (6, 3), 0, 0)],
        kernels={},  # the identity at inference; numpy's uniform draws in training
        grads={},
        keras=("noise_layers",),
    ),
    "SpatialDropout2D": Row(
        cases=[({"rate": 0.2}, (4, 4, 3), (4, 4, 3), 0, 0)],
        kernels={},  # the identity at inference; numpy's uniform draws in training
        grads={},
        keras=("noise_layers", "groupnorm_convnet"),
    ),
    "SpatialDropout3D": Row(
        cases=[({"rate": 0.2}, (2, 3, 4, 3), (2, 3, 4, 3), 0, 0)],
        kernels={},  # the identity at inference; numpy's uniform draws in training
        grads={},
        keras=("noise_layers",),
    ),
    "ActivityRegularization": Row(
        cases=[({"l1": 0.01, "l2": 0.001}, (3, 4), (3, 4), 0, 0)],
        kernels={},  # the identity; its penalty and gradient, numpy
        grads={},
        keras=("activity_regularization",),
    ),
    "Identity": Row(
        cases=[({}, (3, 2), (3, 2), 0, 0)],
        kernels={},
        grads={},
        keras=("noise_layers",),
    ),
    "RandomFlip": Row(
        cases=[({}, (4, 5, 3), (4, 5, 3), 0, 0),
               ({"mode": "horizontal", "seed": 3}, (6, 6, 1), (6, 6, 1), 0, 0)],
        kernels={},  # the identity at inference; numpy's flips in training
        grads={},
        keras=("augmentation_layers", "augmentation_tutorial", "image_classification_tutorial"),
    ),
    "RandomRotation": Row(
        cases=[({"factor": 0.1}, (8, 8, 3), (8, 8, 3), 0, 0),
               ({"factor": [-0.2, 0.3], "fill_mode": "constant", "interpolation": "nearest"},
                (5, 7, 2), (5, 7, 2), 0, 0)],
        kernels={k_aug.affine_transform_forward: naive.naive_affine_transform},
        grads={g_aug.affine_transform_backward: naive_grad.affine_transform64},
        keras=("augmentation_layers", "augmentation_tutorial", "image_classification_tutorial"),
    ),
    "RandomZoom": Row(
        cases=[({"height_factor": 0.1}, (8, 8, 3), (8, 8, 3), 0, 0),
               ({"height_factor": [-0.3, 0.1], "width_factor": 0.4, "fill_mode": "wrap"},
                (6, 4, 1), (6, 4, 1), 0, 0)],
        kernels={k_aug.affine_transform_forward: naive.naive_affine_transform},
        grads={g_aug.affine_transform_backward: naive_grad.affine_transform64},
        keras=("augmentation_layers", "image_classification_tutorial"),
    ),
    "RandomTranslation": Row(
        cases=[({"height_factor": 0.2, "width_factor": [-0.1, 0.3]}, (8, 8, 3), (8, 8, 3), 0,
                0)],
        kernels={k_aug.affine_transform_forward: naive.naive_affine_transform},
        grads={g_aug.affine_transform_backward: naive_grad.affine_transform64},
        keras=("augmentation_layers",),
    ),
    "RandomContrast": Row(
        cases=[({"factor": 0.2}, (8, 8, 3), (8, 8, 3), 0, 0),
               ({"factor": [0.1, 0.5], "value_range": [0, 1]}, (3, 3, 1), (3, 3, 1), 0, 0)],
        kernels={},  # the identity at inference; numpy's means and clipping in training
        grads={},
        keras=("augmentation_layers",),
    ),
    "RandomBrightness": Row(
        cases=[({"factor": 0.2}, (8, 8, 3), (8, 8, 3), 0, 0),
               ({"factor": [-0.1, 0.4], "value_range": [1, -1]}, (2, 5, 2), (2, 5, 2), 0, 0)],
        kernels={},  # the identity at inference; numpy's sums and clipping in training
        grads={},
        keras=("augmentation_layers",),
    ),
    "Sequential": Row(
        cases=[  # one row with its totals
            ({"layers": [{"type": "Dense", "units": 3}, {"type": "Dense", "units": 2}]}, (4,),
             (2,), 23, 23),
            ({"trainable": False,
              "layers": [{"type": "Dense", "units": 3}, {"type": "BatchNormalization"}]},
             (4,), (3,), 27, 0),
        ],
        kernels={},  # its layers' own
        grads={},
        keras=("nested_inline", "nested_deep", "nested_frozen"),
    ),
}

SHARED_KERNELS = {k_act.bias_activation_inplace: naive.naive_bias_activation,
                  k_small.small_conv2d_forward: naive.naive_conv2d,
                  k_small.small_pool2d_forward: naive.naive_max_pool2d,
                  k_small.small_global_pool_forward: naive.naive_global_max_pool,
                  k_upd.sgd_update: naive.naive_sgd_update,
                  k_upd.adam_update: naive.naive_adam_update,
                  k_upd.rmsprop_update: naive.naive_rmsprop_update}
"""Kernels that layers reach only through other kernels (the fused bias + activation
epilogue of dense and convolution kernels), only in a small run (the numpy path of
convolutions and pooling, tests/test_small_path.py), or only through `fit` (the optimizers'
updates, tests/test_losses_optimizers.py)."""


def _merged(tables) -> dict:
    merged: dict = {}
    for table in tables:
        for kernel, reference in table.items():
            assert merged.get(kernel, reference) is reference, f"{kernel} has two references"
            merged[kernel] = reference
    return merged


CASES = [({"type": name, **settings}, *rest) for name, row in ROWS.items()
         for settings, *rest in row.cases]
"""Every shape case: (settings with `type`, input shape, output shape, params, trainable)."""
KERNEL_REFERENCES = _merged([row.kernels for row in ROWS.values()] + [SHARED_KERNELS])
"""Every public forward kernel → its slow reference."""
GRAD_REFERENCES = _merged(row.grads for row in ROWS.values())
"""Every public training kernel → the float64 function its results are checked against."""
