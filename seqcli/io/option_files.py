"""The small files an option names (`--labels`, `--history`): read whole, up to a limit, from
a path or from stdin (`-`), with one clear message for each way that fails."""

from __future__ import annotations

import sys

from seqcli.errors import MissingFileError, UsageError


def read_option_file(path: str, option: str, limit: int, *, pipe: str, takes: str) -> bytes:
    """The bytes of `path` (`-`: stdin), at most `limit` + 1 of them (more than `limit`: too
    big). `pipe` completes the refusal of a terminal ("pipe it in"), `takes` says what the
    option takes, for a folder ("a text file, one class name per line")."""
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"refusing to read {option} from a terminal; {pipe} or name a file")
        return sys.stdin.buffer.read(limit + 1)
    try:
        with open(path, "rb") as file:
            return file.read(limit + 1)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file; check the {option} path") from None
    except IsADirectoryError:
        raise MissingFileError(f"{path}: is a folder; {option} takes {takes}") from None
    except OSError as error:
        raise MissingFileError(f"{path}: cannot read it: {error.strerror or error}") from None
