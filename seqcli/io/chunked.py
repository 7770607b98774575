"""Inputs beyond one `.npy` file: a Zarr array (format 2 or 3; a `.zarr` folder, or any URL
that Zarr opens through fsspec), or a glob of `.npy` shards, concatenated on the batch axis in
sorted order. Each reads as `arrays.InputArray` does (`shape`, `dtype`, `source`, `batches`);
`row_reader` gives any input's small picklable reader of row ranges, which Dask workers call.

`zarr` is imported only for a Zarr input or output (the `seqcli[dask]` extra).
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from seqcli.errors import InputDataError, MissingFileError, SeqcliError, UsageError
from seqcli.io.arrays import STDIN, STDIN_NAME, InputArray, dtype_problem, open_input

_INPUT_KINDS = "fiub"
_GLOB_CHARACTERS = "*?["
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
"""Files at the top of a Zarr store: format 3's, then format 2's array and group."""
MISSING_ZARR = "Zarr arrays need the 'zarr' package, which is not installed: " \
    "pip install 'seqcli[dask]'"
CHUNK_BYTES = 16 << 20
"""Input bytes a chunk of a `.npy` input holds at most (a whole batch at least)."""


def is_url(path: str) -> bool:
    """True for `scheme://...`, which Zarr opens through fsspec."""
    scheme, found, _ = path.partition("://")
    return bool(found) and scheme.replace("+", "").isalnum()


def is_zarr(path: str) -> bool:
    """True when `path` names a Zarr store: a URL, a name ending in `.zarr`, or a folder that
    holds one."""
    if is_url(path) or path.rstrip("/").lower().endswith(".zarr"):
        return True
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, marker))
                                       for marker in ZARR_MARKERS)


def is_glob(path: str) -> bool:
    """True when `path` is a glob pattern (`part-*.npy`) rather than an existing file."""
    return any(character in path for character in _GLOB_CHARACTERS) and not os.path.lexists(path)


def open_rows(path: str):
    """The input `path` names: a Zarr array, a glob of `.npy` shards, else a `.npy` file or
    `-` for stdin (`arrays.open_input`)."""
    if path != STDIN and is_zarr(path):
        return ZarrInput(path)
    if path != STDIN and is_glob(path):
        return ShardInput(path)
    return open_input(path)


def require_zarr():
    """The `zarr` module, or a SeqcliError (exit 1) that says how to install it."""
    try:
        import zarr
    except ImportError as error:
        raise SeqcliError(MISSING_ZARR) from error
    return zarr


def chunk_rows(rows: int, row_bytes: int, batch_size: int, workers: int = 1) -> int:
    """Rows per chunk of an input that has no chunks of its own (a `.npy` file): whole batches,
    at most `CHUNK_BYTES` of input and at most a quarter of each worker's share of `rows`,
    one batch at least."""
    by_bytes = CHUNK_BYTES // max(row_bytes, 1)
    by_share = math.ceil(rows / (4 * max(workers, 1)))
    batches = max(1, min(by_bytes, by_share) // batch_size)
    return batches * batch_size


@dataclass(frozen=True)
class StoreLayout:
    """How an output Zarr store is laid out: rows per chunk, and the Zarr format."""

    chunk_rows: int
    zarr_format: int = 3


def output_layout(data, batch_size: int, workers: int = 1) -> StoreLayout:
    """The layout of a Zarr output for the input `data`: its chunks and format when it is a
    Zarr array, its shards' rows when they agree, else whole batches (`chunk_rows`)."""
    if isinstance(data, ZarrInput):
        return StoreLayout(data.chunks[0], data.zarr_format)
    sizes = data.shard_rows if isinstance(data, ShardInput) else []
    if sizes and sizes[0] > 0 and set(sizes[:-1]) <= {sizes[0]} and sizes[-1] <= sizes[0]:
        return StoreLayout(sizes[0])  # shards of one size (the last may be short)
    row_bytes = math.prod(data.shape[1:]) * data.dtype.itemsize
    return StoreLayout(chunk_rows(data.shape[0], row_bytes, batch_size, workers))


# ----------------------------------------------------------------------------- Zarr arrays


