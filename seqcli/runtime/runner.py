"""A model file made ready to run on a stream of batches: what `predict` and `extract` drive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqcli.build import BuiltModel
from seqcli.config.load import LoadedModel, load_model
from seqcli.runtime.model import Sequential


class Runner:
    """A loaded model ready to run on batches; built from the data's shape when it declares
    none (Keras's deferred build)."""

    def __init__(self, loaded: LoadedModel, weights: str | None = None):
        self.model = Sequential.from_loaded(loaded, weights)
        self.loaded = loaded

    def build(self, data_shape: tuple) -> None:
        """Build from the model's input shape, or from the data's (deferred build); an
        InputDataError when the data (batch first) does not fit the model."""
        declared = self.loaded.input_shape
        fits = declared is not None and len(declared) == len(data_shape) - 1 and all(
            d is None or d == s for d, s in zip(declared, data_shape[1:]))
        self.model.build(data_shape[1:] if declared is None or fits else None)
        self.model.check_input_shape(data_shape)

    def initial_weights_note(self) -> str | None:
        """What the user may not expect, `FILE: ...`: some or all weights come from the
        initialisers, not a file. None when a file provides them all."""
        return self.model.initial_weights_note()

    @property
    def built_model(self) -> BuiltModel:
        """Shapes and parameter counts of every layer (once built)."""
        return self.model.built_model

    @property
    def takes_ids(self) -> bool:
        """True when the model reads integer ids (once built)."""
        return self.model.takes_ids

    @property
    def output_shape(self) -> tuple:
        """Per-sample output shape."""
        return self.model.built_model.output_shape

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The model's weight arrays by key."""
        return self.model.weight_arrays

    def run(self, batches: Iterator[np.ndarray], until: str | None = None):
        """Outputs batch by batch (of layer `until`, if given)."""
        return self.model.predict_batches(batches, until)


def prepare_run(model: str, weights: str | None = None, threads: int | None = None, *,
                allow_outside: bool = False, base_dir: Path | None = None) -> Runner:
    """The model file `model` loaded as a Runner (not built yet), with `threads` set for the
    kernels and BLAS. A model read from stdin (`-`) resolves its paths against `base_dir`, by
    default the working directory."""
    from seqcli.runtime.compiled import set_threads

    set_threads(threads)
    return Runner(load_model(model, allow_outside=allow_outside, base_dir=base_dir), weights)


def numeric_warnings_off():
    """numpy's floating-point warnings off (a context manager): NaN and Inf are counted and
    reported instead."""
    return np.errstate(all="ignore")
