"""Import Keras 3 models: a `.keras` file as a seqcli model file plus weights, or a
`model.save_weights` file onto an existing model file.

The config is read as data, never as code: class names are looked up in seqcli's own
layer table, `module`/`registered_name` only serve to recognise (and refuse) custom
classes, and nothing is unpickled or evaluated. Each Keras layer config becomes a
model-file entry with only the keys that differ from seqcli's (that is, Keras's)
defaults, and always an explicit `name`. Weights are read by position within each
layer's `vars` group, as Keras itself loads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from seqcli.config.load import MAX_NESTING
from seqcli.errors import ConfigError, UsageError, WeightsError
from seqcli.interop.keras_archive import (
    HDF5_SIGNATURE,
    ZIP_SIGNATURE,
    SafeH5,
    file_signature,
    open_keras_archive,
    weights_size_limit,
)
from seqcli.interop.keras_format import (
    from_keras,
    keras_weight_shape,
    saved_groups,
    saved_names,
)
from seqcli.layers.base import COMMON_FIELDS, INITIALIZER_NAMES, INITIALIZERS
from seqcli.layers.sequential import LAYER_TYPES

MODEL_CLASSES = ("Sequential", "Functional", "Model")
LAYER_CLASSES = {name: cls for name, cls in LAYER_TYPES.items()
                 if name not in ("Input", "Sequential")}
TRAINING_SUFFIXES = ("_regularizer", "_constraint")
"""Options that only shape training: kept where seqcli's layer has them, else refused."""
FIRST_OPTIONS = ("units", "filters")
"""Written first, as Keras users write them (then seqcli's field order)."""
ALLOWED_CALL_ARGUMENTS = {"mask": (None,), "training": (None, False)}
"""Keyword arguments a Functional layer may have been called with (others change meaning)."""
_PREPROCESSING = ("a preprocessing step on raw strings or categories: run it before seqcli "
                  "and give seqcli the ids or values it makes")
EQUIVALENTS = {
    "CuDNNLSTM": "LSTM computes the same (Keras 2's GPU-only layer)",
    "CuDNNGRU": "GRU with reset_after: true computes the same (Keras 2's GPU-only layer)",
    "ThresholdedReLU": "ReLU with threshold computes the same (Keras 2's layer)",
    **{name: _PREPROCESSING for name in ("TextVectorization", "StringLookup", "IntegerLookup",
                                         "Hashing", "HashedCrossing", "CategoryEncoding",
                                         "Discretization")},
}
"""What to use instead of a Keras layer seqcli lacks, where something is equivalent."""


@dataclass
class KerasImport:
    """A Keras model read into seqcli's terms."""

    document: dict
    """The model file's content (name, input_shape, layers), ready to dump as YAML."""
    weights: dict[str, np.ndarray] | None
    """By seqcli key; None for a model never built (it has no weights yet)."""
    notes: list[str] = field(default_factory=list)
    """What was dropped or assumed, one line each, for stderr."""
    keras_version: str | None = None


# ----------------------------------------------------------------- config → model file


