"""Kernel compilation: whether numba's cache already holds the kernels, thread settings,
and a warm-up that compiles every kernel once (run by `make install`)."""

from __future__ import annotations

import importlib
import os

KERNEL_MODULES = ("activations", "dense", "conv", "pooling", "normalization", "reshaping")


def jitted_kernels() -> list:
    """Every numba dispatcher defined in seqcli.kernels."""
    found = []
    for name in KERNEL_MODULES:
        module = importlib.import_module(f"seqcli.kernels.{name}")
        for value in vars(module).values():
            if hasattr(value, "_cache") and getattr(value, "__module__", "") == module.__name__:
                found.append(value)
    return found


def kernels_cached() -> bool:
    """True when numba's on-disk cache has an index for every kernel (no compile ahead)."""
    try:
        return all(os.path.exists(kernel._cache._cache_file._index_path)
                   for kernel in jitted_kernels())
    except AttributeError:  # a numba without these internals: assume cached, say nothing
        return True


def set_threads(threads: int | None) -> None:
    """Use `threads` for both numba's parallel loops and BLAS (they run one after the other,
    never nested, so they do not oversubscribe the cores)."""
    if threads is None:
        return
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(threads)


def warm_up() -> None:
    """Compile every kernel by running every layer type and activation on a tiny input."""
    import numpy as np

    from seqcli.activations import ACTIVATIONS
    from seqcli.layers import sequential as L  # noqa: N812
    from seqcli.runtime.model import Sequential

    rng = np.random.default_rng(0)
    image = [L.Conv2D(filters=4, kernel_size=3, padding="same", activation=name)
             for name in ACTIVATIONS]
    image += [
        L.DepthwiseConv2D(kernel_size=3, depth_multiplier=2),
        L.SeparableConv2D(filters=4, kernel_size=3),
        L.MaxPooling2D(padding="same"), L.AveragePooling2D(padding="same"),
        L.ZeroPadding2D(), L.UpSampling2D(), L.BatchNormalization(),
        L.LayerNormalization(), L.Rescaling(scale=0.5), L.Activation(activation="relu"),
        L.GlobalMaxPooling2D(keepdims=True), L.GlobalAveragePooling2D(), L.Dense(units=3),
    ]
    Sequential(image, input_shape=(6, 6, 2))(rng.random((2, 6, 6, 2)))
    steps = [L.Conv1D(filters=3, kernel_size=2), L.MaxPooling1D(), L.AveragePooling1D(),
             L.GlobalMaxPooling1D(), L.Dense(units=2)]
    Sequential(steps, input_shape=(8, 2))(rng.random((2, 8, 2)))
    Sequential([L.Conv1D(filters=3, kernel_size=2), L.GlobalAveragePooling1D()],
               input_shape=(8, 2))(rng.random((2, 8, 2)))
