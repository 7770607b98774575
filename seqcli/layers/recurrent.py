"""SimpleRNN, LSTM and GRU: Keras 3's recurrent layers over (steps, features) sequences.

The input projection of every step is one GEMM (`dense_forward`); the recurrent kernels
(seqcli.kernels.recurrent) loop over time with the gates fused, the batch split across the
thread pool. Masked steps keep the previous state and output, as Keras does."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, ValidationInfo, field_validator

from seqcli.activations import activation_code
from seqcli.layers.base import (
    Activation,
    Count,
    Example,
    Initializer,
    Layer,
    require_known,
    require_rank,
)
from seqcli.layers.regularizers import Constraint, Regularizer
from seqcli.shapes import Shape


def _rate(value, info: ValidationInfo):
    if not 0 <= value <= 1:
        raise ValueError(f"expected a float between 0 and 1. Received: "
                         f"{info.field_name}={value}")
    return value


Rate = Annotated[float, AfterValidator(_rate)]

_ROW_ACTIVATIONS = ("softmax", "log_softmax")


class _Recurrent(Layer):
    """What the three recurrent layers share: keys, shapes, weights, the run over time."""

    units: Count
    activation: Activation = "tanh"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer = "orthogonal"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer = None
    recurrent_regularizer: Regularizer = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    kernel_constraint: Constraint = None
    recurrent_constraint: Constraint = None
    bias_constraint: Constraint = None
    dropout: Rate = 0.0
    """Dropout of the inputs, in `fit` only (one mask per sequence, as Keras)."""
    recurrent_dropout: Rate = 0.0
    """Dropout of the state fed back, in `fit` only."""
    return_sequences: bool = False
    """True: every step's output, (steps, units); False: the last one, (units,)."""
    return_state: bool = False
    go_backwards: bool = False
    """Process the steps last to first (and return the sequence in that order)."""
    stateful: bool = False
    unroll: bool = False
    """Accepted; changes nothing here."""
    zero_output_for_mask: bool = False
    """Masked steps output zeros instead of the previous output (Bidirectional sets it)."""
    seed: int | None = None

    gates: ClassVar[int] = 1
    supports_masking = True
    takes_mask = True

    @field_validator("return_state")
    @classmethod
    def _no_state(cls, value):
        if value:
            raise ValueError("return_state=True returns the states as extra outputs, which a "
                             "Sequential model cannot pass on; use return_state: false")
        return value

    @field_validator("stateful")
    @classmethod
    def _not_stateful(cls, value):
        if value:
            raise ValueError("stateful=True carries states from one batch to the next, which "
                             "seqcli does not do; use stateful: false")
        return value

    @field_validator("activation", "recurrent_activation", check_fields=False)
    @classmethod
    def _elementwise(cls, value, info: ValidationInfo):
        if not isinstance(value, str):
            raise ValueError(f"a recurrent cell applies its {info.field_name} inside each "
                             f"step, by name: use a name such as 'tanh' (an activation layer "
                             f"only where a name computes the same). Received: "
                             f"{info.field_name}={{type: {value.type}, ...}}")
        if value in _ROW_ACTIVATIONS:
            raise ValueError(f"{info.field_name} must act on each value on its own (such as "
                             f"tanh or sigmoid). Received: {info.field_name}={value!r}")
        return value

    def output_masked(self, input_masked: bool) -> bool:
        return input_masked and self.return_sequences

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 2, "sequences of shape (steps, features)")
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        features = require_known(self, input_shape[-1], "last dimension", input_shape)
        width = self.gates * self.units
        shapes = {"kernel": (features, width), "recurrent_kernel": (self.units, width)}
        if self.use_bias:
            shapes["bias"] = self._bias_shape()
        return shapes

    def _bias_shape(self) -> Shape:
        return (self.gates * self.units,)

    def weight_initializers(self) -> dict:
        return {"kernel": self.kernel_initializer, "recurrent_kernel": self.recurrent_initializer,
                "bias": self.bias_initializer}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        steps, features = input_shape
        return steps * self.gates * self.units * (features + self.units)

    def keras_weight_groups(self, names: list[str]) -> list[tuple[str, list[str]]]:
        return [("cell", names)]  # Keras keeps them in the layer's cell: layers/lstm/cell/vars

    # ------------------------------------------------------------------ running

    def _input_bias(self, weights):
        return weights.get("bias")

    def _recurrent_bias(self, weights):
        return None

    def _cell(self, xproj, weights, mask, rdrop, train):
        """The recurrent kernel of the cell over all steps."""
        raise NotImplementedError

    def _dropout_masks(self, rng, rows: int, features: int):
        """(input masks, recurrent masks) for one batch in `fit`, as Keras draws them: one
        mask for all gates, or one per gate when recurrent_dropout is set (Keras's
        implementation 1); None where the rate is 0."""
        import numpy as np

        count = self.gates if self.recurrent_dropout > 0 else 1

        def masks(rate, width):
            if not 0 < rate < 1:
                return None
            keep = rng.random((count, rows, width)) >= rate
            return keep.astype(np.float32) * np.float32(1 / (1 - rate))

        return masks(self.dropout, features), masks(self.recurrent_dropout, self.units)

    def _project(self, weights, x, drop):
        """x @ kernel + input bias for every step: (N, T, gates·units); with input dropout
        masks, each gate's part from its own masked inputs."""
        import numpy as np

        from seqcli.kernels.dense import dense_forward

        n, t, features = x.shape
        linear = activation_code("linear")
        if drop is None:
            return dense_forward(x.reshape(n * t, features), weights["kernel"],
                                 self._input_bias(weights), linear).reshape(n, t, -1)
        kernel, bias = weights["kernel"], self._input_bias(weights)
        width = self.units * self.gates // len(drop)
        parts = []
        for g, keep in enumerate(drop):
            columns = slice(g * width, (g + 1) * width)
            xg = (x * keep[:, None, :]).reshape(n * t, features)
            parts.append(dense_forward(xg, np.ascontiguousarray(kernel[:, columns]),
                                       None if bias is None else bias[columns], linear))
        return np.concatenate(parts, axis=1).reshape(n, t, -1)

    def _oriented(self, x, mask):
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        import numpy as np

        x = np.ascontiguousarray(x, dtype=np.float32)
        return x, (None if mask is None else np.ascontiguousarray(mask, dtype=np.bool_))

    def forward(self, weights, x, mask=None):
        x, mask = self._oriented(x, mask)
        return self._cell(self._project(weights, x, None), weights, mask, None, False)

    def forward_train(self, weights, x, rng, mask=None):
        x, mask = self._oriented(x, mask)
        drop, rdrop = self._dropout_masks(rng, x.shape[0], x.shape[2])
        y, cell_cache = self._cell(self._project(weights, x, drop), weights, mask, rdrop, True)
        return y, (x, drop, cell_cache)

    def _cell_backward(self, cell_cache, weights, dy):
        """(d xproj, d recurrent_kernel, d recurrent bias or None)."""
        raise NotImplementedError

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        x, drop, cell_cache = cache
        dxproj, drecurrent, drecurrent_bias = self._cell_backward(cell_cache, weights, dy)
        n, t, features = x.shape
        kernel = weights["kernel"]
        dz = dxproj.reshape(n * t, -1)
        masks = [None] if drop is None else list(drop)
        width = dz.shape[1] // len(masks)
        dkernel = np.empty_like(kernel)
        dx = np.zeros((n, t, features), np.float32) if input_grad else None
        for g, keep in enumerate(masks):
            columns = slice(g * width, (g + 1) * width)
            xg = x if keep is None else x * keep[:, None, :]
            dkernel[:, columns] = xg.reshape(n * t, features).T @ dz[:, columns]
            if input_grad:
                part = (dz[:, columns] @ kernel[:, columns].T).reshape(n, t, features)
                dx += part if keep is None else part * keep[:, None, :]
        grads = {"kernel": dkernel, "recurrent_kernel": drecurrent}
        if self.use_bias:
            dbias = dz.sum(axis=0, dtype=np.float64).astype(np.float32)
            grads["bias"] = dbias if drecurrent_bias is None else np.stack([dbias,
                                                                            drecurrent_bias])
        if dx is not None and self.go_backwards:
            dx = np.ascontiguousarray(dx[:, ::-1])
        return dx, grads