class _ConfigReader:
    """Turns a Keras model config into a seqcli model document and a weights layout."""

    def __init__(self, source: str):
        self.source = source
        self.notes: list[str] = []
        self.layout: dict[str, str] = {}
        """seqcli layer path → the `.h5` group that holds its `vars`."""
        self.unsupported: list[str] = []
        """The layers read so far that seqcli does not have, one `where: why` each: the
        import goes on reading, so that one refusal names them all."""

    def refuse(self, where: str, why: str):
        """Raise the one-line refusal for something a model file cannot represent (naming the
        unsupported layers found before it too)."""
        self.unsupported.append(f"{where}: {why}")
        self.refuse_unsupported()

    def refuse_unsupported(self) -> None:
        """Raise the one-line refusal naming every unsupported layer found, if any."""
        found = self.unsupported
        if len(found) == 1:
            raise ConfigError(f"{self.source}: {found[0]}")
        if found:
            raise ConfigError(f"{self.source}: {len(found)} things seqcli cannot import: "
                              + "; ".join(found))

    def _unsupported(self, where: str, why: str) -> None:
        """Note a layer seqcli does not have, and go on reading the model."""
        self.unsupported.append(f"{where}: {why}")

    def model(self, entry) -> dict:
        """The model document for the top-level config."""
        where = "the model"
        entry = self._dict(entry, where, "config.json")
        class_name = entry.get("class_name")
        if not self._is_model(entry):
            module = entry.get("module")
            self.refuse(where, f"it is a {class_name!r} (module {module!r}); seqcli imports "
                        "Sequential models and Functional models that are a single chain of "
                        "layers, not subclassed models, whose call() is Python code")
        config = self._dict(entry.get("config"), where, "config")
        name = self._name(config, entry, where)
        layers, input_shape = self._container(entry, name, "", "", frozen=False, depth=0)
        self.refuse_unsupported()
        if input_shape is None:
            input_shape = self._shape_of(config.get("build_input_shape"), where) or \
                self._build_shape(entry, where)
        document = {"name": name}
        if input_shape is not None:
            document["input_shape"] = input_shape
        document["layers"] = layers
        return document

    # ------------------------------------------------------------ models and their layers

    def _is_model(self, entry: dict) -> bool:
        class_name = entry.get("class_name")
        if class_name not in MODEL_CLASSES or not from_keras(entry):
            return False
        registered = entry.get("registered_name")
        config = entry.get("config")
        return registered in (None, class_name, "Functional") and isinstance(config, dict) and \
            isinstance(config.get("layers"), list)

    def _container(self, entry: dict, name: str, path: str, group: str, frozen: bool,
                   depth: int):
        """(model-file layer entries, input shape) of a Sequential or chain Functional."""
        where = f"model '{path.rstrip('/') or name}'"
        if depth > MAX_NESTING:
            self.refuse(where, f"models are nested more than {MAX_NESTING} levels deep")
        config = entry["config"]
        raw = [self._dict(item, where, "a layer entry") for item in config["layers"]]
        if entry["class_name"] == "Sequential":
            inputs = [i for i, item in enumerate(raw) if item.get("class_name") == "InputLayer"]
            if inputs and inputs != [0]:
                self.refuse(where, "an InputLayer may only come first in a Sequential model")
            input_shape = self._input_layer_shape(raw[0], where) if inputs else None
            chain = raw[1:] if inputs else raw
            groups = saved_names([str(item.get("class_name")) for item in chain])
        else:
            input_entry, chain, indices = self._chain(config, raw, where)
            input_shape = self._input_layer_shape(input_entry, where)
            names = saved_names([str(item.get("class_name")) for item in raw])
            groups = [names[i] for i in indices]
        if not chain:
            self.refuse(where, "it has no layers")
        layers, seen = [], {}
        for index, (item, saved) in enumerate(zip(chain, groups)):
            layer, hint = self._layer(item, path, f"{group}layers/{saved}", frozen, depth,
                                      first=index == 0 and depth == 0)
            if layer is None:  # not a seqcli layer: noted, and said once all are read
                continue
            if layer["name"] in seen:
                self.refuse(where, f"two layers are named '{layer['name']}'; names must be "
                            "unique within a model")
            seen[layer["name"]] = index
            if input_shape is None and hint is not None:
                input_shape = hint
            layers.append(layer)
        return layers, input_shape

    def _layer(self, entry: dict, path: str, group: str, frozen: bool, depth: int,
               first: bool):
        """(model-file entry, input shape hint) of one layer config."""
        class_name = entry.get("class_name")
        if not isinstance(class_name, str):
            self.refuse("a layer entry", f"class_name must be a string. Received: "
                        f"{class_name!r}")
        config = self._dict(entry.get("config"), f"layer {class_name!r}", "config")
        name = self._name(config, entry, f"a {class_name} layer")
        where = f"layer '{path}{name}' ({class_name})"
        module, registered = entry.get("module"), entry.get("registered_name")
        trainable = config.get("trainable", True)
        if not isinstance(trainable, bool):
            self.refuse(where, f"trainable must be true or false. Received: {trainable!r}")
        if self._is_model(entry):
            nested_frozen = frozen or not trainable
            layers, shape = self._container(entry, name, f"{path}{name}/", f"{group}/",
                                            nested_frozen, depth + 1)
            result = {"type": "Sequential", "name": name}
            if not frozen and layers and all(item.get("trainable") is False for item in layers):
                trainable = False  # Keras reloads a frozen nested model as trainable=True with
                for item in layers:  # every layer in it frozen: the same model, said once
                    del item["trainable"]
            if not trainable and not frozen:
                result["trainable"] = False
            result["layers"] = layers
            self.layout[path + name] = group
            return result, (shape or self._build_shape(entry, where)) if first else None
        if not from_keras(entry) or registered not in (None, class_name):
            origin = ", ".join(f"{key} {value!r}" for key, value in
                               (("module", module), ("registered as", registered)) if value)
            return self._unsupported(
                where, f"a custom layer class{f' ({origin})' if origin else ''}; its code is "
                "Python, which seqcli never runs: rebuild the model from built-in layers"), None
        if class_name == "Lambda":
            return self._unsupported(where, "a Lambda layer holds Python code, which seqcli "
                                     "never runs; rebuild the model from built-in layers"), None
        if class_name == "InputLayer":
            self.refuse(where, "an InputLayer may only come first in a model")
        if class_name in MODEL_CLASSES:
            self.refuse(where, "a subclassed or unreadable nested model; only Sequential and "
                        "chain Functional models nest")
        if class_name not in LAYER_CLASSES:
            instead = EQUIVALENTS.get(class_name)
            return self._unsupported(where, f"seqcli has no {class_name} layer"
                                     + (f" ({instead})" if instead else "")), None
        options, hint = self._options(class_name, config, where, first)
        result = {"type": class_name, "name": name, **self._minimal(class_name, name, options,
                                                                      where)}
        if not trainable and not frozen:
            result["trainable"] = False
        if first and hint is None:
            hint = self._build_shape(entry, where)
        self.layout[path + name] = group
        return result, hint

    def _chain(self, config: dict, raw: list[dict], where: str):
        """(input layer entry, layers in call order, their indices in `raw`) of a Functional
        model whose layers form one chain; branches, merges and shared layers are refused."""
        names = []
        for item in raw:
            item_config = item.get("config") if isinstance(item.get("config"), dict) else {}
            names.append(item.get("name", item_config.get("name")))
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            self.refuse(where, "its layers do not have unique names")
        index_of = {name: i for i, name in enumerate(names)}
        inputs = self._tensor_refs(config.get("input_layers"), where)
        outputs = self._tensor_refs(config.get("output_layers"), where)
        if len(inputs) != 1 or len(outputs) != 1:
            self.refuse(where, f"it has {len(inputs)} inputs and {len(outputs)} outputs; a "
                        "seqcli model has one of each")
        start, end = inputs[0][0], outputs[0][0]
        if start not in index_of or raw[index_of[start]].get("class_name") != "InputLayer":
            self.refuse(where, "its input is not an InputLayer of the model")
        consumers: dict[str, list[str]] = {}
        for name, item in zip(names, raw):
            if item.get("class_name") == "InputLayer":
                continue
            nodes = item.get("inbound_nodes")
            layer_where = f"layer '{name}' ({item.get('class_name')})"
            if not isinstance(nodes, list) or len(nodes) != 1:
                count = len(nodes) if isinstance(nodes, list) else 0
                self.refuse(layer_where, f"it is called {count} times in the Functional model "
                            f"'{where}' (a shared or unused layer); seqcli runs one chain")
            sources = self._node_sources(nodes[0], layer_where)
            if len(sources) != 1:
                shown = ", ".join(f"'{s}'" for s in sources)
                self.refuse(layer_where, f"it takes {len(sources)} inputs ({shown}): the model "
                            "branches, and seqcli runs a single chain of layers (Sequential)")
            consumers.setdefault(sources[0], []).append(name)
        order, current, visited = [], start, {start}
        while consumers.get(current):
            following = consumers[current]
            if len(following) > 1:
                shown = ", ".join(f"'{s}'" for s in following)
                self.refuse(where, f"the output of layer '{current}' feeds {len(following)} "
                            f"layers ({shown}): the model branches, and seqcli runs a single "
                            "chain of layers (Sequential)")
            current = following[0]
            if current in visited:
                break
            visited.add(current)
            order.append(current)
        if current != end or len(order) != len(raw) - 1:
            self.refuse(where, "its layers do not form a single chain from its input to its "
                        "output")
        return raw[index_of[start]], [raw[index_of[n]] for n in order], \
            [index_of[n] for n in order]

    def _tensor_refs(self, value, where: str) -> list[tuple]:
        """`input_layers`/`output_layers`: `[name, node, tensor]` or a list (or dict) of them."""
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list) and value and isinstance(value[0], str):
            value = [value]
        refs = []
        for ref in value if isinstance(value, list) else [None]:
            if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)):
                self.refuse(where, f"unreadable input or output reference {ref!r}")
            refs.append(tuple(ref))
        return refs

    def _node_sources(self, node, where: str) -> list[str]:
        """Names of the layers whose outputs feed one call of a layer (a Keras 3 node
        `{"args": [...], "kwargs": {...}}`, or Keras 2's `[[name, 0, 0, kwargs], ...]`)."""
        sources: list[str] = []

        def tensors(value):
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                history = value.get("config", {}).get("keras_history") \
                    if isinstance(value.get("config"), dict) else None
                if not (isinstance(history, list) and len(history) == 3
                        and isinstance(history[0], str) and history[1:] == [0, 0]):
                    self.refuse(where, f"unreadable input tensor {history!r}")
                sources.append(history[0])
            elif isinstance(value, list):
                for item in value:
                    tensors(item)
            else:
                self.refuse(where, f"it is called with a constant argument {value!r}; seqcli "
                            "layers take one tensor")

        def keywords(kwargs):
            if not isinstance(kwargs, dict):
                self.refuse(where, "unreadable call arguments")
            for key, value in kwargs.items():
                if isinstance(value, (dict, list)):
                    tensors(value)
                elif value not in ALLOWED_CALL_ARGUMENTS.get(key, (None,)):
                    self.refuse(where, f"it is called with {key}={value!r}, which changes what "
                                "it computes at inference; seqcli cannot represent that")

        if isinstance(node, dict):
            tensors(node.get("args", []))
            keywords(node.get("kwargs", {}))
        elif isinstance(node, list):  # Keras 2: [[layer name, node index, tensor index, kwargs]]
            for item in node:
                if not (isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str)):
                    self.refuse(where, f"unreadable inbound node {item!r}")
                if item[1:3] != [0, 0]:
                    self.refuse(where, "it reads a layer's second call or output")
                sources.append(item[0])
                if len(item) > 3:
                    keywords(item[3])
        else:
            self.refuse(where, f"unreadable inbound node {node!r}")
        return sources

    # ---------------------------------------------------------------------- options

    def _options(self, class_name: str, config: dict, where: str, first: bool):
        """(seqcli options in Keras's key order, input shape hint) of a layer config."""
        cls = LAYER_CLASSES[class_name]
        fields = set(cls.model_fields) - COMMON_FIELDS
        options, hint = {}, None
        for key, value in config.items():
            if key in ("name", "trainable"):
                continue
            if key == "dtype":
                self._check_dtype(value, where)
            elif key in ("batch_input_shape", "batch_shape", "input_shape"):
                if key == "input_shape" and isinstance(value, list):
                    value = [None, *value]
                shape = self._shape_of(value, where)
                hint = shape if first else hint
            elif key.endswith(TRAINING_SUFFIXES):
                if value is not None:
                    options[key] = self._training_option(class_name, key, value, where)
            elif key in cls.keras_only_options:
                if value != cls.keras_only_options[key]:
                    self.refuse(where, f"{key}={value!r} is not supported by seqcli (only "
                                f"{cls.keras_only_options[key]!r})")
            elif key in cls.keras_ignored_options:
                continue
            elif key == "data_format":
                if value not in (None, "channels_last"):
                    self.refuse(where, f"data_format={value!r}: seqcli arrays are channels-last "
                                "only; rebuild the model with data_format='channels_last'")
            elif key not in fields:
                self.refuse(where, f"option '{key}' is not one seqcli's {class_name} has")
            elif key in WRAPPED_OPTIONS:
                options[key] = None if value is None else self._wrapped(value, where)
            elif key.endswith("_initializer"):
                initializer = self._initializer(value, where, key)
                if initializer is not None:
                    options[key] = initializer
            elif key == "activation":
                options[key] = self._activation(value, where)
            else:
                options[key] = cls.from_keras_option(key, value)
        if class_name == "Bidirectional":
            _implied_backward(options)
        elif class_name == "TimeDistributed" and isinstance(options.get("layer"), dict):
            from seqcli.layers.sequential import snake_case

            if options["layer"]["name"] == snake_case(options["layer"]["type"]):
                del options["layer"]["name"]
        return options, hint

    def _training_option(self, class_name: str, key: str, value, where: str):
        """A regularizer or constraint in a model file's form ({l2: 0.01},
        {type: MaxNorm, ...}); refused where seqcli's layer lacks the key or the class."""
        from seqcli.layers.regularizers import check_constraint, check_regularizer

        if key not in LAYER_CLASSES[class_name].model_fields:
            self.refuse(where, f"{key} ({self._class_of(value)}): seqcli applies regularizers "
                        "and constraints to the weights of Dense, convolution, Embedding and "
                        "recurrent layers only; remove it (or set it to None) and save again")
        if isinstance(value, dict) and not from_keras(value):
            self.refuse(where, f"{key} is a custom class ({self._class_of(value)}); seqcli "
                        "has Keras's L1, L2, L1L2 and MaxNorm, NonNeg, UnitNorm, MinMaxNorm")
        check = check_regularizer if key.endswith("_regularizer") else check_constraint
        try:
            return check(value)
        except ValueError as error:
            self.refuse(where, f"{key}: {error}")

    def _wrapped(self, value, where: str) -> dict:
        """A wrapped layer's config (Bidirectional's `layer`) as a model-file mapping."""
        entry = self._dict(value, where, "the wrapped layer")
        layout = dict(self.layout)
        result, _ = self._layer(entry, "", "", frozen=False, depth=MAX_NESTING, first=False)
        self.layout = layout  # the wrapper's group holds the wrapped layer's weights
        if result is None:  # the wrapper cannot be read without it
            self.refuse_unsupported()
        return result

    def _minimal(self, class_name: str, name: str, options: dict, where: str) -> dict:
        """`options` without the keys at their default, lists written as simply as they
        validate to the same layer (`kernel_size: 3` for `[3, 3]`)."""
        cls = LAYER_CLASSES[class_name]

        def validate(candidate):
            return cls.model_validate({"type": class_name, "name": name, **candidate})

        try:
            target = validate(options).model_dump()
        except ValidationError as error:
            self.refuse(where, _validation_message(error))
        order = [key for key in FIRST_OPTIONS if key in cls.model_fields] + [
            key for key in cls.model_fields if key not in FIRST_OPTIONS]
        result = dict(sorted(options.items(), key=lambda item: order.index(item[0])))
        for key in list(result):
            reduced = {k: v for k, v in result.items() if k != key}
            if _same(validate, reduced, target):
                result = reduced
                continue
            for simpler in _simpler_forms(result[key]):
                if _same(validate, {**result, key: simpler}, target):
                    result[key] = simpler
                    break
        return result

    def _check_dtype(self, value, where: str) -> None:
        name = value
        if isinstance(value, dict):
            inner = value.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
        if name not in (None, "float32"):
            self.refuse(where, f"dtype policy {name!r}: seqcli computes in float32 only; set "
                        "the policy to 'float32' in Keras and save again")

    def _initializer(self, value, where: str, key: str) -> str | None:
        """A seqcli initializer name, or None (dropped with a note) for others."""
        name = value.get("class_name") if isinstance(value, dict) else value
        if not isinstance(name, str) or isinstance(value, dict) and not from_keras(value):
            name = None
        name = INITIALIZER_NAMES.get(name, name)
        if name in INITIALIZERS and (not isinstance(value, dict) or _default_config(name, value)):
            return name
        self.notes.append(f"{where}: {key} {self._class_of(value)} dropped: seqcli does not "
                          "have it (initializers only matter without weights, and the weights "
                          "are imported)")
        return None

    def _activation(self, value, where: str):
        """An activation: its name, or an activation layer's config as a model-file mapping
        (read as the name that computes the same, where there is one)."""
        from seqcli.activations import canonical_activation

        name = value
        if isinstance(value, dict):
            class_name = value.get("class_name")
            cls = LAYER_CLASSES.get(class_name)
            if cls is not None and cls.activation_layer and from_keras(value) and \
                    value.get("registered_name") in (None, class_name):
                return self._activation_layer(class_name, value, where)
            name = value.get("config") if class_name == "function" and from_keras(value) \
                else None
            if not isinstance(name, str):
                self.refuse(where, f"its activation is {self._class_of(value)}, not a built-in "
                            "activation function or activation layer (ReLU, LeakyReLU, PReLU, "
                            "ELU, Softmax)")
        if value is None:
            return "linear"
        if not isinstance(name, str):
            self.refuse(where, f"unreadable activation {value!r}")
        try:
            return canonical_activation(name)
        except ValueError as error:
            self.refuse(where, str(error))

    def _activation_layer(self, class_name: str, value: dict, where: str):
        """An activation layer's config as `activation`: a name, or a mapping with its type."""
        from seqcli.layers.base import activation_layer

        config = self._dict(value.get("config"), where, "the activation's config")
        what = f"{where}: its {class_name} activation"
        options, _ = self._options(class_name, config, what, first=False)
        try:
            chosen = activation_layer({"type": class_name, **options})
        except ValueError as error:
            self.refuse(where, str(error))
        if isinstance(chosen, str):
            return chosen
        return {"type": class_name, **{key: value for key, value in options.items()
                                       if value != type(chosen).model_fields[key].default}}

    # ---------------------------------------------------------------------- values

    def _input_layer_shape(self, entry: dict, where: str):
        config = self._dict(entry.get("config"), where, "InputLayer config")
        for key in ("sparse", "ragged"):
            if config.get(key):
                self.refuse(where, f"its input is {key}; seqcli takes dense arrays")
        if "batch_shape" in config or "batch_input_shape" in config:
            return self._shape_of(config.get("batch_shape", config.get("batch_input_shape")),
                                  where)
        shape = config.get("shape")
        return self._shape_of([None, *shape] if isinstance(shape, list) else shape, where)

    def _build_shape(self, entry: dict, where: str):
        build_config = entry.get("build_config")
        if isinstance(build_config, dict):
            return self._shape_of(build_config.get("input_shape"), where)
        return None

    def _shape_of(self, batch_shape, where: str):
        """The per-sample shape of a `[batch, ...]` shape, or None when absent."""
        if batch_shape is None:
            return None
        if not (isinstance(batch_shape, list) and len(batch_shape) >= 2 and all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                for d in batch_shape[1:])):
            self.refuse(where, f"unreadable input shape {batch_shape!r} (a model with several "
                        "inputs cannot be imported)")
        return list(batch_shape[1:])

    def _name(self, config: dict, entry: dict, where: str) -> str:
        name = config.get("name", entry.get("name"))
        if not isinstance(name, str) or not name or "/" in name or len(name) > 256:
            self.refuse(where, f"layer names must be non-empty strings without '/'. Received: "
                        f"{name!r}")
        return name

    def _dict(self, value, where: str, what: str) -> dict:
        if not isinstance(value, dict):
            self.refuse(where, f"{what} is not a JSON object; is this a Keras 3 file?")
        return value

    @staticmethod
    def _class_of(value) -> str:
        if isinstance(value, dict):
            return str(value.get("class_name", "?"))
        return repr(value)


