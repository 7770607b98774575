"""Load a model file: read, parse safely, validate, resolve names, `from:` and input shapes.

Every problem becomes a `FILE:LINE:COL: message` line; all of a file's problems are
collected into one ConfigError.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from seqcli.config.yamlsafe import Document, Mark, TooLargeError, YamlError, parse_yaml
from seqcli.errors import MAX_QUOTED_CHARS, ConfigError, MissingFileError, SeqcliError, quoted
from seqcli.io.limits import MAX_EXPANDED_LAYERS, MAX_MODEL_VALUES
from seqcli.io.paths import check_regular_file, resolve_relative
from seqcli.layers.base import Input, Layer, entry_class, layer_modules, snake_case
from seqcli.layers.sequential import ModelFile, Sequential

MAX_MODEL_FILE_BYTES = 4 * 1024 * 1024
"""Model files are small; anything larger is refused before parsing."""
MAX_NESTING = 32
"""How deep `from:` and inline nesting may go."""
MAX_REPORTED_ERRORS = 100
"""Problems listed for one model; a hostile file may hold thousands."""
_TOO_DEEP = f"models are nested more than {MAX_NESTING} levels deep"


@dataclass
class LoadedModel:
    """A validated model file with names, trainability, input shape and paths resolved."""

    name: str
    layers: list[Layer]
    input_shape: tuple | None
    source: str
    """The file as users named it (`-` shows as `<stdin>`)."""
    base_dir: Path
    """Folder against which the file's relative paths resolve."""
    weights_path: Path | None = None
    seed: int | None = None
    origin: tuple[str, int, int] = ("", 1, 1)
    """Where `input_shape` was declared, for errors."""

    def weights_not_written(self) -> str | None:
        """`MODEL: weights file W does not exist yet` when the model names a weights file
        that is not there (a new model, before `seqcli init` or `fit` writes it); else None."""
        if self.weights_path is None or os.path.lexists(self.weights_path):
            return None
        return f"{self.source}: weights file {self.weights_shown} does not exist yet"

    @property
    def weights_shown(self) -> str:
        """The weights path as the user sees it: relative to the working directory when it
        lies below it."""
        relative = os.path.relpath(self.weights_path)
        return str(self.weights_path) if relative.startswith("..") else relative

    def command(self, name: str, *arguments: str) -> str:
        """`seqcli NAME MODEL ARGUMENTS...` for this model, quoted for a shell (MODEL when it
        was read from stdin)."""
        import shlex

        model = "MODEL" if self.source == "<stdin>" else self.source
        return " ".join(["seqcli", name, *map(shlex.quote, [model, *arguments])])


@dataclass
class _File:
    """A model file named by `from:`, read and parsed once however many entries name it."""

    source: str
    base_dir: Path
    doc: Document | None
    """None when it is not valid YAML (its errors are recorded once)."""


@dataclass
class _Context:
    """State shared while loading one file and the files it pulls in with `from:`."""

    allow_outside: bool
    stack: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: dict[Path, _File | SeqcliError] = field(default_factory=dict)
    """Each `from:` file by its real path: parsed, or why it cannot be read."""
    sizes: dict[Path, int] = field(default_factory=dict)
    """How many layers each `from:` file expands to."""
    values_left: int = MAX_MODEL_VALUES
    """YAML values the files still to be parsed may hold."""
    stdin_folder: Path | None = None
    """For a model read from stdin, the folder its paths resolve against."""

    def error(self, source: str, mark: Mark, message: str) -> None:
        """Record a problem at `source:line:column`."""
        self.errors.append(f"{source}:{mark.line}:{mark.column}: {message}")

    def raise_errors(self) -> None:
        """Raise the recorded problems, each once (a `from:` file used twice reports once),
        the first MAX_REPORTED_ERRORS of them."""
        errors = list(dict.fromkeys(self.errors))
        if len(errors) > MAX_REPORTED_ERRORS:
            errors[MAX_REPORTED_ERRORS:] = [f"{len(errors) - MAX_REPORTED_ERRORS:,} more "
                                            "problems not shown; fix these first"]
        if errors:
            raise ConfigError(errors)


STDIN = "<stdin>"
"""How a model read from stdin is named in messages."""


