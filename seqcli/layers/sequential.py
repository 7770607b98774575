"""The model-file schema: nested `Sequential`, the file; and, for the Python API and the
tools that walk every layer type, every registered layer class.

A model file's entries are each validated by the class their `type` names (`LayerEntry`),
whose module is imported then: every module of `seqcli.layers` registers the layer classes
it defines (`LAYER_REGISTRY`), so adding a layer type means adding its class, nothing else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from seqcli.layers.base import (  # noqa: F401 (Input, snake_case: imported from here too)
    LAYER_REGISTRY,
    Example,
    Input,
    InputShape,
    Layer,
    LayerEntry,
    Name,
    snake_case,
)


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


def _every_layer() -> dict[str, object]:
    """The names only the Python API and the tools that walk every layer type use, each
    layer class by its name among them: importing them imports every layer module."""
    classes = tuple(LAYER_REGISTRY.values())
    return {cls.__name__: cls for cls in classes} | {
        "Activation": LAYER_REGISTRY["Activation"],
        "LAYER_CLASSES": classes,
        "LAYER_TYPES": {**LAYER_REGISTRY, "Input": Input},
        "__all__": [cls.__name__ for cls in classes] + ["Activation", "Input", "LAYER_CLASSES",
                                                       "LAYER_TYPES", "ModelFile"],
    }


def __getattr__(name: str):
    """`LAYER_CLASSES`, `LAYER_TYPES` and each layer class by its name (`Dense`), loaded on
    first use."""
    if name == "__all__" or not name.startswith("_"):
        every = _every_layer()
        if name in every:
            return every[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
