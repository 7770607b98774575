"""Record what Keras 3's image-augmentation layers do in training for fixed random draws.

    KERAS_BACKEND=jax python tests/augmentation_reference/make_references.py

Keras's random draws cannot be reproduced outside JAX, so for each case the backend's
`random.uniform` is replaced by `minval + (maxval - minval) * u` with the given `u` (one array
per call, in call order), which is what it computes from its random bits. Each layer then runs
its own code in training mode: its ranges, its parameters, its affine matrices, its
resampling, its clipping. The cases store the layer's config (seqcli's settings), the input,
the draws `u`, Keras's output `y`, and jax.vjp's `dx` for an upstream gradient `dy`;
tests/test_augmentation_layers.py replays them with seqcli's layers fed the same `u`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.backend.jax import random as jax_random  # noqa: E402

OUT = Path(__file__).with_name("keras_transforms.npz")
rng = np.random.default_rng(20260615)

CASES = [  # (case, layer type, settings, image shape (N, H, W, C), input kind)
    ("flip_horizontal", "RandomFlip", {"mode": "horizontal"}, (4, 5, 6, 2), "normal"),
    ("flip_vertical", "RandomFlip", {"mode": "vertical"}, (4, 5, 6, 2), "normal"),
    ("flip_both", "RandomFlip", {}, (4, 5, 6, 2), "normal"),
    ("rotation_bilinear_reflect", "RandomRotation", {"factor": 0.2}, (3, 7, 6, 2), "normal"),
    ("rotation_nearest_constant", "RandomRotation",
     {"factor": [-0.5, 0.1], "fill_mode": "constant", "interpolation": "nearest",
      "fill_value": 1.5}, (3, 6, 7, 1), "normal"),
    ("rotation_wrap", "RandomRotation", {"factor": 0.3, "fill_mode": "wrap"}, (3, 5, 5, 2),
     "normal"),
    ("rotation_full_turn_nearest_fill", "RandomRotation",
     {"factor": 1.0, "fill_mode": "nearest"}, (3, 4, 6, 1), "normal"),
    ("zoom_keep_aspect", "RandomZoom", {"height_factor": 0.3}, (3, 6, 5, 2), "normal"),
    ("zoom_width_nearest_wrap", "RandomZoom",
     {"height_factor": [-0.5, 0.2], "width_factor": 0.4, "interpolation": "nearest",
      "fill_mode": "wrap"}, (3, 5, 7, 1), "normal"),
    ("zoom_in_constant", "RandomZoom",
     {"height_factor": -0.3, "width_factor": [-0.9, 1.0], "fill_mode": "constant",
      "fill_value": -2.0}, (3, 6, 6, 1), "normal"),
    ("translation_reflect", "RandomTranslation",
     {"height_factor": 0.3, "width_factor": [-0.2, 0.5]}, (3, 6, 5, 2), "normal"),
    ("translation_nearest_nearest", "RandomTranslation",
     {"height_factor": 0.5, "width_factor": 0.5, "fill_mode": "nearest",
      "interpolation": "nearest"}, (3, 5, 5, 1), "normal"),
    ("translation_constant", "RandomTranslation",
     {"height_factor": [-1.0, 1.0], "width_factor": 0.2, "fill_mode": "constant"},
     (3, 4, 6, 2), "normal"),
    ("contrast_pixels", "RandomContrast", {"factor": 0.5}, (3, 4, 5, 3), "pixels"),
    ("contrast_pair_clipped", "RandomContrast", {"factor": [0.2, 0.9], "value_range": [-1, 1]},
     (3, 5, 4, 2), "normal"),
    ("brightness_pixels", "RandomBrightness", {"factor": 0.3}, (3, 4, 4, 3), "pixels"),
    ("brightness_reversed_range", "RandomBrightness",
     {"factor": [-0.5, 0.8], "value_range": [1, 0]}, (3, 3, 4, 2), "unit"),
]


def draws(layer_type: str, settings: dict, batch: int) -> list[np.ndarray]:
    """The u arrays of Keras's uniform calls for one batch (zoom: two only with a width)."""
    calls = 2 if layer_type == "RandomTranslation" or (
        layer_type == "RandomZoom" and settings.get("width_factor") is not None) else 1
    return [rng.random(batch).astype("float32") for _ in range(calls)]


def fixed_uniform(us: list[np.ndarray]):
    queue = list(us)

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        u = jnp.asarray(queue.pop(0)).reshape(shape)
        low = jnp.asarray(minval, "float32")
        high = jnp.asarray(maxval, "float32")
        return jnp.maximum(low, u * (high - low) + low)

    return uniform


def main() -> None:
    store = {}
    original = jax_random.uniform
    for case, layer_type, settings, shape, kind in CASES:
        if kind == "pixels":
            x = rng.uniform(0, 255, shape).astype("float32")
        elif kind == "unit":
            x = rng.uniform(0, 1, shape).astype("float32")
        else:
            x = rng.normal(size=shape).astype("float32")
        dy = rng.normal(size=shape).astype("float32")
        us = draws(layer_type, settings, shape[0])
        layer = getattr(keras.layers, layer_type)(**settings)

        def run(images, us=us, layer=layer):
            jax_random.uniform = fixed_uniform(us)
            try:
                return layer(images, training=True)
            finally:
                jax_random.uniform = original

        y, vjp = jax.vjp(run, jnp.asarray(x))
        dx = vjp(jnp.asarray(dy))[0]
        np.testing.assert_allclose(np.asarray(run(jnp.asarray(x))), np.asarray(y))
        store[f"{case}/config"] = np.array(json.dumps({"type": layer_type, **settings}))
        store[f"{case}/x"] = x
        store[f"{case}/dy"] = dy
        store[f"{case}/y"] = np.asarray(y, "float32")
        store[f"{case}/dx"] = np.asarray(dx, "float32")
        for index, u in enumerate(us):
            store[f"{case}/u{index}"] = u
    np.savez_compressed(OUT, **store)
    print(f"wrote {len(CASES)} cases to {OUT} (keras {keras.__version__}, jax {jax.__version__})")


if __name__ == "__main__":
    main()
