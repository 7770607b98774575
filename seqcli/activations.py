"""Activation names (Keras 3) and the small integer codes the kernels use; no numba here."""

from __future__ import annotations

import difflib

# Order fixes the integer code of each activation: never reorder, only append.
ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "elu",
    "selu",
    "gelu",
    "silu",
    "hard_silu",
    "softplus",
    "softsign",
    "leaky_relu",
    "exponential",
    "mish",
)
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
# Activations that act on the whole last axis rather than elementwise.
LAST_AXIS_ACTIVATIONS = ("softmax", "log_softmax")
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
"""Keras 3's selu constants (onnx's defaults differ in the last float32 digit)."""


def canonical_activation(name: str | None) -> str:
    """The canonical name of `name` (`None` is linear); ValueError with a suggestion if unknown."""
    if name is None:
        return "linear"
    name = ALIASES.get(name, name)
    if name in ACTIVATION_CODES:
        return name
    known = sorted(set(ACTIVATIONS) | set(ALIASES))
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(known)}."
    raise ValueError(f"unknown activation '{name}'.{hint}")


def activation_code(name: str | None) -> int:
    """The kernels' integer code for an activation name."""
    return ACTIVATION_CODES[canonical_activation(name)]
