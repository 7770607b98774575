"""Every layer type of a model file: settings, shapes, weights and forward pass.

Also the Python API's layer classes: `from seqcli.layers import Dense; Dense(units=3)`. A
layer module is imported when one of its types is first used (see `LAYER_REGISTRY`).
"""

from seqcli.layers import sequential as _schema


def __getattr__(name: str):
    """The names of `seqcli.layers.sequential`: the layer classes, `Input`, `ModelFile`,
    `LAYER_CLASSES` and `LAYER_TYPES`."""
    return getattr(_schema, name)


def __dir__():
    return sorted({*globals(), *_schema.__all__})