class SimpleRNN(_Recurrent):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    type: Literal["SimpleRNN"] = "SimpleRNN"

    examples = (
        Example({"units": 3}, (4, 2)),
        Example({"units": 3, "return_sequences": True, "go_backwards": True,
                 "activation": "relu", "use_bias": False}, (4, 2)),
        Example({"units": 2, "dropout": 0.3, "recurrent_dropout": 0.3}, (3, 2)),
        Example({"units": 3, "return_sequences": True}, (4, 2), masked=True),
        Example({"units": 3, "zero_output_for_mask": True, "return_sequences": True}, (4, 2),
                masked=True),
    )

    def _cell(self, xproj, weights, mask, rdrop, train):
        from seqcli.kernels.recurrent import simple_rnn_forward

        return simple_rnn_forward(xproj, weights["recurrent_kernel"], mask,
                                  activation_code(self.activation), self.return_sequences,
                                  zero_output=self.zero_output_for_mask, rdrop=rdrop,
                                  train=train)

    def _cell_backward(self, cell_cache, weights, dy):
        from seqcli.kernels.grad_recurrent import simple_rnn_backward

        return (*simple_rnn_backward(cell_cache, weights["recurrent_kernel"], dy), None)


class LSTM(_Recurrent):
    """Long short-term memory; gates input, forget, cell, output (Keras's order)."""

    type: Literal["LSTM"] = "LSTM"
    recurrent_activation: Activation = "sigmoid"
    unit_forget_bias: bool = True
    """The forget gate's bias starts at 1 (when there is no weights file)."""
    use_cudnn: bool | Literal["auto"] = "auto"
    """Accepted; changes nothing here (there is no GPU)."""

    gates: ClassVar[int] = 4
    examples = (
        Example({"units": 3}, (4, 2)),
        Example({"units": 3, "return_sequences": True, "go_backwards": True,
                 "recurrent_activation": "hard_sigmoid", "use_bias": False}, (4, 2)),
        Example({"units": 2, "dropout": 0.3, "recurrent_dropout": 0.3}, (3, 2)),
        Example({"units": 2, "dropout": 0.3}, (3, 2)),
        Example({"units": 3, "return_sequences": True}, (4, 2), masked=True),
        Example({"units": 3, "zero_output_for_mask": True, "return_sequences": True}, (4, 2),
                masked=True),
        # big enough for the threaded path
        Example({"units": 64}, (20, 16), batch=64),
    )

    def weight_initializers(self) -> dict:
        initializers = super().weight_initializers()
        if self.unit_forget_bias:  # Keras: bias_init(u), ones(u), bias_init(2u)
            b = self.bias_initializer
            initializers["bias"] = (b, "ones", b, b)
        return initializers

    def keras_options(self):
        options = super().keras_options()
        del options["use_cudnn"]
        return options

    def _cell(self, xproj, weights, mask, rdrop, train):
        from seqcli.kernels.recurrent import lstm_forward

        return lstm_forward(xproj, weights["recurrent_kernel"], mask,
                            activation_code(self.activation),
                            activation_code(self.recurrent_activation), self.return_sequences,
                            zero_output=self.zero_output_for_mask, rdrop=rdrop, train=train)

    def _cell_backward(self, cell_cache, weights, dy):
        from seqcli.kernels.grad_recurrent import lstm_backward

        return (*lstm_backward(cell_cache, weights["recurrent_kernel"], dy), None)


