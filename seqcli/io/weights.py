"""Weights files (CONTRACT §2): `.safetensors` and `.npz`, read without trusting their headers.

Every declared size is checked against the file before anything is allocated, so a
hostile file (a lying header, a shape bomb, a zip bomb, pickled objects) is refused
with a `WeightsError` instead of exhausting memory or running code. `open_weights` reads the
headers alone: keys, shapes and dtypes are checked against a model before any data is read,
and only the tensors the model wants are read, with ordinary reads (never a memory map, which
a file truncated meanwhile turns into SIGBUS). Tensors come back as float32, C-contiguous,
native byte order.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy

from seqcli.errors import MissingFileError, UsageError, WeightsError
from seqcli.io.arrays import (
    dtype_problem,
    read_into,
    read_npy_header,
    readinto_exactly,
    save_npz,
)
from seqcli.io.atomic import STDOUT, atomic_output
from seqcli.io.limits import MAX_COMPRESSION_RATIO, MAX_RANK, likely_zip_bomb
from seqcli.io.paths import check_regular_file

SUFFIXES = (".safetensors", ".npz")
MAX_SAFETENSORS_HEADER = 100_000_000  # bytes, the safetensors library's own limit
MAX_TOTAL_SIZE = 4 * 1024**3  # bytes of tensors declared by one .npz
_FLOAT_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}  # safetensors dtype -> numpy's
_EXPECTED_FLOAT = "expected a float16, float32 or float64 tensor"


@dataclass(frozen=True)
class TensorHeader:
    """One tensor as its file's header declares it: what a model's weights are checked against
    before any data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype
    """As stored: float16, float32 or float64, either byte order (read as float32)."""
    offset: int
    """Where its data starts: in the file (safetensors), or in its `.npy` member (npz)."""
    fortran_order: bool = False

    @property
    def size(self) -> int:
        """Bytes of data, as stored."""
        return math.prod(self.shape) * self.dtype.itemsize


class WeightsFile:
    """A `.safetensors` or `.npz` file whose headers are read and checked: `tensors` gives
    every key's shape and dtype; `read` reads the data of the keys asked for, and no other."""

    def __init__(self, path: Path, size: int, tensors: dict[str, TensorHeader],
                 members: dict[str, zipfile.ZipInfo] | None = None):
        self.path = path
        self.tensors = tensors
        """Every tensor's header, by key, in the file's order."""
        self._size = size
        self._members = members  # an npz's member of each key; None for safetensors

    def read(self, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The tensors `keys` (default: all), as float32 C-contiguous arrays."""
        return dict(self.read_each(self.tensors if keys is None else keys))

    def read_each(self, keys: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
        """(key, float32 array) for each of `keys`, read one after the other."""
        if self._members is None:
            yield from self._read_safetensors(keys)
        else:
            yield from self._read_npz(keys)

    def _read_safetensors(self, keys: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
        with _open_unchanged(self.path, self._size) as file:
            for key in keys:
                header = self.tensors[key]
                array = np.empty(header.shape, header.dtype)
                try:
                    done = read_into(file.fileno(), array, header.offset)
                except OSError as error:
                    raise _unreadable(self.path, error) from error
                if done < header.size:
                    raise _truncated_while_read(self.path)
                yield key, _as_float32(self.path, key, array)

    def _read_npz(self, keys: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
        with _open_unchanged(self.path, self._size) as file:
            try:
                with zipfile.ZipFile(file) as archive:
                    for key in keys:
                        yield key, _as_float32(self.path, key, self._read_member(archive, key))
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                    NotImplementedError, RuntimeError) as error:
                if os.fstat(file.fileno()).st_size < self._size:
                    raise _truncated_while_read(self.path) from error
                raise _invalid_npz(self.path, " ".join(str(error).split())) from error

    def _read_member(self, archive: zipfile.ZipFile, key: str) -> np.ndarray:
        """The data of `key`'s member, with its stored dtype and layout (a read that ends
        early raises EOFError, as zipfile does)."""
        header = self.tensors[key]
        shape = header.shape[::-1] if header.fortran_order else header.shape
        array = np.empty(shape, header.dtype)
        with archive.open(self._members[key]) as stream:
            stream.read(header.offset)  # the `.npy` header, checked when the file was opened
            done = readinto_exactly(stream, array)
            stream.read(1)  # at the end of the member: its CRC is checked
        if done < header.size:
            raise EOFError(f"{key}: the data ends early")
        return array.T if header.fortran_order else array


def open_weights(path: Path) -> WeightsFile:
    """A `.safetensors` or `.npz` file with its headers read and checked, no data read yet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise WeightsError(
            f"{path}: unsupported weights file type {path.suffix or '(no suffix)'!r}; "
            "use a .safetensors or .npz file"
        )
    size = _readable_size(path)
    if suffix == ".safetensors":
        return WeightsFile(path, size, _check_safetensors_header(path, size))
    return _open_npz(path, size)


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a `.safetensors` or `.npz` file, as float32 C-contiguous arrays."""
    return open_weights(path).read()


def _open_unchanged(path: Path, size: int):
    """`path` opened again to read its data; a WeightsError if its size changed since its
    headers were read."""
    try:
        file = open(path, "rb", buffering=0)  # every read goes to the file as it is now
    except OSError as error:
        raise _unreadable(path, error) from error
    if os.fstat(file.fileno()).st_size != size:
        file.close()
        raise WeightsError(f"{path}: the file changed while it was read; run the command again "
                           "once the file is complete")
    return file


def _truncated_while_read(path: Path) -> WeightsError:
    return WeightsError(f"{path}: the file was truncated while it was read; run the command "
                        "again once the file is complete")


def _unreadable(path: Path, error: OSError) -> MissingFileError:
    return MissingFileError(f"{path}: cannot read it: {error.strerror or error}")


def _readable_size(path: Path) -> int:
    """The size of the regular file `path`, or `MissingFileError` if it cannot be read."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise MissingFileError(f"{path}: is a directory; pass a weights file")
        check_regular_file(path, info, "weights file")
        with open(path, "rb"):
            pass
    except FileNotFoundError as error:
        raise MissingFileError(f"{path}: no such weights file; check the path") from error
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror
        raise MissingFileError(f"{path}: cannot read it: {reason or error}") from error
    return info.st_size


