"""`seqcli freeze`: choose layers, then rewrite only their `trainable` lines in the model file.

The user's text is edited in place: comments, key order, quoting and blank lines stay as they
were; each changed layer gains or changes one `trainable:` pair. The edited text is parsed
again and must hold the same data with those pairs changed; where some YAML syntax defeats the
edit, the whole file is written out again instead, as the same data.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import math
import re
from dataclasses import dataclass

import yaml

from seqcli.config.load import LoadedModel
from seqcli.config.yamlsafe import Document, YamlError, parse_yaml, reads_as_string
from seqcli.errors import SeqcliError, UsageError
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
    raise UsageError(f"no layer matches '{pattern}'.{hint} Layers: {_listed(every)}")


def _listed(names: list[str], shown: int = 20) -> str:
    """The first `shown` of `names`, comma-separated, and how many there are in all."""
    more = f", ... ({len(names):,} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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
                             f"Received: '{request.up_to}'. Layers: {_listed(top)}")
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


@dataclass
class Rewrite:
    """The model file's new text."""

    text: str
    in_place: bool
    """True when only `trainable` pairs changed; False when the file had to be written out
    whole (same model, but its comments and formatting are gone)."""


def rewrite(text: str, doc: Document, model: LoadedModel, changes: dict[str, bool]) -> Rewrite:
    """`text` with `trainable` set for each changed layer: only those pairs change, or, where
    the YAML's syntax defeats such an edit, the whole file written out again."""
    paths = layer_paths(model.layers)
    targets = {}
    for path, trainable in changes.items():
        layer = paths[path]
        if layer._origin is None or layer._origin[0] != model.source:
            owner = layer._origin[0] if layer._origin else "another file"
            raise UsageError(f"layer '{path}' is defined in {owner} (through 'from:'); change "
                             f"it there, or freeze its nested model '{path.split('/')[0]}' here")
        targets[layer._data_path] = trainable
    expected = _with_trainable(doc.data, targets)
    size = doc.size + 2 * len(targets)  # each new pair adds a key and a value
    for placement in (_after_type, _before_first_key):
        edited = _edited(text, doc, targets, placement)
        if _reads_as(edited, expected, size):
            return Rewrite(edited, in_place=True)
    written = _written_out(expected, text)
    if not _reads_as(written, expected, size):  # pragma: no cover (a bug, not a file's fault)
        raise SeqcliError("cannot rewrite the model file without changing its meaning; it is "
                          "left as it is")
    return Rewrite(written, in_place=False)


def _edited(text: str, doc: Document, targets: dict[tuple, bool], placement) -> str:
    """`text` with one edit per layer mapping in `targets` ({data path: trainable}); a new
    pair in a block mapping goes where `placement` says."""
    edits = [edit for data_path, trainable in targets.items()
             if (edit := _edit(text, doc, data_path, trainable, placement)) is not None]
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _edit(text: str, doc: Document, data_path: tuple, trainable: bool, placement):
    """(start, end, replacement) that sets `trainable` in the mapping at `data_path`."""
    value = "true" if trainable else "false"
    existing = doc.spans.get(data_path + ("trainable",))
    if existing is not None:
        return existing.start, existing.end, value
    if trainable:
        return None  # trainable is the default: nothing to write
    if doc.spans[data_path].flow:  # after the last value: `{type: Dense, units: 3,}`
        last = doc.spans[data_path + (list(_mapping_at(doc.data, data_path))[-1],)]
        return last.end, last.end, f", trainable: {value}"
    return placement(text, doc, data_path, f"trainable: {value}")


def _after_type(text: str, doc: Document, data_path: tuple, pair: str):
    """A new line after the one where the block mapping's `type:` value ends, indented as the
    mapping's first key (or its `? `)."""
    indent = " " * (doc.values[data_path].column - 1)
    newline = _line_break(text)
    end = doc.spans[data_path + ("type",)].end
    if end > 0 and _LINE_BREAK.match(text, end - 1):  # a block scalar ends past its line
        return end, end, f"{indent}{pair}{newline}"
    line_end = _line_end(text, end)
    if line_end == len(text) and not _LINE_BREAK.match(text, len(text) - 1):
        return line_end, line_end, f"{newline}{indent}{pair}{newline}"
    return line_end, line_end, f"{indent}{pair}{newline}"


def _before_first_key(text: str, doc: Document, data_path: tuple, pair: str):
    """The pair first in the block mapping, on a line of its own."""
    start = doc.spans[data_path].start
    indent = " " * (doc.values[data_path].column - 1)
    return start, start, f"{pair}{_line_break(text)}{indent}"


def _mapping_at(data, data_path: tuple) -> dict:
    """The mapping at `data_path` in the file's data."""
    for part in data_path:
        data = data[part]
    return data


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""What PyYAML reads as a line break."""


def _line_break(text: str) -> str:
    """The file's own line break: CRLF, CR or LF."""
    for newline in ("\r\n", "\r", "\n"):
        if newline in text:
            return newline
    return "\n"


def _line_end(text: str, offset: int) -> int:
    """Where the line holding `offset` ends, past its line break."""
    found = _LINE_BREAK.search(text, offset)
    return found.end() if found else len(text)


def _with_trainable(data, targets: dict[tuple, bool]):
    """A copy of the file's `data` with `trainable` set in each mapping of `targets`, placed
    after `type` when new."""
    data = copy.deepcopy(data)
    for data_path, trainable in targets.items():
        mapping = _mapping_at(data, data_path)
        if "trainable" in mapping or not trainable:
            items = list(mapping.items())
            at = next((i for i, (key, _) in enumerate(items) if key == "trainable"),
                      next(i for i, (key, _) in enumerate(items) if key == "type") + 1)
            items[at:at + ("trainable" in mapping)] = [("trainable", trainable)]
            mapping.clear()
            mapping.update(items)
    return data


def _reads_as(text: str, expected, size: int) -> bool:
    """True when `text` parses to `expected`, `size` values (NaN equal to NaN, 1 not equal to
    1.0 or True)."""
    try:
        return _same(parse_yaml(text, size).data, expected)
    except YamlError:
        return False


def _same(a, b) -> bool:
    """Parsed YAML data equal in value and type, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


class _Dumper(yaml.SafeDumper):
    """Writes each value out in full (no aliases), quoting every string that would not read
    back as a string (`'1e-3'`, `'null'`)."""

    def ignore_aliases(self, data) -> bool:
        return True

    def represent_str(self, data: str):
        style = None if reads_as_string(data) else "'"
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)


def _written_out(data, text: str) -> str:
    """`data` as a whole new YAML file, with `text`'s line breaks and byte-order mark."""
    written = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                        default_flow_style=None, width=100, line_break=_line_break(text))
    return ("\ufeff" if text.startswith("\ufeff") else "") + written
