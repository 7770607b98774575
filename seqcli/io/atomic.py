"""Atomic output files: write a temp file beside the target, then rename it over the target.

An interrupted or failed write leaves an existing target byte-identical (CONTRACT §3).
`-` means stdout; binary data is never written to a terminal. Special files such as
`/dev/null` or a FIFO are written directly, since they cannot be replaced by a rename.
A command checks its outputs before its work (`check_output`), and one that writes several
files writes them all or none (`all_or_none`).
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, NamedTuple

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


def check_output(path: str | Path, *, binary: bool = True, what: str = "binary .npy data",
                 option: str | None = "-o FILE") -> None:
    """Refuse, before any work, an output that `atomic_output` would refuse, with its messages
    (exit 73): a folder that is missing or not writable, a target that is a directory or
    read-only. `-` needs an open stdout, and no terminal for binary data (`what`, exit 2);
    `option` is the command's alternative to stdout, if it has one."""
    if str(path) == STDOUT:
        if sys.stdout is None:
            raise closed_stdout(option)
        if binary:
            refuse_terminal(path, what, option or "-o FILE")
        return
    _replaceable(path)


def check_distinct(outputs: dict[str, str | Path | None]) -> None:
    """Refuse (exit 2) two options (`outputs`: option -> path) naming the same file."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None or str(path) == STDOUT:
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{seen[real]} and {option} name the same file {path}; give each "
                             "its own")
        seen[real] = option


def closed_stdout(option: str | None = "-o FILE") -> OutputError:
    """The error for output to a closed stdout (`>&-`): redirect it, or pass `option`."""
    instead = f"pass {option} or " if option else ""
    return OutputError(f"cannot write <stdout>: it is closed; {instead}redirect it to a file "
                       "or a pipe")


def write_stdout(text: str) -> None:
    """Write a command's text result to stdout, in characters it can show (ASCII look-alikes
    on an ASCII terminal); a closed or failing stdout is an OutputError (exit 73), a closed
    pipe a BrokenPipeError."""
    from seqcli.io.terminal import printable

    if sys.stdout is None:
        raise closed_stdout(None)
    with atomic_output(STDOUT, binary=False) as out:
        out.write(printable(text, sys.stdout))


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


class _Staged(NamedTuple):
    """A written and fsynced temp file waiting for the end of its `all_or_none` block."""

    path: str | Path
    temp: Path
    target: Path


_STAGED: ContextVar[list[_Staged] | None] = ContextVar("seqcli_staged_outputs", default=None)


@contextmanager
def all_or_none() -> Iterator[None]:
    """Write every `atomic_output` of the block, or none of them.

    Each output goes to its temp file and is fsynced as usual, but is renamed into place only
    when the block ends without error: every target is checked again first (one that became
    a directory or read-only stops them all), then each is renamed in turn, in the order
    written. On any error, every temp file not yet renamed is removed. A block within another
    adds its files to the outer one.
    """
    if _STAGED.get() is not None:
        yield
        return
    staged: list[_Staged] = []
    token = _STAGED.set(staged)
    try:
        try:
            yield
        finally:
            _STAGED.reset(token)
        for item in staged:
            _replaceable(item.path)
        folders = {item.target.parent for item in staged}
        while staged:
            try:
                os.replace(staged[0].temp, staged[0].target)
            except OSError as error:
                raise output_error(staged[0].path, error) from error
            staged.pop(0)
    except BaseException:
        for item in staged:
            remove_quietly(item.temp)
        raise
    for folder in folders:
        fsync_path(folder)


def _replaceable(path: str | Path) -> os.stat_result | None:
    """The status of the file `path` names (None: there is none yet), once it is known that
    `atomic_output` can write it: not a directory, not read-only, in a folder that exists and
    that this process may write. An `OutputError` otherwise."""
    if str(path).endswith(("/", os.sep)):  # Path() would drop the slash
        raise output_error(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    try:
        existing = os.stat(path)  # follows symlinks, including /dev/stdout's
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise output_error(path, error) from error
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise output_error(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    if existing is not None and stat.S_ISREG(existing.st_mode) and not existing.st_mode & 0o222:
        raise OutputError(f"cannot write {path}: it is read-only; make it writable "
                          f"(chmod u+w) or {_ELSEWHERE}")
    if existing is not None and not os.access(path, os.W_OK):  # immutable, another's, ...
        raise output_error(path, _denied(path))
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        return existing  # a device or FIFO, written as it is
    folder = Path(os.path.realpath(path)).parent
    try:
        os.stat(folder)
    except OSError as error:
        raise output_error(path, error) from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise output_error(path, _denied(folder))
    return existing


def _denied(path: str | Path) -> OSError:
    """Why `os.access` says `path` is not writable: a read-only file system, or permission."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return OSError(errno.EROFS, "Read-only file system")
    except OSError:
        pass
    return PermissionError(errno.EACCES, "Permission denied")


