"""`seqcli freeze`: choose layers, then rewrite only their `trainable` lines in the model file.

The user's text is edited in place, never re-serialised: comments, key order, quoting and
blank lines stay as they were; each changed layer gains or changes one `trainable:` pair.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from seqcli.config.load import LoadedModel
from seqcli.config.yamlsafe import Document
from seqcli.errors import UsageError
from seqcli.layers.base import Layer


@dataclass
class FreezeRequest:
    """What the user asked for, as given on the command line."""

    layers: list[str]
    """Names, paths or glob patterns (`conv2d*`, `base/*`) to freeze."""
    all_but_last: bool = False
    up_to: str | None = None
    """Freeze every top-level layer up to and including this one."""
    unfreeze: list[str] | None = None
    """Names, paths or patterns to make trainable again (applied last)."""


def layer_paths(layers: list[Layer], prefix: str = "") -> dict[str, Layer]:
    """Every layer by path (`head/dense`), nested ones after their model, in model order."""
    found: dict[str, Layer] = {}
    for layer in layers:
        found[prefix + layer.name] = layer
        found.update(layer_paths(getattr(layer, "sublayers", []), prefix + layer.name + "/"))
    return found


def _match(pattern: str, paths: list[str], every: list[str]) -> list[str]:
    """Paths matching `pattern` (a pattern without `/` only matches top-level names)."""
    found = [path for path in paths if fnmatch.fnmatchcase(path, pattern)]
    if found:
        return found
    close = difflib.get_close_matches(pattern, every, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UsageError(f"no layer matches '{pattern}'.{hint} Layers: {', '.join(every)}")


def plan(model: LoadedModel, request: FreezeRequest) -> dict[str, bool]:
    """{layer path: trainable} for every layer the request touches, in model order."""
    every = list(layer_paths(model.layers))
    top = [layer.name for layer in model.layers]
    changes: dict[str, bool] = {}
    for pattern in request.layers:
        changes.update((path, False) for path in _match(pattern, every, every))
    if request.all_but_last:
        changes.update((path, False) for path in top[:-1])
    if request.up_to is not None:
        if request.up_to not in top:
            _match(request.up_to, top, every)  # raises with a suggestion when nothing matches
            raise UsageError(f"--up-to takes one top-level layer name, not a pattern. "
                             f"Received: '{request.up_to}'. Layers: {', '.join(top)}")
        changes.update((path, False) for path in top[:top.index(request.up_to) + 1])
    for pattern in request.unfreeze or []:
        changes.update((path, True) for path in _match(pattern, every, every))
    return dict(sorted(changes.items(), key=lambda item: every.index(item[0])))


def frozen_ancestor(model: LoadedModel, path: str) -> str | None:
    """The path of a frozen nested model that contains `path` (it keeps `path` frozen)."""
    paths = layer_paths(model.layers)
    parts = path.split("/")
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        if not paths[ancestor].trainable:
            return ancestor
    return None


def rewrite(text: str, doc: Document, model: LoadedModel, changes: dict[str, bool]) -> str:
    """`text` with `trainable` set for each changed layer; only those pairs change."""
    paths = layer_paths(model.layers)
    edits = []
    for path, trainable in changes.items():
        layer = paths[path]
        if layer._origin is None or layer._origin[0] != model.source:
            owner = layer._origin[0] if layer._origin else "another file"
            raise UsageError(f"layer '{path}' is defined in {owner} (through 'from:'); change "
                             f"it there, or freeze its nested model '{path.split('/')[0]}' here")
        edit = _edit(text, doc, layer._data_path, trainable)
        if edit is not None:
            edits.append(edit)
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _edit(text: str, doc: Document, data_path: tuple, trainable: bool):
    """(start, end, replacement) that sets `trainable` in the mapping at `data_path`."""
    value = "true" if trainable else "false"
    existing = doc.spans.get(data_path + ("trainable",))
    if existing is not None:
        return existing.start, existing.end, value
    if trainable:
        return None  # trainable is the default: nothing to write
    mapping = doc.spans[data_path]
    if mapping.flow:
        close = text.rindex("}", mapping.start, mapping.end)
        body_end = len(text[:close].rstrip())
        return body_end, close, f", trainable: {value}"
    # block mapping: a new line after the line holding the `type:` value, same indentation
    indent = " " * (doc.keys[data_path + ("type",)].column - 1)
    newline = "\r\n" if "\r\n" in text else "\n"  # the file's own line ends
    line_end = text.find("\n", doc.spans[data_path + ("type",)].end)
    if line_end == -1:
        return len(text), len(text), f"{newline}{indent}trainable: {value}{newline}"
    return line_end + 1, line_end + 1, f"{indent}trainable: {value}{newline}"
