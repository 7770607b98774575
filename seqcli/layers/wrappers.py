"""Bidirectional and TimeDistributed: layers that wrap another layer (given inline, as a
mapping with its `type`), whose weights nest under the wrapper's name like a nested model's:
`bidirectional/forward_lstm/kernel`, `time_distributed/dense/kernel`."""

from __future__ import annotations

from typing import Literal

from pydantic import PrivateAttr, field_validator, model_validator

from seqcli.layers.base import Example, Layer, LayerEntry, require_rank, sublayer_weights
from seqcli.shapes import Shape, ShapeError, format_shape


def _default_name(layer: Layer) -> str:
    from seqcli.layers.sequential import snake_case

    return layer.name if layer.name is not None else snake_case(layer.type)


def _removeprefix(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _prefixed(name: str, values: dict) -> dict:
    return {f"{name}/{key}": value for key, value in values.items()}


def _part_groups(names: list[str], parts) -> list[tuple[str, list[str]]]:
    """Keras's `.weights.h5` groups of a wrapper's weights: each part's groups, below the
    part's own group (`forward_layer/cell`)."""
    groups = []
    for group, part in parts:
        own = [name[len(part.name) + 1:] for name in names if name.startswith(part.name + "/")]
        for inner, inner_names in part.keras_weight_groups(own):
            groups.append(("/".join(filter(None, (group, inner))),
                           [f"{part.name}/{name}" for name in inner_names]))
    return groups


class _Wrapper(Layer):
    """What both wrappers share: the sublayers' weights and their trainability."""

    @model_validator(mode="after")
    def _no_penalties_inside(self):
        for key in ("layer", "backward_layer"):
            part = getattr(self, key, None)
            if part is None:
                continue
            if part.weight_regularizers() or part.weight_constraints() or getattr(
                    part, "activity_regularizer", None) is not None:
                raise ValueError(f"seqcli's {self.type} does not train its wrapped layer's "
                                 f"regularizers or constraints; remove them from {key} (or "
                                 f"use the layer unwrapped)")
        return self

    def parts(self) -> list[Layer]:
        """The wrapped layers (each named), whose weights the wrapper holds."""
        raise NotImplementedError

    def _part_shapes(self, input_shape: Shape) -> list[tuple[Layer, Shape]]:
        """(sublayer, its input shape) for each part."""
        raise NotImplementedError

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {}
        for part, shape in self._part_shapes(input_shape):
            shapes |= _prefixed(part.name, part.param_shapes(shape))
        return shapes

    def weight_initializers(self) -> dict:
        initializers = {}
        for part in self.parts():
            initializers |= _prefixed(part.name, part.weight_initializers())
        return initializers

    def part_output_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {part.name: part.output_shape(shape)
                for part, shape in self._part_shapes(input_shape)}

    def weight_trainable(self, name: str) -> bool:
        part_name, inner = name.split("/", 1)
        part = next(p for p in self.parts() if p.name == part_name)
        return self.trainable and part.weight_trainable(inner)

    def keras_weight_shape(self, input_shape: Shape, name: str, shape: Shape) -> Shape:
        part_name, inner = name.split("/", 1)
        for part, part_input in self._part_shapes(input_shape):
            if part.name == part_name:
                return part.keras_weight_shape(part_input, inner, shape)
        return shape  # pragma: no cover


class Bidirectional(_Wrapper):
    """Runs a recurrent layer forwards and a copy (or `backward_layer`) backwards over the
    steps and merges their outputs (`merge_mode`: concat, sum, mul, ave)."""

    type: Literal["Bidirectional"] = "Bidirectional"
    layer: LayerEntry
    """The recurrent layer (SimpleRNN, LSTM or GRU), as a mapping with its `type`."""
    merge_mode: Literal["concat", "sum", "mul", "ave"] | None = "concat"
    backward_layer: LayerEntry | None = None
    """The backward layer; by default a copy of `layer` with go_backwards set."""

    supports_masking = True
    takes_mask = True
    examples = (
        Example({"layer": {"type": "LSTM", "units": 3}}, (4, 2)),
        Example({"layer": {"type": "GRU", "units": 3, "return_sequences": True},
                 "merge_mode": "sum"}, (4, 2)),
        Example({"layer": {"type": "SimpleRNN", "units": 2, "return_sequences": True},
                 "merge_mode": "mul"}, (4, 2), masked=True),
        Example({"layer": {"type": "LSTM", "units": 2},
                 "backward_layer": {"type": "GRU", "units": 3, "go_backwards": True},
                 "merge_mode": "concat"}, (4, 2), masked=True),
    )

    _forward: Layer = PrivateAttr(default=None)
    _backward: Layer = PrivateAttr(default=None)

    @field_validator("merge_mode")
    @classmethod
    def _merged(cls, value):
        if value is None:
            raise ValueError("merge_mode=None returns the forward and backward outputs as two "
                             "tensors, which a Sequential model cannot pass on; use concat, "
                             "sum, mul or ave")
        return value

    @model_validator(mode="after")
    def _derive(self):
        from seqcli.layers.recurrent import _Recurrent

        for key in ("layer", "backward_layer"):
            part = getattr(self, key)
            if part is not None and not isinstance(part, _Recurrent):
                raise ValueError(f"{key} must be a recurrent layer (SimpleRNN, LSTM or GRU). "
                                 f"Received: {part.type}")
        name = _default_name(self.layer)
        keep = self.layer.return_sequences  # Keras: masked steps output zeros in both
        self._forward = self.layer.model_copy(update={
            "name": f"forward_{_removeprefix(name, 'forward_')}", "zero_output_for_mask": keep})
        if self.backward_layer is None:
            self._backward = self.layer.model_copy(update={
                "name": f"backward_{_removeprefix(name, 'backward_')}", "go_backwards": True,
                "zero_output_for_mask": keep})
        else:
            backward = self.backward_layer
            if backward.go_backwards == self.layer.go_backwards:
                raise ValueError("the forward and backward layers need different go_backwards "
                                 f"values. Received: go_backwards={backward.go_backwards} for "
                                 "both")
            if backward.return_sequences != keep:
                raise ValueError("the forward and backward layers need the same "
                                 "return_sequences")
            self._backward = backward.model_copy(update={
                "name": _default_name(backward), "zero_output_for_mask": keep})
        if self._backward.name == self._forward.name:
            raise ValueError(f"the forward and backward layers are both named "
                             f"'{self._forward.name}'; name them apart")
        for part in (self._forward, self._backward):
            part.trainable = part.trainable and self.trainable
        if self.merge_mode in ("sum", "mul", "ave") and \
                self._forward.units != self._backward.units:
            raise ValueError(f"merge_mode {self.merge_mode} needs the same units forwards and "
                             f"backwards. Received: {self._forward.units} and "
                             f"{self._backward.units}")
        return self

    def parts(self) -> list[Layer]:
        return [self._forward, self._backward]

    def _part_shapes(self, input_shape: Shape):
        return [(self._forward, input_shape), (self._backward, input_shape)]

    @property
    def return_sequences(self) -> bool:
        """Whether the output has a step axis."""
        return self._forward.return_sequences

    def output_masked(self, input_masked: bool) -> bool:
        return input_masked and self.return_sequences

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 2, "sequences of shape (steps, features)")
        forward = self._forward.output_shape(input_shape)
        backward = self._backward.output_shape(input_shape)
        if self.merge_mode == "concat":
            return forward[:-1] + (forward[-1] + backward[-1],)
        return forward

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return sum(part.macs(input_shape, part.output_shape(input_shape))
                   for part in self.parts())

    def keras_options(self):
        # the layers as Keras saves them: the forward one (renamed, zero_output_for_mask set)
        # and the backward one, written out
        return {"merge_mode": self.merge_mode, "layer": self._forward,
                "backward_layer": self._backward}

    def keras_weight_groups(self, names: list[str]):
        return _part_groups(names, (("forward_layer", self._forward),
                                    ("backward_layer", self._backward)))

    def part_outputs(self, weights, x, mask=None):
        """Each direction's own output (the backward one in its processing order)."""
        return {part.name: part.forward(sublayer_weights(weights, part.name), x, mask)
                for part in self.parts()}

    def _merge(self, forward, backward):
        if self.return_sequences:
            backward = backward[:, ::-1]
        if self.merge_mode == "concat":
            import numpy as np

            return np.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "ave":
            return (forward + backward) / 2
        return forward * backward

    def forward(self, weights, x, mask=None):
        forward = self._forward.forward(sublayer_weights(weights, self._forward.name), x, mask)
        backward = self._backward.forward(sublayer_weights(weights, self._backward.name), x, mask)
        return self._merge(forward, backward)

    def forward_train(self, weights, x, rng, mask=None):
        forward, forward_cache = self._forward.forward_train(
            sublayer_weights(weights, self._forward.name), x, rng, mask)
        backward, backward_cache = self._backward.forward_train(
            sublayer_weights(weights, self._backward.name), x, rng, mask)
        return self._merge(forward, backward), (forward, backward, forward_cache,
                                                backward_cache)

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        forward, backward, forward_cache, backward_cache = cache
        if self.return_sequences:
            backward = backward[:, ::-1]
        if self.merge_mode == "concat":
            units = forward.shape[-1]
            d_forward, d_backward = dy[..., :units], dy[..., units:]
        elif self.merge_mode == "sum":
            d_forward = d_backward = dy
        elif self.merge_mode == "ave":
            d_forward = d_backward = dy / 2
        else:
            d_forward, d_backward = dy * backward, dy * forward
        if self.return_sequences:
            d_backward = d_backward[:, ::-1]
        d_forward = np.ascontiguousarray(d_forward, dtype=np.float32)
        d_backward = np.ascontiguousarray(d_backward, dtype=np.float32)
        dx_f, grads_f = self._forward.backward(sublayer_weights(weights, self._forward.name),
                                               forward_cache, d_forward, input_grad)
        dx_b, grads_b = self._backward.backward(sublayer_weights(weights, self._backward.name),
                                                backward_cache, d_backward, input_grad)
        grads = _prefixed(self._forward.name, grads_f) | _prefixed(self._backward.name, grads_b)
        return (dx_f + dx_b if input_grad else None), grads


