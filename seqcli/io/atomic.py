"""Atomic output files: write a temp file beside the target, then rename it over the target.

An interrupted or failed write leaves an existing target byte-identical (CONTRACT §3).
`-` means stdout; binary data is never written to a terminal. Special files such as
`/dev/null` or a FIFO are written directly, since they cannot be replaced by a rename.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from seqcli.errors import OutputError, UsageError

STDOUT = "-"

_ELSEWHERE = "choose another output path"
_REASONS = {  # errno -> (reason, what to do)
    errno.ENOENT: ("folder {folder} does not exist", "create it or " + _ELSEWHERE),
    errno.ENOTDIR: ("a parent of it is not a folder", _ELSEWHERE),
    errno.EACCES: ("permission denied", _ELSEWHERE),
    errno.EPERM: ("permission denied", _ELSEWHERE),
    errno.EISDIR: ("it is a directory", "give a file name, not a folder"),
    errno.ENOSPC: ("no space left on device", "free some space or " + _ELSEWHERE),
    errno.EDQUOT: ("disk quota exceeded", "free some space or " + _ELSEWHERE),
    errno.EFBIG: ("the file is too large for this file system", _ELSEWHERE),
    errno.EROFS: ("the file system is read-only", _ELSEWHERE),
}


def terminal_refusal(what: str = "binary .npy data", option: str = "-o FILE") -> UsageError:
    """The error for binary data bound for a terminal (CONTRACT §3: exit 2): `what` names the
    data, `option` how to name a file instead."""
    return UsageError(f"refusing to write {what} to a terminal; redirect stdout or pass {option}")


def refuse_terminal(path: str | Path, what: str = "binary .npy data",
                    option: str = "-o FILE") -> None:
    """Raise `terminal_refusal(what, option)` when `path` is `-` and stdout is a terminal."""
    if str(path) == STDOUT and sys.stdout is not None and sys.stdout.isatty():
        raise terminal_refusal(what, option)


def output_error(path: str | Path, error: OSError) -> OutputError:
    """An `OutputError` naming `path`, the reason of `error`, and what to do."""
    reason, hint = _REASONS.get(error.errno or 0, (error.strerror or str(error), _ELSEWHERE))
    reason = reason.format(folder=repr(str(Path(path).parent)))
    return OutputError(f"cannot write {path}: {reason}; {hint}")


class GuardedFile:
    """A file object whose write and flush errors become `OutputError` (not `BrokenPipeError`).

    Everything else (seek, tell, ...) is passed through to the wrapped file.
    """

    def __init__(self, file: IO, name: str):
        self._file = file
        self._name = name

    def write(self, data) -> int:
        """Write `data`; an `OSError` other than a broken pipe becomes an `OutputError`."""
        try:
            return self._file.write(data)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise output_error(self._name, error) from error

    def writelines(self, lines) -> None:
        """Write each of `lines`; errors as in `write`."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the buffer; errors as in `write`."""
        try:
            self._file.flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            raise output_error(self._name, error) from error

    def seek(self, *args) -> int:
        """Seek; a buffered file writes its buffer out first, so errors are as in `write`,
        except the one saying the file cannot seek (a pipe), which callers such as
        `zipfile` test for."""
        try:
            return self._file.seek(*args)
        except (BrokenPipeError, io.UnsupportedOperation):
            raise
        except OSError as error:
            if error.errno in (errno.ESPIPE, errno.EINVAL):
                raise
            raise output_error(self._name, error) from error

    def __getattr__(self, name: str):
        return getattr(self._file, name)


@contextmanager
def atomic_output(path: str | Path, *, binary: bool = True) -> Iterator[GuardedFile]:
    """Yield a writable file for `path` that replaces the target only if the block succeeds.

    The caller must not close the yielded file. `path == "-"` is stdout.
    """
    if str(path) == STDOUT:
        with _stdout(binary) as file:
            yield file
        return
    if str(path).endswith(("/", os.sep)):  # Path() would drop the slash
        raise output_error(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    path = Path(path)
    try:
        existing = os.stat(path)  # follows symlinks, including /dev/stdout's
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise output_error(path, error) from error
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise output_error(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with _special_file(path, binary) as file:
            yield file
        return
    target = Path(os.path.realpath(path))  # write through a symlink, as open() would

    temp, fd = _create_temp(path, target)
    try:
        if existing is not None:
            os.fchmod(fd, existing.st_mode & 0o777)  # not set-user/group-ID: new content
        raw = os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"}))
    except BaseException as error:
        os.close(fd)
        _remove(temp)
        if isinstance(error, OSError):
            raise output_error(path, error) from error
        raise
    file = GuardedFile(raw, str(path))
    try:
        yield file
        file.flush()
        try:
            os.fsync(raw.fileno())
            raw.close()
            os.replace(temp, target)
        except OSError as error:
            raise output_error(path, error) from error
    except BaseException:
        try:
            raw.close()
        except OSError:
            pass
        _remove(temp)
        raise
    _fsync_folder(target.parent)


def _create_temp(path: Path, target: Path) -> tuple[Path, int]:
    """Create `.<name>.<random>.tmp` beside `target`; the umask applies to its mode as usual."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    name = target.name[:200]  # room for the affixes within the usual 255-byte name limit
    while True:
        temp = target.parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise output_error(path, error) from error


def _remove(temp: Path) -> None:
    try:
        os.unlink(temp)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; not every file system allows this, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _special_file(path: Path, binary: bool) -> Iterator[GuardedFile]:
    """Write straight to a character device or FIFO (`/dev/null`, `<(...)`): no rename possible."""
    try:
        raw = open(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"}))
    except OSError as error:
        raise output_error(path, error) from error
    if binary and raw.isatty():  # such as -o /dev/tty, or -o /dev/stdout on a terminal
        raw.close()
        raise terminal_refusal()
    file = GuardedFile(raw, str(path))
    try:
        yield file
        file.flush()
    finally:
        try:
            raw.close()
        except OSError:
            pass


@contextmanager
def _stdout(binary: bool) -> Iterator[GuardedFile]:
    """Stdout as a guarded file; binary data is refused when stdout is a terminal."""
    stream = sys.stdout
    if stream is None:
        raise OutputError("cannot write <stdout>: there is no standard output; pass -o FILE")
    if binary and stream.isatty():
        raise terminal_refusal()
    if binary:
        stream.flush()  # text written earlier goes first
        stream = stream.buffer
    file = GuardedFile(stream, "<stdout>")
    yield file
    file.flush()
