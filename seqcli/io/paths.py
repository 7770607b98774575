"""Paths written in a model file, resolved relative to that file's folder (CONTRACT §2)."""

from __future__ import annotations

import os
from pathlib import Path

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
        raise ValueError(f"{what} path {relative!r} contains a NUL character")
    given = Path(relative)
    if given.is_absolute() and not allow_outside:
        raise ValueError(
            f"{what} path {relative!r} is absolute; write it relative to the model file's "
            f"folder, or {_ALLOW}"
        )
    try:
        root = Path(base_dir).resolve()
        resolved = (root / given).resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
        raise ValueError(f"{what} path {relative!r} cannot be resolved: {error}") from error
    if allow_outside or resolved.is_relative_to(root):
        return resolved
    if os.path.normpath(relative).split(os.sep)[0] == os.pardir:
        how = "through '..'"
    else:
        how = "through a symbolic link"
    raise ValueError(
        f"{what} path {relative!r} leads outside the model file's folder ({root}) {how}; "
        f"keep the file inside that folder, or {_ALLOW}"
    )
