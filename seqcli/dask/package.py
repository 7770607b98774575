"""The model as data for Dask workers: packed once on the client (its layers and weights,
whatever files they came from), unpacked once per worker process, kept by content hash, so a
worker builds each model once and its kernels stay warm from one chunk to the next.

A package is a plain dict, `{"seqcli": version, "key": sha256, "model": pickled model}`, so
that a worker of another seqcli version reads its version before anything else and refuses
it, naming both.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from seqcli import __version__
from seqcli.errors import SeqcliError
from seqcli.runtime.extract import extract_batches
from seqcli.runtime.model import Sequential, model_input

MODELS_KEPT = 4
"""Models a worker process keeps built, the most recently used."""

_MODELS: OrderedDict[str, Sequential] = OrderedDict()
_LOCK = threading.Lock()
_THREADS: list[int | None] = [None]


def pack(model: Sequential) -> dict:
    """The package of the built `model`: its version, its content hash and its pickle."""
    payload = pickle.dumps(model.inference_copy(), protocol=5)
    return {"seqcli": __version__, "key": hashlib.sha256(payload).hexdigest(),
            "model": payload}


def version_refusal(worker: str, theirs: str, ours: str = __version__) -> str:
    """What a run says of a worker that runs seqcli `theirs` for a client of version `ours`."""
    return (f"worker {worker} runs seqcli {theirs}, and the client seqcli {ours}; install "
            f"seqcli {ours} on every worker (pip install 'seqcli[dask]=={ours}')")


def unpack(package: dict) -> Sequential:
    """The model of `package`, built on first use in this process and kept by its hash; a
    package from another seqcli version is refused, naming both versions."""
    from seqcli import __version__ as version  # read now: it is what this process runs

    if package.get("seqcli") != version:
        raise SeqcliError(version_refusal(_worker_name(), version, str(package.get("seqcli"))))
    key = package["key"]
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = pickle.loads(package["model"])
            _MODELS[key] = model
            while len(_MODELS) > MODELS_KEPT:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
    return model


def _worker_name() -> str:
    """The address of the Dask worker this runs on, or `(this process)`."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "(this process)"


def use_threads(threads: int) -> None:
    """Run the kernels (and BLAS) of this process on `threads` threads, set once."""
    if _THREADS[0] != threads:
        from seqcli.runtime.compiled import set_threads

        set_threads(threads)
        _THREADS[0] = threads


def run_rows(model: Sequential, rows: np.ndarray, start: int, *, paths: list[str] | None,
             batch_size: int) -> dict[str, np.ndarray]:
    """The model's outputs for `rows` (rows `start:` of the whole input), `batch_size` at a
    time: {"output": outputs}, or with `paths`, {path: that layer's outputs}."""
    built = model.built_model
    with np.errstate(all="ignore"):
        batches = _batches(built, rows, start, batch_size)
        if paths is None:
            return {"output": _joined(list(model.predict_batches(batches)), built.output_shape)}
        found: dict[str, list[np.ndarray]] = {path: [] for path in paths}
        for outputs in extract_batches(built, model.weight_arrays, paths, batches):
            for path, output in outputs.items():
                found[path].append(output)
    shapes = {**{info.path: info.output_shape for info in built.walk()}, **built.part_shapes()}
    return {path: _joined(parts, shapes[path]) for path, parts in found.items()}


def _batches(built, rows: np.ndarray, start: int, batch_size: int) -> Iterator[np.ndarray]:
    """`rows` as the model's first layer takes them, `batch_size` at a time (ids checked, with
    the row numbers of the whole input in the messages)."""
    for offset in range(0, len(rows), batch_size):
        yield model_input(built, rows[offset:offset + batch_size], start + offset)


def _joined(parts: list[np.ndarray], sample: tuple) -> np.ndarray:
    """The batches' outputs as one float32 array (empty rows of `sample` for none)."""
    if not parts:
        return np.empty((0, *sample), np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