# --- safetensors -------------------------------------------------------------------------


def _invalid_safetensors(path: Path, reason: str) -> WeightsError:
    return WeightsError(f"{path}: not a valid safetensors file: {reason}")


def _check_safetensors_header(path: Path, size: int) -> dict[str, TensorHeader]:
    """Check the header against the file size; return the tensors in header order.

    Layout: 8-byte little-endian header length N, N bytes of JSON, then the data; each
    tensor's `data_offsets` [begin, end) are relative to the data, and the tensors cover the
    data exactly, one after the other (as the safetensors library requires).
    """
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise _invalid_safetensors(path, f"the file has {size} bytes, fewer than 8")
        length = int.from_bytes(prefix, "little")
        if length > MAX_SAFETENSORS_HEADER:
            raise _invalid_safetensors(
                path, f"header length {length} is over the {MAX_SAFETENSORS_HEADER} limit"
            )
        if length > size - 8:
            raise _invalid_safetensors(
                path, f"header length {length} is beyond the end of the {size}-byte file"
            )
        text = file.read(length)
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise _invalid_safetensors(path, f"the header is not JSON ({error})") from error
    if not isinstance(header, dict):
        raise _invalid_safetensors(path, "the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(value, str) for value in metadata.values())):
        raise _invalid_safetensors(path, "__metadata__ must map strings to strings")
    data_size = size - 8 - length
    spans = {key: _check_safetensors_entry(path, key, entry, data_size)
             for key, entry in header.items()}
    _check_safetensors_layout(path, spans, data_size)
    return {key: TensorHeader(tuple(header[key]["shape"]),
                              np.dtype(_FLOAT_DTYPES[header[key]["dtype"]]), 8 + length + begin)
            for key, (begin, _) in spans.items()}


def _check_safetensors_layout(path: Path, spans: dict[str, tuple[int, int]],
                              data_size: int) -> None:
    """The tensors' `(begin, end)` spans follow one another from the start of the data to its
    end, with no overlap or gap."""
    ordered = sorted((begin, end, key) for key, (begin, end) in spans.items())
    for (_, previous_end, previous), (begin, _, key) in itertools.pairwise(ordered):
        if begin < previous_end:
            raise _invalid_safetensors(path, f"the data of {key} overlaps that of {previous}")
    position = 0
    for begin, end, key in ordered:
        if begin != position:
            raise _invalid_safetensors(path, f"invalid offset for tensor {key}: its data starts "
                                             f"at byte {begin}, not at {position}")
        position = end
    if position != data_size:
        raise _invalid_safetensors(path, f"the tensors' data ends at byte {position} of the "
                                         f"{data_size} bytes of data: not fully covered")


def _check_safetensors_entry(path: Path, key: str, entry, data_size: int) -> tuple[int, int]:
    """The checked `(begin, end)` data offsets of one header entry."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise _invalid_safetensors(path, f"the entry of {key} lacks dtype, shape or data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(_is_size(size) for size in shape):
        raise _invalid_safetensors(path, f"{key} has an invalid shape {shape!r}")
    if len(shape) > MAX_RANK:
        raise _invalid_safetensors(path, f"{key} has {len(shape)} axes, more than the "
                                         f"{MAX_RANK} numpy allows")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_size, offsets))):
        raise _invalid_safetensors(path, f"{key} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not begin <= end <= data_size:
        raise _invalid_safetensors(
            path, f"{key} has data_offsets {offsets} outside the {data_size} bytes of data"
        )
    if not isinstance(dtype, str):
        raise _invalid_safetensors(path, f"{key} has an invalid dtype {dtype!r}")
    if dtype not in _FLOAT_DTYPES:
        raise WeightsError(f"{path}: {key} has dtype {dtype}, {_EXPECTED_FLOAT}")
    declared = math.prod(shape) * np.dtype(_FLOAT_DTYPES[dtype]).itemsize
    if declared != end - begin:
        raise _invalid_safetensors(
            path,
            f"{key} declares shape {tuple(shape)} {dtype} ({declared} bytes) "
            f"but its data_offsets span {end - begin} bytes",
        )
    return begin, end


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key {duplicates[0]!r}")
    return dict(pairs)


# --- npz ---------------------------------------------------------------------------------


def _open_npz(path: Path, size: int) -> WeightsFile:
    try:
        with zipfile.ZipFile(path) as archive:
            tensors, members = _check_npz_members(path, archive)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise _invalid_npz(path, " ".join(str(error).split())) from error
    except (NotImplementedError, RuntimeError) as error:  # unknown compression, encryption
        raise _invalid_npz(path, " ".join(str(error).split())) from error
    return WeightsFile(path, size, tensors, members)


def _invalid_npz(path: Path, reason: str) -> WeightsError:
    return WeightsError(f"{path}: not a valid .npz file: {reason}")


def _check_npz_members(path: Path, archive: zipfile.ZipFile
                       ) -> tuple[dict[str, TensorHeader], dict[str, zipfile.ZipInfo]]:
    """Check every member's declared sizes and `.npy` header, reading nothing past the
    headers; returns each key's tensor header and member."""
    tensors: dict[str, TensorHeader] = {}
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for member in archive.infolist():
        name = member.filename
        if not name.endswith(".npy") or name.endswith("/"):
            raise _invalid_npz(path, f"member {name!r} is not a .npy array")
        key = name[: -len(".npy")]
        if key in members:
            raise _invalid_npz(path, f"member {name!r} appears twice")
        if member.flag_bits & 0x1:
            raise _invalid_npz(path, f"member {name!r} is encrypted")
        total += member.file_size
        if total > MAX_TOTAL_SIZE:
            raise WeightsError(
                f"{path}: the arrays declare more than {MAX_TOTAL_SIZE} bytes in total; "
                "refused as a likely zip bomb"
            )
        if likely_zip_bomb(member.file_size, member.compress_size):
            ratio = member.file_size / max(member.compress_size, 1)
            raise WeightsError(
                f"{path}: {key} is compressed {ratio:.0f}:1, more than "
                f"{MAX_COMPRESSION_RATIO}:1; refused as a likely zip bomb "
                "(save it uncompressed with np.savez, or as .safetensors)"
            )
        with archive.open(member) as stream:
            try:
                header = read_npy_header(stream)
            except ValueError as error:
                raise WeightsError(f"{path}: {key}: {error}") from error
        problem = dtype_problem(header.dtype, kinds="f")
        if problem or header.dtype.itemsize not in (2, 4, 8):
            raise WeightsError(f"{path}: {key} is {problem or header.dtype}; {_EXPECTED_FLOAT}")
        stored = member.file_size - header.header_size
        if header.data_size != stored:
            raise _invalid_npz(
                path,
                f"{key} declares shape {header.shape} {header.dtype} ({header.data_size} "
                f"bytes) but holds {stored} bytes of data",
            )
        tensors[key] = TensorHeader(header.shape, header.dtype, header.header_size,
                                    header.fortran_order)
        members[key] = member
    return tensors, members


# --- both --------------------------------------------------------------------------------


def _as_float32(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    """`array` as float32 C-contiguous native-endian; refused if not floating or out of range."""
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4, 8):
        raise WeightsError(f"{path}: {key} has dtype {array.dtype}, {_EXPECTED_FLOAT}")
    with np.errstate(over="ignore"):  # writable and owning its memory, unlike a file's buffer
        result = np.require(array, np.float32, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
    if array.dtype.itemsize > 4 and np.any(np.isinf(result) & np.isfinite(array)):
        raise WeightsError(f"{path}: {key} has values beyond the float32 range (about 3.4e38)")
    return result


def check_weights(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, np.ndarray], source: str
) -> None:
    """Raise one `WeightsError` listing every missing, extra, mistyped or misshapen tensor.

    One problem per line, each starting with `source:`, so the first line stands alone.
    """
    extra = [key for key in found if key not in expected]
    problems = []
    for key, shape in expected.items():
        shape = tuple(shape)
        if key not in found:
            problems.append(f"missing tensor {key} of shape {shape}"
                            + _same_shape_hint(key, shape, found, extra))
            continue
        array = found[key]
        if tuple(array.shape) != shape:
            problems.append(f"{key} has shape {tuple(array.shape)}, expected {shape}")
        elif array.dtype.kind != "f":
            problems.append(f"{key} has dtype {array.dtype}, expected float32")
    for key in extra:
        problems.append(f"unexpected tensor {key} of shape {tuple(found[key].shape)}")
    if problems:
        raise WeightsError("\n".join(f"{source}: {problem}" for problem in problems))


def _same_shape_hint(key: str, shape: tuple, found: Mapping[str, np.ndarray],
                     extra: list[str]) -> str:
    """`; did you mean 'K' (same shape S)?` naming the extra tensor of the missing `key`'s
    shape whose name is closest to it; "" when no extra tensor has that shape."""
    same = [name for name in extra if tuple(found[name].shape) == shape]
    if not same:
        return ""
    guess = max(same, key=lambda name: difflib.SequenceMatcher(None, key, name).ratio())
    return f"; did you mean {guess!r} (same shape {shape})?"


def weights_format(path: str | Path, *, stdout: bool = True) -> str:
    """`npz` or `safetensors`: the format a weights file named `path` is written in, by its
    suffix (`-`, stdout, is `safetensors` when `stdout` allows it); a UsageError otherwise."""
    name = str(path)
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".safetensors") or (stdout and name == STDOUT):
        return "safetensors"
    raise UsageError(f"{name}: weights files end in .safetensors or .npz")


