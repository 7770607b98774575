"""Record jax.grad of Keras 3 layers and activations into jax_grads.npz (run once, by hand).

    KERAS_BACKEND=jax /work/kenv/bin/python tests/grad_reference/make_references.py

Each case stores its inputs, the upstream gradient `dy` and JAX's gradients under
`<case>/<name>`; tests/test_grad_kernels.py replays them without JAX. Layers run through
`stateless_call`, so the geometry ('same' padding, groups, depth multipliers) is Keras's own.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = Path(__file__).with_name("jax_grads.npz")
ACTIVATION_NAMES = (
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softmax", "log_softmax",
    "elu", "selu", "gelu", "silu", "hard_silu", "softplus", "softsign", "leaky_relu",
    "exponential", "mish",
)
store: dict[str, np.ndarray] = {}
rng = np.random.default_rng(20240611)


def f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def normal(*shape, scale=1.0) -> np.ndarray:
    return f32(rng.standard_normal(shape) * scale)


def put(case: str, **arrays) -> None:
    for name, value in arrays.items():
        store[f"{case}/{name}"] = np.asarray(value)


def activation_points() -> np.ndarray:
    """Kinks, their float32 neighbours, zeros of both signs, extremes and random values."""
    kinks = [-6.0, -3.0, 0.0, 3.0, 6.0]
    pts = [-0.0, 1e-30, -1e-30, -1e30, 1e30, -100.0, 100.0, -20.0, 20.0]
    for k in kinks:
        k32 = np.float32(k)
        pts += [k32, np.nextafter(k32, np.float32(-np.inf)), np.nextafter(k32, np.float32(np.inf))]
    pts += list(rng.standard_normal(13) * 3.0)
    return f32(pts)


def activations() -> None:
    x = activation_points()
    dy = f32(rng.uniform(0.5, 1.5, x.shape))
    put("activation", x=x, dy=dy)
    for name in ACTIVATION_NAMES:
        fn = keras.activations.get(name)
        if name == "gelu":
            fn = lambda v, g=fn: g(v, approximate=False)  # noqa: E731  (Keras's default is exact)
        if name in ("softmax", "log_softmax"):
            rows = normal(4, 6, scale=2.0)
            rows[0] = [1.0, 1.0, 1.0, -2.0, 0.0, 1.0]
            rows_dy = normal(4, 6)
            _, vjp = jax.vjp(fn, jnp.asarray(rows))
            put(f"activation/{name}", x=rows, dy=rows_dy, dx=vjp(jnp.asarray(rows_dy))[0])
        else:
            _, vjp = jax.vjp(fn, jnp.asarray(x))
            put(f"activation/{name}", dx=vjp(jnp.asarray(dy))[0])


def layer_case(case: str, layer, x, training=None, **settings) -> None:
    """Store x, weights, dy, outputs and (dx, d<weight>...) of `layer` at x, by jax.vjp."""
    layer.build(x.shape)
    trainable = [f32(rng.standard_normal(v.shape) * 0.5 + (1.0 if v.name == "gamma" else 0.0))
                 for v in layer.trainable_variables]
    non_trainable = [f32(rng.uniform(0.5, 2.0, v.shape) if "variance" in v.path
                         else rng.standard_normal(v.shape)) for v in layer.non_trainable_variables]

    mask = settings.get("mask")

    def run(inputs, weights):
        extra = {} if training is None else {"training": training}
        if mask is not None:
            extra["mask"] = jnp.asarray(mask)
        return layer.stateless_call(weights, non_trainable, inputs, **extra)

    (y, new_state), vjp = jax.vjp(run, jnp.asarray(x), [jnp.asarray(w) for w in trainable])
    dy = normal(*y.shape)
    dx, dweights = vjp((jnp.asarray(dy), [jnp.zeros_like(s) for s in new_state]))
    put(case, x=x, y=y, dy=dy, dx=dx, **settings)
    for var, value, grad in zip(layer.trainable_variables, trainable, dweights):
        put(case, **{var.name: value, f"d{var.name}": grad})
    for var, value, new in zip(layer.non_trainable_variables, non_trainable, new_state):
        put(case, **{var.name: value, f"new_{var.name}": new})


def layers() -> None:
    kl = keras.layers
    layer_case("dense_gelu", kl.Dense(5, activation="gelu"), normal(3, 4), activation="gelu")
    layer_case("dense_softmax", kl.Dense(4, activation="softmax"), normal(2, 6),
               activation="softmax")
    layer_case("conv2d_stride2_same", kl.Conv2D(4, 3, strides=2, padding="same"),
               normal(2, 7, 6, 3), kernel_size=(3, 3), strides=(2, 2), dilation=(1, 1),
               groups=1, padding_mode="same")
    layer_case("conv2d_dilated_groups", kl.Conv2D(4, (2, 3), dilation_rate=2, groups=2,
                                                 padding="same"),
               normal(1, 6, 7, 4), kernel_size=(2, 3), strides=(1, 1), dilation=(2, 2), groups=2,
               padding_mode="same")
    layer_case("conv1d_stride2_same", kl.Conv1D(3, 3, strides=2, padding="same"),
               normal(3, 9, 2), kernel_size=(1, 3), strides=(1, 2), dilation=(1, 1), groups=1,
               padding_mode="same")
    layer_case("depthwise_dm2_stride2_same",
               kl.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
               normal(2, 7, 6, 3), kernel_size=(3, 3), strides=(2, 2), dilation=(1, 1),
               padding_mode="same")
    layer_case("depthwise_dm3_dilated",
               kl.DepthwiseConv2D((3, 2), dilation_rate=2, depth_multiplier=3),
               normal(1, 7, 6, 2), kernel_size=(3, 2), strides=(1, 1), dilation=(2, 2),
               padding_mode="valid")
    ties = f32([[1, 2, 2], [2, 2, 0], [0, 2, 1]]).reshape(1, 3, 3, 1)
    layer_case("max_pool_ties_valid", kl.MaxPooling2D(2, strides=1), ties,
               pool=(2, 2), strides=(1, 1), padding_mode="valid")
    layer_case("max_pool_ties_same", kl.MaxPooling2D(2, strides=1, padding="same"), ties,
               pool=(2, 2), strides=(1, 1), padding_mode="same")
    many_ties = f32(rng.integers(0, 3, (2, 5, 6, 2)))
    layer_case("max_pool_many_ties_same", kl.MaxPooling2D(3, strides=2, padding="same"),
               many_ties, pool=(3, 3), strides=(2, 2), padding_mode="same")
    layer_case("max_pool_many_ties_overlap", kl.MaxPooling2D((2, 3), strides=1),
               many_ties, pool=(2, 3), strides=(1, 1), padding_mode="valid")
    negative = f32(-np.ones((1, 3, 3, 1)))  # padding (-inf) never receives, real -1s do
    layer_case("max_pool_negative_same", kl.MaxPooling2D(2, padding="same"), negative,
               pool=(2, 2), strides=(2, 2), padding_mode="same")
    layer_case("avg_pool_same", kl.AveragePooling2D(3, strides=2, padding="same"),
               normal(2, 5, 6, 2), pool=(3, 3), strides=(2, 2), padding_mode="same")
    layer_case("avg_pool_same_overlap", kl.AveragePooling2D((2, 3), strides=1, padding="same"),
               normal(1, 4, 5, 3), pool=(2, 3), strides=(1, 1), padding_mode="same")
    layer_case("global_max_ties", kl.GlobalMaxPooling2D(), f32(rng.integers(0, 2, (2, 3, 3, 2))))
    layer_case("global_max_1d", kl.GlobalMaxPooling1D(), normal(3, 5, 2))
    layer_case("global_avg", kl.GlobalAveragePooling2D(), normal(2, 3, 4, 2))
    layer_case("batch_norm_train", kl.BatchNormalization(momentum=0.9), normal(3, 4, 5, 2) * 2 + 1,
               training=True, momentum=0.9, epsilon=1e-3)
    layer_case("batch_norm_inference", kl.BatchNormalization(), normal(3, 4, 2),
               training=False, epsilon=1e-3)
    layer_case("layer_norm_two_axes", kl.LayerNormalization(axis=[-2, -1]), normal(3, 4, 5),
               epsilon=1e-3)
    layer_case("layer_norm_last_axis", kl.LayerNormalization(epsilon=1e-5), normal(2, 3, 6) + 3,
               epsilon=1e-5)
    layer_case("zero_pad", kl.ZeroPadding2D(((1, 2), (0, 1))), normal(2, 3, 4, 2),
               padding=((1, 2), (0, 1)))
    layer_case("upsample", kl.UpSampling2D((2, 3)), normal(2, 3, 2, 2), size=(2, 3))
    layer_case("rescaling", kl.Rescaling(scale=1 / 127.5, offset=-1.0), normal(2, 3) * 100,
               scale=1 / 127.5)


def recurrent() -> None:
    """The recurrent layers through time (masks with steps masked at the start, in the middle
    and at the end; go_backwards; every output form), `config` their seqcli settings."""
    import json

    kl = keras.layers
    mask = np.array([[1, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1]], dtype=bool)
    cases = [
        ("lstm_masked_sequences", kl.LSTM, {"units": 3, "return_sequences": True}, mask),
        ("lstm_backwards_last", kl.LSTM, {"units": 4, "go_backwards": True,
                                          "recurrent_activation": "hard_sigmoid"}, None),
        ("gru_masked_zero_output", kl.GRU, {"units": 3, "return_sequences": True,
                                            "zero_output_for_mask": True}, mask),
        ("gru_reset_before_backwards", kl.GRU, {"units": 3, "reset_after": False,
                                                "go_backwards": True}, mask),
        ("simple_rnn_relu_masked", kl.SimpleRNN, {"units": 3, "activation": "relu"}, mask),
    ]
    for case, cls, config, case_mask in cases:
        extra = {} if case_mask is None else {"mask": case_mask}
        layer_case(case, cls(**config), normal(3, 5, 2), config=json.dumps(
            {"type": cls.__name__, **config}), **extra)


def moving_average_evidence() -> None:
    """Keras's moving-variance update uses the biased batch variance (stored for the tests)."""
    layer = keras.layers.BatchNormalization(momentum=0.5)
    x = f32([[1.0], [2.0], [4.0], [9.0]])
    layer.build(x.shape)
    layer(x, training=True)
    put("moving_average_evidence", x=x, momentum=0.5,
        new_moving_mean=layer.moving_mean.numpy(), new_moving_variance=layer.moving_variance.numpy())


