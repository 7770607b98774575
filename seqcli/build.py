"""Shape inference and weight bookkeeping for a loaded model, exactly as Keras 3 builds it.

Pure Python: no numpy, no numba, so that `seqcli summary` starts fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from seqcli.config.load import LoadedModel
from seqcli.errors import ConfigError, InputDataError, UsageError
from seqcli.io.limits import MAX_RANK
from seqcli.layers.base import Layer
from seqcli.layers.sequential import Sequential
from seqcli.shapes import Shape, ShapeError, empty_axis_problem, format_shape, num_elements

MAX_TENSOR_ELEMENTS = 2**31 - 1
"""The most values one sample's input or output of a layer, or one weight, may hold (8 GiB
of float32): a larger tensor comes from a typo or a hostile file, and is refused here,
before anything is allocated."""


@dataclass
class LayerInfo:
    """One built layer: where it sits, its shapes, its weights and their trainability."""

    layer: Layer
    path: str
    """`name`, or `parent/name` inside a nested model."""
    input_shape: Shape
    output_shape: Shape
    weights: dict[str, Shape] = field(default_factory=dict)
    """Every weight of the layer (and its sublayers) by full key, in Keras's order."""
    trainable_keys: frozenset[str] = frozenset()
    children: list[LayerInfo] = field(default_factory=list)
    macs: int | None = 0
    """Multiply-accumulates per sample (None while a dimension is unknown)."""
    masked: bool = False
    """True when the layer's output carries a mask (from Embedding(mask_zero) or Masking)."""

    @property
    def name(self) -> str:
        """The layer's own name."""
        return self.layer.name

    @property
    def params(self) -> int:
        """All weights' sizes."""
        return sum(math.prod(shape) for shape in self.weights.values())

    @property
    def trainable_params(self) -> int:
        """Sizes of the weights a `fit` would update."""
        return sum(math.prod(s) for k, s in self.weights.items() if k in self.trainable_keys)

    def walk(self):
        """This layer, then every nested layer, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def own_weights(self, weights: dict) -> dict:
        """This layer's arrays out of a model's `weights` (by full key), by weight name
        (`kernel`; a wrapper's by the path inside it, `forward_lstm/kernel`), as its `forward`
        takes them."""
        start = len(self.path) + 1
        return {key[start:]: weights[key] for key in self.weights}

    def weight_name(self, key: str) -> str:
        """The name of weight `key` within this layer (`kernel`, `forward_lstm/kernel`)."""
        return key[len(self.path) + 1:]


@dataclass
class BuiltModel:
    """A model with every shape known: the input of `summary`, `init` and the runtime."""

    name: str
    input_shape: Shape
    layers: list[LayerInfo]

    @property
    def output_shape(self) -> Shape:
        """The last layer's output shape."""
        return self.layers[-1].output_shape

    @property
    def weight_shapes(self) -> dict[str, Shape]:
        """Every weight by key, in order."""
        return {k: s for info in self.layers for k, s in info.weights.items()}

    @property
    def trainable_keys(self) -> frozenset[str]:
        """Keys of the trainable weights."""
        return frozenset().union(*(info.trainable_keys for info in self.layers))

    @property
    def total_params(self) -> int:
        """All weights' sizes."""
        return sum(info.params for info in self.layers)

    @property
    def trainable_params(self) -> int:
        """Sizes of the trainable weights."""
        return sum(info.trainable_params for info in self.layers)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return sum(info.macs for info in self.layers)

    @property
    def takes_ids(self) -> bool:
        """True when the first layer reads integer ids (an Embedding), not float values."""
        first = self.layers[0] if self.layers else None
        while first is not None and first.children:  # the first of `leaves()`, found directly
            first = first.children[0]
        return first is not None and bool(first.layer.takes_ids)

    def walk(self):
        """Every layer, nested ones included, depth first."""
        for info in self.layers:
            yield from info.walk()

    def leaves(self) -> list[LayerInfo]:
        """The layers that compute, in execution order (a nested model is its layers)."""
        return [info for info in self.walk() if not info.children]

    def find(self, path: str) -> LayerInfo | None:
        """The layer at `path` (`head/dense`), or None."""
        return next((info for info in self.walk() if info.path == path), None)

    def part_shapes(self) -> dict[str, Shape]:
        """The output shape of every layer a wrapper holds, by path
        (`bidirectional/forward_lstm`, `time_distributed/dense`)."""
        shapes = {}
        for info in self.leaves():
            for name, shape in info.layer.part_output_shapes(info.input_shape).items():
                shapes[f"{info.path}/{name}"] = shape
        return shapes


def build(model: LoadedModel, input_shape: Shape | None = None) -> BuiltModel:
    """Infer every layer's shapes from the model's (or the given) per-sample input shape."""
    if input_shape is not None and model.input_shape is not None:
        if not _compatible(tuple(input_shape), tuple(model.input_shape)):
            raise UsageError(
                f"--input-shape {format_shape(input_shape, batch=False)} differs from the "
                f"model's declared input shape {format_shape(model.input_shape, batch=False)}"
            )
        input_shape = _merge(tuple(input_shape), tuple(model.input_shape))
    shape = tuple(input_shape) if input_shape is not None else model.input_shape
    if shape is None:
        raise UsageError(
            f"model '{model.name}' in {model.source} has no input shape yet (deferred build): "
            "add 'input_shape: [...]' to the file or pass --input-shape, e.g. "
            "--input-shape 28,28,1"
        )
    empty = empty_axis_problem(shape)
    if empty:  # the model file and --input-shape allow no 0: the shape of the data
        raise InputDataError(empty)
    size = num_elements(shape)
    if size is not None and size > MAX_TENSOR_ELEMENTS:
        too_large = (f"the input shape {format_shape(shape)} holds {size:,} values per sample, "
                     f"more than the {MAX_TENSOR_ELEMENTS:,} seqcli allows")
        if model.input_shape is None:  # the shape of the data (deferred build)
            raise InputDataError(too_large)
        source, line, column = model.origin
        raise ConfigError(f"{source}:{line}:{column}: {too_large}")
    errors: list[str] = []
    layers = _build_layers(model.layers, shape, "", errors, _Mask())
    if errors:
        raise ConfigError(errors)
    return BuiltModel(name=model.name, input_shape=shape, layers=layers)


class _Mask:
    """Whether the tensor between two layers carries a mask, and which layer made it."""

    def __init__(self):
        self.source: str | None = None

    def after(self, layer: Layer, path: str) -> None:
        """Follow the mask through `layer` (at `path`), as Keras's `compute_mask` does."""
        masked = layer.output_masked(self.source is not None)
        if masked and not layer.output_masked(False):
            return  # the incoming mask, passed on
        self.source = path if masked else None


def _build_layers(layers: list[Layer], shape: Shape, prefix: str, errors: list[str],
                  mask: _Mask):
    infos = []
    for layer in layers:
        info = _build_layer(layer, shape, prefix, errors, mask)
        if info is None:
            return infos
        infos.append(info)
        shape = info.output_shape
    return infos


def _build_layer(layer: Layer, shape: Shape, prefix: str, errors: list[str], mask: _Mask):
    path = prefix + layer.name
    try:
        if isinstance(layer, Sequential):
            return _build_nested(layer, shape, path, errors, mask)
        if mask.source is not None and not layer.supports_masking:
            raise ShapeError(
                f"it cannot take the mask that layer '{mask.source}' attaches to its output "
                f"(Keras would drop the mask here with a warning); put a layer that consumes "
                f"the mask (SimpleRNN, LSTM, GRU, Bidirectional, GlobalAveragePooling1D) "
                f"before it, or remove the mask (mask_zero: false, or no Masking)")
        output = layer.output_shape(shape)
        weights = {f"{path}/{name}": s for name, s in layer.param_shapes(shape).items()}
        _check_size("its output", output)
        for key, weight_shape in weights.items():
            _check_size(f"its weight {key.rsplit('/', 1)[1]}", weight_shape)
        _check_constraint_axes(layer, weights, path)
    except ShapeError as exc:
        errors.append(_where(layer) + f"layer '{path}' ({layer.type}): {exc}")
        return None
    trainable = frozenset(key for key in weights
                          if layer.weight_trainable(key[len(path) + 1:]))
    mask.after(layer, path)
    return LayerInfo(layer=layer, path=path, input_shape=shape, output_shape=output,
                     weights=weights, trainable_keys=trainable,
                     macs=_macs(layer, shape, output), masked=mask.source is not None)


def _check_constraint_axes(layer: Layer, weights: dict[str, Shape], path: str) -> None:
    """A ShapeError when a weight constraint's axis is not one of its weight's axes."""
    from seqcli.layers.regularizers import check_axis

    for name, constraint in layer.weight_constraints().items():
        shape = weights.get(f"{path}/{name}")
        if shape is not None:
            try:
                check_axis(constraint, len(shape), f"the constraint of its weight {name}")
            except ValueError as exc:
                raise ShapeError(str(exc)) from None


def _build_nested(layer: Sequential, shape: Shape, path: str, errors: list[str], mask: _Mask):
    declared = layer._input_shape
    if declared is not None and not _compatible(shape, tuple(declared)):
        raise ShapeError(
            f"the nested model expects inputs of shape {format_shape(declared)} but "
            f"receives {format_shape(shape)}"
        )
    children = _build_layers(layer.sublayers, shape, path + "/", errors, mask)
    if len(children) != len(layer.sublayers):
        return None
    info = LayerInfo(layer=layer, path=path, input_shape=shape,
                     output_shape=children[-1].output_shape, children=children,
                     masked=children[-1].masked)
    for child in children:
        info.weights.update(child.weights)
    info.trainable_keys = frozenset().union(*(c.trainable_keys for c in children))
    macs = [child.macs for child in children]
    info.macs = None if None in macs else sum(macs)
    return info


def _check_size(what: str, shape: Shape) -> None:
    """Raise ShapeError if `shape` (per sample, or a weight's) holds too many values or has
    more axes than an array can have beside the batch axis."""
    if len(shape) > MAX_RANK - 1:
        raise ShapeError(f"{what} would have {len(shape)} axes; with the batch axis an array "
                         f"has at most {MAX_RANK} (numpy's limit)")
    size = num_elements(shape)
    if size is not None and size > MAX_TENSOR_ELEMENTS:
        raise ShapeError(f"{what} of shape {tuple(shape)} would hold {size:,} values, more than "
                         f"the {MAX_TENSOR_ELEMENTS:,} seqcli allows per sample or weight")


def _compatible(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _merge(given: Shape, declared: Shape) -> Shape:
    return tuple(d if d is not None else g for g, d in zip(given, declared))


def _where(layer: Layer) -> str:
    origin = layer._origin
    return f"{origin[0]}:{origin[1]}:{origin[2]}: " if origin else ""


def _macs(layer: Layer, input_shape: Shape, output_shape: Shape) -> int | None:
    """The layer's multiply-accumulates per sample; None while a dimension is unknown."""
    if any(d is None for d in input_shape + output_shape):
        return None
    return layer.macs(input_shape, output_shape)
