"""What Keras 3's `.keras` format looks like, shared by import and export.

A `.keras` file is a zip of `metadata.json`, `config.json` (the model serialised with
`keras.saving.serialize_keras_object`) and `model.weights.h5`. In the `.h5` (and in a
`model.save_weights` file, which has the same layout) every layer owns a group
`layers/<snake_case(class)>[_n]`, numbered per class within its model, with its variables
in `vars/0`, `vars/1`, ... in the layer's own order (ours too: kernel, bias; gamma, beta,
moving_mean, moving_variance). A nested model's layers sit below its group:
`layers/sequential/layers/dense/vars/0`. Names in the file are Keras's, not the layers':
a layer's own name is only the `name` attribute of its `vars` group.
"""

from __future__ import annotations

from collections.abc import Iterator

from seqcli.layers.base import INITIALIZER_CLASSES
from seqcli.layers.sequential import snake_case

CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
WEIGHTS_MEMBER = "model.weights.h5"
FORMAT_KERAS_VERSION = "3.15.1"
"""The Keras version whose files this module was checked against (written to metadata.json)."""

def saved_names(class_names: list[str]) -> list[str]:
    """Keras's group name of each object of a saved list (`_get_unique_name`): the snake_case
    of its class, then `_1`, `_2`, ... for later objects of the same class."""
    used: dict[str, int] = {}
    names = []
    for class_name in class_names:
        base = snake_case(class_name)
        if base in used:
            used[base] += 1
            names.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            names.append(base)
    return names


def saved_groups(infos, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(`.h5` group path, LayerInfo) of every layer of a built seqcli model, nested ones
    included, depth first, where Keras saves the same Sequential model."""
    names = saved_names([info.layer.type for info in infos])
    for name, info in zip(names, infos):
        group = f"{prefix}layers/{name}"
        yield group, info
        if info.children:
            yield from saved_groups(info.children, group + "/")


def initializer_config(name: str) -> dict:
    """A seqcli initializer name as Keras serialises the initializer."""
    class_name = INITIALIZER_CLASSES[name]
    config = {} if name in ("zeros", "ones") else {"seed": None}
    config |= {"random_uniform": {"minval": -0.05, "maxval": 0.05},
               "random_normal": {"mean": 0.0, "stddev": 0.05},
               "truncated_normal": {"mean": 0.0, "stddev": 0.05},
               "orthogonal": {"gain": 1.0}}.get(name, {})
    return {"module": "keras.initializers", "class_name": class_name, "config": config,
            "registered_name": None}


def regularizer_config(regularizer: dict) -> dict:
    """A regularizer as a seqcli layer keeps it ({l2: 0.01}) as Keras serialises it."""
    from seqcli.layers.regularizers import regularizer_class

    return {"module": "keras.regularizers", "class_name": regularizer_class(regularizer),
            "config": dict(regularizer), "registered_name": None}


def constraint_config(constraint: dict) -> dict:
    """A constraint as a seqcli layer keeps it ({type: MaxNorm, ...}) as Keras serialises
    it."""
    config = {key: value for key, value in constraint.items() if key != "type"}
    return {"module": "keras.constraints", "class_name": constraint["type"], "config": config,
            "registered_name": None}


def from_keras(entry: dict) -> bool:
    """True if a serialised object's `module` is Keras itself, or absent (older files); a
    class defined in a user's script is saved with `module: null`."""
    if "module" not in entry:
        return True
    module = entry["module"]
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def keras_weight_shape(info, key: str) -> tuple:
    """The shape Keras gives weight `key` of a built layer (see `Layer.keras_weight_shape`):
    a reshape of seqcli's, holding the same values."""
    return tuple(info.layer.keras_weight_shape(info.input_shape, info.weight_name(key),
                                               tuple(info.weights[key])))
