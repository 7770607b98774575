"""Generate the Keras 3 files that tests/test_keras_interop.py imports (and refuses).

Run it from a Python environment that has keras (3.x), jax, numpy and pyyaml, from the
repository root:

    KERAS_BACKEND=jax python tests/keras_files/make_keras_files.py [STEM ...]

It writes into tests/keras_files/:

    <stem>.keras, <stem>.input.npy, <stem>.output.npy
        models built here with real Keras (every layer type of the contract appears in at
        least one; nested and frozen models, a Functional chain, training-only options),
        deterministic non-trivial weights, and Keras's `model.predict` of a fixed input
    <stem>.sgd.npz                   for SGD_STEPS: targets, Keras's train_on_batch loss and
                                     weights after it (SGD 0.1, mse, the whole batch)
    unbuilt.keras                    a Sequential never built (no input shape, no weights)
    nested_frozen.weights.h5         `model.save_weights` of nested_frozen
    ref_<stem>.keras (and ref_nested_frozen.weights.h5)
        tests/keras_reference/models/<stem>.yaml with its reference weights, saved by Keras:
        what `seqcli export-keras` of the same model is compared with
    refuse_<case>.keras              Keras-made files the importer must refuse: a Lambda
                                     layer, a custom layer class, a branching Functional
                                     model, a channels_first convolution
    manifest.json                    stems, input shapes, versions

seqcli never depends on Keras: the tests only read these files. Rerun this script after
changing it and commit its outputs (they stay well under 1 MB).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "keras_reference"
BATCH = 3
L = keras.layers

_spec = importlib.util.spec_from_file_location("make_fixtures",
                                               REFERENCE / "make_fixtures.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def image_stack():
    """Every 2-D layer type: Rescaling, ZeroPadding2D (asymmetric), strided Conv2D with a
    regularizer (dropped with a note), a frozen BatchNormalization, DepthwiseConv2D with
    depth_multiplier 2 and no bias, SeparableConv2D with swish and a constraint (dropped),
    MaxPooling2D, UpSampling2D, AveragePooling2D 'same', grouped 1x1 Conv2D,
    GlobalMaxPooling2D with keepdims, GlobalAveragePooling2D, and a softmax Dense whose
    RandomNormal initializer seqcli lacks."""
    model = keras.Sequential([
        keras.Input((10, 10, 3)),
        L.Rescaling(1 / 127.5, offset=-1.0, name="scale"),
        L.ZeroPadding2D(((1, 0), (2, 1))),
        L.Conv2D(8, 3, strides=2, activation="relu", kernel_regularizer="l2", name="stem"),
        L.BatchNormalization(name="bn"),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False),
        L.SeparableConv2D(6, 3, padding="same", activation="swish",
                          bias_constraint=keras.constraints.NonNeg()),
        L.MaxPooling2D(2),
        L.UpSampling2D(2),
        L.AveragePooling2D(2, strides=1, padding="same"),
        L.Conv2D(4, 1, groups=2),
        L.GlobalMaxPooling2D(keepdims=True),
        L.GlobalAveragePooling2D(),
        L.Dense(5, activation="softmax",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.1)),
    ], name="image_stack")
    model.get_layer("bn").trainable = False
    return model, "pixels"


def sequence_stack():
    """The 1-D layers: causal dilated Conv1D with gelu, MaxPooling1D, strided grouped 'same'
    Conv1D, AveragePooling1D 'same', LayerNormalization (epsilon 1e-5, then over axes
    [2, 1], which Keras saves sorted), GlobalAveragePooling1D
    with keepdims, GlobalMaxPooling1D, tanh Dense."""
    model = keras.Sequential([
        keras.Input((20, 4)),
        L.Conv1D(6, 3, dilation_rate=2, padding="causal", activation="gelu"),
        L.MaxPooling1D(2),
        L.Conv1D(8, 3, strides=2, padding="same", groups=2),
        L.AveragePooling1D(2, padding="same"),
        L.LayerNormalization(epsilon=1e-5),
        L.LayerNormalization(axis=[2, 1]),
        L.GlobalAveragePooling1D(keepdims=True),
        L.GlobalMaxPooling1D(),
        L.Dense(3, activation="tanh"),
    ], name="sequence_stack")
    return model, "normal"


def nested_frozen():
    """Nested Sequentials: a frozen `body` (Dense elu, BatchNormalization without center,
    and a nested `inner` with a bias-free Dense and a scale-free LayerNormalization), a
    `head` with Reshape, Activation hard_silu, Dropout, Flatten and a frozen Dense; then
    Flatten, Dense and Activation log_softmax around them."""
    body = keras.Sequential([
        L.Dense(12, activation="elu"),
        L.BatchNormalization(center=False),
        keras.Sequential([L.Dense(8, use_bias=False), L.LayerNormalization(scale=False)],
                         name="inner"),
    ], name="body")
    head = keras.Sequential([
        L.Reshape((2, 4)),
        L.Activation("hard_silu"),
        L.Dropout(0.3),
        L.Flatten(),
        L.Dense(4, name="out"),
    ], name="head")
    model = keras.Sequential([keras.Input((6, 4)), L.Flatten(), L.Dense(12, activation="relu"),
                              body, head, L.Activation("log_softmax")], name="nested_frozen")
    body.trainable = False
    head.get_layer("out").trainable = False
    return model, "normal"


def functional_chain():
    """A Functional model that is a single chain: Dense selu, a BatchNormalization called
    with training=False, Dense, Activation mish."""
    inputs = keras.Input((5,), name="features")
    x = L.Dense(7, activation="selu", name="a")(inputs)
    x = L.BatchNormalization(name="norm")(x, training=False)
    x = L.Dense(3, name="b")(x)
    outputs = L.Activation("mish", name="act")(x)
    return keras.Model(inputs, outputs, name="chain"), "normal"


def vector_steps():
    """A vector made into steps: Dense relu, RepeatVector 4, Permute (2, 1) (features become
    steps), a Dense over the steps, Permute (2, 1) back, Flatten, Dense."""
    model = keras.Sequential([
        keras.Input((6,)),
        L.Dense(5, activation="relu"),
        L.RepeatVector(4),
        L.Permute((2, 1)),
        L.Dense(3),
        L.Permute((2, 1)),
        L.Flatten(),
        L.Dense(2),
    ], name="vector_steps")
    return model, "normal"


def imdb_bidirectional():
    """keras-io examples/nlp/bidirectional_lstm_imdb.py with smaller sizes: integer ids in,
    Embedding (no mask, as the example), Bidirectional(LSTM return_sequences),
    Bidirectional(LSTM), Dense 1 sigmoid."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = L.Embedding(300, 16)(inputs)
    x = L.Bidirectional(L.LSTM(12, return_sequences=True))(x)
    x = L.Bidirectional(L.LSTM(12))(x)
    outputs = L.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="imdb"), "ids:300:20"


