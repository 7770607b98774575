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

from seqcli.errors import MAX_QUOTED_CHARS, quoted
from seqcli.io.limits import MAX_LIST_ITEMS, MAX_MODEL_VALUES, MAX_NUMBER_LENGTH

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
    size: int = 0
    """How many values (scalars, lists, mappings) the document holds."""

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


class TooLargeError(YamlError):
    """More YAML values than the reader may take: reading stops (and with it the model)."""


def _mark(yaml_mark) -> Mark:
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


MAX_DEPTH = 100
"""How deeply lists and mappings may nest (a model nested 32 levels deep needs about 66)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, tags, very deep nesting, long lists and too
    many values while composing (PyYAML composes recursively: deep nesting would exhaust
    Python's stack; it reads some 50,000 values a second: a long file would keep it busy)."""

    def __init__(self, stream, max_values: int):
        super().__init__(stream)
        self._depth = 0
        self._max_values = max_values
        self.values = 0
        """How many values (scalars, lists, mappings) were composed."""

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            return self._compose_checked(parent, index)
        finally:
            self._depth -= 1

    def _compose_checked(self, parent, index):
        event = self.peek_event()
        self._check_size(parent, event)
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
        if tag is not None:  # `!!int`, `!local`, `!<tag:...>`, and the non-specific `!`
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise YamlError(f"YAML tags are not allowed ({shown}); write the plain value",
                            _mark(event.start_mark))
        return super().compose_node(parent, index)

    def _check_size(self, parent, event) -> None:
        """Refuse deep nesting, a long list or mapping, or too many values, before composing
        `event`, a child of `parent`."""
        if self._depth > MAX_DEPTH:
            raise YamlError(f"lists and mappings are nested more than {MAX_DEPTH} levels deep",
                            _mark(event.start_mark))
        if parent is not None and len(parent.value) >= MAX_LIST_ITEMS:
            what = "list" if isinstance(parent, SequenceNode) else "mapping"
            raise YamlError(f"this {what} has more than {MAX_LIST_ITEMS:,} items, more than any "
                            "model setting needs; is this a model file?",
                            _mark(parent.start_mark))
        self.values += 1
        if self.values > self._max_values:
            raise TooLargeError(f"the model's files hold more than {MAX_MODEL_VALUES:,} YAML "
                                "values (scalars, lists and mappings) together, more than any "
                                "model needs; is this a model file?", _mark(event.start_mark))


_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
         "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


def _text(node: ScalarNode) -> str:
    """The scalar's text, refused if an escape such as `"\\ud800"` left half a surrogate pair
    in it (no file name, key or message could hold it)."""
    text = node.value
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise YamlError(f"the string holds \\u{ord(text[exc.start]):04x}, half of a UTF-16 "
                            "surrogate pair and not a character; write the character itself",
                            _mark(node.start_mark)) from None
    return text


def _scalar(node: ScalarNode):
    """Resolve a plain scalar with the YAML 1.2 core schema; quoted scalars stay strings."""
    text = _text(node)
    if node.style is not None:  # quoted or block scalar
        return text
    if len(text) > MAX_NUMBER_LENGTH and _number(text):
        raise YamlError(f"a number written with {len(text):,} characters is out of range; "
                        f"numbers in a model file have at most {MAX_NUMBER_LENGTH} characters",
                        _mark(node.start_mark))
    return _resolve_plain(text)


def reads_as_string(text: str) -> bool:
    """True when `text`, written as a plain (unquoted) scalar, reads back as that string."""
    return not (_NULL.match(text) or text in _BOOL or _number(text) or _INF.match(text)
                or _NAN.match(text))


def _resolve_plain(text: str):
    """The value of `text` as a plain (unquoted) scalar, by the YAML 1.2 core schema."""
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


def _number(text: str) -> bool:
    """True when the plain scalar `text` reads as an integer or a float."""
    return any(pattern.match(text) for pattern in (_INT, _INT_OCT, _INT_HEX, _FLOAT))


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
            key = _text(key_node) if key_node.style is not None else _scalar(key_node)
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


