"""`.npy` arrays streamed in batches: inputs from a file or stdin, outputs to a file or stdout.

Headers are parsed and checked before any data is read; files and stdin are read one batch
at a time, so an input is never held in memory whole (except a Fortran-order array on stdin,
which is read whole, then converted). Files are read with positioned reads, never memory-mapped:
a file that another process truncates meanwhile is then a short read and a clear error, where a
memory map would kill the process with SIGBUS. Every batch is handed out as float32,
C-contiguous, native byte order.
"""

from __future__ import annotations

import io
import math
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
from seqcli.io.limits import MAX_RANK

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
        raise NotNpyError(bytes(prefix))
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
    if len(shape) > MAX_RANK:
        raise ValueError(f"invalid .npy header: the array has {len(shape)} axes, more than the "
                         f"{MAX_RANK} numpy allows")
    return NpyHeader(tuple(shape), bool(fortran_order), dtype, _PREFIX_SIZE + length_size + length)


class NotNpyError(ValueError):
    """The data does not start as a `.npy` array does; `head` holds the bytes read."""

    def __init__(self, head: bytes):
        super().__init__("not a .npy file (it does not start with the .npy magic string)")
        self.head = head


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


def read_into(fd: int, array: np.ndarray, offset: int) -> int:
    """Fill the C-contiguous `array` with the bytes of file `fd` from `offset` on, by positioned
    reads (never a memory map); returns the bytes read, fewer than `array.nbytes` only at the
    end of the file."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        count = os.preadv(fd, [view[done : done + _READ_CHUNK]], offset + done)
        if not count:
            break
        done += count
    return done


def readinto_exactly(stream: BinaryIO, array: np.ndarray) -> int:
    """Fill the C-contiguous `array` from `stream`, a chunk at a time (a zip member's `readinto`
    would read all of it into a temporary first); returns the bytes read, fewer than
    `array.nbytes` only at the end of the stream."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        count = stream.readinto(view[done : done + _READ_CHUNK])
        if not count:
            break
        done += count
    return done


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class InputArray:
    """An input `.npy` array, read in batches of rows along its first (batch) axis."""

    def __init__(
        self, source: str, header: NpyHeader, *, file=None, stream=None, owns_stream=False
    ):
        self.source = source
        """The path, or `<stdin>`."""
        self.shape = header.shape
        """The full shape, batch axis first."""
        self.dtype = header.dtype
        """The dtype stored in the file (batches are float32)."""
        self._header = header
        self._file = file  # a regular file, read at positions (it can be read again)
        self._stream = stream  # a non-seekable stream, for stdin and pipes
        self._owns_stream = owns_stream
        self._consumed = False
        self._dtype = np.float32

    def close(self) -> None:
        """Close the file or the opened pipe (never stdin itself)."""
        if self._file is not None:
            self._file.close()
        if self._stream is not None and self._owns_stream:
            self._stream.close()

    def __enter__(self) -> InputArray:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read_all(self) -> np.ndarray:
        """All rows at once, in memory, with the file's dtype (files only: a stream has no rows
        to come back to)."""
        if self._file is None:
            raise UsageError(f"{self.source}: this command reads its arrays from files, "
                             "not from a pipe")
        if self._header.fortran_order:
            return self._read_fortran_rows(0, self.rows)
        return self._read_rows(0, self.rows)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` of a file, with the file's dtype, C-contiguous."""
        if self._header.fortran_order:
            return np.ascontiguousarray(self._read_fortran_rows(start, stop))
        return self._read_rows(start, stop)

    @property
    def rows(self) -> int:
        """The number of samples (the size of the batch axis)."""
        return self.shape[0]

    @property
    def data_size(self) -> int:
        """Bytes of array data, as stored."""
        return self._header.data_size

    def batches(self, batch_size: int, as_float32: bool = True) -> Iterator[np.ndarray]:
        """Yield float32 C-contiguous `(b, *shape[1:])` batches, b <= batch_size, rows in order,
        each its own array (the consumer may write to it); other dtypes are converted batch by
        batch (unless `as_float32` is False: integer ids keep the file's dtype).
        """
        self._dtype = np.float32 if as_float32 else self.dtype
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch size must be a positive integer; received: {batch_size!r}")
        if self._file is not None:
            if self._file.closed:
                raise RuntimeError(f"{self.source} is closed")
            if self._header.fortran_order:
                return self._batches_from_blocks(self._fortran_blocks(batch_size), batch_size)
            return self._batches_from_file(batch_size)
        if self._stream is None:
            raise RuntimeError(f"{self.source} is closed")
        if self._consumed:
            raise RuntimeError(f"{self.source} is a stream and can only be read once")
        self._consumed = True
        return self._batches_from_stream(batch_size)

    def _batches_from_file(self, batch_size: int) -> Iterator[np.ndarray]:
        """The batches of a C-order file, each read on its own."""
        for start in range(0, self.rows, batch_size):
            batch = self._read_rows(start, min(start + batch_size, self.rows))
            with np.errstate(over="ignore"):  # beyond float32's range: Inf, counted later
                batch = np.require(batch, self._dtype, "CAE")
            yield batch
            del batch  # before the next is read (see `_read_batches`)

    def _fortran_blocks(self, batch_size: int) -> Iterator[np.ndarray]:
        """A Fortran-order file's rows, a whole number of batches at a time: a row's values lie
        one column apart, so a block of rows takes one read per value of a sample, and blocks
        of some 16 MB keep those reads few."""
        row_size = max(math.prod(self.shape[1:]) * self.dtype.itemsize, 1)
        block_rows = batch_size * max(1, _READ_CHUNK // (row_size * batch_size))
        for start in range(0, self.rows, block_rows):
            yield self._read_fortran_rows(start, min(start + block_rows, self.rows))

    def _batches_from_blocks(self, blocks: Iterator[np.ndarray],
                             batch_size: int) -> Iterator[np.ndarray]:
        """The batches of each block of rows in turn, copied out of it in C order."""
        for block in blocks:
            for start in range(0, len(block), batch_size):
                with np.errstate(over="ignore"):
                    batch = np.require(block[start : start + batch_size], self._dtype, "CAE")
                yield batch
                del batch
            del block

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` of a C-order file, with the file's dtype."""
        sample = self.shape[1:]
        rows = np.empty((stop - start, *sample), self.dtype)
        self._read_at(rows, start * math.prod(sample) * self.dtype.itemsize)
        return rows

    def _read_fortran_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` of a Fortran-order file, with the file's dtype (a view of them)."""
        sample = self.shape[1:]
        count = stop - start
        columns = np.empty((math.prod(sample), count), self.dtype)  # the file's layout
        if count == self.rows:
            self._read_at(columns, 0)
        else:
            for index, column in enumerate(columns):
                self._read_at(column, (index * self.rows + start) * self.dtype.itemsize)
        return columns.reshape((*reversed(sample), count)).T

    def _read_at(self, array: np.ndarray, offset: int) -> None:
        """Fill `array` from `offset` bytes into the array data; a short read means that the
        file was truncated after it was opened."""
        try:
            done = read_into(self._file.fileno(), array, self._header.header_size + offset)
        except OSError as error:
            raise MissingFileError(f"{self.source}: cannot read it: "
                                   f"{error.strerror or error}") from error
        if done < array.nbytes:
            raise InputDataError(
                f"{self.source}: the file was truncated while it was read: a read at byte "
                f"{offset + done} of its {self._header.data_size} bytes of data ({self.shape} "
                f"{self.dtype}) found the end of the file; run the command again once the file is "
                "complete"
            )

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
            yield from self._batches_from_blocks(iter([array]), batch_size)
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


def open_input(path: str) -> InputArray:
    """Open a `.npy` input: a file (read batch by batch at its positions), or `-` for stdin
    (streamed)."""
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
    try:
        if not stat.S_ISREG(info.st_mode):  # a FIFO such as bash's <(...): stream it like stdin
            return InputArray(path, _read_input_header(path, file), stream=file, owns_stream=True)
        header = _read_input_header(path, file, regular=True)
        _check_data_size(path, header, os.fstat(file.fileno()).st_size - header.header_size)
    except BaseException:
        file.close()
        raise
    return InputArray(path, header, file=file)


def _check_data_size(path: str, header: NpyHeader, data_size: int) -> None:
    """An InputDataError unless the file holds exactly the data its header declares."""
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


def _read_input_header(source: str, stream: BinaryIO, regular: bool = False) -> NpyHeader:
    """The checked header of an input array; a file that is not one is named for what it is
    (`regular`: `source` is a regular file, whose ZIP members can be listed)."""
    try:
        header = read_npy_header(stream)
    except NotNpyError as error:
        from seqcli.io.filetype import HEAD_SIZE, not_an_array, zip_members

        head = error.head + read_exactly(stream, HEAD_SIZE - len(error.head))
        named = not_an_array(source, bytes(head), zip_members(source) if regular else None)
        raise InputDataError(named or f"{source}: {error}") from error
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