def masked_text():
    """Padded ids with mask_zero (guides/working_with_rnns.py): Embedding, SimpleRNN returning
    sequences, GRU (reset_after false, dropout and recurrent_dropout) returning sequences,
    TimeDistributed(Dense), the masked GlobalAveragePooling1D, Dense."""
    model = keras.Sequential([
        keras.Input((9,), dtype="int32"),
        L.Embedding(50, 8, mask_zero=True),
        L.SimpleRNN(6, return_sequences=True),
        L.GRU(5, return_sequences=True, reset_after=False, dropout=0.1, recurrent_dropout=0.2),
        L.TimeDistributed(L.Dense(4, activation="relu")),
        L.GlobalAveragePooling1D(),
        L.Dense(2),
    ], name="masked_text")
    return model, "ids:50:padded"


def masking_autoencoder():
    """A recurrent autoencoder over zero-padded series: Masking, LSTM, RepeatVector, GRU
    returning sequences (go_backwards), Bidirectional(SimpleRNN, merge_mode ave),
    TimeDistributed(Dense)."""
    model = keras.Sequential([
        keras.Input((6, 3)),
        L.Masking(0.0),
        L.LSTM(8),
        L.RepeatVector(6),
        L.GRU(7, return_sequences=True, go_backwards=True),
        L.Bidirectional(L.SimpleRNN(4, return_sequences=True), merge_mode="ave"),
        L.TimeDistributed(L.Dense(3)),
    ], name="masking_autoencoder")
    return model, "padded"