_KEY_WITHOUT_SPACE = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w.]*):(?=[^\s:])(\S*)")
_DASH_WITHOUT_SPACE = re.compile(r"^\s*-[^\s-]")
_INDENT_HINT = ("check the indentation of this line and the one above (the keys of one "
                "mapping, and the '-' of one list, line up)")


def _syntax_hint(text: str, exc: yaml.MarkedYAMLError, where: Mark) -> str | None:
    """What most likely causes PyYAML's syntax error `exc`, found at `where`: a tab, a
    missing space after ':' or '-', an unquoted ': ' in a value, an unclosed bracket or
    quote, or the indentation."""
    lines = text.split("\n")
    line = lines[where.line - 1] if where.line <= len(lines) else ""
    above = next((lines[i] for i in range(where.line - 2, -1, -1)
                  if i < len(lines) and lines[i].strip()), "")
    problem, context = exc.problem or "", exc.context or ""
    if "\t" in line[:len(line) - len(line.lstrip())]:
        return "tabs are not allowed for indentation in YAML; indent with spaces"
    if "'\\t'" in problem:
        return "YAML does not allow a tab here; use spaces"
    context_line = exc.context_mark.line + 1 if exc.context_mark else where.line
    if "flow sequence" in context or "flow mapping" in context:
        bracket = "[" if "sequence" in context else "{"
        return (f"check that the '{bracket}' opened on line {context_line} is closed, and "
                "that its items are separated by commas")
    if "quoted scalar" in context:
        return f"the quote opened on line {context_line} is never closed"
    if problem == "mapping values are not allowed here":
        return _mapping_value_hint(line, above, where)
    if problem == "could not find expected ':'":
        shown = quoted(lines[context_line - 1].strip()) if context_line <= len(lines) else ""
        return (f"line {context_line} ({shown}) needs ':' after its key (key: value), or "
                "lines up with the wrong keys; check its indentation")
    if problem.endswith(("found ']'", "found '}'")):
        return f"this '{problem[-2]}' closes no bracket opened before it; remove it"
    if problem.startswith(("expected <block end>", "did not find expected")):
        return _INDENT_HINT
    return None


def _mapping_value_hint(line: str, above: str, where: Mark) -> str:
    """PyYAML's "mapping values are not allowed here" at `where`, on `line` (below `above`):
    a key and value without a space between them on the line above, a '-' without one, a
    value holding ': ', or a line indented more than its mapping's keys."""
    glued = _KEY_WITHOUT_SPACE.match(above)
    if glued:
        return (f"put a space after ':' in {quoted(glued.group(1) + ':' + glued.group(2))} on "
                "the line above (without it YAML reads one string)")
    if _DASH_WITHOUT_SPACE.match(above):
        return "put a space after the '-' that starts the list entry on the line above"
    if ": " in line[:where.column - 1]:
        key, value = line.strip().split(": ", 1)
        example = f"{key}: \"{value}\""
        shown = f", as in {example}" if len(example) <= MAX_QUOTED_CHARS else ""
        return f"quote a value that holds ': '{shown}"
    return _INDENT_HINT


def parse_yaml(text: str, max_values: int = MAX_MODEL_VALUES) -> Document:
    """Parse one YAML document of at most `max_values` values into a `Document`; raises
    YamlError with a position."""
    loader = None
    try:
        loader = _StrictLoader(text, max_values)  # the reader refuses control characters
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        where = _mark(mark) if mark else Mark(1, 1)
        hint = _syntax_hint(text, exc, where)
        raise YamlError(f"invalid YAML: {message}" + (f"; {hint}" if hint else ""),
                        where) from None
    except yaml.reader.ReaderError as exc:  # not a MarkedYAMLError: it has a position only
        line, column = _position(text, exc.position)
        raise YamlError(f"invalid YAML: control character #x{exc.character:04x} is not "
                        "allowed in YAML text", Mark(line, column)) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {' '.join(str(exc).split())}", Mark(1, 1)) from None
    finally:
        if loader is not None:
            loader.dispose()
    doc = Document(data=None, size=loader.values)
    if node is None:
        doc.values[()] = Mark(1, 1)
        return doc
    doc.data = _convert(node, (), doc)
    return doc
