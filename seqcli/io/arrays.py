"""`.npy` arrays streamed in batches: inputs from a file or stdin, outputs to a file or stdout.

Headers are parsed and checked before any data is read; files are memory-mapped and
stdin is read one batch at a time, so an input is never held in memory whole (except a
Fortran-order array on stdin, which is read whole, then converted). Every batch is
handed out as float32, C-contiguous, native byte order.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import re
import stat
import sys
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from seqcli.errors import InputDataError, MissingFileError, OutputError, UsageError
from seqcli.io import atomic
from seqcli.io.atomic import STDOUT, atomic_output

STDIN = "-"
STDIN_NAME = "<stdin>"
STDOUT_NAME = "<stdout>"
TERMINAL_REFUSAL = "refusing to read .npy data from a terminal; pipe a file or pass INPUT"
MAX_HEADER_SIZE = 10_000  # numpy's own limit for untrusted headers
_INPUT_KINDS = "fiub"  # floating, signed and unsigned integers, bools
_PREFIX_SIZE = len(npy_format.MAGIC_PREFIX) + 2  # magic string, then major and minor version
_READ_CHUNK = 16 * 1024**2


@dataclass(frozen=True)
class NpyHeader:
    """The parsed header of a `.npy` file; the data follows `header_size` bytes in."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    header_size: int

    @property
    def data_size(self) -> int:
        """Bytes of array data the header declares: prod(shape) * itemsize."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(stream: BinaryIO) -> NpyHeader:
    """Read and check a `.npy` header from `stream`, reading nothing past it.

    Raises `ValueError` with the reason (for the caller to wrap with its file name).
    Versions 1.0 and 2.0 are read (3.0 only exists for structured dtypes, refused anyway).
    """
    prefix = read_exactly(stream, _PREFIX_SIZE)
    if not prefix:
        raise ValueError("no data at all (empty input), not a .npy array")
    if len(prefix) < _PREFIX_SIZE or not prefix.startswith(npy_format.MAGIC_PREFIX):
        raise ValueError("not a .npy file (it does not start with the .npy magic string)")
    version = (prefix[-2], prefix[-1])
    if version == (1, 0):
        length_size, read_header = 2, npy_format.read_array_header_1_0
    elif version == (2, 0):
        length_size, read_header = 4, npy_format.read_array_header_2_0
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    length_bytes = read_exactly(stream, length_size)
    length = int.from_bytes(length_bytes, "little") if len(length_bytes) == length_size else -1
    if length < 0:
        raise ValueError("truncated .npy header")
    if length > MAX_HEADER_SIZE:
        raise ValueError(f".npy header of {length} bytes is larger than {MAX_HEADER_SIZE}")
    text = read_exactly(stream, length)
    if len(text) < length:
        raise ValueError("truncated .npy header")
    try:
        with header_warnings_quietly():
            shape, fortran_order, dtype = read_header(io.BytesIO(length_bytes + text))
    except Exception as error:  # numpy raises ValueError, SyntaxError, tokenize errors, ...
        raise ValueError(f"invalid .npy header: {_one_line(error)}") from error
    if any(type(size) is not int for size in shape):  # numpy lets `(True, 4)` through
        raise ValueError(f"invalid .npy header: the shape {shape} is not made of integers")
    if any(size < 0 for size in shape):
        raise ValueError(f"invalid .npy header: negative size in shape {shape}")
    return NpyHeader(tuple(shape), bool(fortran_order), dtype, _PREFIX_SIZE + length_size + length)


@contextmanager
def header_warnings_quietly() -> Iterator[None]:
    """numpy parses `.npy` headers with Python's parser, which warns on stderr about what a
    header may hold (Python 2's `3L`, escapes such as `'\\e'`); the header is read, or
    refused, all the same, and seqcli's stderr carries only its own messages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def dtype_problem(dtype: np.dtype, *, kinds: str) -> str | None:
    """Why `dtype` is refused (None if its kind is in `kinds`), said for a user."""
    if dtype.hasobject:
        return "an object array (pickled Python objects), refused for safety (allow_pickle=False)"
    if dtype.names is not None or dtype.subdtype is not None:
        return f"a structured array (dtype {dtype}), which is not supported"
    if dtype.kind not in kinds:
        return f"of dtype {dtype}, which is not supported"
    return None


def read_exactly(stream: BinaryIO, size: int) -> bytearray:
    """Up to `size` bytes from `stream`, fewer only at end of file (loops over short reads).

    Memory grows with the data that actually arrives, not with the `size` a header claims.
    """
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(size - len(buffer), _READ_CHUNK))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class InputArray:
    """An input `.npy` array, read in batches of rows along its first (batch) axis."""

    def __init__(
        self, source: str, header: NpyHeader, *, array=None, stream=None, owns_stream=False
    ):
        self.source = source
        """The path, or `<stdin>`."""
        self.shape = header.shape
        """The full shape, batch axis first."""
        self.dtype = header.dtype
        """The dtype stored in the file (batches are float32)."""
        self._header = header
        self._array = array  # a copy-on-write memory map, for files (the file is never written)
        self._stream = stream  # a non-seekable stream, for stdin and pipes
        self._owns_stream = owns_stream
        self._consumed = False
        self._dtype = np.float32

    def close(self) -> None:
        """Release the memory map or the opened pipe (never stdin itself)."""
        self._array = None
        if self._stream is not None and self._owns_stream:
            self._stream.close()

    def __enter__(self) -> InputArray:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def as_array(self) -> np.ndarray:
        """All rows, memory-mapped, with the file's dtype (files only: a stream has no rows
        to come back to)."""
        if self._array is None:
            raise UsageError(f"{self.source}: this command reads its arrays from files, "
                             "not from a pipe")
        view = self._array.view()
        view.flags.writeable = False
        return view

    @property
    def rows(self) -> int:
        """The number of samples (the size of the batch axis)."""
        return self.shape[0]

    def batches(self, batch_size: int, as_float32: bool = True) -> Iterator[np.ndarray]:
        """Yield float32 C-contiguous `(b, *shape[1:])` batches, b <= batch_size, rows in order.
        A float32 C-order file's batches are its memory map itself (no copy; writing to one
        changes neither the file nor later batches); other dtypes are converted batch by batch
        (unless `as_float32` is False: integer ids keep the file's dtype).
        """
        self._dtype = np.float32 if as_float32 else self.dtype
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch size must be a positive integer; received: {batch_size!r}")
        if self._array is not None:
            return self._batches_from_array(self._array, batch_size)
        if self._stream is None:
            raise RuntimeError(f"{self.source} is closed")
        if self._consumed:
            raise RuntimeError(f"{self.source} is a stream and can only be read once")
        self._consumed = True
        return self._batches_from_stream(batch_size)

    def _batches_from_array(self, array: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.rows, batch_size):
            with np.errstate(over="ignore"):  # beyond float32's range: Inf, counted later
                batch = np.require(array[start : start + batch_size], self._dtype, "CAE")
            yield batch
            del batch  # before the next is read (see `_read_batches`)
            _release_pages(array, (start + batch_size) * (array.nbytes // max(self.rows, 1)))

    def _batches_from_stream(self, batch_size: int) -> Iterator[np.ndarray]:
        try:
            yield from self._read_batches(batch_size)
        finally:
            self.close()

    def _read_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        sample_shape = self.shape[1:]
        row_size = math.prod(sample_shape) * self.dtype.itemsize
        if self._header.fortran_order:  # documented limitation: read whole, then convert
            data = self._read(self._header.data_size, offset=0)
            array = np.frombuffer(data, self.dtype).reshape(self.shape, order="F")
            yield from self._batches_from_array(array, batch_size)
        else:
            for start in range(0, self.rows, batch_size):
                count = min(batch_size, self.rows - start)
                data = self._read(count * row_size, offset=start * row_size)
                batch = np.frombuffer(data, self.dtype).reshape((count, *sample_shape))
                with np.errstate(over="ignore"):  # float32 data is used where it was read
                    batch = batch.astype(self._dtype, order="C", copy=False)
                del data
                yield batch
                # Dropped before the next batch is read (the consumer is done with it), so the
                # next one reuses its memory: fresh pages cost a page fault each on first
                # touch, 10-40 ms for a 24 MB batch on the dev machine.
                del batch
        if self._stream.read(1):
            raise InputDataError(
                f"{self.source}: there is data after the {self.rows} rows its header declares; "
                "check that it is a single .npy array"
            )

    def _read(self, size: int, *, offset: int) -> bytearray:
        """`size` bytes of array data, the first at `offset` into it; short means truncated."""
        data = read_exactly(self._stream, size)
        if len(data) < size:
            raise InputDataError(
                f"{self.source}: truncated: the header declares {self.shape} {self.dtype} "
                f"({self._header.data_size} bytes of data) but the data ends after "
                f"{offset + len(data)} bytes"
            )
        return data


class NonFiniteCounter:
    """Counts NaN and ±Inf values in float32 batches as they stream past: each batch is
    looked at once, while it is in memory (no second pass over the data). With `strict`,
    the first batch holding one is refused."""

    def __init__(self, source: str, *, strict: bool = False):
        self.source = source
        """The path or `<stdin>`, for messages."""
        self.strict = strict
        self.nan = 0
        self.inf = 0
        self.bad_rows = 0
        """Rows holding at least one NaN or Inf."""
        self.rows = 0
        """Rows seen so far."""

    def check(self, batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield `batches` unchanged, counting (or, if strict, refusing) NaN and Inf."""
        for batch in batches:
            finite = np.isfinite(batch)
            if not finite.all():
                bad = ~finite.reshape(len(batch), -1).all(axis=1)
                nan = int(np.count_nonzero(np.isnan(batch)))
                inf = batch.size - int(np.count_nonzero(finite)) - nan
                if self.strict:
                    raise InputDataError(
                        f"{self.source}: row {self.rows + int(np.argmax(bad))} holds NaN or Inf "
                        f"values; --strict refuses them"
                    )
                self.nan, self.inf = self.nan + nan, self.inf + inf
                self.bad_rows += int(np.count_nonzero(bad))
            del finite  # a batch-sized temporary, free for the model's activations
            self.rows += len(batch)
            yield batch
            del batch  # before the next is read (see `InputArray._read_batches`)

    def summary(self) -> str | None:
        """`3 NaN and 1 Inf values in 2 rows`, or None when every value was finite."""
        if not self.bad_rows:
            return None
        return f"{self.nan} NaN and {self.inf} Inf values in {self.bad_rows} of {self.rows} rows"


def _release_pages(array: np.ndarray, consumed: int) -> None:
    """Drop the pages of a memory-mapped input whose rows are done with, so that resident
    memory stays bounded by the batch size however large the file (a page looked at again is
    read from the file again; Fortran-order arrays are read all over, so all of their pages
    are dropped)."""
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    start_in_map = array.offset % mmap.ALLOCATIONGRANULARITY
    end = len(mapping) if array.flags.f_contiguous and array.ndim > 1 else min(
        start_in_map + consumed, len(mapping))
    end -= end % mmap.PAGESIZE
    if end > 0:
        mapping.madvise(mmap.MADV_DONTNEED, 0, end)


def open_input(path: str) -> InputArray:
    """Open a `.npy` input: a file (memory-mapped), or `-` for stdin (streamed)."""
    if path == STDIN:
        stream = sys.stdin
        if stream is None:
            raise UsageError("there is no standard input; pass INPUT")
        if stream.isatty():
            raise UsageError(TERMINAL_REFUSAL)
        stream = stream.buffer
        return InputArray(STDIN_NAME, _read_input_header(STDIN_NAME, stream), stream=stream)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise MissingFileError(f"{path}: is a directory; pass a .npy file")
        file = open(path, "rb")
    except FileNotFoundError as error:
        raise MissingFileError(f"{path}: no such file; check the INPUT path") from error
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror
        raise MissingFileError(f"{path}: cannot read it: {reason or error}") from error
    if not stat.S_ISREG(info.st_mode):  # a FIFO such as bash's <(...): stream it like stdin
        try:
            return InputArray(path, _read_input_header(path, file), stream=file, owns_stream=True)
        except BaseException:
            file.close()
            raise
    with file:
        header = _read_input_header(path, file)
    data_size = info.st_size - header.header_size
    if data_size < header.data_size:
        raise InputDataError(
            f"{path}: truncated: the header declares {header.shape} {header.dtype} "
            f"({header.data_size} bytes of data) but the file holds {max(data_size, 0)}"
        )
    if data_size > header.data_size:
        raise InputDataError(
            f"{path}: {data_size - header.data_size} bytes follow the {header.shape} array "
            "its header declares; check that it is a single .npy array"
        )
    try:
        with header_warnings_quietly():
            # copy-on-write: float32 batches are the map itself, writable for numba's kernels
            # (a read-only array is another type to them), and the file is never written
            array = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputDataError(f"{path}: cannot map the array: {_one_line(error)}") from error
    if array.shape != header.shape or array.dtype != header.dtype:  # changed under our feet
        raise InputDataError(f"{path}: the file changed while it was being read")
    return InputArray(path, header, array=array)


def _read_input_header(source: str, stream: BinaryIO) -> NpyHeader:
    try:
        header = read_npy_header(stream)
    except ValueError as error:
        raise InputDataError(f"{source}: {error}") from error
    problem = dtype_problem(header.dtype, kinds=_INPUT_KINDS)
    if problem:
        raise InputDataError(
            f"{source}: the input is {problem}; inputs must be real numbers (float, int or bool)"
        )
    if not header.shape:
        raise InputDataError(
            f"{source}: the input is a 0-d array (a scalar); inputs need a batch axis, "
            "shape (N, ...)"
        )
    return header


class NpyWriter:
    """Writes a float32 `.npy` of shape `(rows, *sample_shape)` batch by batch, atomically.

    Use as a context manager; the header is written up front, and on exit exactly
    `rows` rows must have been written, or the output is discarded.
    """

    def __init__(self, path: str, sample_shape: tuple[int, ...], rows: int):
        self.path = path
        self.sample_shape = tuple(int(size) for size in sample_shape)
        self.rows = int(rows)
        self.rows_written = 0
        self._context = None
        self._file = None

    def __enter__(self) -> NpyWriter:
        self._context = atomic_output(self.path, binary=True)
        self._file = self._context.__enter__()
        try:
            self._file.write(npy_header_bytes((self.rows, *self.sample_shape), np.dtype("<f4")))
        except BaseException as error:
            self._close(error)
            raise
        return self

    def write(self, batch: np.ndarray) -> None:
        """Append the rows of `batch`, shape `(b, *sample_shape)`, as little-endian float32."""
        batch = np.asarray(batch)
        if batch.shape[1:] != self.sample_shape or batch.ndim != len(self.sample_shape) + 1:
            raise ValueError(
                f"batch of shape {batch.shape} does not match rows of shape {self.sample_shape}"
            )
        if self.rows_written + len(batch) > self.rows:
            raise ValueError(f"more than the {self.rows} rows declared for {self.path}")
        data = np.ascontiguousarray(batch, dtype="<f4")
        self._file.write(data.reshape(-1).view(np.uint8).data)  # the raw bytes, no copy
        self.rows_written += len(batch)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc is None and self.rows_written != self.rows:
            error = RuntimeError(
                f"wrote {self.rows_written} of the {self.rows} rows declared for {self.path}"
            )
            self._close(error)
            raise error
        if exc is None:
            return bool(self._context.__exit__(None, None, None))
        return bool(self._context.__exit__(exc_type, exc, traceback))

    def _close(self, error: BaseException) -> None:
        """Let `atomic_output` discard the temp file because of `error`."""
        self._context.__exit__(type(error), error, error.__traceback__)


def npy_header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A C-order `.npy` header for `shape` and `dtype`: version 1.0, or 2.0 if it needs more."""
    header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    try:
        npy_format.write_array_header_1_0(buffer, header)
    except ValueError:
        buffer = io.BytesIO()
        npy_format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


_UNSAFE_KEY = re.compile(r"(^|/)\.{1,2}(/|$)")


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` as an uncompressed `.npz` of float32 arrays, atomically (`-`: stdout).

    Keys may contain `/` (layer paths such as `head/dense`): member `head/dense.npy`,
    which `np.load` lists as `head/dense`. Members are written in the given order with a
    fixed timestamp, so equal arrays give identical files. Keys that are empty, absolute,
    or contain `.`/`..` components or backslashes are refused (they would unzip outside).
    """
    for key in arrays:
        if not key or key.startswith("/") or "\\" in key or "\0" in key or _UNSAFE_KEY.search(key):
            raise ValueError(f"unsafe .npz key {key!r}")
    with atomic_output(path, binary=True) as file:
        with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                member = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.external_attr = 0o644 << 16
                data = np.ascontiguousarray(array, dtype="<f4")
                with archive.open(member, mode="w", force_zip64=True) as stream:
                    npy_format.write_array(stream, data, allow_pickle=False)


class NpzWriter:
    """Writes several float32 arrays of `rows` rows into one `.npz`, batch by batch.

    The output is opened (atomically, `-`: stdout) on entry, so a target that cannot be
    written is refused before any work. Each member streams into its own temporary `.npy`
    (beside a regular target, else in the system's temp folder), so memory stays bounded by
    the batch; on success they are stored, uncompressed, in the archive. Members are named
    by key, e.g. `head/dense`.
    """

    def __init__(self, path: str, members: dict[str, tuple[int, ...]], rows: int):
        for key in members:
            if not key or key.startswith("/") or "\\" in key or _UNSAFE_KEY.search(key):
                raise ValueError(f"unsafe .npz key {key!r}")
        self.path, self.members, self.rows = path, dict(members), rows
        self._folder: str | None = None
        self._writers: dict[str, NpyWriter] = {}
        self._output = None
        self._file = None

    def __enter__(self) -> NpzWriter:
        import tempfile

        self._output = atomic_output(self.path, binary=True)
        self._file = self._output.__enter__()
        try:
            try:
                self._folder = tempfile.mkdtemp(prefix=".seqcli-", dir=self._scratch_parent())
            except OSError as error:
                raise atomic.output_error(self.path, error) from error
            for index, (key, shape) in enumerate(self.members.items()):
                writer = NpyWriter(os.path.join(self._folder, f"{index}.npy"), shape, self.rows)
                with self._staging_errors():
                    self._writers[key] = writer.__enter__()
        except BaseException as error:
            self._abandon(error)
            raise
        return self

    def _scratch_parent(self) -> str | None:
        """Beside a regular target (the same file system); None (the system's temp folder)
        for stdout, a device or a FIFO."""
        if self.path == STDOUT:
            return None
        try:
            regular = stat.S_ISREG(os.stat(self.path).st_mode)
        except OSError:
            regular = True  # a new file
        return str(Path(self.path).parent) if regular else None

    @contextmanager
    def _staging_errors(self) -> Iterator[None]:
        """A member's staging file that cannot be written: the message names the output."""
        try:
            yield
        except OutputError as error:
            if not isinstance(error.__cause__, OSError):
                raise
            shown = STDOUT_NAME if self.path == STDOUT else self.path
            staged = f" (staging its arrays in {Path(self._folder).parent})"
            raise OutputError(f"{atomic.output_error(shown, error.__cause__)}{staged}") from error

    def write(self, key: str, batch: np.ndarray) -> None:
        """Append the rows of `batch` to member `key`."""
        with self._staging_errors():
            self._writers[key].write(batch)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        import shutil

        try:
            with self._staging_errors():
                for writer in self._writers.values():
                    writer.__exit__(exc_type, exc, traceback)
            if exc is None:
                with zipfile.ZipFile(self._file, mode="w", compression=zipfile.ZIP_STORED) as zf:
                    for index, key in enumerate(self.members):
                        member = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                        member.external_attr = 0o644 << 16
                        source = os.path.join(self._folder, f"{index}.npy")
                        with open(source, "rb") as data, zf.open(
                                member, mode="w", force_zip64=True) as stream:
                            shutil.copyfileobj(data, stream, 1 << 20)
        except BaseException as error:
            self._abandon(error)
            raise
        self._cleanup()
        if exc is None:
            self._output.__exit__(None, None, None)
        else:
            self._output.__exit__(exc_type, exc, traceback)
        return False

    def _abandon(self, error: BaseException) -> None:
        """Remove the members and let `atomic_output` discard the output because of `error`."""
        self._cleanup()
        self._output.__exit__(type(error), error, error.__traceback__)

    def _cleanup(self) -> None:
        import shutil

        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
