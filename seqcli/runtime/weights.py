"""A built model's weights: from its weights file, from nested `from:` files, or initialised."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcli.build import BuiltModel
from seqcli.config.load import LoadedModel
from seqcli.errors import MissingFileError
from seqcli.io.memory import available_memory
from seqcli.io.weights import TensorHeader, WeightsFile, check_weights, open_weights
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

    def initial_values_note(self, source: str) -> str | None:
        """What a command that runs or exports the model of file `source` tells the user:
        which weights no file provided and start from initial values; None when files provide
        them all."""
        if not self.initialised:
            return None
        if len(self.initialised) == len(self.arrays):
            note = "no weights file; using initial weights"
        else:
            shown = ", ".join(self.initialised[:4]) + (", ..." if len(self.initialised) > 4
                                                       else "")
            note = f"no weights file provides {shown}; using initial values"
        return f"{source}: {note} (seed {self.seed})"


def initializer_specs(built: BuiltModel) -> dict[str, tuple[tuple[int, ...], str]]:
    """{key: (shape, initializer name)} for every weight of the model."""
    specs = {}
    for info in built.leaves():
        initializers = info.layer.weight_initializers()
        for key, shape in info.weights.items():
            specs[key] = (shape, initializers[info.weight_name(key)])
    return specs


def _nested_files(built: BuiltModel) -> list[tuple[str, Path]]:
    """(path, weights file) of every `from:` model that brings one, deepest first: the order
    in which their tensors are laid over one another (shallower files win)."""
    found = []
    for info in built.walk():
        layer = info.layer
        if isinstance(layer, Sequential) and layer._weights_path is not None:
            found.append((info.path.count("/"), info.path, layer._weights_path))
    return [(path, file) for _, path, file in sorted(found, reverse=True)]


def _tensor_sources(built: BuiltModel, main_file: Path | None
                    ) -> dict[str, tuple[WeightsFile, str]]:
    """{model key: (weights file, key in that file)} for every tensor of the nested `from:`
    files and then of `main_file`, each key from the last file that has it; only headers are
    read, once per file however many models share it."""
    opened: dict[Path, WeightsFile] = {}
    sources: dict[str, tuple[WeightsFile, str]] = {}
    layers = [*_nested_files(built), *([("", main_file)] if main_file is not None else [])]
    for prefix, path in layers:
        if path not in opened:
            opened[path] = open_weights(path)
        file = opened[path]
        sources.update((f"{prefix}/{key}" if prefix else key, (file, key))
                       for key in file.tensors)
    return sources


def _read_sources(sources: dict[str, tuple[WeightsFile, str]]) -> dict[str, np.ndarray]:
    """The tensors of `sources`, each file read once; a tensor that several models take from
    one file is copied for each (training changes them apart)."""
    by_file: dict[int, tuple[WeightsFile, dict[str, list[str]]]] = {}
    for model_key, (file, key) in sources.items():
        by_file.setdefault(id(file), (file, {}))[1].setdefault(key, []).append(model_key)
    arrays = {}
    for file, keys in by_file.values():
        for key, array in file.read_each(keys):
            first, *others = keys[key]
            arrays[first] = array
            arrays.update((other, array.copy()) for other in others)
    return arrays


def load_model_weights(loaded: LoadedModel, built: BuiltModel, override: str | None = None,
                       seed: int | None = None) -> ModelWeights:
    """Every weight of `built`: the model's weights file (or `override`) must hold all that
    nested `from:` files do not; without any file, missing weights are initialised. Keys,
    shapes and dtypes are checked from the files' headers, and the memory the weights need
    against what the machine has, before any tensor is read; tensors the model does not use
    are never read."""
    expected = built.weight_shapes
    if override is None and loaded.weights_not_written():
        raise MissingFileError(
            f"{loaded.weights_not_written()}; run `{loaded.command('init')}` to write initial "
            f"weights, or `{loaded.command('fit', 'X', 'Y', '-o', loaded.weights_shown)}` to "
            "train them")
    main_file = Path(override) if override is not None else loaded.weights_path
    sources = _tensor_sources(built, main_file)
    headers = {key: file.tensors[name] for key, (file, name) in sources.items()}
    seed = seed if seed is not None else (loaded.seed if loaded.seed is not None
                                          else DEFAULT_SEED)
    missing = {}
    if main_file is not None:
        check_weights(expected, headers, str(override if override is not None else main_file))
    else:
        missing = {k: v for k, v in initializer_specs(built).items() if k not in sources}
        if sources:
            check_weights({k: s for k, s in expected.items() if k not in missing}, headers,
                          "nested model weights")
    check_memory(loaded, expected, [shape for shape, _ in missing.values()],
                 list(headers.values()))
    arrays = _read_sources({key: sources[key] for key in expected if key in sources})
    arrays.update(initial_weights(missing, seed))
    return ModelWeights(arrays={k: arrays[k] for k in expected}, initialised=list(missing),
                        seed=seed)


def check_memory(loaded: LoadedModel, shapes: dict[str, tuple[int, ...]],
                 initialised: list[tuple[int, ...]], read: Iterable[TensorHeader] = ()) -> None:
    """Refuse, before reading or initialising, weights that cannot fit in the memory this
    machine has left: every weight as float32, plus the largest transient, the float64 draw
    of the largest initialised weight or the stored form of the largest tensor `read` in
    another dtype than float32."""
    from seqcli.errors import SeqcliError
    from seqcli.summary import readable_size

    needed = 4 * sum(math.prod(shape) for shape in shapes.values())
    needed += max([8 * math.prod(shape) for shape in initialised]
                  + [header.size for header in read if header.dtype != np.float32], default=0)
    available = available_memory()
    if available is not None and needed > available:
        raise SeqcliError(
            f"{loaded.source}: the model's weights need {readable_size(needed)} of memory, more "
            f"than the {readable_size(available)} this machine has available; check the layer "
            "sizes in the model file"
        )


def take_matching(arrays: dict[str, np.ndarray], source: str) -> tuple[list[str], list[str]]:
    """Replace, in place, every array whose key `source` also holds (same shape required);
    returns (keys taken, keys of `source` the model has no use for)."""
    from seqcli.errors import WeightsError

    found = open_weights(Path(source))
    taken, unused = [], []
    for key, header in found.tensors.items():
        if key not in arrays:
            unused.append(key)
        elif header.shape != arrays[key].shape:
            raise WeightsError(f"{source}: {key} has shape {header.shape}, but the model's "
                               f"{key} has shape {arrays[key].shape}")
        else:
            taken.append(key)
    if not taken:
        raise WeightsError(f"{source}: none of its tensors matches a weight of the model; "
                           f"its keys start {', '.join(list(found.tensors)[:3])}")
    for key, array in found.read_each(taken):  # one at a time, each replacing its initial value
        arrays[key] = array
    return taken, unused