def read_model_text(path: str, base_dir: str | Path | None = None) -> tuple[str, str, Path]:
    """Read a model file (or stdin for `-`): (text, display name, base folder). The paths of
    a model read from stdin resolve against `base_dir`, by default the working directory;
    those of a model file against its folder (`base_dir` is then a usage error)."""
    if path != "-" and base_dir is not None:
        from seqcli.errors import UsageError

        raise UsageError(f"--base-dir applies to a model read from stdin (-); the paths in "
                         f"{path} resolve against its own folder")
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            from seqcli.errors import UsageError

            where = "there is no standard input" if sys.stdin is None else \
                "refusing to read a model file from a terminal"
            raise UsageError(f"{where}; pipe one in or name a file")
        data = sys.stdin.buffer.read(MAX_MODEL_FILE_BYTES + 1)
        folder = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        return _decode(data, STDIN), STDIN, folder
    file = Path(path)
    if file.is_dir():
        raise MissingFileError(f"{path}: is a folder, not a model file")
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_MODEL_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such model file") from None
    except OSError as exc:
        raise MissingFileError(f"{path}: cannot read the model file: "
                               f"{exc.strerror or exc}") from None
    return _decode(data, path), path, file.resolve().parent


def _read_regular(path: Path) -> str:
    """The text of the model file `path` that a `from:` names, refused unless it is a regular
    file: a FIFO, a socket or a device would keep the reader waiting, or never end."""
    try:
        check_regular_file(path, os.stat(path), "model file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never waits, even for a FIFO
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such model file") from None
    except OSError as exc:
        raise MissingFileError(f"{path}: cannot read the model file: "
                               f"{exc.strerror or exc}") from None
    with open(fd, "rb") as handle:
        check_regular_file(path, os.fstat(fd), "model file")  # the same file as checked
        try:
            data = handle.read(MAX_MODEL_FILE_BYTES + 1)
        except OSError as exc:
            raise MissingFileError(f"{path}: cannot read the model file: "
                                   f"{exc.strerror or exc}") from None
    return _decode(data, str(path))


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_MODEL_FILE_BYTES:
        raise ConfigError(f"{name}:1:1: model file is larger than "
                          f"{MAX_MODEL_FILE_BYTES // (1024 * 1024)} MB; is this a model file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}:1:1: " + (_not_a_model(data) or "model file is not UTF-8 "
                                              f"text (byte {exc.start} is invalid)")) from None


def _not_a_model(data: bytes) -> str | None:
    """What a binary file given as the model file is, and where it goes instead; None when
    its first bytes are not recognised."""
    from seqcli.io.filetype import HEAD_SIZE, file_kind

    kind = file_kind(data[:HEAD_SIZE])
    if kind == "npy":
        return ("this is a .npy array, not a model file (YAML); the model file comes first: "
                "seqcli predict MODEL INPUT")
    if kind == "zip":
        return ("this is a ZIP archive (an .npz or .keras file), not a model file (YAML); a "
                ".keras model becomes one with seqcli import-keras FILE.keras -o MODEL.yaml")
    if kind == "safetensors":
        return "this is a safetensors weights file, not a model file (YAML); pass it with --weights"
    if kind is not None and kind.startswith("image:"):
        return f"this is a {kind[6:]} image, not a model file (YAML)"
    return None


def load_model(path: str, *, allow_outside: bool = False,
               base_dir: str | Path | None = None) -> LoadedModel:
    """Load and validate a model file (`-` for stdin, whose paths resolve against `base_dir`,
    by default the working directory); raises ConfigError with every problem."""
    text, source, base_dir = read_model_text(path, base_dir)
    context = _Context(allow_outside=allow_outside)
    if path != "-":
        context.stack.append(Path(path).resolve())
    model = _load_text(text, source, base_dir, context)
    context.raise_errors()
    return model


def load_model_text(text: str, source: str, base_dir: Path, *,
                    allow_outside: bool = False) -> LoadedModel:
    """Load a model from text already read (used by tests and the Python API)."""
    context = _Context(allow_outside=allow_outside)
    model = _load_text(text, source, base_dir, context)
    context.raise_errors()
    return model


def _load_text(text: str, source: str, base_dir: Path, context: _Context) -> LoadedModel | None:
    context.stdin_folder = base_dir if source == STDIN else None
    doc = _parse(text, source, context)
    if doc is None:
        return None
    _check_expanded_size(_File(source, base_dir, doc), context)
    return _load_document(doc, source, base_dir, context, depth=0)


def _parse(text: str, source: str, context: _Context) -> Document | None:
    """The parsed document, within what is left of the model's budget of YAML values; None
    (with the error recorded) when it is not valid YAML."""
    try:
        doc = parse_yaml(text, context.values_left)
    except TooLargeError as exc:
        raise ConfigError(f"{source}:{exc.mark.line}:{exc.mark.column}: {exc.message}") from None
    except YamlError as exc:
        context.error(source, exc.mark, exc.message)
        return None
    context.values_left -= doc.size
    return doc


def _load_document(doc: Document, source: str, base_dir: Path, context: _Context,
                   depth: int) -> LoadedModel | None:
    """Validate a parsed model file whose layers sit `depth` models deep."""
    def error(mark: Mark, message: str) -> None:
        context.error(source, mark, message)

    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {_kind(doc.data)}"
        error(doc.mark(()), f"a model file is a mapping with a 'layers:' list; this one is {what}")
        return None
    try:
        spec = ModelFile.model_validate(doc.data)
    except ValidationError as exc:
        for mark, message in _validation_messages(exc, doc):
            error(mark, message)
        return None

    weights_path = None
    if spec.weights is not None:
        weights_path = _resolve_path(spec.weights, base_dir, doc.mark(("weights",)), error,
                                     context, "weights file")
    layers, input_shape, shape_path = _resolve_layers(spec.layers, ("layers",), doc, source,
                                                      base_dir, error, context, depth)
    if spec.input_shape is not None:
        if input_shape is not None:
            error(doc.mark(shape_path),
                  "the input shape is given twice (top-level 'input_shape' and here); "
                  "keep one")
        input_shape, shape_path = spec.input_shape, ("input_shape",)
    if input_shape is None and _nested_input_shape(layers) is not None:
        input_shape, shape_path = _nested_input_shape(layers), layers[0]._data_path
    mark = doc.mark(shape_path) if shape_path else doc.mark(())
    return LoadedModel(name=spec.name, layers=layers, input_shape=input_shape, source=source,
                       base_dir=base_dir, weights_path=weights_path, seed=spec.seed,
                       origin=(source, mark.line, mark.column))


# ------------------------------------------------------- the expanded size, before building


def _check_expanded_size(file: _File, context: _Context) -> None:
    """Refuse a model of more than MAX_EXPANDED_LAYERS layers once its nested models and
    `from:` files are expanded, before anything is validated or built. Each `from:` file is
    read and counted once, and its count multiplied by its uses; a cycle, or nesting deeper
    than MAX_NESTING, stops the count with the error that loading would report."""
    data = file.doc.data
    if isinstance(data, dict):
        _expanded_size(data.get("layers"), ("layers",), file, context, list(context.stack), 0)


def _expanded_size(entries, path, file: _File, context: _Context, stack: list[Path],
                   depth: int) -> int:
    """How many layers the raw `entries` list (at `path` in `file`, `depth` models deep)
    expands to."""
    if not isinstance(entries, list):
        return 0
    total = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("type") == "Input":
            continue
        added = 1
        if entry.get("type") == "Sequential":
            added += _nested_size(entry, path + (index,), file, context, stack, depth)
        total += added
        if total > MAX_EXPANDED_LAYERS:
            _refuse(file, file.doc.mark(path + (index,)),
                    f"the model has more than {MAX_EXPANDED_LAYERS:,} layers once its nested "
                    f"models and 'from:' files are expanded (this entry adds {added:,}); "
                    f"seqcli allows at most {MAX_EXPANDED_LAYERS:,}")
    return total


def _nested_size(entry: dict, path, file: _File, context: _Context, stack: list[Path],
                 depth: int) -> int:
    """How many layers the nested Sequential `entry` holds, inline or through `from:`."""
    if depth >= MAX_NESTING:
        _refuse(file, file.doc.mark(path), _TOO_DEEP)
    if isinstance(entry.get("layers"), list):
        return _expanded_size(entry["layers"], path + ("layers",), file, context, stack,
                              depth + 1)
    relative = entry.get("from")
    if not isinstance(relative, str):
        return 0
    try:
        target = resolve_relative(file.base_dir, relative, allow_outside=context.allow_outside,
                                  what="model file")
    except ValueError:
        return 0  # reported where the entry is loaded
    if target in stack:
        _refuse(file, file.doc.mark(path + ("from",)), _cycle(stack, target))
    if target not in context.sizes:
        nested = _nested_file(target, context)
        size = 0
        if isinstance(nested, _File) and nested.doc is not None and isinstance(
                nested.doc.data, dict):
            stack.append(target)
            size = _expanded_size(nested.doc.data.get("layers"), ("layers",), nested, context,
                                  stack, depth + 1)
            stack.pop()
        context.sizes[target] = size
    return context.sizes[target]


def _refuse(file: _File, mark: Mark, message: str) -> NoReturn:
    """Stop loading: one problem that makes the rest pointless to check."""
    raise ConfigError(f"{file.source}:{mark.line}:{mark.column}: {message}")


def _cycle(stack: list[Path], target: Path) -> str:
    chain = " -> ".join(path.name for path in stack + [target])
    return f"'from' makes a cycle between model files: {chain}"


def _nested_file(target: Path, context: _Context) -> _File | SeqcliError:
    """The `from:` file `target`, read and parsed on first use."""
    if target not in context.files:
        try:
            text = _read_regular(target)
        except (MissingFileError, ConfigError) as exc:
            context.files[target] = exc
        else:
            context.files[target] = _File(str(target), target.parent,
                                          _parse(text, str(target), context))
    return context.files[target]


# ------------------------------------------------------------------ names, nesting, `from:`


def _resolve_layers(entries, path, doc: Document, source, base_dir, error, context,
                    depth: int):
    """Strip `Input`, name every layer, resolve nested models; returns (layers, input_shape,
    where the input shape was written)."""
    input_shape, shape_path = None, None
    layers: list[Layer] = []
    for index, entry in enumerate(entries):
        entry_path = path + (index,)
        if isinstance(entry, Input):
            if index != 0:
                error(doc.mark(entry_path), "an Input entry must come first in 'layers'")
            else:
                input_shape, shape_path = entry.sample_shape, entry_path
            continue
        mark = doc.mark(entry_path)
        entry._origin = (source, mark.line, mark.column)
        entry._data_path = entry_path
        if entry.input_shape is not None:
            if layers:
                error(doc.mark(entry_path + ("input_shape",), key=True),
                      f"'input_shape' is only allowed on the first layer, not on "
                      f"{entry.type}; declare it once at the top")
            elif input_shape is not None:
                error(doc.mark(entry_path + ("input_shape",), key=True),
                      "the input shape is given twice (Input entry and 'input_shape'); "
                      "keep one")
            else:
                input_shape, shape_path = entry.input_shape, entry_path + ("input_shape",)
        layers.append(entry)
        if isinstance(entry, Sequential):
            _resolve_nested(entry, entry_path, doc, source, base_dir, error, context, depth)
    if not layers:
        error(doc.mark(path), "a model needs at least one layer (an Input is not a layer)")
    _assign_names(layers, path, doc, error)
    return layers, input_shape, shape_path


def _nested_input_shape(layers: list[Layer]) -> tuple | None:
    """The input shape a first-in-the-stack nested model declares: without one of its own,
    a model takes it (as a Keras Sequential whose first layer is a built model)."""
    if layers and isinstance(layers[0], Sequential):
        return layers[0]._input_shape
    return None


def _resolve_nested(entry: Sequential, entry_path, doc, source, base_dir, error, context,
                    depth):
    if depth >= MAX_NESTING:
        error(doc.mark(entry_path), _TOO_DEEP)
        entry.layers = []
        return
    if entry.from_ is None:
        nested, shape, _ = _resolve_layers(entry.layers, entry_path + ("layers",), doc, source,
                                           base_dir, error, context, depth + 1)
        entry.layers = nested
        entry._input_shape = shape if shape is not None else _nested_input_shape(nested)
    else:
        _load_from(entry, entry_path, doc, base_dir, error, context, depth)
    if not entry.trainable:
        freeze(entry)


def _load_from(entry: Sequential, entry_path, doc, base_dir, error, context, depth):
    mark = doc.mark(entry_path + ("from",))
    target = _resolve_path(entry.from_, base_dir, mark, error, context, "model file")
    entry.layers = []
    if target is None:
        return
    if target in context.stack:
        error(mark, _cycle(context.stack, target))
        return
    nested_file = _nested_file(target, context)
    if isinstance(nested_file, SeqcliError):
        stdin_path = base_dir == context.stdin_folder and not os.path.lexists(target)
        error(mark, f"'from: {entry.from_}': "
              f"{_missing_from_stdin(target) if stdin_path else nested_file}")
        return
    if nested_file.doc is None:
        return
    context.stack.append(target)
    try:
        nested = _load_document(nested_file.doc, nested_file.source, nested_file.base_dir,
                                context, depth + 1)
    finally:
        context.stack.pop()
    if nested is None:
        return
    entry.layers = nested.layers
    entry._input_shape = nested.input_shape
    entry._weights_path = nested.weights_path
    if entry.name is None and nested.name != "sequential":
        entry.name = nested.name


def _missing_from_stdin(target: Path) -> str:
    """Why a `from:` file of a model read from stdin is not found, and what to do."""
    return (f"no such model file in {target.parent} (a model read from stdin resolves its "
            "paths against the working directory, or --base-dir DIR); pass --base-dir with the "
            "folder the model came from")


def freeze(layer: Layer) -> None:
    """Set `trainable = False` on a layer and, for a nested model, everything inside it."""
    layer.trainable = False
    for child in getattr(layer, "sublayers", []):
        freeze(child)


def _assign_names(layers: list[Layer], path, doc: Document, error) -> None:
    """Keras names: explicit first; else snake_case of the type, `_1`, `_2`... per level."""
    counts: dict[str, int] = {}
    seen: dict[str, int] = {}
    for layer in layers:
        if layer.name is None:
            base = snake_case(layer.type)
            count = counts.get(base, 0)
            counts[base] = count + 1
            layer.name = base if count == 0 else f"{base}_{count}"
    for index, layer in enumerate(layers):
        if layer.name in seen:
            origin = layer._origin
            error(Mark(origin[1], origin[2]),
                  f"duplicate layer name '{layer.name}' (layer {seen[layer.name] + 1} has it "
                  f"too); names must be unique within a model")
        else:
            seen[layer.name] = index


def _resolve_path(relative: str, base_dir: Path, mark: Mark, error, context, what: str):
    try:
        return resolve_relative(base_dir, relative, allow_outside=context.allow_outside,
                                what=what)
    except ValueError as exc:
        error(mark, str(exc))
        return None


def _kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)