def gan_discriminator():
    """The TensorFlow DCGAN tutorial's discriminator, scaled down, with the activation layers:
    Conv2D 'same' strided, LeakyReLU (default 0.3), Dropout, a Conv2D whose activation is a
    LeakyReLU(0.2) layer (read as leaky_relu), Flatten; then Dense, PReLU, a Dense whose
    activation is LeakyReLU() (0.3: no activation name computes it), ELU(0.5), ReLU with
    max_value and negative_slope, Dense, Softmax."""
    model = keras.Sequential([
        keras.Input((14, 14, 1)),
        L.Conv2D(8, 5, strides=2, padding="same"),
        L.LeakyReLU(),
        L.Dropout(0.3),
        L.Conv2D(16, 5, strides=2, padding="same", activation=L.LeakyReLU(0.2)),
        L.Dropout(0.3),
        L.Flatten(),
        L.Dense(12),
        L.PReLU(),
        L.Dense(8, activation=L.LeakyReLU()),
        L.ELU(0.5),
        L.ReLU(max_value=3.0, negative_slope=0.1),
        L.Dense(4),
        L.Softmax(),
    ], name="gan_discriminator")
    return model, "normal"


# the spread and centre of the auto-mpg features the regression tutorial normalises
FEATURE_SCALE = np.array([1.7, 104.0, 38.5, 846.0, 2.8, 3.7, 0.45, 0.4, 0.5])
FEATURE_CENTRE = np.array([5.5, 195.0, 104.9, 2990.0, 15.6, 75.9, 0.18, 0.2, 0.62])


def features(rng, rows):
    """Auto-mpg-like rows: nine features on their very different scales."""
    return (rng.normal(size=(rows, 9)) * FEATURE_SCALE + FEATURE_CENTRE).astype("float32")


def spectrograms(rng, rows):
    """Spectrogram-like (12 frames, 10 bins) magnitudes: positive, loud in the low bins."""
    loudness = np.linspace(3.0, 0.5, 10)
    return np.abs(rng.normal(size=(rows, 12, 10)) * loudness).astype("float32")


def regression_adapt():
    """TensorFlow's keras/regression tutorial (auto-mpg), scaled down: Normalization(axis=-1)
    adapt()-ed on the training features (mean, variance, count saved as weights), then
    Dense 16 relu, Dense 16 relu, Dense 1."""
    normalizer = L.Normalization(axis=-1)
    model = keras.Sequential([keras.Input((9,)), normalizer, L.Dense(16, activation="relu"),
                              L.Dense(16, activation="relu"), L.Dense(1)], name="dnn_model")
    return model, "features", lambda: normalizer.adapt(features(np.random.default_rng(7), 300))


def simple_audio():
    """TensorFlow's audio/simple_audio classifier, scaled down: a spectrogram reshaped to an
    image, Normalization adapt()-ed on spectrograms, Conv2D relu, Conv2D, GroupNormalization
    (4 groups), relu, SpatialDropout2D, MaxPooling2D, Dropout, Flatten, Dense relu, Dropout,
    Dense."""
    normalizer = L.Normalization()
    model = keras.Sequential([
        keras.Input((12, 10)),
        L.Reshape((12, 10, 1)),
        normalizer,
        L.Conv2D(4, 3, activation="relu"),
        L.Conv2D(8, 3),
        L.GroupNormalization(groups=4),
        L.Activation("relu"),
        L.SpatialDropout2D(0.25),
        L.MaxPooling2D(),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(16, activation="relu"),
        L.Dropout(0.5),
        L.Dense(4),
    ], name="simple_audio")
    return model, "spectrograms", lambda: normalizer.adapt(
        spectrograms(np.random.default_rng(8), 64).reshape(64, 12, 10, 1))


