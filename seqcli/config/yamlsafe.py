"""A strict YAML reader: safe constructors only, no anchors, aliases, tags or duplicate keys.

It returns plain Python data plus the position of every key and value, so that any
later error can be reported as `FILE:LINE:COL: message`. Scalars are resolved with the
YAML 1.2 core schema (`1e-5` is a float, `yes`/`on` are strings), as users expect.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

Path = tuple  # a location inside the document: keys and list indices


@dataclass(frozen=True)
class Mark:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass(frozen=True)
class Span:
    """Where a node sits in the text: character offsets [start, end), and whether it is a
    flow collection (`{...}` or `[...]`)."""

    start: int
    end: int
    flow: bool = False


@dataclass
class Document:
    """Parsed YAML data with the position of each value and each mapping key."""

    data: object
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    spans: dict[Path, Span] = field(default_factory=dict)
    """Character spans of every value, for edits that keep the rest of the text."""

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """The closest known position of `path` (its key's if `key`), walking up to the root."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Mark(1, 1))


class YamlError(Exception):
    """A YAML problem at a position."""

    def __init__(self, message: str, mark: Mark):
        super().__init__(message)
        self.message = message
        self.mark = mark


def _mark(yaml_mark) -> Mark:
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


MAX_DEPTH = 100
"""How deeply lists and mappings may nest (a model nested 32 levels deep needs about 66)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, explicit tags and very deep nesting while
    composing (PyYAML composes recursively: deep nesting would exhaust Python's stack)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            return self._compose_checked(parent, index)
        finally:
            self._depth -= 1

    def _compose_checked(self, parent, index):
        event = self.peek_event()
        if self._depth > MAX_DEPTH:
            raise YamlError(f"lists and mappings are nested more than {MAX_DEPTH} levels deep",
                            _mark(event.start_mark))
        if isinstance(event, yaml.AliasEvent):
            raise YamlError(
                f"YAML aliases are not allowed (*{event.anchor}); write the value out",
                _mark(event.start_mark),
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlError(
                f"YAML anchors are not allowed (&{anchor}); write the value out",
                _mark(event.start_mark),
            )
        tag = getattr(event, "tag", None)
        implicit = getattr(event, "implicit", True)
        explicit = tag is not None and tag != "!" and not (
            isinstance(implicit, tuple) and implicit[0]
        )
        if explicit and isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent,
                                           yaml.MappingStartEvent)):
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise YamlError(f"YAML tags are not allowed ({shown})", _mark(event.start_mark))
        return super().compose_node(parent, index)


_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
         "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


def _scalar(node: ScalarNode):
    """Resolve a plain scalar with the YAML 1.2 core schema; quoted scalars stay strings."""
    text = node.value
    if node.style is not None:  # quoted or block scalar
        return text
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _convert(node, path: Path, doc: Document):
    doc.values[path] = _mark(node.start_mark)
    doc.spans[path] = Span(node.start_mark.index, node.end_mark.index,
                           bool(getattr(node, "flow_style", False)))
    if isinstance(node, ScalarNode):
        return _scalar(node)
    if isinstance(node, SequenceNode):
        return [_convert(item, path + (i,), doc) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlError("mapping keys must be plain strings", _mark(key_node.start_mark))
            key = key_node.value if key_node.style is not None else _scalar(key_node)
            if not isinstance(key, str):
                key = key_node.value
            if key == "<<":
                raise YamlError("YAML merge keys (<<) are not allowed",
                                _mark(key_node.start_mark))
            if key in result:
                first = doc.keys[path + (key,)]
                raise YamlError(
                    f"duplicate key '{key}' (first defined at line {first.line})",
                    _mark(key_node.start_mark),
                )
            doc.keys[path + (key,)] = _mark(key_node.start_mark)
            result[key] = _convert(value_node, path + (key,), doc)
        return result
    raise YamlError("unsupported YAML node", _mark(node.start_mark))  # pragma: no cover


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of character `offset` in `text`."""
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def parse_yaml(text: str) -> Document:
    """Parse one YAML document into a `Document`; raises YamlError with a position."""
    loader = None
    try:
        loader = _StrictLoader(text)  # the reader refuses control characters right away
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"invalid YAML: {message}",
                        _mark(mark) if mark else Mark(1, 1)) from None
    except yaml.reader.ReaderError as exc:  # not a MarkedYAMLError: it has a position only
        line, column = _position(text, exc.position)
        raise YamlError(f"invalid YAML: control character #x{exc.character:04x} is not "
                        "allowed in YAML text", Mark(line, column)) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {' '.join(str(exc).split())}", Mark(1, 1)) from None
    finally:
        if loader is not None:
            loader.dispose()
    doc = Document(data=None)
    if node is None:
        doc.values[()] = Mark(1, 1)
        return doc
    doc.data = _convert(node, (), doc)
    return doc