class TimeDistributed(_Wrapper):
    """Applies its layer to every step: (steps, *shape) → (steps, *the layer's output)."""

    type: Literal["TimeDistributed"] = "TimeDistributed"
    layer: LayerEntry
    """The layer applied at each step, as a mapping with its `type`."""

    supports_masking = True
    examples = (
        Example({"layer": {"type": "Dense", "units": 3}}, (4, 2)),
        Example({"layer": {"type": "Conv2D", "filters": 2, "kernel_size": 3}}, (2, 5, 5, 1)),
    )

    @model_validator(mode="after")
    def _named(self):
        from seqcli.layers.sequential import Sequential

        if isinstance(self.layer, (Sequential, _Wrapper)):
            raise ValueError(f"TimeDistributed wraps one layer (such as Dense or Conv2D), not "
                             f"a {self.layer.type}")
        if self.layer.name is None:
            self.layer.name = _default_name(self.layer)
        if not self.trainable:
            self.layer.trainable = False
        return self

    def parts(self) -> list[Layer]:
        return [self.layer]

    def _inner_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 2:
            raise ShapeError(f"TimeDistributed expects inputs of shape (steps, ...) with at "
                             f"least one axis after the steps. Received: input_shape="
                             f"{format_shape(input_shape)}")
        return input_shape[1:]

    def _part_shapes(self, input_shape: Shape):
        return [(self.layer, self._inner_shape(input_shape))]

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *self.layer.output_shape(self._inner_shape(input_shape)))

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return input_shape[0] * self.layer.macs(input_shape[1:], output_shape[1:])

    def keras_options(self):
        return {"layer": self.layer}

    def keras_weight_groups(self, names: list[str]):
        return _part_groups(names, (("layer", self.layer),))

    def part_output_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {self.layer.name: self.output_shape(input_shape)}  # at every step

    def part_outputs(self, weights, x, mask=None):
        return {self.layer.name: self.forward(weights, x)}

    def _steps(self, x):
        return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])

    def forward(self, weights, x):
        y = self.layer.forward(sublayer_weights(weights, self.layer.name), self._steps(x))
        return y.reshape(x.shape[:2] + y.shape[1:])

    def forward_train(self, weights, x, rng):
        y, cache = self.layer.forward_train(sublayer_weights(weights, self.layer.name),
                                            self._steps(x), rng)
        return y.reshape(x.shape[:2] + y.shape[1:]), (x.shape, cache)

    def backward(self, weights, cache, dy, input_grad=True):
        shape, inner_cache = cache
        dx, grads = self.layer.backward(sublayer_weights(weights, self.layer.name), inner_cache,
                                        self._steps(dy), input_grad)
        return (dx.reshape(shape) if dx is not None else None), _prefixed(self.layer.name,
                                                                          grads)
