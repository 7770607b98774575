"""Embedding (integer ids in, vectors out) and Masking: the two layers that attach a mask."""

from __future__ import annotations

from typing import Literal

from seqcli.layers.base import Count, Example, Initializer, Layer
from seqcli.layers.regularizers import Constraint, Regularizer
from seqcli.shapes import Shape, ShapeError, format_shape


class Embedding(Layer):
    """Row `id` of `embeddings` for each integer id; `mask_zero` masks the steps whose id is
    0 (id 0 is then padding: `input_dim` counts it)."""

    type: Literal["Embedding"] = "Embedding"
    input_dim: Count
    """The number of ids: every id is in [0, input_dim)."""
    output_dim: Count
    """The size of each vector."""
    embeddings_initializer: Initializer = "random_uniform"
    embeddings_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    embeddings_constraint: Constraint = None
    mask_zero: bool = False
    input_length: int | None = None
    """Keras 2's sequence length; accepted and ignored, as Keras 3 does (give the input
    shape instead)."""

    takes_ids = True
    examples = (Example({"input_dim": 10, "output_dim": 3}, (5,)),
                Example({"input_dim": 7, "output_dim": 4, "mask_zero": True}, (2, 3)))
    keras_ignored_options = frozenset({"input_length", "sparse"})

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ShapeError(f"Embedding needs inputs of shape (steps,) or more. Received: "
                             f"input_shape={format_shape(input_shape)}")
        return input_shape + (self.output_dim,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"embeddings": (self.input_dim, self.output_dim)}

    def weight_initializers(self) -> dict[str, str]:
        return {"embeddings": self.embeddings_initializer}

    def keras_options(self):
        options = super().keras_options()
        del options["input_length"]
        return options

    def output_masked(self, input_masked: bool) -> bool:
        return self.mask_zero

    def compute_mask(self, x, mask):
        return (x != 0) if self.mask_zero else None

    def _ids(self, x):
        import numpy as np

        if x.dtype.kind in "iu":
            ids = x
        else:  # the output of an earlier layer: Keras casts it to int (towards zero)
            with np.errstate(invalid="ignore"):
                ids = np.trunc(x)
            if not np.isfinite(ids).all():
                ids = np.where(np.isfinite(ids), ids, -1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            from seqcli.errors import InputDataError

            bad = ids[(ids < 0) | (ids >= self.input_dim)].flat[0]
            raise InputDataError(f"layer '{self.name}' (Embedding): id {int(bad)} is outside "
                                 f"[0, {self.input_dim})")
        return ids.astype(np.intp, copy=False)

    def forward(self, weights, x):
        import numpy as np

        return np.take(weights["embeddings"], self._ids(x), axis=0)

    def forward_train(self, weights, x, rng):
        ids = self._ids(x)
        import numpy as np

        return np.take(weights["embeddings"], ids, axis=0), (x.shape, ids)

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        shape, ids = cache
        grad = np.zeros_like(weights["embeddings"])
        np.add.at(grad, ids.reshape(-1), dy.reshape(-1, self.output_dim))
        # ids are not differentiable: an earlier layer gets no gradient through them
        return (np.zeros(shape, np.float32) if input_grad else None), {"embeddings": grad}


class Masking(Layer):
    """Masks the steps whose features all equal `mask_value` (and zeroes them)."""

    type: Literal["Masking"] = "Masking"
    mask_value: float = 0.0

    supports_masking = True
    keras_build_config = False
    examples = (Example({}, (4, 3)), Example({"mask_value": 0.5}, (4, 3)))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ShapeError(f"Masking needs inputs with a feature axis. Received: "
                             f"input_shape={format_shape(input_shape)}")
        return input_shape

    def output_masked(self, input_masked: bool) -> bool:
        return True

    def compute_mask(self, x, mask):
        import numpy as np

        return np.any(x != np.float32(self.mask_value), axis=-1)

    def forward(self, weights, x):
        import numpy as np

        keep = np.any(x != np.float32(self.mask_value), axis=-1, keepdims=True)
        return np.where(keep, x, np.float32(0))

    def forward_train(self, weights, x, rng):
        import numpy as np

        keep = np.any(x != np.float32(self.mask_value), axis=-1, keepdims=True)
        return np.where(keep, x, np.float32(0)), keep

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        return (np.where(cache, dy, np.float32(0)) if input_grad else None), {}