def _default_config(name: str, value: dict) -> bool:
    """True when a serialised initializer has the settings seqcli's `name` draws with (its
    seed aside: initial weights are seqcli's own draw anyway)."""
    from seqcli.interop.keras_format import initializer_config

    config = value.get("config") if isinstance(value.get("config"), dict) else {}
    expected = initializer_config(name)["config"]
    return all(config.get(key, default) == default for key, default in expected.items()
               if key != "seed") and all(value is None for key, value in config.items()
                                         if key not in expected and key != "seed")


WRAPPED_OPTIONS = ("layer", "backward_layer")
"""Options whose value is a whole layer (Bidirectional, TimeDistributed)."""


def _implied_backward(options: dict) -> None:
    """Drop from a Bidirectional's options what it implies: the backward layer Keras always
    writes when it is the forward one's copy, the `forward_`/`backward_` names, and
    `zero_output_for_mask` (set to return_sequences in both)."""
    from seqcli.layers.sequential import snake_case

    forward, backward = options.get("layer"), options.get("backward_layer")
    if forward is None:
        return
    keep = forward.get("return_sequences", False)
    for part in (forward, backward):
        if part is not None and part.get("zero_output_for_mask", False) == keep:
            part.pop("zero_output_for_mask", None)
    base = forward["name"].removeprefix("forward_")
    if backward is not None and backward.get("go_backwards") is True and \
            backward["name"] == f"backward_{base.removeprefix('backward_')}" and \
            {k: v for k, v in backward.items() if k not in ("name", "go_backwards")} == \
            {k: v for k, v in forward.items() if k != "name"}:
        del options["backward_layer"]
    elif backward is not None and backward["name"] == snake_case(backward["type"]):
        del backward["name"]
    forward["name"] = base  # seqcli names it forward_<base>, as Keras does
    if base == snake_case(forward["type"]):
        del forward["name"]


