"""Every layer type of a model file: settings, shapes, weights and forward pass.

Also the Python API's layer classes: `from seqcli.layers import Dense; Dense(units=3)`.
"""

from seqcli.layers.sequential import *  # noqa: F403
from seqcli.layers.sequential import __all__  # noqa: F401
