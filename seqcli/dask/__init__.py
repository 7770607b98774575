"""Scoring Dask arrays: `predict` and `extract` take a `dask.array.Array` (batch first) and
return one, lazily, one task per chunk of rows, for any Dask scheduler to run: they compose
with xarray, `to_zarr` and the rest of the Dask ecosystem.

    import dask.array as da
    import seqcli.dask

    x = da.from_zarr("images.zarr")                 # (N, 250, 250, 3), chunked on rows
    scores = seqcli.dask.predict("configs/guide_convnet.yaml", x)
    scores.to_zarr("scores.zarr")                   # computed on the current scheduler

The model travels in the graph as data (its layers and weights, read once here); each worker
process builds it once and keeps it. Needs the `seqcli[dask]` extra.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcli.errors import InputDataError, SeqcliError, UsageError

if TYPE_CHECKING:
    from seqcli.runtime.model import Sequential

MISSING_DASK = ("scoring on Dask needs the 'dask' and 'distributed' packages, which are not "
                "installed: pip install 'seqcli[dask]'")


def predict(model: str | Path | Sequential, x, *, weights: str | None = None,
            batch_size: int = 32, threads: int = 1):
    """The model's outputs for the rows of `x`, a lazy `dask.array.Array` of float32.

    Args:
        model: A model file (YAML), or a `seqcli.Sequential` (built, or built from `x`).
        x: A `dask.array.Array`, batch first; chunks on other axes are merged.
        weights: A weights file instead of the model file's own.
        batch_size: Rows per batch within a chunk.
        threads: Kernel threads each task uses (1: the workers run chunks side by side).

    Returns:
        (N, *output shape), chunked on rows as `x`.
    """
    network, x = _prepared(model, x, weights)
    return _mapped(network, x, None, batch_size, threads)["output"]


def extract(model: str | Path | Sequential, x, layers: str | list[str], *,
            weights: str | None = None, batch_size: int = 32, threads: int = 1):
    """The outputs of inner layers for the rows of `x`, lazily, as Keras's
    `keras.Model(model.inputs, [model.get_layer(name).output ...]).predict(x)`.

    Args:
        model, x, weights, batch_size, threads: As for `predict`.
        layers: A layer name or nested path ("base/conv2d"), or a list of them.

    Returns:
        That layer's outputs for a name; {path: outputs} for a list. The model runs once per
        chunk for all of them.
    """
    from seqcli.runtime.extract import choose_layers

    network, x = _prepared(model, x, weights)
    paths = choose_layers(network.built_model, [layers] if isinstance(layers, str)
                          else list(layers), every_top_level=False)
    arrays = _mapped(network, x, paths, batch_size, threads)
    return arrays[paths[0]] if isinstance(layers, str) else arrays


def require_dask(arrays: bool = True):
    """`dask.array` (None when not `arrays`: a cluster run of files needs only distributed,
    and importing dask.array would add some 0.3 s to its start), or a SeqcliError (exit 1)
    that says how to install them."""
    try:
        import distributed  # noqa: F401

        if not arrays:
            return None
        import dask.array
    except ImportError as error:
        raise SeqcliError(MISSING_DASK) from error
    return dask.array


def _prepared(model, x, weights: str | None) -> tuple[Sequential, object]:
    """The model built for `x`'s sample shape, and `x` with each chunk holding whole samples."""
    from seqcli.runtime.model import Sequential

    da = require_dask()
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array (batch first); wrap a numpy array with "
                        f"dask.array.from_array(x, chunks=(ROWS, ...)). Received: "
                        f"{type(x).__name__}")
    if x.ndim == 0:
        raise InputDataError("input is a single number; expected (batch, *input_shape)")
    if isinstance(model, (str, os.PathLike)):
        from seqcli.config.load import load_model
        from seqcli.runtime.runner import Runner

        runner = Runner(load_model(str(model)), weights)
        runner.build(x.shape)
        network = runner.model
    elif isinstance(model, Sequential):
        if weights is not None:
            raise UsageError("weights= goes with a model file; a Sequential has its weights")
        network = model
        if not network.built:
            network.build(x.shape[1:])
        network.check_input_shape(x.shape)
    else:
        raise TypeError(f"model must be a model file's path or a seqcli.Sequential. "
                        f"Received: {type(model).__name__}")
    if any(len(chunks) > 1 for chunks in x.chunks[1:]):
        x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    return network, x


def _mapped(network: Sequential, x, paths: list[str] | None, batch_size: int,
            threads: int) -> dict:
    """{name: lazy outputs}: "output" alone, or each layer of `paths`."""
    import dask

    from seqcli.dask.package import pack

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    package = pack(network)
    node = dask.delayed(package, pure=True, traverse=False,
                        name=f"seqcli-model-{package['key']}")
    built = network.built_model
    if paths is None:
        shapes = {"output": built.output_shape}
    else:
        every = {**{info.path: info.output_shape for info in built.walk()},
                 **built.part_shapes()}
        shapes = {path: every[path] for path in paths}
    options = {"paths": paths, "batch_size": batch_size, "threads": threads}
    if len(shapes) == 1:
        ((name, shape),) = shapes.items()
        return {name: _map(x, shape, score_block, node, **options)}
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = _map(x, (sum(sizes),), score_block, node, flat=True, **options)
    offsets = np.cumsum([0, *sizes]).tolist()
    return {name: _map(flat, shape, _unflatten, offsets[index], offsets[index + 1], shape)
            for index, (name, shape) in enumerate(shapes.items())}


def _map(x, sample: tuple, function, *args, **kwargs):
    """`x.map_blocks(function, ...)` giving float32 blocks of (rows, *sample)."""
    dimensions = 1 + len(sample)
    axes = {}
    if dimensions < x.ndim:
        axes["drop_axis"] = list(range(dimensions, x.ndim))
    elif dimensions > x.ndim:
        axes["new_axis"] = list(range(x.ndim, dimensions))
    return x.map_blocks(function, *args, dtype=np.float32,
                        chunks=(x.chunks[0], *((size,) for size in sample)),
                        meta=np.empty((0,) * dimensions, np.float32), **axes, **kwargs)


def score_block(block: np.ndarray, package: dict, *, paths: list[str] | None, batch_size: int,
                threads: int, flat: bool = False, block_info=None) -> np.ndarray:
    """The outputs for one chunk of rows (on a worker): the one output, or with `flat` every
    layer's of `paths`, each row's values side by side."""
    from seqcli.dask.package import run_rows, unpack, use_threads

    location = (block_info or {}).get(0, {}).get("array-location")
    start = location[0][0] if location and isinstance(location[0][0], int) else 0
    use_threads(threads)
    outputs = run_rows(unpack(package), block, start, paths=paths, batch_size=batch_size)
    if not flat:
        return next(iter(outputs.values()))
    return np.concatenate([output.reshape(len(block), -1) for output in outputs.values()],
                          axis=1)


def _unflatten(block: np.ndarray, start: int, stop: int, shape: tuple) -> np.ndarray:
    """Columns `start:stop` of a flat block, as rows of `shape`."""
    return np.ascontiguousarray(block[:, start:stop]).reshape(len(block), *shape)
