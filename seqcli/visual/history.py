"""The training history `seqcli fit --history` writes (Keras's `History.history`): a JSON
object of per-epoch values, `{"loss": [...], "val_loss": [...], "accuracy": [...]}`."""

from __future__ import annotations

import json
import math

from seqcli.errors import InputDataError
from seqcli.io.option_files import read_option_file

MAX_HISTORY_BYTES = 256 * 1024**2
"""The largest history file read (a million epochs of a dozen metrics fit well below it)."""

EXPECTED = ('expected the JSON object seqcli fit --history writes, such as {"loss": [0.9, '
            '0.5], "val_loss": [1.0, 0.7]}')


def read_history(path: str) -> dict[str, list[float]]:
    """The curves in the history file `path` (`-`: stdin), by metric name. A file that is
    missing or unreadable is a MissingFileError (66); one that is not such a JSON object
    (names to non-empty lists of numbers) an InputDataError (65)."""
    shown = "<stdin>" if path == "-" else path
    data = read_option_file(path, "--history", MAX_HISTORY_BYTES, pipe="pipe it in",
                            takes="the .json file seqcli fit --history wrote")
    if len(data) > MAX_HISTORY_BYTES:
        raise InputDataError(f"{shown}: more than {MAX_HISTORY_BYTES:,} bytes; {EXPECTED}")
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise InputDataError(f"{shown}: not UTF-8 text (byte {error.start} is invalid); "
                             f"{EXPECTED}") from None
    except (json.JSONDecodeError, RecursionError) as error:
        where = f"line {error.lineno}, column {error.colno}: {error.msg}" \
            if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise InputDataError(f"{shown}: not JSON ({where}); {EXPECTED}") from None
    if not isinstance(document, dict) or not document:
        raise InputDataError(f"{shown}: holds {_kind(document)}; {EXPECTED}")
    for name, values in document.items():
        if not isinstance(values, list) or not values or not all(
                isinstance(value, (int, float)) and not isinstance(value, bool)
                for value in values):
            raise InputDataError(f"{shown}: {name!r} holds {_kind(values)}, not a list of "
                                 f"numbers, one per epoch; {EXPECTED}")
    return {name: [float(value) for value in values] for name, values in document.items()}


def curves(history: dict[str, list[float]]) -> list[tuple[str, list[float], list[float] | None]]:
    """(metric, training values, validation values or None) for each metric, in the file's
    order: `val_loss` goes with `loss`; a validation metric without its training one stands
    alone."""
    pairs = []
    for name, values in history.items():
        if name.startswith("val_") and name[4:] in history:
            continue
        validation = history.get(f"val_{name}")
        pairs.append((name, values, validation))
    return pairs


def finite_points(values: list[float]) -> list[tuple[int, float]]:
    """(epoch, value) of the finite values, epochs counted from 1."""
    return [(epoch, value) for epoch, value in enumerate(values, start=1)
            if math.isfinite(value)]


def _kind(value) -> str:
    """What a JSON value is, for a message."""
    if isinstance(value, dict):
        return "an empty object" if not value else "an object"
    if isinstance(value, list):
        return "an empty list" if not value else "a list holding something other than numbers"
    return {str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