def _validation_message(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    message = item["msg"].removeprefix("Value error, ")
    field_name = ".".join(str(p) for p in item["loc"] if isinstance(p, str))
    if "Received" not in message:
        message += f". Received: {field_name}={item.get('input')!r}"
    return f"{field_name}: {message}" if field_name else message


def _same(validate, candidate: dict, target: dict) -> bool:
    try:
        return validate(candidate).model_dump() == target
    except ValidationError:
        return False


def _simpler_forms(value):
    """Shorter spellings of a list option: `[3, 3]` → 3; `[[1, 1], [2, 2]]` → [1, 2] → 1."""
    if not isinstance(value, list) or not value:
        return []
    forms = []
    if all(isinstance(v, list) and len(v) == 2 and v[0] == v[1] for v in value):
        value = [v[0] for v in value]
        forms.append(value)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value) and \
            len(set(value)) == 1:
        forms.insert(0, value[0])
    return forms


# ---------------------------------------------------------------------- weights


def read_layout_weights(h5: SafeH5, built, layout: dict[str, str]) -> dict[str, np.ndarray]:
    """Every weight of `built`, read from the `.h5` groups `layout` names (by position
    within each `vars` group); weights of layers the model lacks are an error."""
    top = "layers"
    if h5.group("layers") is None and h5.has("_layer_checkpoint_dependencies"):
        top = "_layer_checkpoint_dependencies"  # Keras 2.13-2.15 .keras files

    def locate(path: str) -> str:
        return path if top == "layers" else path.replace("layers", top)

    arrays: dict[str, np.ndarray] = {}
    used = set()
    for info in built.walk():
        if info.children:
            continue
        what = f"layer '{info.path}' ({info.layer.type})"
        names = [info.weight_name(key) for key in info.weights]
        own = h5.group(locate(layout[info.path]) + "/vars")
        saved_as = h5.name_of(own) if own is not None else None
        if saved_as is not None and saved_as != info.layer.name:
            what += f", saved as '{saved_as}'"
        for sub, sub_names in info.layer.keras_weight_groups(names):
            group_path = "/".join(filter(None, (locate(layout[info.path]), sub))) + "/vars"
            keys = [f"{info.path}/{name}" for name in sub_names]
            expected = [(key, keras_weight_shape(info, key)) for key in keys]
            group = h5.group(group_path)
            if group is None and expected:
                raise WeightsError(f"{h5.source}: has no {group_path} for {what}; was it "
                                   "saved from this model?")
            integers = {f"{info.path}/{name}" for name in sub_names
                        if name in info.layer.keras_integer_weights}
            values = h5.variables(group, group_path, expected, what, integers)
            arrays.update((key, value.reshape(info.weights[key]))
                          for (key, _), value in zip(expected, values))
            used.add(group_path)
    extra = [path for path in h5.weight_groups(top) if path not in used]
    if extra:
        shown = ", ".join(extra[:4]) + (", ..." if len(extra) > 4 else "")
        raise WeightsError(f"{h5.source}: holds weights for {len(extra)} layer(s) the model "
                           f"does not have ({shown}); was it saved from this model?")
    return arrays


