"""What every layer shares: Keras's common keys, field types, the layer protocol, and the
registry that every layer class joins by being defined (`LAYER_REGISTRY`)."""

from __future__ import annotations

import difflib
import functools
import importlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from seqcli.activations import canonical_activation
from seqcli.errors import quoted
from seqcli.io.limits import MAX_NAME_BYTES, MAX_RANK
from seqcli.shapes import Shape, ShapeError

INITIALIZER_CLASSES = {
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform",
    "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform",
    "lecun_normal": "LecunNormal",
    "zeros": "Zeros",
    "ones": "Ones",
    "random_uniform": "RandomUniform",
    "random_normal": "RandomNormal",
    "truncated_normal": "TruncatedNormal",
    "orthogonal": "Orthogonal",
}
"""seqcli's initializer names and the Keras classes for them (both spellings are accepted)."""
INITIALIZERS = tuple(INITIALIZER_CLASSES)
INITIALIZER_NAMES = {cls: name for name, cls in INITIALIZER_CLASSES.items()} | {
    "uniform": "random_uniform", "normal": "random_normal"}
"""Keras's initializer class name (or short alias) → seqcli's name."""


def _did_you_mean(value: str, known) -> str:
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(known)}."


def _check_activation(value):
    if isinstance(value, (dict, Layer)):
        return activation_layer(value)
    if value is not None and not isinstance(value, str):
        raise ValueError("expected an activation name such as 'relu', or an activation "
                         "layer as a mapping such as {type: LeakyReLU, negative_slope: 0.1}")
    return canonical_activation(value)


def activation_layer(value):
    """An activation given as an activation layer (a mapping with its `type`, as Keras
    serialises `Conv2D(activation=LeakyReLU(0.2))`): the name of the activation function
    that computes the same (`leaky_relu`), or else the layer, which then runs after the layer
    that has it (see `post_activation`)."""
    if isinstance(value, Layer):
        layer = value
    else:
        kind = value.get("type")
        cls = LAYER_REGISTRY.get(kind) if isinstance(kind, str) else None
        if cls is None or not cls.activation_layer:
            usable = ", ".join(name for name, c in LAYER_REGISTRY.items() if c.activation_layer)
            raise ValueError(f"an activation given as a mapping needs the type of an activation "
                             f"layer ({usable}). Received: type={kind!r}")
        try:
            layer = cls.model_validate(value)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"in the {kind} activation{f' ({where})' if where else ''}: "
                             f"{message}") from None
    named = layer.named_activation()
    return named if named is not None else layer


def _check_initializer(value):
    if not isinstance(value, str):
        raise ValueError("expected an initializer name such as 'glorot_uniform'")
    value = INITIALIZER_NAMES.get(value, value)
    if value not in INITIALIZERS:
        raise ValueError(f"unknown initializer '{value}'.{_did_you_mean(value, INITIALIZERS)}")
    return value


def _check_padding(value):
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f"expected 'valid' or 'same'. Received: padding={value!r}")
    return value.lower()


def _check_data_format(value):
    if value not in (None, "channels_last"):
        raise ValueError(
            f"only data_format 'channels_last' is supported (seqcli arrays are channels-last). "
            f"Received: data_format={value!r}"
        )
    return "channels_last"


WEIGHT_OPTIONS = {"kernel": "kernel", "recurrent": "recurrent_kernel", "depthwise":
                  "depthwise_kernel", "pointwise": "pointwise_kernel", "bias": "bias",
                  "embeddings": "embeddings", "gamma": "gamma", "beta": "beta"}
"""The prefix of a `*_regularizer` / `*_constraint` key and the weight it applies to (a
layer's `weight_options`, by default)."""
OPTIONAL_WEIGHTS = {"bias": "use_bias", "gamma": "scale", "beta": "center"}
"""Weights that a layer's flag may remove, and that flag."""


MAX_SIZE = 2**31 - 1
"""The largest size, stride, count or dimension a model file may give (TensorFlow's int32
limit): larger values are typos or hostile, and would overflow the kernels' integers."""


