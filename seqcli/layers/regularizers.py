"""Keras's weight regularizers (L1, L2, L1L2) and constraints (MaxNorm, NonNeg, UnitNorm,
MinMaxNorm) as layer keys: the forms a model file gives them in, the form a layer keeps, and
what they do in `fit` (Keras's keras/src/regularizers and keras/src/constraints).

A regularizer is kept as its factors alone, which name its class: `{l1: 0.01}` is L1,
`{l2: 0.01}` L2, `{l1: 0.01, l2: 0.02}` L1L2. A constraint is kept as Keras's config with
its class as `type`: `{type: MaxNorm, max_value: 2.0, axis: 0}`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator

REGULARIZER_FACTORS = {"L1": ("l1",), "L2": ("l2",), "L1L2": ("l1", "l2")}
"""Each regularizer class and its factors."""
REGULARIZER_DEFAULTS = {"L1": {"l1": 0.01}, "L2": {"l2": 0.01}, "L1L2": {"l1": 0.0, "l2": 0.0}}
"""Keras's default factors of each class."""
REGULARIZER_ALIASES = {"l1": "L1", "l2": "L2", "l1_l2": "L1L2", "l1l2": "L1L2"}
"""Keras's snake-case names of the regularizer classes."""

CONSTRAINT_DEFAULTS = {
    "MaxNorm": {"max_value": 2.0, "axis": 0},
    "NonNeg": {},
    "UnitNorm": {"axis": 0},
    "MinMaxNorm": {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0},
}
"""Each constraint class and its keys with Keras's defaults."""
CONSTRAINT_ALIASES = {"max_norm": "MaxNorm", "non_neg": "NonNeg", "unit_norm": "UnitNorm",
                      "min_max_norm": "MinMaxNorm"}
"""Keras's snake-case names of the constraint classes."""

EPSILON = 1e-7
"""Keras's `backend.epsilon()`, which the norm constraints add to the norm they divide by."""


def _keras_class(value: dict) -> tuple[Any, dict]:
    """(class, options) of a mapping: Keras's serialized form ({class_name, config}) or
    seqcli's ({type, ...})."""
    if "class_name" in value:
        config = value.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError(f"expected the config of {value['class_name']!r} as a mapping. "
                             f"Received: {config!r}")
        return value["class_name"], dict(config)
    options = dict(value)
    return options.pop("type", None), options