def training_only_stack():
    """A self-normalising MLP (Dense selu with lecun_normal, AlphaDropout, one with a
    noise_shape) with the other training-only layers between: GaussianNoise on the input,
    GaussianDropout, ActivityRegularization (l1, l2), Identity, SpatialDropout1D and
    SpatialDropout3D after reshapes, UnitNormalization over two axes, a softmax Dense."""
    init = "lecun_normal"
    model = keras.Sequential([
        keras.Input((16,)),
        L.GaussianNoise(0.1),
        L.Dense(16, activation="selu", kernel_initializer=init),
        L.AlphaDropout(0.1),
        L.Dense(16, activation="selu", kernel_initializer=init),
        L.AlphaDropout(0.2, noise_shape=(None, 16), seed=5),
        L.GaussianDropout(0.1),
        L.ActivityRegularization(l1=1e-3, l2=1e-4),
        L.Identity(),
        L.Reshape((4, 4)),
        L.SpatialDropout1D(0.1),
        L.Reshape((2, 2, 2, 2)),
        L.SpatialDropout3D(0.1),
        L.UnitNormalization(axis=[1, 2]),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], name="snn")
    return model, "normal"


def flowers_augmented():
    """TensorFlow's image classification tutorial (flowers), scaled down to 24x24: a nested
    data_augmentation Sequential (RandomFlip horizontal, RandomRotation 0.1, RandomZoom 0.1)
    in front, Rescaling 1/255, three Conv2D 'same' relu with MaxPooling2D, Dropout 0.2,
    Flatten, Dense relu, Dense 5 logits."""
    data_augmentation = keras.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1),
                                          L.RandomZoom(0.1)], name="data_augmentation")
    model = keras.Sequential([
        keras.Input((24, 24, 3)),
        data_augmentation,
        L.Rescaling(1.0 / 255),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Dropout(0.2),
        L.Flatten(),
        L.Dense(16, activation="relu"),
        L.Dense(5),
    ], name="flowers")
    return model, "pixels"


def prelu_activation():
    """PReLU as other layers' activation (its alpha created by Keras at the layer's first call,
    kept in the layer's `activation` group): Conv2D with PReLU(shared_axes=[1, 2]), Flatten,
    Dense with PReLU(), Dense."""
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        L.Conv2D(3, 3, activation=L.PReLU(shared_axes=[1, 2])),
        L.Flatten(),
        L.Dense(4, activation=L.PReLU()),
        L.Dense(2),
    ], name="prelu_activation")
    model(np.zeros((1, 5, 5, 2), "float32"))  # builds the activations' weights
    return model, "normal"


