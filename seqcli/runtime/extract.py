"""Feature extraction: the outputs of chosen layers, as Keras's
`keras.Model(model.inputs, [layer.output ...])` gives them."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import numpy as np

from seqcli.build import BuiltModel, LayerInfo
from seqcli.errors import UsageError
from seqcli.runtime.model import forward, model_inputs


def execution_order(built: BuiltModel) -> list[LayerInfo]:
    """Every layer in the order its output is computed (a nested model after its layers)."""
    order = []

    def visit(info: LayerInfo) -> None:
        for child in info.children:
            visit(child)
        order.append(info)

    for info in built.layers:
        visit(info)
    return order


def choose_layers(built: BuiltModel, names: list[str], every_top_level: bool) -> list[str]:
    """The requested layer paths, checked: unknown names are a usage error with suggestions."""
    known = [info.path for info in built.walk()] + list(built.part_shapes())
    chosen = [info.path for info in built.layers] if every_top_level else []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"no layer named '{name}'.{hint} Layers: {', '.join(known)}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise UsageError("name at least one layer with --layer NAME, or pass --all")
    return chosen


def extract_batches(built: BuiltModel, weights: dict[str, np.ndarray], paths: list[str],
                    batches: Iterator[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """For each input batch, {path: that layer's output}; the model runs only as far as the
    last requested layer."""
    order = [info.path for info in execution_order(built)]
    parts = {path: path.rsplit("/", 1)[0] for path in built.part_shapes()}
    last = max((parts.get(path, path) for path in paths), key=order.index)
    wanted = set(paths)
    found: dict[str, np.ndarray] = {}

    def keep(path: str, output: np.ndarray) -> None:
        if path in wanted:
            found[path] = output

    keep.parts = {parts[path] for path in paths if path in parts}  # wrappers to look into

    for batch in model_inputs(built, batches):
        forward(built.layers, weights, batch, until=last, collect=keep)
        del batch  # before the next is read: it reuses this one's memory
        yield {path: found[path] for path in paths}