class GRU(_Recurrent):
    """Gated recurrent unit; gates update, reset, candidate (Keras's order). With
    `reset_after` (Keras 3's default) the bias is (2, 3·units): input and recurrent."""

    type: Literal["GRU"] = "GRU"
    recurrent_activation: Activation = "sigmoid"
    reset_after: bool = True
    use_cudnn: bool | Literal["auto"] = "auto"
    """Accepted; changes nothing here (there is no GPU)."""

    gates: ClassVar[int] = 3
    examples = (
        Example({"units": 3}, (4, 2)),
        Example({"units": 3, "reset_after": False, "return_sequences": True,
                 "go_backwards": True}, (4, 2)),
        Example({"units": 2, "dropout": 0.3, "recurrent_dropout": 0.3}, (3, 2)),
        Example({"units": 2, "reset_after": False, "recurrent_dropout": 0.3}, (3, 2)),
        Example({"units": 3, "return_sequences": True}, (4, 2), masked=True),
        Example({"units": 3, "reset_after": False, "zero_output_for_mask": True,
                 "return_sequences": True}, (4, 2), masked=True),
        Example({"units": 64}, (20, 16), batch=64),
    )

    def _bias_shape(self) -> Shape:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def keras_options(self):
        options = super().keras_options()
        del options["use_cudnn"]
        return options

    def _input_bias(self, weights):
        bias = weights.get("bias")
        return bias[0] if bias is not None and self.reset_after else bias

    def _recurrent_bias(self, weights):
        bias = weights.get("bias")
        if not self.reset_after:
            return None
        import numpy as np

        return bias[1] if bias is not None else np.zeros(3 * self.units, np.float32)

    def _cell(self, xproj, weights, mask, rdrop, train):
        from seqcli.kernels.recurrent import gru_forward

        return gru_forward(xproj, weights["recurrent_kernel"], self._recurrent_bias(weights),
                           mask, activation_code(self.activation),
                           activation_code(self.recurrent_activation), self.reset_after,
                           self.return_sequences, zero_output=self.zero_output_for_mask,
                           rdrop=rdrop, train=train)

    def _cell_backward(self, cell_cache, weights, dy):
        from seqcli.kernels.grad_recurrent import gru_backward

        dxproj, drecurrent, drecurrent_bias = gru_backward(cell_cache,
                                                           weights["recurrent_kernel"], dy)
        if not self.use_bias:
            drecurrent_bias = None
        return dxproj, drecurrent, drecurrent_bias