def augmentation_crop():
    """RandomCrop to the input's own size (where Keras's inference, which returns the image
    uncropped, and its declared shape agree), then Conv2D, GlobalAveragePooling2D, Dense."""
    model = keras.Sequential([
        keras.Input((6, 8, 3)),
        L.RandomCrop(6, 8, seed=2),
        L.Conv2D(4, 3, activation="relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(2),
    ], name="augmentation_crop")
    return model, "pixels"


def augmentation_stack():
    """Every image-augmentation option in front of a small convnet: RandomTranslation (pairs,
    constant fill with a value, nearest interpolation), RandomZoom (height and width, wrap),
    RandomRotation (a pair, nearest fill), RandomFlip vertical with a seed, RandomContrast (a
    pair over [0, 255]), RandomBrightness (a reversed value_range), Conv2D, GlobalMaxPooling2D,
    Dense."""
    model = keras.Sequential([
        keras.Input((10, 12, 3)),
        L.RandomTranslation((-0.2, 0.1), 0.3, fill_mode="constant", fill_value=20.0,
                            interpolation="nearest"),
        L.RandomZoom(0.2, (-0.1, 0.3), fill_mode="wrap"),
        L.RandomRotation((-0.1, 0.25), fill_mode="nearest"),
        L.RandomFlip("vertical", seed=4),
        L.RandomContrast((0.2, 0.5)),
        L.RandomBrightness(0.1, value_range=(255, 0)),
        L.Conv2D(4, 3, activation="relu"),
        L.GlobalMaxPooling2D(),
        L.Dense(3),
    ], name="augmented")
    return model, "pixels"


@contextlib.contextmanager
def seqcli_draws(seed: int | None):
    """Keras's random.uniform and random.dropout drawing what `seqcli fit --seed SEED
    --no-shuffle` draws, in the same order (seqcli's image augmentation: one float32 uniform
    per image and call; its Dropout: keep where a float64 uniform >= rate), so that one
    training step of a model with random layers can be compared."""
    if seed is None:
        yield
        return
    import jax.numpy as jnp
    from keras.src.backend.jax import random as jax_random

    rng = np.random.default_rng(seed)
    saved = jax_random.uniform, jax_random.dropout

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        u = rng.random(int(shape[0]), dtype=np.float32).reshape(shape)
        low, high = np.float32(minval), np.float32(maxval)
        return jnp.asarray(low + (high - low) * u)

    def dropout(inputs, rate, noise_shape=None, seed=None):
        keep = rng.random(tuple(inputs.shape)) >= rate
        return jnp.where(keep, inputs / (1.0 - rate), 0.0)

    jax_random.uniform, jax_random.dropout = uniform, dropout
    try:
        yield
    finally:
        jax_random.uniform, jax_random.dropout = saved


def flowers_preprocessing():
    """TensorFlow's image-classification tutorial (flowers) scaled down: a nested Sequential
    preprocessing head (Resizing, Rescaling 1/255) before Conv2D/MaxPooling2D twice,
    Flatten, Dense relu, Dense 5 (logits); pixel inputs of another size than the head's."""
    resize_and_rescale = keras.Sequential([L.Resizing(8, 8), L.Rescaling(1.0 / 255)],
                                          name="resize_and_rescale")
    model = keras.Sequential([
        keras.Input((14, 18, 3)),
        resize_and_rescale,
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dense(16, activation="relu"),
        L.Dense(5),
    ], name="flowers_preprocessing")
    return model, "pixels"


def conv1d_autoencoder():
    """A Conv1D autoencoder (keras-io timeseries anomaly detection, scaled down, with pooling
    and upsampling) on a length the pooling does not divide: ZeroPadding1D, Conv1D,
    MaxPooling1D, UpSampling1D 2, Conv1D, Cropping1D (0, 2), Conv1D back to the channels."""
    model = keras.Sequential([
        keras.Input((15, 2)),
        L.ZeroPadding1D(1),
        L.Conv1D(6, 3, padding="same", activation="relu"),
        L.MaxPooling1D(2),
        L.UpSampling1D(2),
        L.Conv1D(6, 3, padding="same", activation="relu"),
        L.Cropping1D((0, 1)),
        L.Conv1D(2, 3, padding="same"),
    ], name="conv1d_autoencoder")
    return model, "normal"


def image_volumes():
    """The other shape layers: Resizing bicubic with pad_to_aspect_ratio (fill 0.25),
    CenterCrop, UpSampling2D bilinear, Cropping2D asymmetric, Reshape to a volume,
    ZeroPadding3D mixed, UpSampling3D (1, 2, 1), Cropping3D 1, Flatten, Dense."""
    model = keras.Sequential([
        keras.Input((9, 10, 2)),
        L.Resizing(8, 6, interpolation="bicubic", pad_to_aspect_ratio=True, fill_value=0.25),
        L.CenterCrop(6, 5),
        L.UpSampling2D((1, 2), interpolation="bilinear"),
        L.Cropping2D(((1, 0), (2, 1))),
        L.Reshape((5, 7, 2, 1)),
        L.ZeroPadding3D(((0, 1), 1, (1, 0))),
        L.UpSampling3D((1, 2, 1)),
        L.Cropping3D(1),
        L.Flatten(),
        L.Dense(3),
    ], name="image_volumes")
    return model, "normal"


MODELS = {"image_stack": image_stack, "sequence_stack": sequence_stack,
          "nested_frozen": nested_frozen, "functional_chain": functional_chain,
          "vector_steps": vector_steps, "imdb_bidirectional": imdb_bidirectional,
          "masked_text": masked_text, "masking_autoencoder": masking_autoencoder,
          "gan_discriminator": gan_discriminator,
          "regression_adapt": regression_adapt, "simple_audio": simple_audio,
          "training_only_stack": training_only_stack}
MODELS["flowers_augmented"] = flowers_augmented
MODELS["augmentation_stack"] = augmentation_stack
MODELS["augmentation_crop"] = augmentation_crop
MODELS["prelu_activation"] = prelu_activation
SGD_STEPS = ("regression_adapt", "prelu_activation")
SGD_STEPS += ("flowers_augmented", "augmentation_stack")
SEQCLI_DRAWS = {"flowers_augmented": 0, "augmentation_stack": 3}
"""SGD_STEPS with random layers: the step is recorded with seqcli's draws of `fit --seed N`."""
"""Models whose Keras `train_on_batch` (SGD 0.1, mse) is recorded as <stem>.sgd.npz."""


def timeseries_autoencoder():
    """keras-io examples/timeseries/timeseries_anomaly_detection.py with smaller sizes (48
    steps, 8/4 filters): Conv1D 'same' strides 2 relu, Dropout, Conv1D, Conv1DTranspose 'same'
    strides 2 relu, Dropout, Conv1DTranspose, Conv1DTranspose to one channel."""
    model = keras.Sequential([
        keras.Input((48, 1)),
        L.Conv1D(8, 7, padding="same", strides=2, activation="relu"),
        L.Dropout(0.2),
        L.Conv1D(4, 7, padding="same", strides=2, activation="relu"),
        L.Conv1DTranspose(4, 7, padding="same", strides=2, activation="relu"),
        L.Dropout(0.2),
        L.Conv1DTranspose(8, 7, padding="same", strides=2, activation="relu"),
        L.Conv1DTranspose(1, 7, padding="same"),
    ], name="timeseries_autoencoder")
    return model, "normal"


def conv_family():
    """The 3-D and transposed convolutions and 3-D poolings, the ranks joined by Reshape:
    Conv3D 'same' grouped, MaxPooling3D, Conv3DTranspose strides 2 with output_padding,
    AveragePooling3D 'same', Conv2DTranspose 'same' strides 2, Conv1DTranspose with
    dilation, SeparableConv1D with depth_multiplier 2, DepthwiseConv1D with strides and
    dilation, GlobalMaxPooling3D with keepdims, GlobalAveragePooling3D."""
    model = keras.Sequential([
        keras.Input((4, 6, 6, 2)),
        L.Conv3D(4, 3, padding="same", groups=2, activation="relu"),
        L.MaxPooling3D(2),
        L.Conv3DTranspose(2, 2, strides=2, output_padding=(1, 0, 0)),
        L.AveragePooling3D((5, 2, 2), padding="same"),
        L.Reshape((3, 3, 2)),
        L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh"),
        L.Reshape((6, 18)),
        L.Conv1DTranspose(4, 3, dilation_rate=2, use_bias=False),
        L.SeparableConv1D(6, 3, depth_multiplier=2, padding="same"),
        L.DepthwiseConv1D(3, strides=2, dilation_rate=2, padding="same"),
        L.Reshape((1, 5, 1, 6)),
        L.GlobalMaxPooling3D(keepdims=True),
        L.GlobalAveragePooling3D(),
    ], name="conv_family")
    return model, "normal"


MODELS["timeseries_autoencoder"] = timeseries_autoencoder
MODELS["conv_family"] = conv_family
MODELS["flowers_preprocessing"] = flowers_preprocessing
MODELS["conv1d_autoencoder"] = conv1d_autoencoder
MODELS["image_volumes"] = image_volumes


def make_input(rng, shape, kind):
    if kind.startswith("ids"):  # ids:<input_dim>:<steps, or "padded" rows>
        _, dim, steps = kind.split(":")
        length = shape[0] if steps == "padded" else int(steps)
        ids = rng.integers(1, int(dim), (BATCH, length)).astype("int32")
        if steps == "padded":  # post- and pre-padding, and a gap
            ids[0, -4:] = 0
            ids[1, :3] = 0
            ids[2, 4] = 0
        return ids
    if kind == "features":
        return features(rng, BATCH)
    if kind == "spectrograms":
        return spectrograms(rng, BATCH)
    full = (BATCH, *shape)
    if kind == "pixels":
        return rng.uniform(0.0, 255.0, full).astype("float32")
    x = rng.normal(0.0, 1.0, full).astype("float32")
    if kind == "padded":
        x[0, -2:] = 0
        x[1, :2] = 0
    return x


def save_npy(path: Path, array) -> None:
    with open(path, "wb") as file:
        np.save(file, np.ascontiguousarray(array, dtype="float32"))


def make_model(stem: str) -> dict:
    seed = zlib.crc32(stem.encode())
    keras.utils.set_random_seed(seed % (2**31))
    rng = np.random.default_rng(seed)
    model, kind, *adapt = MODELS[stem]()
    reference.assign_weights(model, rng, 1.0)
    for step in adapt:  # adapt() after the weights are set: the statistics are real ones
        step()
    shape = tuple(model.input_shape[1:])
    x = make_input(rng, shape, kind)
    y = np.asarray(model.predict(x, batch_size=BATCH, verbose=0), dtype="float32")
    if not np.all(np.isfinite(y)):
        raise SystemExit(f"{stem}: non-finite output")
    model.save(HERE / f"{stem}.keras")
    with open(HERE / f"{stem}.input.npy", "wb") as file:  # ids stay integers
        np.save(file, x)
    save_npy(HERE / f"{stem}.output.npy", y)
    if stem == "nested_frozen":
        model.save_weights(HERE / f"{stem}.weights.h5")
    if stem in SGD_STEPS:
        target = rng.normal(size=y.shape).astype("float32")
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
        with seqcli_draws(SEQCLI_DRAWS.get(stem)):
            loss = model.train_on_batch(x, target)
        after = {f"after/{path}/{v.name}": np.asarray(v.value, dtype="float32")
                 for path, layer in reference.iter_leaves(model) for v in layer.weights}
        np.savez(HERE / f"{stem}.sgd.npz", y=target, loss=np.float32(loss), **after)
    return {"stem": stem, "description": " ".join(MODELS[stem].__doc__.split()),
            "input_shape": list(shape), "output_shape": list(y.shape),
            "params": int(model.count_params()),
            "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights))}


def make_reference(stem: str) -> None:
    """A keras_reference model with its reference weights, saved by Keras."""
    doc = yaml.safe_load((REFERENCE / "models" / f"{stem}.yaml").read_text())
    model, builder, _ = reference.build_model(doc)
    for layer in builder.frozen:
        layer.trainable = False
    weights = np.load(REFERENCE / "weights" / f"{stem}.npz")
    for path, layer in reference.iter_leaves(model):
        for variable in layer.weights:
            variable.assign(weights[f"{path}/{variable.name}"])
    model.save(HERE / f"ref_{stem}.keras")
    if stem == "nested_frozen":
        model.save_weights(HERE / f"ref_{stem}.weights.h5")


@keras.saving.register_keras_serializable(package="my_package")
class Scale(L.Layer):
    """A custom layer: its code lives in Python."""

    def call(self, x):
        return x * 2.0


def make_refused() -> None:
    """Keras-made files that the importer refuses."""
    inputs = keras.Input((4,))
    cases = {
        "lambda": keras.Sequential([keras.Input((4,)), L.Dense(3),
                                    L.Lambda(lambda x: x * 2.0, name="double")]),
        "custom": keras.Sequential([keras.Input((4,)), L.Dense(3), Scale(name="scale")]),
        "branches": keras.Model(inputs, L.Add(name="merge")([L.Dense(3, name="left")(inputs),
                                                           L.Dense(3, name="right")(inputs)])),
        "channels_first": keras.Sequential([
            keras.Input((3, 8, 8)),
            L.Conv2D(2, 3, data_format="channels_first", name="conv")]),
    }
    for case, model in cases.items():
        model.save(HERE / f"refuse_{case}.keras")


def main(stems: list[str]) -> None:
    """Every file; or, given stems, only those models' (merged into the manifest)."""
    entries = [make_model(stem) for stem in (stems or MODELS)]
    if stems:
        old = json.loads((HERE / "manifest.json").read_text())["models"]
        entries = [e for e in old if e["stem"] not in stems] + entries
    else:
        keras.Sequential([L.Dense(4), L.Dense(2)], name="unbuilt").save(HERE / "unbuilt.keras")
        for stem in ("nested_frozen", "mobilenet_block"):
            make_reference(stem)
        make_refused()
    import jax

    manifest = {"keras_version": keras.__version__, "backend": keras.backend.backend(),
                "jax_version": jax.__version__, "numpy_version": np.__version__,
                "batch": BATCH, "generator": "tests/keras_files/make_keras_files.py",
                "models": entries}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(path.stat().st_size for path in HERE.iterdir() if path.is_file())
    print(f"wrote {len(entries)} models; folder holds {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
