"""The Python API: a Keras-like `Sequential` over model-file layers, run by numba kernels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from seqcli.build import BuiltModel, LayerInfo, build
from seqcli.config.load import LoadedModel, load_model
from seqcli.errors import InputDataError, SeqcliError, UsageError
from seqcli.kernels.small import numpy_may_run, small_run
from seqcli.layers.base import Layer
from seqcli.layers.sequential import Sequential as NestedSequential
from seqcli.runtime.weights import ModelWeights, load_model_weights
from seqcli.shapes import (
    empty_axis_problem,
    fits,
    format_shape,
    input_shape_fix,
    num_elements,
)

# Bytes of one layer's output that `predict_batches` keeps a piece of a batch within.
_CACHED_ACTIVATIONS = 8 << 20


def forward(infos: list[LayerInfo], weights: dict[str, np.ndarray], x: np.ndarray,
            until: str | None = None, collect: Callable[[str, np.ndarray], None] | None = None,
            plan: ForwardPlan | None = None):
    """Run `x` (N, *input_shape) through the layers; stop after the layer at path `until`;
    `collect(path, output)` sees every layer's output. `plan`, the same layers bound once
    (`ForwardPlan`), runs a whole batch with less Python per layer."""
    if plan is not None and not plan.masked and until is None and collect is None:
        return plan.run(x)
    return _forward(infos, weights, x, None, until, collect)[0]


def forward_masked(infos: list[LayerInfo], weights: dict[str, np.ndarray], x: np.ndarray):
    """(output, the mask Keras attaches to it or None): what `evaluate` and `fit` weigh
    their losses by."""
    return _forward(infos, weights, x, None, None, None)[:2]


class ForwardPlan:
    """A built model's computing layers bound once to their weights, for whole batches at
    inference: one call per layer, with nothing looked up, walked or built on the way (the
    same layers' `forward` on the same arrays as `_forward`, so the same numbers). A model
    whose layers pass masks on runs through `_forward` instead (`masked`)."""

    def __init__(self, built: BuiltModel, weights: ModelWeights):
        self.built, self.weights = built, weights
        """What the plan was made from: a model rebuilt or given new weights needs another."""
        self.masked = any(info.masked for info in built.walk())
        """True when some layer's output carries a mask (the plan then runs nothing)."""
        self.steps = [] if self.masked else [
            (info, info.layer.bound_forward(info.own_weights(weights.arrays)))
            for info in built.leaves()]
        """(layer, its `forward` with its own weights bound), in execution order."""
        sample = max((num_elements(info.output_shape) or 1 for info in built.walk()), default=1)
        self.piece_rows = max(1, _CACHED_ACTIVATIONS // (4 * sample))
        """Rows of a piece of a batch whose every layer output stays within the CPU's cache."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's output for a batch `x` (N, *input_shape), as the model's first layer
        takes it."""
        for info, step in self.steps:
            try:
                x = step(x)
            except MemoryError:
                with named_out_of_memory(info, len(x)):
                    raise
        return x


def _forward(infos, weights, x, mask, until, collect):
    """(output, its mask, whether `until` was reached): masks flow as in Keras 3."""
    for info in infos:
        if info.children:
            x, mask, stopped = _forward(info.children, weights, x, mask, until, collect)
        else:
            wanted = getattr(collect, "parts", ())
            if info.path in wanted:  # a wrapper whose layers' outputs are asked for
                for name, output in info.layer.part_outputs(
                        info.own_weights(weights), x, mask).items():
                    collect(f"{info.path}/{name}", output)
            x, mask = run_layer(info, weights, x, mask)
            stopped = False
        if collect is not None:
            collect(info.path, x)
        if stopped or until is not None and (info.path == until
                                             or until.startswith(info.path + "/")):
            return x, mask, True
    return x, mask, False


def run_layer(info: LayerInfo, weights: dict[str, np.ndarray], x: np.ndarray, mask):
    """(output, output mask) of one computing layer at inference."""
    layer = info.layer
    own = info.own_weights(weights)
    with named_out_of_memory(info, len(x)):
        y = layer.forward(own, x, mask=mask) if mask is not None and layer.takes_mask \
            else layer.forward(own, x)
    return y, layer.compute_mask(x, mask)


@contextmanager
def named_out_of_memory(info: LayerInfo, rows: int):
    """Running out of memory inside layer `info` on `rows` rows becomes an error that names
    the layer and what its output takes: a smaller batch helps, unless one row is too much."""
    try:
        yield
    except MemoryError:
        from seqcli.runtime.weights import available_memory
        from seqcli.summary import BYTES_PER_VALUE, readable_size

        row = BYTES_PER_VALUE * (num_elements(info.output_shape) or 0)
        available = available_memory()
        size = f"{readable_size(row)} per row"
        if rows > 1:
            size += f", {readable_size(row * rows)} for these {rows} rows"
        if available is not None:
            size += f" ({readable_size(available)} available)"
        fits = available is None or row < available
        advice = ("try a smaller --batch-size" if rows > 1 and fits
                  else "check the layer's settings in the model file")
        raise SeqcliError(f"out of memory in layer '{info.path}' ({info.layer.type}): its "
                          f"output, {format_shape(info.output_shape)}, takes {size}; "
                          f"{advice}") from None


def model_input(built: BuiltModel, x, rows=0) -> np.ndarray:
    """A batch as the model's first layer takes it: float32 values, or int64 ids for an
    Embedding (checked: integral values in `[0, input_dim)`). `rows` is the sample number of
    the batch's first row (or each row's, an array) for the messages."""
    if not built.takes_ids:
        return np.ascontiguousarray(x, dtype=np.float32)
    info = built.leaves()[0]
    x = np.asarray(x)
    where = f"layer '{info.path}' ({info.layer.type})"
    if x.dtype.kind not in "fiub" or x.dtype.names is not None:
        raise InputDataError(f"{where} takes integer ids; received dtype {x.dtype}")

    def sample(index: tuple) -> str:
        row = rows[index[0]] if isinstance(rows, np.ndarray) else rows + index[0]
        position = ", ".join(str(int(i)) for i in index[1:])
        return f"sample {int(row)}" + (f", position ({position})" if position else "")

    if x.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            fractional = ~np.isfinite(x) | (np.floor(x) != x)
        if fractional.any():
            index = tuple(np.argwhere(fractional)[0])
            raise InputDataError(f"input {sample(index)}: {x[index].item()!r} is not an integer "
                                 f"id; {where} takes integer ids (any integer dtype, or "
                                 "floats with whole values)")
    limit = info.layer.input_dim
    outside = (x < 0) | (x >= limit)
    if outside.any():
        index = tuple(np.argwhere(outside)[0])
        value = x[index].item()
        raise InputDataError(f"input {sample(index)}: id {int(value)} is outside [0, {limit}) "
                             f"of {where}, whose input_dim is {limit}")
    return np.ascontiguousarray(x, dtype=np.int64)


def model_inputs(built: BuiltModel, batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """`model_input` of each batch of a stream, numbered on from 0."""
    if not built.takes_ids:
        yield from batches
        return
    rows = 0
    for batch in batches:
        yield model_input(built, batch, rows)
        rows += len(batch)


class Sequential:
    """A stack of layers with Keras's `Sequential` API: `layers`, `add`, `pop`, `get_layer`,
    `summary`, `weights`, calling on an array, `predict`. Weights arrive on the first build."""

    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential",
                 input_shape: tuple | None = None, seed: int | None = None):
        self._loaded = LoadedModel(name=name, layers=[],
                                   input_shape=tuple(input_shape) if input_shape else None,
                                   source="<python>", base_dir=Path.cwd(), seed=seed)
        self._built: BuiltModel | None = None
        self._weights: ModelWeights | None = None
        self._override: str | None = None
        self._plan: ForwardPlan | None = None
        for layer in layers or []:
            self.add(layer)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, weights: str | None = None) -> Sequential:
        """Wrap a loaded model file; `weights` overrides the file's weights path."""
        model = cls.__new__(cls)
        model._loaded, model._built, model._weights, model._override = loaded, None, None, weights
        model._plan = None
        return model

    def inference_copy(self) -> Sequential:
        """This built model's layers and weights alone (no training state), sharing its arrays:
        what another process needs to run it (`seqcli.dask` pickles it for its workers)."""
        model = Sequential.from_loaded(self._loaded, self._override)
        model._built, model._weights = self.built_model, self._weights
        return model

    # ------------------------------------------------------------------ structure

    @property
    def name(self) -> str:
        """The model's name."""
        return self._loaded.name

    @property
    def layers(self) -> list[Layer]:
        """The top-level layers, in order (an Input is not a layer)."""
        return list(self._loaded.layers)

    def add(self, layer: Layer) -> None:
        """Append a layer; it gets Keras's automatic name if it has none."""
        if not isinstance(layer, Layer):
            raise TypeError(f"expected a seqcli layer such as Dense(units=3). Received: {layer!r}")
        if layer.name is None:
            from seqcli.layers.sequential import snake_case

            base = snake_case(layer.type)
            taken = {existing.name for existing in self._loaded.layers}
            count = 0
            while (candidate := base if count == 0 else f"{base}_{count}") in taken:
                count += 1
            layer.name = candidate
        if any(existing.name == layer.name for existing in self._loaded.layers):
            raise ValueError(f"a layer named '{layer.name}' is already in the model; "
                             "names must be unique")
        self._loaded.layers.append(layer)
        self._invalidate()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._loaded.layers:
            raise IndexError("there are no layers in the model to pop")
        layer = self._loaded.layers.pop()
        self._invalidate()
        return layer

    def get_layer(self, name: str) -> Layer:
        """The layer with this name, or at this path (`head/dense`)."""
        layers = self._loaded.layers
        parts = name.split("/")
        for depth, part in enumerate(parts):
            match = next((layer for layer in layers if layer.name == part), None)
            if match is None:
                raise ValueError(f"no layer named '{name}'. Layers: "
                                 f"{', '.join(self.layer_paths())}")
            if depth == len(parts) - 1:
                return match
            layers = match.sublayers if isinstance(match, NestedSequential) else []
        raise ValueError(f"no layer named '{name}'")  # pragma: no cover

    def layer_paths(self) -> list[str]:
        """Every layer's path, nested ones included (needs the model built)."""
        if self._built is not None:
            return [info.path for info in self._built.walk()]
        return [layer.name for layer in self._loaded.layers]

    def _invalidate(self) -> None:
        self._built, self._weights = None, None

    # ------------------------------------------------------------------ building

    @property
    def built(self) -> bool:
        """True once shapes and weights are known."""
        return self._weights is not None

    def build(self, input_shape: tuple | None = None) -> None:
        """Infer shapes from `input_shape` (per sample) and materialise the weights."""
        self._built = build(self._loaded, tuple(input_shape) if input_shape else None)
        self._weights = load_model_weights(self._loaded, self._built, self._override)

    def _require_built(self, what: str) -> BuiltModel:
        if self._built is None:
            self._require_input_shape(what)
            self.build()
        return self._built

    def _require_input_shape(self, what: str) -> None:
        if self._loaded.input_shape is None:
            raise UsageError(f"model '{self.name}' has no input shape yet, so it has no "
                             f"{what}: call it on data, or build(input_shape) first")

    def _shapes(self, what: str) -> BuiltModel:
        """The model's shapes, inferred without its weights (which they do not need: a
        weights file yet to be written stops nothing) unless it is built."""
        if self._built is not None:
            return self._built
        self._require_input_shape(what)
        return build(self._loaded, None)

    @property
    def input_shape(self) -> tuple:
        """(None, *per-sample input shape)."""
        return (None, *self._shapes("input shape").input_shape)

    @property
    def output_shape(self) -> tuple:
        """(None, *per-sample output shape)."""
        return (None, *self._shapes("output shape").output_shape)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Every weight by key (`head/dense/kernel`), in Keras's order."""
        self._require_built("weights")
        return dict(self._weights.arrays)

    @property
    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The model's own weight arrays by key (training updates them in place)."""
        self._require_built("weights")
        return self._weights.arrays

    @property
    def weights_seed(self) -> int:
        """The seed that drew the weights no file provided."""
        self._require_built("weights")
        return self._weights.seed

    @property
    def initialised_weights(self) -> list[str]:
        """Keys of weights that came from the initialisers rather than a file."""
        self._require_built("weights")
        return list(self._weights.initialised)

    def initial_weights_note(self) -> str | None:
        """`FILE: ...` naming the weights that start from initial values, as `predict` and
        the exports say it; None when files provide them all."""
        self._require_built("weights")
        return self._weights.initial_values_note(self._loaded.source)

    @property
    def built_model(self) -> BuiltModel:
        """Shapes and parameter counts of every layer."""
        return self._require_built("shapes")

    def summary(self, print_fn: Callable[[str], None] = print, **options) -> None:
        """Print the Keras-style table (options: expand_nested, show_trainable)."""
        from seqcli.summary import summary_text

        print_fn(summary_text(self._shapes("summary"), **options).rstrip("\n"))

    # ------------------------------------------------------------------ running

    def _prepare(self, x, rows: int = 0) -> np.ndarray:
        """`x`, checked whole (`_checked`), as the model's first layer takes it."""
        x = self._checked(x)
        return model_input(self._built, x, rows)

    def _checked(self, x) -> np.ndarray:
        """`x` as an array whose shape fits the model, built from it if need be; the errors
        name the shape of the whole of `x`, never of a batch cut from it."""
        if (type(x) is np.ndarray and x.dtype == np.float32 and self._built is not None
                and x.shape[1:] == self._built.input_shape):  # as it comes, batch after batch
            return x
        x = np.asarray(x)
        if x.dtype.kind not in "fiub" or x.dtype.names is not None:
            raise InputDataError(f"input arrays must be numeric; received dtype {x.dtype}")
        if x.ndim == 0:
            raise InputDataError("input is a single number; expected (batch, *input_shape)")
        if self._built is None:
            self.build(self._loaded.input_shape or x.shape[1:])
        self.check_input_shape(x.shape)
        return x

    @property
    def takes_ids(self) -> bool:
        """True when the model's input is integer ids (its first layer is an Embedding)."""
        return self._require_built("input").takes_ids

    def check_input_shape(self, shape: tuple) -> None:
        """Raise InputDataError unless (batch, *sample) fits the model's input shape."""
        expected = self._built.input_shape
        sample = tuple(shape[1:])
        if empty_axis_problem(sample):  # an unknown size (None) of the model's met by a 0
            raise InputDataError(empty_axis_problem(sample))
        if not fits(sample, expected):
            fix = input_shape_fix(shape, expected)
            raise InputDataError(f"input has shape {tuple(shape)}, but the model expects "
                                 f"{format_shape(expected)} (batch first)"
                                 + (f"; {fix}" if fix else ""))

    def __call__(self, x) -> np.ndarray:
        """The model's output for a batch, as one array."""
        x = self._prepare(x)
        if not numpy_may_run():  # batch after batch at the kernels' speed
            return self._forward_in_pieces(x)
        with small_run(self._built, len(x)):
            return self._forward_in_pieces(x)

    def predict(self, x, batch_size: int = 32) -> np.ndarray:
        """The outputs for all rows of `x`, computed `batch_size` rows at a time (a small run in
        numpy, as `seqcli predict` does: seqcli/kernels/small.py)."""
        x = self._checked(x)
        with small_run(self._built, len(x)):
            outputs = [self._forward_in_pieces(model_input(self._built,
                                                           x[start:start + batch_size], start))
                       for start in range(0, len(x), batch_size)]
        if not outputs:
            return np.empty((0, *self._built.output_shape), np.float32)
        return np.concatenate(outputs)

    def predict_batches(self, batches: Iterator[np.ndarray], until: str | None = None):
        """Yield the outputs (or the output of layer `until`) of each batch in turn."""
        for batch in model_inputs(self._built, batches):
            output = self._forward_in_pieces(batch, until)
            del batch  # before the next is read: it reuses this one's memory
            yield output

    def _forward_in_pieces(self, batch: np.ndarray, until: str | None = None) -> np.ndarray:
        """`forward` of a batch, a few rows at a time when it is big, so that the activations
        between layers stay in the CPU's cache (same results, row by row)."""
        plan = self._forward_plan()
        rows = plan.piece_rows
        layers, weights = self._built.layers, self._weights.arrays
        if len(batch) <= rows:
            return forward(layers, weights, batch, until, plan=plan)
        parts = [forward(layers, weights, batch[start:start + rows], until, plan=plan)
                 for start in range(0, len(batch), rows)]
        return np.concatenate(parts)

    def _forward_plan(self) -> ForwardPlan:
        """The model's layers bound to its weights (made on first use, and again once the
        model is rebuilt or given other weights)."""
        plan = self._plan
        if plan is None or plan.built is not self._built or plan.weights is not self._weights:
            plan = self._plan = ForwardPlan(self._built, self._weights)
        return plan


def load(path: str | Path, weights: str | None = None, *, allow_outside: bool = False):
    """Load a model file as a `Sequential` (`weights` overrides the file's weights path)."""
    return Sequential.from_loaded(load_model(str(path), allow_outside=allow_outside), weights)