def _factor(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < 0:
        raise ValueError(f"the regularization factor {name} must be a finite number, at least "
                         f"0. Received: {name}={value!r}")
    return float(value)


def check_regularizer(value) -> dict | None:
    """A regularizer as a layer keeps it (its factors), from a model file's `{l2: 0.01}`,
    `{type: L2, l2: 0.01}`, `L2` or Keras's serialized dict; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        kind, options = value, {}
    elif isinstance(value, dict):
        kind, options = _keras_class(value)
        if kind is None:
            kind = {("l1",): "L1", ("l2",): "L2", ("l1", "l2"): "L1L2"}.get(
                tuple(sorted(options)))
            if kind is None:
                raise ValueError(f"expected a regularizer such as {{l2: 0.01}}, {{l1: 0.01}} "
                                 f"or {{l1: 0.01, l2: 0.01}}. Received: {value!r}")
    else:
        raise ValueError(f"expected a regularizer such as {{l2: 0.01}} or "
                         f"{{type: L1L2, l1: 0.01, l2: 0.01}}. Received: {value!r}")
    kind = REGULARIZER_ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in REGULARIZER_FACTORS:
        raise ValueError(f"unknown regularizer {kind!r}: seqcli has "
                         f"{', '.join(REGULARIZER_FACTORS)} (Keras's L1, L2 and L1L2)")
    unknown = sorted(set(options) - set(REGULARIZER_FACTORS[kind]))
    if unknown:
        raise ValueError(f"the {kind} regularizer takes "
                         f"{' and '.join(REGULARIZER_FACTORS[kind])} only. "
                         f"Received: {', '.join(unknown)}")
    factors = REGULARIZER_DEFAULTS[kind] | options
    return {name: _factor(factors[name], name) for name in REGULARIZER_FACTORS[kind]}


def regularizer_class(regularizer: dict) -> str:
    """The Keras class of a regularizer as a layer keeps it: L1, L2 or L1L2."""
    return {("l1",): "L1", ("l2",): "L2"}.get(tuple(regularizer), "L1L2")


def _axis(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ValueError(f"a constraint's axis is an int or a list of ints. Received: axis={value!r}")


def check_constraint(value) -> dict | None:
    """A constraint as a layer keeps it ({type, Keras's keys}), from a model file's
    `{type: MaxNorm, max_value: 2}`, `NonNeg` or Keras's serialized dict; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        kind, options = value, {}
    elif isinstance(value, dict):
        kind, options = _keras_class(value)
    else:
        raise ValueError(f"expected a constraint such as NonNeg or {{type: MaxNorm, "
                         f"max_value: 2}}. Received: {value!r}")
    kind = CONSTRAINT_ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in CONSTRAINT_DEFAULTS:
        raise ValueError(f"unknown constraint {kind!r}: seqcli has "
                         f"{', '.join(CONSTRAINT_DEFAULTS)} (Keras's constraints)")
    unknown = sorted(set(options) - set(CONSTRAINT_DEFAULTS[kind]))
    if unknown:
        known = ", ".join(CONSTRAINT_DEFAULTS[kind]) or "no keys"
        raise ValueError(f"the {kind} constraint takes {known}. "
                         f"Received: {', '.join(unknown)}")
    settings = CONSTRAINT_DEFAULTS[kind] | options
    result = {"type": kind}
    for name, setting in settings.items():
        if name == "axis":
            result[name] = _axis(setting)
        elif isinstance(setting, bool) or not isinstance(setting, (int, float)) or not (
                math.isfinite(setting) and setting >= 0):
            raise ValueError(f"the {kind} constraint's {name} must be a finite number, "
                             f"at least 0. "
                             f"Received: {name}={setting!r}")
        else:
            result[name] = float(setting)
    if kind == "MinMaxNorm" and result["min_value"] > result["max_value"]:
        raise ValueError(f"the MinMaxNorm constraint's min_value ({result['min_value']}) is "
                         f"above its max_value ({result['max_value']})")
    return result


Regularizer = Annotated[Any, BeforeValidator(check_regularizer)]
"""A `*_regularizer` key: None, or the factors of Keras's L1, L2 or L1L2."""
Constraint = Annotated[Any, BeforeValidator(check_constraint)]
"""A `*_constraint` key: None, or one of Keras's MaxNorm, NonNeg, UnitNorm, MinMaxNorm."""


def penalty(regularizer: dict, values) -> float:
    """Keras's regularization loss: l1·Σ|x| + l2·Σx²."""
    import numpy as np

    values = np.asarray(values, np.float64)
    total = 0.0
    if regularizer.get("l1"):
        total += regularizer["l1"] * float(np.abs(values).sum())
    if regularizer.get("l2"):
        total += regularizer["l2"] * float(np.square(values).sum())
    return total


def penalty_gradient(regularizer: dict, values):
    """The gradient of `penalty` (float32): l1·sign(x) + 2·l2·x, with sign(0) = 1 as JAX
    differentiates |x|."""
    import numpy as np

    values = np.asarray(values, np.float32)
    grad = np.zeros(values.shape, np.float32)
    if regularizer.get("l1"):
        grad += np.float32(regularizer["l1"]) * np.where(values >= 0, 1, -1).astype(np.float32)
    if regularizer.get("l2"):
        grad += np.float32(2 * regularizer["l2"]) * values
    return grad


def constrain(constraint: dict, values) -> None:
    """Project a float32 weight in place, as Keras's optimizer does after each update."""
    import numpy as np

    kind = constraint["type"]
    if kind == "NonNeg":
        np.maximum(values, 0, out=values)
        return
    axis = constraint["axis"]
    axis = tuple(axis) if isinstance(axis, list) else axis
    norms = np.sqrt(np.sum(np.square(values), axis=axis, keepdims=True, dtype=np.float32))
    if kind == "UnitNorm":
        values /= np.float32(EPSILON) + norms
        return
    if kind == "MaxNorm":
        desired = np.clip(norms, 0, np.float32(constraint["max_value"]))
    else:
        rate = np.float32(constraint["rate"])
        desired = (rate * np.clip(norms, np.float32(constraint["min_value"]),
                                  np.float32(constraint["max_value"]))
                   + (np.float32(1) - rate) * norms)
    values *= desired / (np.float32(EPSILON) + norms)


def check_axis(constraint: dict, rank: int, where: str) -> None:
    """A ValueError when the constraint's axis is not one of a weight of `rank` axes."""
    axis = constraint.get("axis")
    if axis is None:
        return
    for item in axis if isinstance(axis, list) else [axis]:
        if not -rank <= item < rank:
            raise ValueError(f"{where}: {constraint['type']}'s axis {item} is out of range for "
                             f"a weight of {rank} axes; use an axis in [{-rank}, {rank - 1}]")
