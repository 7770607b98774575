"""Outputs written a chunk of rows at a time, possibly by other processes (Dask workers): a
`.npy` file or a Zarr store, staged beside the target (`.NAME.RANDOM.tmp`) and put in its place
only once every chunk is written. Until then an existing target stays as it was; a failed run
removes what it staged.

A `.npy` file replaces its target by a rename. A Zarr store is a folder: it takes the place of
an existing one by an atomic exchange (Linux's `renameat2`), where the file system has it, else
by two renames. Only a folder that holds a Zarr store is ever replaced.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from seqcli.errors import OutputError, UsageError
from seqcli.io.arrays import npy_header_bytes
from seqcli.io.atomic import check_output, fsync_path, output_error, remove_quietly
from seqcli.io.chunked import ZARR_MARKERS, StoreLayout, is_url, require_zarr
from seqcli.io.formats import OutputFormat

ROOT = ""
"""The name of the array of a Zarr store that holds one array (not a group)."""


def store_arrays(shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """{name: its array in a Zarr store}: one array is the store itself (`ROOT`), several are
    a group's, by name."""
    return {name: ROOT for name in shapes} if len(shapes) == 1 else {name: name for name in shapes}


def check_array_output(path: str, chosen: OutputFormat | None) -> None:
    """Refuse, before any work, an output of arrays in the format `chosen` (None: text lines)
    that cannot be written: `atomic.check_output`'s refusals, or `check_store_output`'s for a
    Zarr store."""
    if chosen == OutputFormat.zarr:
        check_store_output(path)
    else:
        check_output(path, binary=chosen is not None and chosen.binary)


def check_store_output(path: str) -> None:
    """Refuse, before any work, a Zarr output that cannot be written (exit 73): a folder that
    is missing or read-only, a file or a folder without a Zarr store in the way; a URL is a
    usage error (exit 2)."""
    if is_url(path):
        raise UsageError(f"-o {path}: seqcli writes Zarr stores to a folder (one the workers "
                         "share, on a cluster), not to a URL")
    require_zarr()
    target = Path(os.path.realpath(path))
    if target.is_dir():
        if not any((target / marker).exists() for marker in ZARR_MARKERS):
            raise OutputError(f"cannot write {path}: it is a folder that holds no Zarr store, "
                              "and seqcli replaces only a Zarr store; choose another output "
                              "path")
    elif os.path.lexists(target):
        raise OutputError(f"cannot write {path}: it is a file, not a Zarr store (a folder); "
                          "choose another output path, or remove it")
    check_folder(path, target.parent)


def check_folder(path: str | Path, folder: Path) -> None:
    """An OutputError naming `path` unless `folder` exists and this process may write in it."""
    try:
        os.stat(folder)
    except OSError as error:
        raise output_error(path, error) from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise output_error(path, PermissionError(errno.EACCES, "Permission denied"))


def staging_name(target: Path, suffix: str = "tmp") -> Path:
    """`.NAME.RANDOM.tmp` beside `target`."""
    return target.parent / f".{target.name[:200]}.{os.urandom(4).hex()}.{suffix}"


# ----------------------------------------------------------------------------- .npy


class NpyRegion:
    """Rows of a staged `.npy` file, written by range from any process that sees the file
    (picklable): float32, little-endian, at their place after the header."""

    def __init__(self, path: str, shown: str, header_size: int, sample_shape: tuple[int, ...]):
        self.path, self.shown = path, shown
        self.header_size, self.sample_shape = header_size, tuple(sample_shape)

    def write(self, name: str, start: int, block: np.ndarray) -> None:
        """Write `block` (rows, *sample_shape) as rows `start:start + len(block)` (`name` is
        `ROOT`: a `.npy` holds one array)."""
        if block.shape[1:] != self.sample_shape:
            raise ValueError(f"rows of shape {block.shape[1:]} for an array of rows "
                             f"{self.sample_shape}")
        data = memoryview(np.ascontiguousarray(block, dtype="<f4").reshape(-1).view(np.uint8))
        offset = self.header_size + start * math.prod(self.sample_shape) * 4
        try:
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                done = 0
                while done < len(data):
                    done += os.pwrite(fd, data[done:], offset + done)
            finally:
                os.close(fd)
        except OSError as error:
            raise output_error(self.shown, error) from error


@contextmanager
def staged_npy(path: str, sample_shape: tuple[int, ...], rows: int) -> Iterator[NpyRegion]:
    """A float32 `.npy` of `rows` rows staged beside `path` (a file of its full size, header
    first), whose region the block fills; it replaces `path` when the block succeeds."""
    target = Path(os.path.realpath(path))
    header = npy_header_bytes((rows, *sample_shape), np.dtype("<f4"))
    temp = staging_name(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o666)  # the umask applies, as to atomic_output's temp files
        try:
            os.write(fd, header)
            os.ftruncate(fd, len(header) + rows * math.prod(sample_shape) * 4)
            if os.path.exists(target):
                os.fchmod(fd, os.stat(target).st_mode & 0o777)
        finally:
            os.close(fd)
    except OSError as error:
        remove_quietly(temp)
        raise output_error(path, error) from error
    try:
        yield NpyRegion(str(temp), path, len(header), tuple(sample_shape))
        try:
            fsync_path(temp)
            os.replace(temp, target)
        except OSError as error:
            raise output_error(path, error) from error
    except BaseException:
        remove_quietly(temp)
        raise
    fsync_path(target.parent)