def read_keras_file(path: Path) -> KerasImport:
    """Read a `.keras` file: its config as a model document, its weights by seqcli key. The
    model is built first: the memory its weights need is checked, and their size bounds how
    much of the weights file is inflated."""
    from seqcli.build import build
    from seqcli.runtime.weights import check_memory

    source = str(path)
    with open_keras_archive(path) as archive:
        reader = _ConfigReader(source)
        config = archive.config()
        try:
            document = reader.model(config)
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as error:
            raise ConfigError(f"{source}: config.json is not a Keras model config seqcli can "
                              f"read ({type(error).__name__}: {error})") from None
        version = archive.keras_version()
        loaded = _load_document(document, source)
        built = None
        if loaded.input_shape is not None:
            try:
                built = build(loaded)
            except (ConfigError, UsageError) as error:
                raise ConfigError(f"{source}: the model does not build in seqcli: "
                                  f"{_first_line(error)}") from None
            check_memory(loaded, built.weight_shapes, [])
        shapes = built.weight_shapes.values() if built is not None else []
        limit = weights_size_limit(len(reader.layout), len(shapes),
                                   sum(math.prod(shape) for shape in shapes))
        with archive.weights(limit) as h5:
            if built is None:
                if any(True for _ in h5.weight_groups()):
                    raise ConfigError(f"{source}: the model records no input shape, but its "
                                      "file holds weights; save it from a built model")
                reader.notes.append(f"{source}: the model was never built (no input shape), "
                                    "so it has no weights; seqcli initialises them on first "
                                    "use")
                return KerasImport(document, None, reader.notes, version)
            weights = read_layout_weights(h5, built, reader.layout)
    return KerasImport(document, weights, reader.notes + keras_differences(built), version)


