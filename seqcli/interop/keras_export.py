"""Export a seqcli model as a Keras 3 `.keras` file, written without Keras.

The archive holds what `model.save` writes: `metadata.json`, `config.json` (a Sequential
with an InputLayer, each layer's config and `build_config`, nested models inline) and
`model.weights.h5` (see keras_format for its layout). Layer configs carry the options
every Keras 3 release accepts, leaving newer ones (such as `quantization_config`) at
Keras's defaults, so that older Keras 3 versions open the file too.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqcli.interop.keras_format import (
    CONFIG_MEMBER,
    FORMAT_KERAS_VERSION,
    METADATA_MEMBER,
    WEIGHTS_MEMBER,
    constraint_config,
    initializer_config,
    keras_weight_shape,
    regularizer_config,
    saved_groups,
)


def layer_options(layer) -> dict:
    """A seqcli layer's options in Keras's config spelling (without name, trainable, dtype);
    a wrapped layer (Bidirectional's `layer`) as Keras serialises a layer."""
    from seqcli.layers.base import Layer
    from seqcli.layers.sequential import snake_case

    def keras_value(name: str, value):
        if isinstance(value, Layer):
            return {"module": "keras.layers", "class_name": value.type,
                    "config": {"name": value.name or snake_case(value.type),
                               "trainable": value.trainable, "dtype": "float32",
                               **layer_options(value)},
                    "registered_name": None}
        if value is None:
            return None
        if name.endswith("_regularizer"):
            return regularizer_config(value)
        if name.endswith("_constraint"):
            return constraint_config(value)
        return initializer_config(value) if name.endswith("_initializer") else value

    return {name: keras_value(name, value) for name, value in layer.keras_options().items()
            if value is not None or not name.endswith(("_regularizer", "_constraint"))}


class _InputNames:
    """Names for the InputLayer of each (nested) Sequential: `input_layer`, `input_layer_1`..."""

    def __init__(self):
        self.count = 0

    def next(self, taken: set[str]) -> str:
        """A fresh name, not among the layer names of its model."""
        while True:
            name = "input_layer" if self.count == 0 else f"input_layer_{self.count}"
            self.count += 1
            if name not in taken:
                return name


def _batch(shape) -> list:
    return [None, *shape]


def _sequential_config(name: str, trainable: bool, infos, input_shape, names: _InputNames,
                       ids: bool = False):
    input_layer = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": _batch(input_shape), "dtype": "int32" if ids else "float32",
                   "sparse": False,
                   "name": names.next({info.layer.name for info in infos})},
        "registered_name": None,
    }
    return {"name": name, "trainable": trainable, "dtype": "float32",
            "layers": [input_layer] + [_layer_entry(info, names) for info in infos],
            "build_input_shape": _batch(input_shape)}


def _layer_entry(info, names: _InputNames) -> dict:
    layer = info.layer
    build_config = {"input_shape": _batch(info.input_shape)}
    if info.children:
        return {"module": "keras", "class_name": "Sequential",
                "config": _sequential_config(layer.name, layer.trainable, info.children,
                                             info.input_shape, names),
                "registered_name": None, "build_config": build_config}
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": "float32",
              **layer_options(layer)}
    if not layer.keras_trainable_option:  # Keras's config for it has no `trainable`
        del config["trainable"]
    after = getattr(layer, "activation", None)
    if not isinstance(after, (str, type(None))) and after.param_shapes(info.output_shape):
        # an activation layer with weights (a PReLU): Keras builds it from its build_config
        config["activation"]["build_config"] = {"input_shape": _batch(info.output_shape)}
    entry = {"module": "keras.layers", "class_name": layer.type, "config": config,
             "registered_name": None, "build_config": build_config}
    if not layer.keras_build_config:
        del entry["build_config"]
    return entry


def model_config(built) -> dict:
    """The `config.json` document of a built seqcli model, as Keras 3 serialises it."""
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": _sequential_config(built.name, True, built.layers, built.input_shape,
                                     _InputNames(), ids=built.takes_ids),
        "registered_name": None,
        "build_config": {"input_shape": _batch(built.input_shape)},
    }


def weights_h5(built, arrays: dict[str, np.ndarray]) -> bytes:
    """The `model.weights.h5` bytes: `layers/<name>/vars/<i>` per layer, as Keras saves."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        for group, info in saved_groups(built.layers):
            variables = file.create_group(f"{group}/vars")
            variables.attrs["name"] = info.layer.name
            if info.children:
                continue
            names = [info.weight_name(key) for key in info.weights]
            for sub, sub_names in info.layer.keras_weight_groups(names):
                if sub:
                    path = group
                    for part in sub.split("/"):  # every level has its (empty) vars
                        path += "/" + part
                        if f"{path}/vars" not in file:
                            file.create_group(f"{path}/vars").attrs["name"] = part
                    variables = file[f"{path}/vars"]
                for index, name in enumerate(sub_names):
                    key = f"{info.path}/{name}"
                    dtype = np.int32 if name in info.layer.keras_integer_weights \
                        else np.float32
                    array = np.ascontiguousarray(arrays[key], dtype=dtype)
                    variables[str(index)] = array.reshape(keras_weight_shape(info, key))
        file.create_group("vars").attrs["name"] = built.name
    return buffer.getvalue()


def write_keras(path: str, built, arrays: dict[str, np.ndarray]) -> None:
    """Write the `.keras` archive of a built model and its weights, atomically."""
    from seqcli import __version__
    from seqcli.io.atomic import atomic_output

    now = datetime.datetime.now()
    metadata = {"keras_version": FORMAT_KERAS_VERSION,
                "date_saved": now.strftime("%Y-%m-%d@%H:%M:%S"),
                "saved_by": f"seqcli {__version__}"}
    members = [(METADATA_MEMBER, json.dumps(metadata).encode()),
               (CONFIG_MEMBER, json.dumps(model_config(built)).encode()),
               (WEIGHTS_MEMBER, weights_h5(built, arrays))]
    with atomic_output(path, binary=True) as file:
        with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in members:
                member = zipfile.ZipInfo(name, date_time=now.timetuple()[:6])
                member.external_attr = 0o644 << 16
                archive.writestr(member, data)


@dataclass
class ExportReport:
    """What `export_keras` wrote."""

    layers: int
    params: int
    notes: list[str] = field(default_factory=list)


def export_keras(model: str, output: str, weights: str | None = None,
                 input_shape: tuple | None = None, allow_outside: bool = False,
                 base_dir: Path | None = None) -> ExportReport:
    """Export the model file `model` (with its weights, or `weights`) to the `.keras` file
    `output`; a model without weights is exported with its initial weights."""
    from seqcli.build import build
    from seqcli.config.load import load_model
    from seqcli.errors import UsageError
    from seqcli.interop.keras_import import keras_differences
    from seqcli.io.atomic import check_output
    from seqcli.runtime.weights import load_model_weights

    if output != "-" and not output.endswith(".keras"):
        raise UsageError(f"-o {output}: Keras opens model archives only under a name ending "
                         "in .keras")
    check_output(output, what="a binary .keras file", option="-o FILE.keras")
    loaded = load_model(model, allow_outside=allow_outside, base_dir=base_dir)
    built = build(loaded, input_shape)
    model_weights = load_model_weights(loaded, built, weights)
    notes = []
    if model_weights.initialised:
        notes.append(model_weights.initial_values_note(loaded.source))
    notes += keras_differences(built)
    write_keras(output, built, model_weights.arrays)
    return ExportReport(layers=len(built.layers), params=built.total_params, notes=notes)