@contextmanager
def atomic_output(path: str | Path, *, binary: bool = True) -> Iterator[GuardedFile]:
    """Yield a writable file for `path` that replaces the target only if the block succeeds
    (within `all_or_none`, only if that block does too).

    The caller must not close the yielded file. `path == "-"` is stdout.
    """
    if str(path) == STDOUT:
        with _stdout(binary) as file:
            yield file
        return
    existing = _replaceable(path)
    path = Path(path)
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
        remove_quietly(temp)
        if isinstance(error, OSError):
            raise output_error(path, error) from error
        raise
    file = GuardedFile(raw, str(path))
    staged = _STAGED.get()
    try:
        yield file
        file.flush()
        try:
            os.fsync(raw.fileno())
            raw.close()
            if staged is None:
                os.replace(temp, target)
        except OSError as error:
            raise output_error(path, error) from error
    except BaseException:
        try:
            raw.close()
        except OSError:
            pass
        remove_quietly(temp)
        raise
    if staged is None:
        fsync_path(target.parent)
    else:
        staged.append(_Staged(path, temp, target))


def _create_temp(path: Path, target: Path) -> tuple[Path, int]:
    """Create `.<name>.<random>.tmp` beside `target`; the umask applies to its mode as usual."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    name = target.name[:200]  # room for the affixes within the usual 255-byte name limit
    while True:
        temp = target.parent / f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise output_error(path, error) from error


def remove_quietly(temp: Path) -> None:
    """Remove the file `temp` if it is there; nothing if it cannot be."""
    try:
        os.unlink(temp)
    except OSError:
        pass


def write_staged(path: Path, data: bytes) -> None:
    """Write `data` as the new file `path` inside a staging folder (which is moved into place
    as a whole, or its files are, only when everything is written), fsynced; an OSError if
    `path` exists or cannot be written."""
    with open(path, "xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_path(path: Path) -> None:
    """Make `path` durable (a file's data, or a folder's entries after a rename); not every
    file system allows this, which is harmless."""
    try:
        fd = os.open(path, os.O_RDONLY)
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
        raise closed_stdout()
    if binary and stream.isatty():
        raise terminal_refusal()
    if binary or not _writes_utf8(stream):
        stream.flush()  # text written earlier goes first
        stream = stream.buffer if binary else _Utf8Text(stream.buffer)
    file = GuardedFile(stream, "<stdout>")
    yield file
    file.flush()


def _writes_utf8(stream) -> bool:
    """True when the text stream `stream` encodes as UTF-8."""
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "utf-8"
    except LookupError:
        return False


class _Utf8Text:
    """A binary stream taking text as UTF-8: the text a command writes to stdout as data (a
    model file, class names) is UTF-8 whatever stdout's encoding, as files are."""

    def __init__(self, buffer):
        self._buffer = buffer

    def write(self, text: str) -> int:
        """Write `text` encoded as UTF-8."""
        self._buffer.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        """Flush the binary stream."""
        self._buffer.flush()

    def __getattr__(self, name: str):
        return getattr(self._buffer, name)