def keras_differences(built) -> list[str]:
    """A note for each layer of a built model that seqcli computes otherwise than Keras."""
    return [f"layer '{info.path}' ({info.layer.type}): {difference}"
            for info in built.walk() if not info.children
            for difference in [info.layer.keras_difference(info.input_shape)] if difference]


def read_keras_weights(path: Path, built) -> dict[str, np.ndarray]:
    """Read a `model.save_weights` file (`.weights.h5`) onto a built seqcli model."""
    source = str(path)
    signature = file_signature(path, "Keras weights file")
    if signature.startswith(ZIP_SIGNATURE):
        raise UsageError(f"{source}: is a .keras archive, not a weights file; import it "
                         "without --weights-only")
    if not signature.startswith(HDF5_SIGNATURE):
        raise WeightsError(f"{source}: not an HDF5 file (a Keras .weights.h5 file starts "
                           "with the HDF5 signature)")
    with SafeH5.open(str(path), source) as h5:
        if h5.root_attribute("layer_names") or h5.has("model_weights"):
            raise WeightsError(f"{source}: has the legacy Keras 2 weights layout; load it in "
                               "Keras 3 and save it again with model.save_weights("
                               "'model.weights.h5')")
        layout = {info.path: group for group, info in saved_groups(built.layers)}
        return read_layout_weights(h5, built, layout)