# ----------------------------------------------------------------------------- Zarr


class ZarrRegion:
    """The arrays of a staged Zarr store, written by range from any process that sees the
    folder (picklable); each process opens each array once."""

    def __init__(self, path: str, shown: str, names: list[str]):
        self.path, self.shown, self.names = path, shown, list(names)
        self._arrays: dict[str, object] = {}

    def __getstate__(self) -> dict:
        return {"path": self.path, "shown": self.shown, "names": self.names}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["shown"], state["names"])

    def write(self, name: str, start: int, block: np.ndarray) -> None:
        """Write `block` as rows `start:start + len(block)` of array `name` (`ROOT`: the
        store's one array)."""
        try:
            if name not in self._arrays:
                zarr = require_zarr()
                self._arrays[name] = zarr.open_array(self.path, path=name, mode="r+")
            self._arrays[name][start:start + len(block)] = np.asarray(block, np.float32)
        except OSError as error:
            raise output_error(self.shown, error) from error


@contextmanager
def staged_zarr(path: str, shapes: dict[str, tuple[int, ...]], rows: int,
                layout: StoreLayout) -> Iterator[ZarrRegion]:
    """A Zarr store staged beside `path`, chunked on the batch axis by `layout`: one float32
    array of `rows` rows when `shapes` ({name: sample shape}) names one array as `ROOT`, else a
    group of them by name (`head/dense` nests); it takes the place of `path` when the block
    succeeds."""
    zarr = require_zarr()
    target = Path(os.path.realpath(path))
    temp = staging_name(target)
    try:
        _create_store(zarr, temp, shapes, rows, layout)
    except OSError as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise output_error(path, error) from error
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    try:
        yield ZarrRegion(str(temp), path, list(shapes))
        try:
            _swap_into_place(temp, target)
        except OSError as error:
            raise output_error(path, error) from error
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_path(target.parent)


def _create_store(zarr, folder: Path, shapes: dict[str, tuple[int, ...]], rows: int,
                  layout: StoreLayout) -> None:
    """The empty arrays of the store at `folder`."""
    def create(parent, name: str, sample: tuple[int, ...]) -> None:
        parent.create_array(name=name, shape=(rows, *sample), dtype="float32",
                            chunks=(max(1, min(layout.chunk_rows, rows)), *sample),
                            fill_value=0.0)

    if list(shapes) == [ROOT]:
        zarr.create_array(str(folder), shape=(rows, *shapes[ROOT]), dtype="float32",
                          chunks=(max(1, min(layout.chunk_rows, rows)), *shapes[ROOT]),
                          fill_value=0.0, zarr_format=layout.zarr_format)
        return
    for name in shapes:
        inner = next((other for other in shapes if other.startswith(name + "/")), None)
        if inner is not None:
            raise UsageError(f"a Zarr store cannot hold '{name}' both as an array and as the "
                             f"group of '{inner}'; write them to .npz, or in two runs")
    group = zarr.open_group(str(folder), mode="w-", zarr_format=layout.zarr_format)
    for name, sample in shapes.items():
        create(group, name, sample)


def _swap_into_place(temp: Path, target: Path) -> None:
    """Put the folder `temp` where `target` is; the old `target`, if any, is removed."""
    if not os.path.lexists(target):
        os.rename(temp, target)
        return
    if _exchange(temp, target):
        shutil.rmtree(temp, ignore_errors=True)  # the old store, now at the staging name
        return
    old = staging_name(target, "old")
    os.rename(target, old)
    try:
        os.rename(temp, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux's `renameat2` with RENAME_EXCHANGE); False where the
    C library or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code))


class ZarrWriter:
    """Writes the arrays named in `shapes` to a Zarr store batch by batch, in one process:
    rows gather until a chunk is whole, so each chunk is encoded once."""

    def __init__(self, path: str, shapes: dict[str, tuple[int, ...]], rows: int,
                 layout: StoreLayout):
        self.path, self.shapes, self.rows, self.layout = path, shapes, rows, layout
        self._context = None
        self._region: ZarrRegion | None = None
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in shapes}
        self._written = dict.fromkeys(shapes, 0)

    def __enter__(self) -> ZarrWriter:
        self._context = staged_zarr(self.path, self.shapes, self.rows, self.layout)
        self._region = self._context.__enter__()
        return self

    def write(self, found: dict[str, np.ndarray]) -> None:
        """Append a batch of each array."""
        for name, batch in found.items():
            self._pending[name].append(np.asarray(batch, np.float32))
            self._flush(name, final=False)

    def _flush(self, name: str, final: bool) -> None:
        """Write the whole chunks gathered for `name` (everything, when `final`)."""
        pending = sum(len(batch) for batch in self._pending[name])
        whole = pending if final else pending - pending % self.layout.chunk_rows
        if not whole:
            return
        rows = np.concatenate(self._pending[name])
        self._region.write(name, self._written[name], rows[:whole])
        self._written[name] += whole
        self._pending[name] = [rows[whole:]] if whole < len(rows) else []

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc is None:
            try:
                for name in self.shapes:
                    self._flush(name, final=True)
                if any(done != self.rows for done in self._written.values()):
                    raise RuntimeError(f"wrote {self._written} of the {self.rows} rows "
                                       f"declared for {self.path}")
            except BaseException as error:
                self._context.__exit__(type(error), error, error.__traceback__)
                raise
        return bool(self._context.__exit__(exc_type, exc, traceback))