def int_tuple(value, rank: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a list of `rank` ints, each at least `minimum`, as a tuple (Keras's
    `standardize_tuple`)."""
    values = [value] * rank if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or len(values) != rank or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(
            f"expected an int or a list of {rank} ints. Received: {name}={value!r}"
        )
    if any(v < minimum for v in values):
        bound = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"every value must be {bound}. Received: {name}={value!r}")
    if any(v > MAX_SIZE for v in values):
        raise ValueError(f"every value must be at most {MAX_SIZE}. Received: {name}={value!r}")
    return tuple(values)


def _positive(value, info: ValidationInfo):
    if value <= 0:
        raise ValueError(f"expected a strictly positive value. Received: {info.field_name}={value}")
    if value > MAX_SIZE:
        raise ValueError(f"expected a value of at most {MAX_SIZE}. "
                         f"Received: {info.field_name}={value}")
    return value


def IntTuple(rank: int, minimum: int = 1):  # noqa: N802 (a type factory)
    """The type of a size such as `kernel_size`: an int or a list of `rank` ints."""

    def check(value, info: ValidationInfo):
        return int_tuple(value, rank, info.field_name, minimum)

    return Annotated[tuple, BeforeValidator(check)]


Count = Annotated[int, AfterValidator(_positive)]
"""A strictly positive int, such as `units` or `filters`."""


Activation = Annotated[Any, BeforeValidator(_check_activation)]
"""An activation: its name (canonical: `swish` reads as `silu`), or an activation layer
(`LeakyReLU(0.1)`) that no name computes; see `activation_layer`."""
Initializer = Annotated[str, BeforeValidator(_check_initializer)]
Padding = Annotated[Literal["valid", "same"], BeforeValidator(_check_padding)]
DataFormat = Annotated[Literal["channels_last"], BeforeValidator(_check_data_format)]


def _check_shape(value):
    if not isinstance(value, (list, tuple)) or not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in value
    ):
        raise ValueError(f"expected a list of positive ints (or null). Received: {value!r}")
    if any(v is not None and v <= 0 for v in value):
        raise ValueError(f"every dimension must be positive. Received: {value!r}")
    if any(v is not None and v > MAX_SIZE for v in value):
        raise ValueError(f"every dimension must be at most {MAX_SIZE}. Received: {value!r}")
    if len(value) > MAX_RANK - 1:
        raise ValueError(f"a shape has at most {MAX_RANK - 1} axes (with the batch axis, "
                         f"numpy's limit of {MAX_RANK}); this one has {len(value):,}")
    return tuple(value)


InputShape = Annotated[tuple, BeforeValidator(_check_shape)]


def _check_name(value: str) -> str:
    """A name that can become a weight key, an `.npz` member name and a file name."""
    if not value or value in (".", "..") or any(
            char in "/\\" or not char.isprintable() for char in value):
        raise ValueError(f"layer name {quoted(value)} must be non-empty, not '.' or '..', and "
                         "contain no '/', '\\' or control characters (it names weights and files)")
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"layer name of {size:,} bytes is too long: names have at most "
                         f"{MAX_NAME_BYTES:,} bytes (they name weights and files). Received: "
                         f"name={quoted(value)}")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A layer's (or model's) name, usable in weight keys, `.npz` member names and file names."""


class Example:
    """A small input a layer runs on: the warm-up compiles its kernels with it, and the smoke
    test runs it (forward, and one training step)."""

    __slots__ = ("settings", "input_shape", "batch", "masked")

    def __init__(self, settings: dict[str, Any], input_shape: tuple, batch: int = 2,
                 masked: bool = False):
        self.settings = settings
        """The layer's keys, as in a model file, without `type`."""
        self.input_shape = input_shape
        """Per-sample input shape."""
        self.batch = batch
        """Rows of the example batch (large enough, where it matters, for a threaded path)."""
        self.masked = masked
        """True to run the layer with a mask of its steps too (layers that take one)."""

    def __repr__(self) -> str:
        masked = ", masked=True" if self.masked else ""
        return f"Example({self.settings!r}, {self.input_shape!r}, batch={self.batch}{masked})"


class LayerRegistry(Mapping):
    """The layer classes by their `type`. A class joins by being defined in a module of
    `seqcli.layers`; a module is imported when one of its types is first looked up, so that
    a model file pays only for the layer types it uses. Iterating imports every module, and
    gives the types in the order of the package's modules (nested `Sequential` last)."""

    def __init__(self):
        self._classes: dict[str, type[Layer]] = {}

    def add(self, type_name: str, cls: type[Layer]) -> None:
        """Register `cls` as the layer type `type_name` (once)."""
        known = self._classes.get(type_name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"layer type '{type_name}' is defined twice: by "
                            f"{known.__module__}.{known.__qualname__} and "
                            f"{cls.__module__}.{cls.__qualname__}")
        self._classes[type_name] = cls

    def __getitem__(self, type_name: str) -> type[Layer]:
        if type_name not in self._classes and type_name in layer_modules():
            importlib.import_module(f"seqcli.layers.{layer_modules()[type_name]}")
        return self._classes[type_name]

    def __iter__(self):
        for module in dict.fromkeys(layer_modules().values()):
            importlib.import_module(f"seqcli.layers.{module}")
        return iter([*layer_modules(), *(name for name in self._classes
                                         if name not in layer_modules())])

    def __len__(self) -> int:
        return sum(1 for _ in self)


_TYPE_FIELD = re.compile(r'^    type: Literal\["(\w+)"\]', re.MULTILINE)
"""How a layer class names its type (`type: Literal["Dense"] = "Dense"`)."""


@functools.cache
def layer_modules() -> dict[str, str]:
    """Each layer type's module in `seqcli.layers`, read from the modules' source without
    importing them, in the order `LAYER_REGISTRY` gives them."""
    folder = Path(__file__).parent
    names = sorted(path.stem for path in folder.glob("*.py")
                   if path.stem not in ("__init__", "base", "sequential")) + ["sequential"]
    return {type_name: module for module in names
            for type_name in _TYPE_FIELD.findall((folder / f"{module}.py").read_text("utf-8"))}


LAYER_REGISTRY = LayerRegistry()
"""Every layer type a model file may use, by its `type`. A layer class joins it by being
defined (its `type` field names it)."""


class Layer(BaseModel):
    """A layer's settings (Keras keys and defaults) and its shape, weight and forward rules.

    A subclass with a `type: Literal["Name"]` field is a layer type: it registers itself in
    `LAYER_REGISTRY`. Subclasses without one are shared bases (`_Windowed`, `_Pooling`)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=False,
                              allow_inf_nan=False, defer_build=True)
    """Every float setting is finite: NaN or infinity in a model file is refused. A class
    builds its validator on first use: a model file pays only for the layer types it uses."""

    name: Name | None = None
    """The layer's name; by default the snake_case of its type, numbered per nesting level."""
    trainable: bool = True
    """False freezes the layer's weights (and, for a nested Sequential, everything inside)."""
    dtype: Literal["float32"] | None = None
    """Only float32 is supported."""
    input_shape: InputShape | None = None
    """Per-sample input shape; allowed on the first layer only (a Keras 2 spelling)."""

    non_trainable_weights: ClassVar[tuple[str, ...]] = ()
    """Weight names that are never trainable (BatchNormalization's moving statistics)."""
    examples: ClassVar[tuple[Example, ...]] = ()
    """Small inputs that reach every kernel code path of the layer (warm-up, smoke test)."""
    keras_build_config: ClassVar[bool] = True
    """False for layers without a `build` of their own, which Keras saves without a
    `build_config`."""
    keras_only_options: ClassVar[dict[str, Any]] = {
        "quantization_config": None, "lora_rank": None, "lora_alpha": None}
    """Options Keras writes that seqcli lacks, accepted on import only at these values."""
    keras_ignored_options: ClassVar[frozenset[str]] = frozenset()
    """Options Keras writes that mean nothing at the values `keras_only_options` allows."""
    keras_integer_weights: ClassVar[frozenset[str]] = frozenset()
    """Weights Keras keeps as integers (Normalization's `count`): float32 in seqcli, int32 in
    a `.keras` file."""
    keras_trainable_option: ClassVar[bool] = True
    """False for layers whose Keras config has no `trainable` (SpatialDropout1D/2D/3D)."""
    supports_masking: ClassVar[bool] = False
    """Keras's `supports_masking`: the layer takes a mask (a boolean per time step) and, by
    default, passes it on unchanged. A mask reaching a layer without it is an error."""
    takes_mask: ClassVar[bool] = False
    """True for layers whose `forward` uses the mask: `forward(weights, x, mask=...)`."""
    takes_ids: ClassVar[bool] = False
    """True for layers whose input is integer ids (Embedding), not float32 values."""
    activation_layer: ClassVar[bool] = False
    """True for the activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax), which may also
    stand as another layer's `activation`."""
    weight_options: ClassVar[dict[str, str]] = WEIGHT_OPTIONS
    """The prefix of each `*_regularizer` / `*_constraint` key and the weight it applies to."""

    # where the layer was written: (file, line, column), set by the loader
    _origin: tuple[str, int, int] | None = PrivateAttr(default=None)
    # where the layer's mapping sits in that file's data: ("layers", 2, "layers", 0)
    _data_path: tuple | None = PrivateAttr(default=None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        if field is None:
            return  # a shared base, not a layer type
        type_name = field.default
        if not isinstance(type_name, str) or cls.__name__.startswith("_"):
            raise TypeError(f"{cls.__name__}: a layer type needs `type: Literal[...] = "
                            f"'<its Keras class name>'`")
        LAYER_REGISTRY.add(type_name, cls)

    def output_shape(self, input_shape: Shape) -> Shape:
        """The per-sample output shape for a per-sample input shape."""
        return input_shape

    def keras_difference(self, input_shape: Shape) -> str | None:
        """Where seqcli deliberately computes otherwise than Keras for this input shape, what
        the difference is (import-keras and export-keras say it); None for most layers."""
        return None

    def named_activation(self) -> str | None:
        """For an activation layer: the activation function's name that computes the same
        (`ReLU(max_value=6)` is relu6), or None."""
        return None

    @property
    def fused_activation(self) -> str:
        """The activation a layer's own kernels apply: its `activation` when that is a name,
        else linear (an activation layer then runs after, see `post_activation`)."""
        activation = getattr(self, "activation", "linear")
        return activation if isinstance(activation, str) else "linear"

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """The weights' names and shapes, in Keras's order."""
        return {}

    def weight_initializers(self) -> dict[str, str]:
        """The initializer of each weight, by weight name."""
        return {}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        """Multiply-accumulates per sample (0 for layers without a weight product)."""
        return 0

    def weight_trainable(self, name: str) -> bool:
        """Whether weight `name` (as `param_shapes` names it) is trained by `fit`."""
        return self.trainable and name not in self.non_trainable_weights

    def part_output_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """For a wrapper: the output shape of each layer it holds, by name ({} otherwise)."""
        return {}

    def part_outputs(self, weights: dict, x, mask=None) -> dict:
        """For a wrapper: the output of each layer it holds for input `x`, by name."""
        return {}

    def output_masked(self, input_masked: bool) -> bool:
        """Whether the output carries a mask, given whether the input does (Keras's
        `compute_mask`, decided from the model file alone)."""
        return input_masked and self.supports_masking

    def compute_mask(self, x, mask):
        """The output's mask (a bool array, (N, steps)) for input `x` and its `mask` (or
        None), as Keras's `compute_mask`."""
        return mask if self.supports_masking else None

    def forward(self, weights: dict, x):
        """Run the layer on a batch `x` of shape (N, *input_shape)."""
        raise NotImplementedError(f"{self.type} has no forward pass")

    def bound_forward(self, weights: dict):
        """`forward` with the layer's `weights` bound, for a model's plan that runs it on batch
        after batch (`seqcli.runtime.model.ForwardPlan`): a layer may check and prepare its
        weights here once rather than on every call."""
        return functools.partial(self.forward, weights)

    def forward_train(self, weights: dict, x, rng):
        """Training-mode forward: (output, what `backward` needs). `rng` drives Dropout."""
        return self.forward(weights, x), x

    def has_output_penalty(self) -> bool:
        """True when `output_penalty` may add to the loss (an activity regularizer is set): a
        training step asks the others for none."""
        return getattr(self, "activity_regularizer", None) is not None

    def output_penalty(self, y) -> float:
        """What the layer adds to the training loss for its output `y` of a batch: Keras's
        activity regularizer on the output, divided by the batch size; 0.0 without one."""
        from seqcli.layers.regularizers import penalty

        regularizer = getattr(self, "activity_regularizer", None)
        if regularizer is None or not len(y):
            return 0.0
        return penalty(regularizer, y) / len(y)

    def output_penalty_gradient(self, y):
        """The gradient of `output_penalty` with respect to `y`, which `fit` adds to the
        gradient reaching the layer's output; None without an activity regularizer."""
        from seqcli.layers.regularizers import penalty_gradient

        regularizer = getattr(self, "activity_regularizer", None)
        if regularizer is None or not len(y):
            return None
        return penalty_gradient(regularizer, y) / len(y)

    def weight_regularizers(self) -> dict[str, dict]:
        """{weight name: its regularizer} for the layer's `*_regularizer` keys that are set."""
        return self._weight_options("_regularizer")

    def weight_constraints(self) -> dict[str, dict]:
        """{weight name: its constraint} for the layer's `*_constraint` keys that are set."""
        return self._weight_options("_constraint")

    def _weight_options(self, suffix: str) -> dict[str, dict]:
        found = {}
        for prefix, weight in self.weight_options.items():
            value = getattr(self, prefix + suffix, None)
            if value is not None:
                found[weight] = value
        return found

    @model_validator(mode="after")
    def _options_need_their_weight(self):
        for weight, flag in OPTIONAL_WEIGHTS.items():
            if getattr(self, flag, True):
                continue
            for suffix in ("_regularizer", "_constraint"):
                if getattr(self, weight + suffix, None) is not None:
                    raise ValueError(f"{weight}{suffix} applies to the {weight}, which {flag}: "
                                     f"false removes; drop {weight}{suffix} or set {flag}: true")
        return self

    def backward(self, weights: dict, cache, dy, input_grad: bool = True):
        """(dx, {weight name: gradient}) for the upstream gradient `dy`; dx is None when
        `input_grad` is False (no trainable layer before this one)."""
        return (dy.reshape(cache.shape) if input_grad else None), {}

    # ------------------------------------------------------------ Keras's .keras format

    def keras_options(self) -> dict[str, Any]:
        """The layer's own options (not name, trainable, dtype) as Keras's config holds them,
        initializers still as seqcli names."""
        return {name: _plain(getattr(self, name)) for name in type(self).model_fields
                if name not in COMMON_FIELDS}

    @classmethod
    def from_keras_option(cls, key: str, value):
        """A Keras config value as seqcli's field holds it (the inverse of `keras_options`)."""
        return value

    def keras_weight_groups(self, names: list[str]) -> list[tuple[str, list[str]]]:
        """Where Keras's `.weights.h5` keeps the layer's weights `names` (in `param_shapes`
        order): [(group below the layer's own, "" for its own `vars`; the names that group's
        `vars` holds, in order)]."""
        return [("", names)]

    def keras_weight_shape(self, input_shape: Shape, name: str, shape: Shape) -> Shape:
        """The shape Keras gives weight `name`, which holds the same values as seqcli's
        `shape` (by default the same shape)."""
        return shape


COMMON_FIELDS = frozenset({"type", "name", "trainable", "dtype", "input_shape", "layers",
                           "from_"})
"""Fields of a seqcli layer that are not its own options in Keras's config."""


def _plain(value):
    """Tuples as lists, recursively (JSON has no tuples; Keras writes lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def require_rank(layer: Layer, input_shape: Shape, rank: int, what: str) -> None:
    """Raise ShapeError unless the per-sample input has `rank` dimensions."""
    if len(input_shape) != rank:
        raise ShapeError(
            f"{layer.type} expects {what} (a per-sample rank of {rank}, {rank + 1} with the "
            f"batch axis). Received: input_shape={_fmt(input_shape)}"
        )


def require_known(layer: Layer, value, what: str, input_shape: Shape) -> int:
    """Raise ShapeError when a dimension the weights depend on is unknown."""
    if value is None:
        raise ShapeError(
            f"the {what} of the input to {layer.type} must be defined. "
            f"Received: input_shape={_fmt(input_shape)}"
        )
    return value


def _fmt(shape: Shape) -> str:
    from seqcli.shapes import format_shape

    return format_shape(shape)


def sublayer_weights(weights: dict, name: str) -> dict:
    """The weights of the sublayer `name` (a wrapped layer, an activation layer) out of its
    owner's, keyed `<name>/<weight>`, by their names in the sublayer."""
    start = len(name) + 1
    return {key[start:]: value for key, value in weights.items() if key.startswith(name + "/")}


def activation_weights(layer: Layer, weights: dict) -> dict:
    """The weights of `layer`'s activation layer (a PReLU's `alpha`, kept as
    `<activation's name>/alpha`) by their names in the activation layer."""
    return sublayer_weights(weights, activation_prefix(layer))


def snake_case(type_name: str) -> str:
    """Keras's auto-name of a layer type: `Conv2D` → `conv2d`, `MaxPooling2D` → `max_pooling2d`."""
    name = re.sub(r"\W+", "", type_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def activation_prefix(layer: Layer) -> str:
    """The name the weights of `layer`'s activation layer are kept under (its own name, or
    Keras's for its type: `p_re_lu`)."""
    after = layer.activation
    return after.name if after.name is not None else snake_case(after.type)


def post_activation(cls):
    """Class decorator for a layer type with an `activation`: when that is an activation layer
    (one no activation name computes, such as LeakyReLU(0.1) or a PReLU), the layer's kernels
    apply none (`fused_activation` is linear) and the activation layer's forward, training
    forward and backward run after the layer's own; a PReLU's weights are the layer's too,
    keyed `p_re_lu/alpha` (Keras keeps them in the layer's `activation` group). Methods that
    a decorated class already wrapped are inherited as they are."""
    forward, forward_train, backward = cls.forward, cls.forward_train, cls.backward
    param_shapes, initializers = cls.param_shapes, cls.weight_initializers
    weight_groups = cls.keras_weight_groups

    @functools.wraps(forward)
    def forward_then_activation(self, weights, x, *args, **kwargs):
        y = forward(self, weights, x, *args, **kwargs)
        after = self.activation
        return y if isinstance(after, str) else after.forward(activation_weights(self, weights),
                                                              y)

    @functools.wraps(forward_train)
    def forward_train_then_activation(self, weights, x, rng, *args, **kwargs):
        y, cache = forward_train(self, weights, x, rng, *args, **kwargs)
        after = self.activation
        if isinstance(after, str):
            return y, cache
        z, after_cache = after.forward_train(activation_weights(self, weights), y, rng)
        return z, (cache, after_cache)

    @functools.wraps(backward)
    def backward_through_activation(self, weights, cache, dy, input_grad=True):
        after = self.activation
        if isinstance(after, str):
            return backward(self, weights, cache, dy, input_grad)
        cache, after_cache = cache
        dy, after_grads = after.backward(activation_weights(self, weights), after_cache, dy)
        dx, grads = backward(self, weights, cache, dy, input_grad)
        prefix = activation_prefix(self)
        return dx, grads | {f"{prefix}/{name}": grad for name, grad in after_grads.items()}

    @functools.wraps(param_shapes)
    def param_shapes_with_activation(self, input_shape):
        shapes = param_shapes(self, input_shape)
        after = self.activation
        if isinstance(after, str):
            return shapes
        prefix = activation_prefix(self)
        return shapes | {f"{prefix}/{name}": shape for name, shape in
                         after.param_shapes(self.output_shape(input_shape)).items()}

    @functools.wraps(initializers)
    def initializers_with_activation(self):
        found = initializers(self)
        after = self.activation
        if isinstance(after, str):
            return found
        prefix = activation_prefix(self)
        return found | {f"{prefix}/{name}": value
                        for name, value in after.weight_initializers().items()}

    @functools.wraps(weight_groups)
    def weight_groups_with_activation(self, names):
        after = self.activation
        if isinstance(after, str):
            return weight_groups(self, names)
        prefix = activation_prefix(self) + "/"
        own = [name for name in names if not name.startswith(prefix)]
        inner = [name for name in names if name.startswith(prefix)]
        return weight_groups(self, own) + ([("activation", inner)] if inner else [])

    for name, wrapped in (("forward", forward_then_activation),
                          ("forward_train", forward_train_then_activation),
                          ("backward", backward_through_activation),
                          ("param_shapes", param_shapes_with_activation),
                          ("weight_initializers", initializers_with_activation),
                          ("keras_weight_groups", weight_groups_with_activation)):
        if not getattr(getattr(cls, name), "post_activation", False):
            wrapped.post_activation = True
            setattr(cls, name, wrapped)
    return cls


class Input(BaseModel):
    """`keras.Input`: declares the per-sample input shape; not a layer."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    type: Literal["Input"] = "Input"
    shape: InputShape | None = None
    """Per-sample shape, without the batch axis."""
    batch_shape: InputShape | None = None
    """Shape with the batch axis first (its size is ignored)."""
    batch_size: int | None = None
    name: str | None = None
    dtype: Literal["float32"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _allow_null_batch(cls, data):
        # batch_shape's first entry is the batch size, null or positive: drop it here
        if isinstance(data, dict) and isinstance(data.get("batch_shape"), list):
            data = dict(data, batch_shape=[1] + data["batch_shape"][1:])
        return data

    @model_validator(mode="after")
    def _one_shape(self):
        if (self.shape is None) == (self.batch_shape is None):
            raise ValueError("Input needs exactly one of 'shape' or 'batch_shape'")
        return self

    @property
    def sample_shape(self) -> tuple:
        """The per-sample shape, whichever key gave it."""
        return self.shape if self.shape is not None else self.batch_shape[1:]


def entry_class(type_name) -> type[BaseModel] | None:
    """The class of a `layers:` entry whose `type` is `type_name`: a layer type, or `Input`;
    None for anything else."""
    if type_name == "Input":
        return Input
    return LAYER_REGISTRY.get(type_name) if isinstance(type_name, str) else None


def _validate_entry(value):
    """One entry of `layers:` (or a wrapper's `layer:`), validated by the class its `type`
    names alone; its errors are located under that type, as a union tagged by `type` would."""
    if isinstance(value, (Layer, Input)):
        return value
    if not isinstance(value, dict):
        raise _entry_error("model_attributes_type", value)
    if "type" not in value:
        raise _entry_error("union_tag_not_found", value, discriminator="'type'")
    cls = entry_class(value["type"])
    if cls is None:
        tags = ", ".join(repr(name) for name in [*layer_modules(), "Input"])
        raise _entry_error("union_tag_invalid", value, discriminator="'type'",
                           tag=str(value["type"]), expected_tags=tags)
    try:
        return cls.model_validate(value)
    except ValidationError as error:
        raise ValidationError.from_exception_data(error.title, [
            {"type": item["type"], "loc": (value["type"], *item["loc"]), "input": item["input"],
             **({"ctx": item["ctx"]} if "ctx" in item else {})}
            for item in error.errors(include_url=False)]) from None


def _entry_error(kind: str, value, **context) -> ValidationError:
    """A pydantic error of type `kind` about the entry `value`."""
    return ValidationError.from_exception_data("LayerEntry", [
        {"type": kind, "loc": (), "input": value, **({"ctx": context} if context else {})}])


LayerEntry = Annotated[Any, PlainValidator(_validate_entry)]
"""One entry of `layers:`: a layer, or `Input` as the first entry."""