def normalization_more() -> None:
    """GroupNormalization and UnitNormalization (after the others: their draws come last)."""
    kl = keras.layers
    layer_case("group_norm_two_groups", kl.GroupNormalization(groups=2),
               normal(3, 4, 3, 6) * 2 + 1, groups=2, axis=-1, epsilon=1e-3)
    layer_case("group_norm_instance_axis1", kl.GroupNormalization(groups=-1, axis=1,
                                                                  epsilon=1e-5),
               normal(2, 4, 3), groups=-1, axis=1, epsilon=1e-5)
    layer_case("unit_norm_two_axes", kl.UnitNormalization(axis=[1, 2]), normal(3, 4, 5),
               axis=[1, 2])
    layer_case("unit_norm_last_axis", kl.UnitNormalization(), normal(4, 6) * 3, axis=-1)


def conv_family() -> None:
    """The 3-D and transposed convolutions and the 3-D poolings, `config` their seqcli
    settings (replayed through seqcli's layers)."""
    import json

    kl = keras.layers
    ties = f32(rng.integers(0, 3, (2, 4, 5, 4, 2)))
    cases = [
        ("conv3d_groups_same", kl.Conv3D, {"filters": 4, "kernel_size": [2, 3, 2],
                                           "strides": [1, 2, 1], "padding": "same",
                                           "groups": 2}, normal(2, 4, 5, 4, 4)),
        ("conv3d_transpose_same", kl.Conv3DTranspose, {"filters": 3, "kernel_size": 3,
                                                       "strides": 2, "padding": "same"},
         normal(2, 2, 3, 2, 2)),
        ("conv2d_transpose_output_padding", kl.Conv2DTranspose,
         {"filters": 3, "kernel_size": [3, 2], "strides": [2, 3], "output_padding": [1, 2]},
         normal(2, 3, 4, 2)),
        ("conv1d_transpose_same_dilated", kl.Conv1DTranspose,
         {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
         normal(3, 6, 2)),
        ("max_pool3d_ties_same", kl.MaxPooling3D, {"pool_size": [2, 3, 2], "strides": [1, 2, 1],
                                                   "padding": "same"}, ties),
        ("avg_pool3d_same", kl.AveragePooling3D, {"pool_size": 3, "strides": 2,
                                                  "padding": "same"}, normal(1, 5, 4, 5, 2)),
    ]
    for case, cls, config, x in cases:
        keyword = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        layer_case(case, cls(**keyword), x, config=json.dumps({"type": cls.__name__, **config}))


def augmentation() -> None:
    """keras.ops.image.affine_transform (the resampling of RandomRotation, RandomZoom and
    RandomTranslation) with fixed matrices, its vjp in the images (after the others)."""
    cases = [("affine_rotation_bilinear_reflect", "bilinear", "reflect", (2, 6, 5, 2)),
             ("affine_zoom_nearest_constant", "nearest", "constant", (2, 5, 7, 1)),
             ("affine_shear_bilinear_wrap", "bilinear", "wrap", (2, 4, 6, 2))]
    for case, interpolation, fill_mode, shape in cases:
        x = normal(*shape)
        n = shape[0]
        angle = rng.uniform(-2.0, 2.0, n)
        scale = rng.uniform(0.6, 1.5, n)
        transforms = f32(np.stack([scale * np.cos(angle), -scale * np.sin(angle),
                                   rng.uniform(-3, 3, n), np.sin(angle), np.cos(angle),
                                   rng.uniform(-3, 3, n), np.zeros(n), np.zeros(n)], axis=1))

        def run(images, transforms=transforms, interpolation=interpolation,
                fill_mode=fill_mode):
            return keras.ops.image.affine_transform(images, transforms, interpolation,
                                                    fill_mode, fill_value=0.75)

        y, vjp = jax.vjp(run, jnp.asarray(x))
        dy = normal(*shape)
        put(case, x=x, transforms=transforms, dy=dy, y=y, dx=vjp(jnp.asarray(dy))[0],
            interpolation=np.array(interpolation), fill_mode=np.array(fill_mode),
            fill_value=0.75)


if __name__ == "__main__":
    activations()
    layers()
    recurrent()
    moving_average_evidence()
    normalization_more()
    conv_family()
    augmentation()
    np.savez_compressed(OUT, **store)
    print(f"wrote {len(store)} arrays to {OUT} (keras {keras.__version__}, jax {jax.__version__})")
