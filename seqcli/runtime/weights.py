"""A built model's weights: from its weights file, from nested `from:` files, or initialised."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcli.build import BuiltModel
from seqcli.config.load import LoadedModel
from seqcli.io.weights import check_weights, read_weights
from seqcli.layers.sequential import Sequential
from seqcli.runtime.initializers import initial_weights

DEFAULT_SEED = 0
"""Seed of the initial weights when a model file gives none: runs are reproducible."""


@dataclass
class ModelWeights:
    """The weights of every key of a built model, and where they came from."""

    arrays: dict[str, np.ndarray]
    initialised: list[str]
    """Keys that no file provided and were drawn from the initialisers."""
    seed: int


def initializer_specs(built: BuiltModel) -> dict[str, tuple[tuple[int, ...], str]]:
    """{key: (shape, initializer name)} for every weight of the model."""
    specs = {}
    for info in built.leaves():
        initializers = info.layer.weight_initializers()
        for key, shape in info.weights.items():
            specs[key] = (shape, initializers[info.weight_name(key)])
    return specs


def _nested_weights(built: BuiltModel) -> dict[str, np.ndarray]:
    """Weights brought by `from:` models, prefixed with their path; shallower files win."""
    found = []
    for info in built.walk():
        layer = info.layer
        if isinstance(layer, Sequential) and layer._weights_path is not None:
            found.append((info.path.count("/"), info.path, layer._weights_path))
    merged: dict[str, np.ndarray] = {}
    for _, path, file in sorted(found, reverse=True):
        for key, array in read_weights(file).items():
            merged[f"{path}/{key}"] = array
    return merged


def load_model_weights(loaded: LoadedModel, built: BuiltModel, override: str | None = None,
                       seed: int | None = None) -> ModelWeights:
    """Every weight of `built`: the model's weights file (or `override`) must hold all that
    nested `from:` files do not; without any file, missing weights are initialised."""
    expected = built.weight_shapes
    main_file = Path(override) if override is not None else loaded.weights_path
    arrays = _nested_weights(built)
    seed = seed if seed is not None else (loaded.seed if loaded.seed is not None
                                          else DEFAULT_SEED)
    if main_file is not None:
        arrays.update(read_weights(main_file))
        check_weights(expected, arrays, str(override if override is not None else main_file))
        return ModelWeights(arrays={k: arrays[k] for k in expected}, initialised=[], seed=seed)
    missing = {k: v for k, v in initializer_specs(built).items() if k not in arrays}
    if arrays:
        check_weights({k: s for k, s in expected.items() if k not in missing}, arrays,
                      "nested model weights")
    check_memory(loaded, expected, [shape for shape, _ in missing.values()])
    arrays.update(initial_weights(missing, seed))
    return ModelWeights(arrays={k: arrays[k] for k in expected}, initialised=list(missing),
                        seed=seed)


def check_memory(loaded: LoadedModel, shapes: dict[str, tuple[int, ...]],
                 initialised: list[tuple[int, ...]]) -> None:
    """Refuse, before initialising, weights that cannot fit in the memory this machine has
    left: every weight as float32, plus the float64 draw of the largest initialised one.
    (Weights read from files need no such check: files are checked against their size.)"""
    from seqcli.errors import SeqcliError
    from seqcli.summary import readable_size

    needed = 4 * sum(math.prod(shape) for shape in shapes.values())
    needed += 8 * max((math.prod(shape) for shape in initialised), default=0)
    available = available_memory()
    if available is not None and needed > available:
        raise SeqcliError(
            f"{loaded.source}: the model's weights need {readable_size(needed)} of memory, more "
            f"than the {readable_size(available)} this machine has available; check the layer "
            "sizes in the model file"
        )


def available_memory() -> int | None:
    """Bytes this process may still allocate: Linux's MemAvailable plus free swap, within a
    cgroup (v2) memory limit; None where that is unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            info = {name: int(value.split()[0]) * 1024
                    for name, value in (line.split(":", 1) for line in file if ":" in line)}
        available = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii").strip()
        if limit != "max":
            available = min(available, int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return available


def take_matching(arrays: dict[str, np.ndarray], source: str) -> tuple[list[str], list[str]]:
    """Replace, in place, every array whose key `source` also holds (same shape required);
    returns (keys taken, keys of `source` the model has no use for)."""
    from seqcli.errors import WeightsError

    found = read_weights(Path(source))
    taken, unused = [], []
    for key, array in found.items():
        if key not in arrays:
            unused.append(key)
        elif array.shape != arrays[key].shape:
            raise WeightsError(f"{source}: {key} has shape {array.shape}, but the model's "
                               f"{key} has shape {arrays[key].shape}")
        else:
            arrays[key] = array
            taken.append(key)
    if not taken:
        raise WeightsError(f"{source}: none of its tensors matches a weight of the model; "
                           f"its keys start {', '.join(list(found)[:3])}")
    return taken, unused