def write_weights(path: str | Path, weights: Mapping[str, np.ndarray]) -> None:
    """Write `weights` atomically as `.safetensors` (also for `-`, stdout) or `.npz`, as the
    name of `path` says (`weights_format`)."""
    if weights_format(path) == "npz":
        save_npz(path, weights)
    else:
        write_safetensors(path, weights)


def write_safetensors(
    path: str | Path, weights: Mapping[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write `weights` as float32 `.safetensors`, atomically, keys in the given order.

    The bytes come from `safetensors.numpy.save`, which sorts the header; the header is
    then rewritten with the same entries (and data) in the order of `weights`.
    """
    if metadata is not None and not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise TypeError("safetensors metadata must map str to str")
    # np.asarray keeps a 0-d tensor 0-d (np.ascontiguousarray would make it 1-d)
    tensors = {key: np.asarray(value, dtype=np.float32, order="C")
               for key, value in weights.items()}
    blob = safetensors.numpy.save(tensors, metadata=metadata)
    with atomic_output(path, binary=True) as file:
        file.write(_reorder_header(blob, list(tensors)))


def _reorder_header(blob: bytes, keys: list[str]) -> bytes:
    """`blob` with its JSON header listing `__metadata__`, then `keys`, in that order."""
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    ordered = {"__metadata__": header["__metadata__"]} if "__metadata__" in header else {}
    ordered.update((key, header[key]) for key in keys)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as the library does
    return len(text).to_bytes(8, "little") + text + blob[8 + length :]
