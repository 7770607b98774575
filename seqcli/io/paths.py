"""Paths written in a model file, resolved relative to that file's folder (CONTRACT §2)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from seqcli.errors import MissingFileError, quoted
from seqcli.io.limits import MAX_PATH_BYTES

_ALLOW = "pass --allow-outside to allow it"


def resolve_relative(base_dir: Path, relative: str, *, allow_outside: bool, what: str) -> Path:
    """The real path of `relative` (from a model file in `base_dir`), refused if it leaves it.

    Refused unless `allow_outside`: an absolute path, a path whose `..` climbs out of
    `base_dir`, or one that a symbolic link takes outside (realpaths are compared).
    Raises `ValueError` with a one-line message; `what` names the setting (e.g. "weights").
    """
    if not relative:
        raise ValueError(f"{what} path is empty; give a file name")
    if "\0" in relative:
        raise ValueError(f"{what} path {quoted(relative)} contains a NUL character")
    size = len(relative.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise ValueError(f"{what} path of {size:,} bytes is longer than a path may be "
                         f"({MAX_PATH_BYTES:,}). Received: {quoted(relative)}")
    given = Path(relative)
    if given.is_absolute() and not allow_outside:
        raise ValueError(
            f"{what} path {quoted(relative)} is absolute; write it relative to the model file's "
            f"folder, or {_ALLOW}"
        )
    try:
        root = Path(base_dir).resolve()
        resolved = (root / given).resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
        raise ValueError(f"{what} path {quoted(relative)} cannot be resolved: {error}") \
            from error
    if allow_outside or resolved.is_relative_to(root):
        return resolved
    if os.path.normpath(relative).split(os.sep)[0] == os.pardir:
        how = "through '..'"
    else:
        how = "through a symbolic link"
    raise ValueError(
        f"{what} path {quoted(relative)} leads outside the model file's folder ({root}) {how}; "
        f"keep the file inside that folder, or {_ALLOW}"
    )


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_regular_file(path: str | Path, info: os.stat_result, what: str) -> None:
    """Raise `MissingFileError` unless `info`, the status of `path`, is a regular file's:
    reading a FIFO, a socket or a device may wait forever or never end. `what` names the
    file expected ("weights file")."""
    if stat.S_ISREG(info.st_mode):
        return
    if stat.S_ISDIR(info.st_mode):
        raise MissingFileError(f"{path}: is a folder, not a {what}")
    kind = next((name for test, name in _SPECIAL_KINDS if test(info.st_mode)), "a special file")
    raise MissingFileError(f"{path}: is not a regular file but {kind}; pass a {what}")