# ---------------------------------------------------------------- pydantic errors → lines


def _validation_messages(exc: ValidationError, doc: Document):
    """Turn pydantic's errors into (mark, message) pairs pointing into the YAML."""
    seen = set()
    for item in exc.errors(include_url=False):
        data_path, owner = _data_path(item["loc"], doc.data)
        message = _message(item, data_path, owner, doc)
        key_error = item["type"] == "extra_forbidden"
        mark = doc.mark(data_path, key=key_error)
        if (mark, message) not in seen:
            seen.add((mark, message))
            yield mark, message


def _data_path(loc, data):
    """Drop the union tags pydantic puts in `loc`; returns (path into the data, owning type)."""
    path, node, owner = [], data, "model file"
    for part in loc:
        if isinstance(node, dict) and part not in node and part == node.get("type"):
            owner = part
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path), owner


def _message(item, path, owner, doc: Document) -> str:
    kind, msg = item["type"], item["msg"]
    field_name = next((p for p in reversed(path) if isinstance(p, str)), None)
    where = owner if owner != "model file" else "model file"
    if kind == "extra_forbidden":
        cls = entry_class(owner) or ModelFile
        known = sorted({f.alias or n for n, f in cls.model_fields.items()} - {"type"})
        close = difflib.get_close_matches(field_name, known, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(known)}."
        return f"unknown key {quoted(field_name)} for {where}.{hint}"
    if kind == "missing":
        return f"{where} needs '{field_name}'"
    if kind == "union_tag_invalid":
        tag = item["ctx"]["tag"]
        names = sorted([*layer_modules(), "Input"])
        by_lower = {n.lower(): n for n in names}
        close = difflib.get_close_matches(str(tag).lower(), list(by_lower), n=1, cutoff=0.6)
        hint = (f" Did you mean '{by_lower[close[0]]}'?" if close
                else f" Known types: {', '.join(names)}.")
        return f"unknown layer type {quoted(tag)}.{hint}"
    if kind == "union_tag_not_found":
        return "a layer entry needs 'type' (a Keras layer class name such as 'Dense')"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping of keys (such as 'type: Dense')"
    if kind == "list_type":
        return f"{field_name}: expected a list" if field_name else "expected a list"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    msg = _quoting(msg, item.get("input"))
    received = "" if kind == "value_error" or field_name is None else \
        f". Received: {field_name}={quoted(item.get('input'))}"
    prefix = f"{where} {field_name}: " if field_name else f"{where}: "
    return f"{prefix}{msg[0].lower() + msg[1:] if msg else msg}{received}"


def _quoting(message: str, value) -> str:
    """`message` (a validator's) with the repr of a long `value` it echoes cut to its start."""
    if len(message) <= 2 * MAX_QUOTED_CHARS:
        return message
    return message.replace(repr(value), quoted(value))

