"""A built model saved as seqcli's own files (the Python API's `save`): the model file and
its weights beside it, the layers written as import-keras writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqcli import __version__
from seqcli.errors import UsageError
from seqcli.interop.keras_export import model_config
from seqcli.interop.keras_import import _ConfigReader, model_yaml
from seqcli.io.atomic import all_or_none, atomic_output, check_output
from seqcli.io.weights import write_safetensors


def save_model(built, arrays: dict[str, np.ndarray], output: Path) -> None:
    """Write a built model as the model file `output` (.yaml or .yml) and, when it has
    weights, `arrays` to `<stem>.safetensors` beside it, both or neither (the Python API's
    `save`). The layers are written as import-keras writes them: every name, the settings
    that differ from Keras's defaults, nested models inline."""
    if output.suffix.lower() not in (".yaml", ".yml"):
        raise UsageError(f"{output}: a model file to save ends in .yaml or .yml")
    weights_path = output.with_suffix(".safetensors") if arrays else None
    check_output(output, binary=False)
    if weights_path is not None:
        check_output(weights_path)
    document = _ConfigReader(str(output)).model(model_config(built))
    if weights_path is not None:
        document = {**{key: value for key, value in document.items() if key != "layers"},
                    "weights": weights_path.name, "layers": document["layers"]}
    with all_or_none():
        if weights_path is not None:
            write_safetensors(weights_path, arrays)
        with atomic_output(output, binary=False) as file:
            file.write(model_yaml(document, f"Saved by seqcli {__version__}."))