class ZarrRows:
    """Rows of a Zarr array by range, picklable: each process opens the array once."""

    def __init__(self, source: str):
        self.source = source
        self._array = None

    def __getstate__(self) -> dict:
        return {"source": self.source}

    def __setstate__(self, state: dict) -> None:
        self.source, self._array = state["source"], None

    @property
    def array(self):
        """The opened `zarr.Array`."""
        if self._array is None:
            self._array = open_zarr_array(self.source)
        return self._array

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop`, with the array's dtype; a chunk that cannot be read is an
        InputDataError naming the rows."""
        try:
            return np.ascontiguousarray(self.array[start:stop])
        except (SeqcliError, MemoryError):
            raise
        except Exception as error:  # zarr raises codec, JSON and file errors of every kind
            raise InputDataError(f"{self.source}: cannot read rows {start}:{stop}: "
                                 f"{_one_line(error)}; check the store's chunks") from error


def open_zarr_array(source: str):
    """The Zarr array at `source` (a folder or URL), read-only; its problems as seqcli errors:
    none there (66), a group, a bad dtype, a 0-d array, unreadable metadata (65)."""
    zarr = require_zarr()
    missing = (FileNotFoundError, getattr(zarr.errors, "NodeNotFoundError", FileNotFoundError))
    try:
        array = zarr.open_array(source, mode="r")
    except missing as error:
        raise MissingFileError(f"{source}: no Zarr array there; check the INPUT path or "
                               "URL") from error
    except OSError as error:  # permissions, a server that does not answer
        raise MissingFileError(f"{source}: cannot read it: {_one_line(error)}") from error
    except Exception as error:  # a group, metadata that is not JSON, an unknown codec
        members = _members(zarr, source)
        if members is not None:
            raise InputDataError(f"{source}: is a Zarr group, not an array; name one of its "
                                 f"arrays: {source.rstrip('/')}/NAME{members}") from None
        raise InputDataError(f"{source}: cannot open it as a Zarr array: "
                             f"{_one_line(error)}") from error
    dtype = np.dtype(array.dtype) if isinstance(array.dtype, np.dtype) else None
    problem = dtype_problem(dtype, kinds=_INPUT_KINDS) if dtype is not None else \
        f"of dtype {array.dtype}, which is not supported"
    if problem:
        raise InputDataError(f"{source}: the input is {problem}; inputs must be real numbers "
                             "(float, int or bool)")
    if not array.shape:
        raise InputDataError(f"{source}: the input is a 0-d array (a scalar); inputs need a "
                             "batch axis, shape (N, ...)")
    return array


def _members(zarr, source: str) -> str | None:
    """` (it holds: a, b)`, the arrays of the Zarr group at `source`; None if it is none."""
    try:
        names = sorted(name for name, _ in zarr.open_group(source, mode="r").arrays())
    except Exception:  # not a group either
        return None
    return f" (it holds: {', '.join(names[:10])})" if names else " (it holds no array)"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class ZarrInput:
    """A Zarr array as the input of predict or extract, read a chunk of rows at a time."""

    def __init__(self, source: str):
        self.source = source
        """The path or URL."""
        self.rows = ZarrRows(source)
        """The array's reader of row ranges (what workers call)."""
        array = self.rows.array
        self.shape = tuple(int(size) for size in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(size) for size in array.chunks)
        self.zarr_format = int(array.metadata.zarr_format)

    def __enter__(self) -> ZarrInput:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def batches(self, batch_size: int, as_float32: bool = True) -> Iterator[np.ndarray]:
        """Batches of at most `batch_size` rows, in order, cut from whole chunks of the array
        (each chunk is decoded once): float32 unless `as_float32` is False."""
        step = self.chunks[0] * max(1, batch_size // self.chunks[0])
        for start in range(0, self.shape[0], step):
            block = self.rows.read(start, min(start + step, self.shape[0]))
            yield from _cut(block, batch_size, as_float32)


def _cut(block: np.ndarray, batch_size: int, as_float32: bool) -> Iterator[np.ndarray]:
    """`block` as batches of at most `batch_size` rows, each its own C-contiguous array."""
    for start in range(0, len(block), batch_size):
        with np.errstate(over="ignore"):  # beyond float32's range: Inf, counted later
            yield np.array(block[start:start + batch_size],
                           dtype=np.float32 if as_float32 else block.dtype, order="C")


# ----------------------------------------------------------------------------- .npy shards


class NpyRows:
    """Rows of a `.npy` file by range, picklable: each call opens the file and checks that it
    still holds the array it held when the run began."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop`, with the file's dtype."""
        with open_input(self.path) as data:
            self.check(data)
            return data.read_rows(start, stop)

    def check(self, data: InputArray) -> None:
        """An InputDataError unless the opened file `data` holds what it held at first."""
        if data.shape != self.shape or data.dtype != self.dtype:
            raise InputDataError(
                f"{self.path}: the file changed during the run: it held {self.shape} "
                f"{self.dtype}, now {data.shape} {data.dtype}; run the command again")


