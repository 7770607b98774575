"""Which format an output is written in, from its name's extension or `--format`, checked
before any work: a name whose extension does not fit what the command writes is a usage error
that names the one that does.

`-`, a device or FIFO such as `/dev/null` or bash's `>(...)`, and a name without an extension
say nothing: `--format` chooses for them, else the command's default. Only the standard library is
imported here (the command line checks outputs before it loads numpy).
"""

from __future__ import annotations

import os
import stat
from enum import StrEnum
from pathlib import Path

from seqcli.errors import UsageError

STDOUT = "-"


class OutputFormat(StrEnum):
    """The formats `predict` and `extract` write arrays in."""

    npy = "npy"
    """One float32 array, binary."""
    npz = "npz"
    """Several float32 arrays, keyed by name, in one zip archive (binary)."""
    csv = "csv"
    """Text: a header, then one row per sample, its values flattened."""
    jsonl = "jsonl"
    """Text: one JSON object per sample."""
    zarr = "zarr"
    """A Zarr store (a folder): one array, or a group of arrays keyed by name, chunked on the
    batch axis."""

    @property
    def binary(self) -> bool:
        """True for the formats never written to a terminal."""
        return self in (OutputFormat.npy, OutputFormat.npz, OutputFormat.zarr)


_ARRAY_SUFFIXES = {f".{choice.value}": choice for choice in OutputFormat}
_ARRAY_CHOICES = ".npy, .npz, .csv, .jsonl or .zarr"


def extension(path: str | Path) -> str | None:
    """The lower-case extension of the file `path` names (`.npy`), or None when the name has
    none or the name is `-`, a device or a FIFO (an output whose name says nothing)."""
    if str(path) == STDOUT or _special(path):
        return None
    return Path(path).suffix.lower() or None


def array_format(path: str, chosen: OutputFormat | None, *, command: str,
                 several: str | None = None) -> OutputFormat:
    """The format `command` writes its arrays to `path` in: the extension's, else `chosen`
    (`--format`), else `.npy` for one array and `.npz` for `several` (which says what they
    are, such as "2 layers"). A UsageError (exit 2) for an extension seqcli does not write
    (unless `--format` says what to write), one that disagrees with `--format`, or several
    arrays for a format that holds one."""
    suffix = extension(path)
    named = _ARRAY_SUFFIXES.get(suffix) if suffix else None
    if suffix and named is None and chosen is None:
        raise UsageError(f"-o {path}: {command} writes {_ARRAY_CHOICES} files, chosen by the "
                         f"extension; name it {Path(path).stem}.npy (or .npz, .csv, .jsonl, "
                         ".zarr), or pass --format")
    if named is not None and chosen is not None and named != chosen:
        raise UsageError(f"-o {path} names a .{named.value} file but --format is "
                         f"{chosen.value}; make them agree, or drop --format")
    result = named or chosen or (OutputFormat.npz if several else OutputFormat.npy)
    if result == OutputFormat.zarr and suffix is None:
        raise UsageError(f"-o {path}: a Zarr store is a folder, written by name; pass "
                         "-o NAME.zarr")
    if several and result in (OutputFormat.npy, OutputFormat.csv):
        where = f"a .{result.value} file" if named else f"--format {result.value}"
        fix = f"-o {Path(path).stem}.npz (or .jsonl)" if named else "--format npz (or jsonl)"
        raise UsageError(f"{command} writes {several}, and {where} holds one array: use "
                         f"{fix}, or pass a single --layer")
    return result


def check_lines_output(path: str, chosen: OutputFormat | None, option: str) -> None:
    """Refuse (exit 2) an output that would not hold the text lines `option` (`--argmax`,
    `--top-k`, `--threshold`) prints: `--format`, or a name whose extension says another
    format (`.npy`, `.csv`, ...)."""
    if chosen is not None:
        raise UsageError(f"--format and {option} are alternatives: {option} prints one text "
                         "line per sample; pass one")
    suffix = extension(path)
    if suffix in _ARRAY_SUFFIXES:
        raise UsageError(f"-o {path}: {option} prints text lines, not a {suffix} file; name "
                         f"it {Path(path).stem}.txt, or drop {option} to write the outputs as "
                         f"{suffix}")


def check_extension(path: str | Path, suffixes: tuple[str, ...], what: str,
                    option: str = "-o") -> None:
    """Refuse (exit 2) a file name for `what` (such as "an ONNX model") whose extension is not
    one of `suffixes`; `-`, devices, FIFOs and names without an extension pass."""
    suffix = extension(path)
    if suffix is None or suffix in suffixes:
        return
    wanted = " or ".join(suffixes)
    raise UsageError(f"{option} {path}: {what} goes to a {wanted} file; name it "
                     f"{Path(path).stem}{suffixes[0]}")


def _special(path: str | Path) -> bool:
    """True when `path` is an existing device, FIFO or socket (written as it is)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)
