"""The model-file schema: the tagged union of every registered layer, `Input`, nested
`Sequential`, the file.

Every module of `seqcli.layers` is imported here, so that each layer class defined in one
registers itself (`LAYER_REGISTRY`): adding a layer type means adding its class, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from seqcli.layers.base import (  # noqa: F401 (snake_case: imported from here too)
    LAYER_REGISTRY,
    Example,
    InputShape,
    Layer,
    Name,
    snake_case,
)

for _module in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])):
    if _module not in ("base", "sequential"):
        importlib.import_module(f"seqcli.layers.{_module}")


class Input(BaseModel):
    """`keras.Input`: declares the per-sample input shape; not a layer."""

    model_config = ConfigDict(extra="forbid", strict=True)

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


class Sequential(Layer):
    """A nested model: its `layers` inline, or `from` another model file (with its weights)."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["Sequential"] = "Sequential"
    layers: list[LayerEntry] | None = None
    """The nested layers, in order."""
    from_: str | None = Field(default=None, alias="from")
    """A model file (relative to this one) whose layers and weights are used."""

    examples = (Example({"layers": [{"type": "Dense", "units": 3},
                                    {"type": "Dense", "units": 2, "trainable": False}]}, (4,)),)

    # the nested model's own declared input shape, and (for `from`) its weights file
    _input_shape: tuple | None = PrivateAttr(default=None)
    _weights_path: object = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _layers_or_from(self):
        if (self.layers is None) == (self.from_ is None):
            raise ValueError("a nested Sequential needs exactly one of 'layers' or 'from'")
        return self

    @property
    def sublayers(self) -> list[Layer]:
        """The nested layers, without an `Input` entry."""
        return [layer for layer in (self.layers or []) if not isinstance(layer, Input)]


LAYER_CLASSES: tuple[type[Layer], ...] = tuple(LAYER_REGISTRY.values())
"""Every layer type a model file may use (the registry's, nested `Sequential` last)."""

LayerEntry = Annotated[
    Union[tuple(LAYER_CLASSES) + (Input,)],  # noqa: UP007 (built from the table above)
    Field(discriminator="type"),
]
"""One entry of `layers:`: a layer, or `Input` as the first entry."""

for _cls in LAYER_CLASSES:  # the Python API: `from seqcli.layers import Dense`
    globals()[_cls.__name__] = _cls
Activation = LAYER_REGISTRY["Activation"]
"""Keras's name for the Activation layer (`ActivationLayer` avoids a clash with the type)."""

LAYER_TYPES: dict[str, type] = {
    cls.model_fields["type"].annotation.__args__[0]: cls for cls in LAYER_CLASSES + (Input,)
}
"""Type name, as written in `type:`, to class."""


class ModelFile(BaseModel):
    """A model file's top level."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = "sequential"
    """The model's name."""
    input_shape: InputShape | None = None
    """Per-sample input shape; without it the model is built from its first input."""
    weights: str | None = None
    """A `.safetensors` or `.npz` file, relative to this file."""
    seed: Annotated[int, Field(ge=0)] | None = None
    """Seeds weight initialisation when there is no weights file (a non-negative int)."""
    layers: list[LayerEntry]
    """The layers, in order; an `Input` may come first."""


Sequential.model_rebuild()
ModelFile.model_rebuild()
for _cls in LAYER_CLASSES:  # the wrappers, whose `layer` is any layer
    if not _cls.__pydantic_complete__:
        _cls.model_rebuild(_types_namespace={"LayerEntry": LayerEntry})

__all__ = [cls.__name__ for cls in LAYER_CLASSES] + ["Activation", "Input", "LAYER_CLASSES",
                                                   "LAYER_TYPES", "ModelFile"]

