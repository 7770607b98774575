"""Class names for `predict --labels`: a UTF-8 text file, one name per line, in output order."""

from __future__ import annotations

from seqcli.errors import InputDataError, UsageError
from seqcli.io.option_files import read_option_file

MAX_LABELS_BYTES = 16 * 1024**2
"""The largest labels file read (some 16 MB: a million names and more)."""


def read_labels(path: str) -> list[str]:
    """The names in the labels file `path` (`-`: stdin), one per line, each stripped of the
    spaces around it; a final newline and a UTF-8 byte-order mark are allowed. A file that is
    missing or unreadable is a MissingFileError (66); one that is not UTF-8, empty, too large,
    or holds an empty line or the same name twice is an InputDataError (65)."""
    data = read_option_file(path, "--labels", MAX_LABELS_BYTES, pipe="pipe the names in",
                            takes="a text file, one class name per line")
    shown = "<stdin>" if path == "-" else path
    if len(data) > MAX_LABELS_BYTES:
        raise InputDataError(f"{shown}: more than {MAX_LABELS_BYTES:,} bytes; --labels reads "
                             "one class name per line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputDataError(f"{shown}: not UTF-8 text (byte {error.start} is invalid); "
                             "--labels reads one class name per line, in UTF-8") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputDataError(f"{shown}: no class names; --labels reads one name per line")
    names: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise InputDataError(f"{shown}:{number}: an empty line; give one class name per "
                                 "line, in the order of the model's outputs")
        if name in names:
            raise InputDataError(f"{shown}:{number}: {name!r} is also on line {names[name]}; "
                                 "class names must differ")
        names[name] = number
    return list(names)


def check_labels(labels: list[str], path: str, sample_shape: tuple[int, ...],
                 binary: bool) -> None:
    """Refuse labels that do not name the model's outputs: two names (classes 0 and 1) for a
    `binary` (thresholded) score, else one per value of an output vector; an output that is not
    a vector is a UsageError (2), a count that does not fit an InputDataError (65)."""
    shown = "<stdin>" if path == "-" else path
    if binary:
        if len(labels) != 2:
            raise InputDataError(f"{shown} holds {_names(len(labels))}; with --threshold it "
                                 "names the two classes, 0 then 1, one per line")
        return
    if len(sample_shape) != 1:
        raise UsageError(f"--labels names the values of an output vector; this model outputs "
                         f"shape {tuple(sample_shape)} per sample")
    if len(labels) != sample_shape[0]:
        raise InputDataError(f"{shown} holds {_names(len(labels))} but the model outputs "
                             f"{sample_shape[0]} values per sample; give one name per output, "
                             "in order")


def _names(count: int) -> str:
    return f"{count:,} name{'' if count == 1 else 's'}"