def _load_document(document: dict, source: str):
    """Validate a document with seqcli's own loader (so what is written will load)."""
    from seqcli.config.load import load_model_text

    try:
        return load_model_text(model_yaml(document), source, Path.cwd())
    except ConfigError as error:
        raise ConfigError(f"{source}: cannot be represented as a seqcli model: "
                          f"{_first_line(error).split(': ', 1)[-1]}") from None


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


# ---------------------------------------------------------------------- writing


class _ModelDumper(yaml.SafeDumper):
    """Block style, except short lists of numbers (`kernel_size: [3, 3]`); no aliases."""

    def ignore_aliases(self, data):
        return True


def _represent_list(dumper, data):
    flow = all(not isinstance(item, dict) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ModelDumper.add_representer(list, _represent_list)


def model_yaml(document: dict, header: str = "") -> str:
    """A model document as model-file text, with an optional comment header."""
    text = yaml.dump(document, Dumper=_ModelDumper, sort_keys=False, allow_unicode=True,
                     width=100)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + text


@dataclass
class ImportReport:
    """What `import_keras` wrote."""

    model_path: Path
    weights_path: Path | None
    layers: int
    tensors: int
    params: int
    notes: list[str]


def refuse_existing(paths: list[Path | str | None]) -> None:
    """A usage error (exit 2) naming those of `paths` that are existing files: import-keras
    replaces a file only with --force, as init does."""
    existing = [str(path) for path in paths
                if path is not None and str(path) != "-" and Path(path).is_file()]
    if existing:
        raise UsageError(f"{' and '.join(existing)} exist"
                         f"{'s' if len(existing) == 1 else ''}; pass --force to replace "
                         f"{'it' if len(existing) == 1 else 'them'}, or -o to write elsewhere")


def import_keras(source: Path, output: Path, force: bool = False) -> ImportReport:
    """Write `output` (a model file) and its weights `<stem>.safetensors` beside it, both or
    neither, from the `.keras` file `source`; replace existing files only if `force`."""
    from seqcli.io.atomic import all_or_none, atomic_output, check_output
    from seqcli.io.weights import write_safetensors

    if output.suffix.lower() not in (".yaml", ".yml"):
        raise UsageError(f"-o {output}: the model file to write ends in .yaml or .yml")
    weights_path: Path | None = output.with_suffix(".safetensors")
    check_output(output, binary=False)
    check_output(weights_path)
    imported = read_keras_file(source)
    document = dict(imported.document)
    if imported.weights is None:
        weights_path = None
    if not force:
        refuse_existing([output, weights_path])
    if weights_path is not None:
        layers = document.pop("layers")
        document["weights"] = weights_path.name
        document["layers"] = layers
    version = f" (Keras {imported.keras_version})" if imported.keras_version else ""
    header = f"Imported from {source.name}{version} by seqcli import-keras."
    with all_or_none():
        if weights_path is not None:
            write_safetensors(weights_path, imported.weights)
        with atomic_output(output, binary=False) as file:
            file.write(model_yaml(document, header))
    weights = imported.weights or {}
    params = sum(int(array.size) for array in weights.values())
    return ImportReport(output, weights_path, len(document["layers"]), len(weights), params,
                        imported.notes)