class ShardRows:
    """Rows of `.npy` shards concatenated on the batch axis, by range, picklable."""

    def __init__(self, shards: list[NpyRows]):
        self.shards = shards
        self.starts = np.cumsum([0] + [shard.shape[0] for shard in shards]).tolist()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` of the concatenation, read from the shards that hold them."""
        pieces = []
        index = max(int(np.searchsorted(self.starts, start, side="right")) - 1, 0)
        while index < len(self.shards) and self.starts[index] < stop:
            shard, offset = self.shards[index], self.starts[index]
            pieces.append(shard.read(max(start - offset, 0), min(stop - offset, shard.shape[0])))
            index += 1
        if len(pieces) == 1:
            return pieces[0]
        sample = self.shards[0].shape[1:]
        dtype = np.result_type(*(shard.dtype for shard in self.shards))
        return np.concatenate(pieces) if pieces else np.empty((0, *sample), dtype)


def row_reader(data):
    """The picklable reader of row ranges (`read(start, stop)`) of the input `data`, for
    workers: they read the files themselves, by absolute path (a folder they share), or the
    Zarr URL. A pipe has no rows to read there."""
    if isinstance(data, ZarrInput):
        return data.rows
    if isinstance(data, ShardInput):
        return ShardRows(data.shards)
    if hasattr(data, "paths"):  # images (`images.ImageInput`): read by absolute path
        return data.rows
    if data.source == STDIN_NAME or not os.path.isfile(data.source):
        raise UsageError(f"{data.source}: a run on a Dask cluster reads its input on the "
                         "workers: name a file (.npy, .zarr or a glob of .npy shards), not "
                         "a pipe")
    return NpyRows(os.path.abspath(data.source), data.shape, data.dtype)


class ShardInput:
    """`.npy` files matching a glob pattern, concatenated on the batch axis in sorted order;
    each is checked up front as a `.npy` input is, and opened only while it is read."""

    def __init__(self, pattern: str):
        self.source = pattern
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise MissingFileError(f"{pattern}: no file matches this pattern; check the INPUT "
                                   "path (shards are read in sorted order)")
        self.shards: list[NpyRows] = []
        for path in paths:
            with open_input(path) as data:
                self._check_agrees(path, data)
                self.shards.append(NpyRows(os.path.abspath(path), data.shape, data.dtype))
        first = self.shards[0]
        self.shape = (sum(shard.shape[0] for shard in self.shards), *first.shape[1:])
        self.dtype = np.result_type(*(shard.dtype for shard in self.shards))

    def _check_agrees(self, path: str, data: InputArray) -> None:
        """An InputDataError unless shard `path` has the first shard's sample shape."""
        if self.shards and data.shape[1:] != self.shards[0].shape[1:]:
            first = self.shards[0]
            raise InputDataError(
                f"{path}: its samples have shape {data.shape[1:]}, but those of {first.path} "
                f"have {first.shape[1:]}; shards are concatenated on the batch axis and must "
                "agree on the others")

    @property
    def shard_rows(self) -> list[int]:
        """Rows of each shard, in order."""
        return [shard.shape[0] for shard in self.shards]

    def __enter__(self) -> ShardInput:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def batches(self, batch_size: int, as_float32: bool = True) -> Iterator[np.ndarray]:
        """Each shard's batches in turn (a shard's last batch may be short)."""
        for shard in self.shards:
            with open_input(shard.path) as data:
                shard.check(data)
                yield from data.batches(batch_size, as_float32)
