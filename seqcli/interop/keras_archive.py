"""Reading untrusted Keras files: the `.keras` zip and its (or a standalone) `.h5` weights.

Nothing in a file runs code or decides how much memory is taken. Zip members must be stored
or deflated (other methods inflate without bound in one step); their sizes and compression
ratio are checked from the zip's headers, then again, counted, while they are inflated:
`config.json` and `metadata.json` into memory up to a few MB, `model.weights.h5` to a
temporary file (unlinked at once) up to what the model's weights can take. In the HDF5
file only hard links are followed (soft and external links are refused, whatever they point
at), datasets with external storage, virtual datasets or filters beyond
deflate/shuffle/fletcher32/lzf (others load plugins) are refused, and a dataset's dtype and
shape are checked against what the model needs before it is read.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from seqcli.errors import ConfigError, MissingFileError, SeqcliError, WeightsError
from seqcli.interop.keras_format import CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER
from seqcli.io.limits import (
    KERAS_H5_BASE_BYTES,
    KERAS_H5_OBJECT_BYTES,
    KERAS_WEIGHT_COPIES,
    MAX_COMPRESSION_RATIO,
    MAX_KERAS_CONFIG_BYTES,
    MAX_KERAS_INFLATED_BYTES,
    MAX_KERAS_METADATA_BYTES,
    MAX_KERAS_WEIGHTS_BYTES,
    likely_zip_bomb,
)
from seqcli.io.paths import check_regular_file

INFLATE_CHUNK_BYTES = 1024**2
"""Bytes inflated at a time: the sizes are checked after each chunk."""
ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
"""The compression methods read: Keras stores members; a re-zipped file may deflate them."""
ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError,
                   NotImplementedError)
H5_ERRORS = (KeyError, ValueError, TypeError, OSError, RuntimeError)
"""What h5py raises for what libhdf5 finds wrong in a file (a corrupt B-tree is a
RuntimeError)."""
MAX_GROUP_DEPTH = 64
MAX_GROUPS = 100_000
"""Groups walked when looking for unexpected weights (hard links can make cycles)."""
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK"
# HDF5 filters built into libhdf5 or h5py: deflate, shuffle, fletcher32, lzf
SAFE_FILTERS = frozenset({1, 2, 3, 32000})


def file_signature(path: Path, what: str) -> bytes:
    """The first 8 bytes of the regular file `path` (MissingFileError when unreadable, or
    a folder, a FIFO or a device)."""
    try:
        check_regular_file(path, os.stat(path), what)
        with open(path, "rb") as file:
            check_regular_file(path, os.fstat(file.fileno()), what)
            return file.read(8)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such {what}") from None
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror
        raise MissingFileError(f"{path}: cannot read it: {reason or error}") from None


class KerasArchive:
    """A `.keras` zip opened for reading; members are checked before they are inflated."""

    def __init__(self, path: Path):
        self.path = path
        self.source = str(path)
        signature = file_signature(path, ".keras file")
        if signature.startswith(HDF5_SIGNATURE):
            raise ConfigError(
                f"{path}: is an HDF5 file, not a Keras 3 .keras archive (a legacy Keras .h5 "
                "model or a weights file); re-save the model in Keras 3 with "
                "model.save('model.keras'), or import weights with --weights-only")
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise ConfigError(f"{path}: not a .keras file (not a readable zip archive: "
                              f"{error})") from None
        names = Counter(info.filename for info in self.zip.infolist())
        duplicated = sorted(name for name in (CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER)
                            if names[name] > 1)
        if duplicated:
            self.zip.close()
            raise ConfigError(f"{path}: the archive holds {duplicated[0]} twice; refused")
        self.names = set(names)
        self.size = os.stat(path).st_size
        """Bytes in the archive: no member is stored in more."""
        self.inflated = 0
        """Bytes inflated from all members so far."""

    def close(self) -> None:
        """Close the zip."""
        self.zip.close()

    def _member(self, name: str, limit: int) -> zipfile.ZipInfo:
        """The checked entry of member `name`: present, not encrypted, sizes plausible."""
        if name not in self.names:
            raise ConfigError(f"{self.source}: not a Keras 3 .keras file: it has no {name}")
        info = self.zip.getinfo(name)
        if info.flag_bits & 0x1:
            raise ConfigError(f"{self.source}: {name} is encrypted; refused")
        if info.compress_type not in ZIP_METHODS:
            method = zipfile.compressor_names.get(info.compress_type, info.compress_type)
            raise ConfigError(f"{self.source}: {name} is compressed with {method}; a .keras "
                              "file's members are stored or deflated")
        if likely_zip_bomb(info.file_size, info.compress_size):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ConfigError(
                f"{self.source}: {name} is compressed {ratio:,.0f}:1, more than "
                f"{MAX_COMPRESSION_RATIO}:1; refused as a likely zip bomb")
        if info.file_size > limit:
            raise ConfigError(
                f"{self.source}: {name} declares {info.file_size:,} bytes, over the "
                f"{limit:,}-byte limit for it; refused")
        return info

    def _inflate(self, info: zipfile.ZipInfo, limit: int, write, error: type) -> None:
        """Member `info` inflated chunk by chunk into `write`, its bytes counted as they come
        (the zip's declared sizes are not trusted): an `error` as soon as it passes `limit`
        bytes, `MAX_COMPRESSION_RATIO` times the bytes it can be stored in, or, with the
        members inflated before it, `MAX_KERAS_INFLATED_BYTES`."""
        name, stored = info.filename, min(info.compress_size, self.size)
        inflated = 0
        try:
            stream = self.zip.open(info)
        except ZIP_READ_ERRORS as err:
            raise error(f"{self.source}: cannot read {name}: {err}") from None
        with stream:
            while True:
                try:
                    chunk = stream.read(INFLATE_CHUNK_BYTES)
                except ZIP_READ_ERRORS as err:
                    raise error(f"{self.source}: cannot read {name}: {err}") from None
                if not chunk:
                    return
                inflated += len(chunk)
                self.inflated += len(chunk)
                if inflated > limit:
                    raise error(f"{self.source}: {name} inflates to more than the "
                                f"{limit:,}-byte limit for it; refused")
                if likely_zip_bomb(inflated, stored):
                    raise error(f"{self.source}: {name} inflates more than "
                                f"{MAX_COMPRESSION_RATIO}:1 from its {stored:,} stored bytes; "
                                "refused as a likely zip bomb")
                if self.inflated > MAX_KERAS_INFLATED_BYTES:
                    raise error(f"{self.source}: its members inflate to more than "
                                f"{MAX_KERAS_INFLATED_BYTES:,} bytes together; refused")
                write(chunk)

    def read_json(self, name: str, limit: int) -> dict:
        """Member `name` (at most `limit` bytes) parsed as a JSON object."""
        info = self._member(name, limit)
        data = bytearray()
        self._inflate(info, limit, data.extend, ConfigError)
        try:
            document = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            raise ConfigError(f"{self.source}: {name} is not valid JSON ({error})") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{self.source}: {name} is not a JSON object")
        return document

    def config(self) -> dict:
        """The model's config.json."""
        return self.read_json(CONFIG_MEMBER, MAX_KERAS_CONFIG_BYTES)

    def keras_version(self) -> str | None:
        """The Keras version metadata.json names, if it is there and readable."""
        if METADATA_MEMBER not in self.names:
            return None
        try:
            version = self.read_json(METADATA_MEMBER, MAX_KERAS_METADATA_BYTES).get(
                "keras_version")
        except ConfigError:
            return None
        return version if isinstance(version, str) and len(version) < 40 else None

    @contextmanager
    def weights(self, limit: int = MAX_KERAS_WEIGHTS_BYTES) -> Iterator[SafeH5]:
        """model.weights.h5, inflated to a temporary file (refused past `limit` bytes; see
        `weights_size_limit`) and opened read-only."""
        if WEIGHTS_MEMBER not in self.names and "model.weights.npz" in self.names:
            raise ConfigError(f"{self.source}: its weights are stored as model.weights.npz "
                              "(weights_format='npz'); re-save it in Keras with the default "
                              "h5 weights format")
        info = self._member(WEIGHTS_MEMBER, limit)
        try:
            copy = tempfile.TemporaryFile()
        except OSError as error:
            raise self._no_room(error) from None
        with copy:
            try:
                self._inflate(info, limit, copy.write, WeightsError)
                copy.seek(0)
            except OSError as error:  # reading is checked in `_inflate`: this is the copy
                raise self._no_room(error) from None
            with SafeH5.open(copy, f"{self.source}: {WEIGHTS_MEMBER}") as h5:
                yield h5

    def _no_room(self, error: OSError) -> SeqcliError:
        """The failure (exit 1) of a temporary copy of the weights that cannot be written."""
        return SeqcliError(f"cannot inflate {WEIGHTS_MEMBER} of {self.source} into the "
                           f"temporary folder {tempfile.gettempdir()}: "
                           f"{error.strerror or error}; set TMPDIR to a folder with room")


def weights_size_limit(layers: int, tensors: int, values: int) -> int:
    """The most bytes a model.weights.h5 may inflate to for a model of `layers` layers whose
    `tensors` weights hold `values` values: each weight as float64 in `KERAS_WEIGHT_COPIES`
    copies (the weight and an optimizer's slots), plus HDF5's bookkeeping; never more than
    `MAX_KERAS_WEIGHTS_BYTES`."""
    objects = layers + KERAS_WEIGHT_COPIES * tensors
    data = KERAS_WEIGHT_COPIES * 8 * values
    return min(MAX_KERAS_WEIGHTS_BYTES,
               KERAS_H5_BASE_BYTES + KERAS_H5_OBJECT_BYTES * objects + data)


@contextmanager
def open_keras_archive(path: Path) -> Iterator[KerasArchive]:
    """A checked `.keras` archive, closed afterwards."""
    archive = KerasArchive(path)
    try:
        yield archive
    finally:
        archive.close()


class SafeH5:
    """Read-only access to an untrusted HDF5 weights file: hard links and plain datasets only."""

    def __init__(self, file, source: str, size: int):
        self.file = file
        self.source = source
        self.size = size
        """Bytes in the file: no dataset can hold more."""
        self.read_bytes = 0

    @classmethod
    @contextmanager
    def open(cls, target, source: str) -> Iterator[SafeH5]:
        """Open a path or binary file object as HDF5: a WeightsError if it is not one, or if
        libhdf5 finds it corrupt anywhere while it is read."""
        import h5py

        if isinstance(target, (str, Path)):
            size = os.stat(target).st_size
        else:
            size = target.seek(0, os.SEEK_END)
            target.seek(0)
        try:
            file = h5py.File(target, "r")
        except H5_ERRORS as error:
            raise WeightsError(f"{source}: not a readable HDF5 file ({error})") from None
        try:
            yield cls(file, source, size)
        except (OSError, RuntimeError) as error:  # from libhdf5: nothing else reads here
            raise WeightsError(f"{source}: a corrupt HDF5 file ({error})") from None
        finally:
            file.close()

    def _child(self, group, name: str, path: str):
        """The object hard-linked as `name` in `group`, or None; any other link is refused."""
        import h5py

        key = name.encode()
        try:
            if not group.id.links.exists(key):
                return None
            kind = group.id.links.get_info(key).type
        except H5_ERRORS as error:
            raise WeightsError(f"{self.source}: cannot read {path}: {error}") from None
        if kind == h5py.h5l.TYPE_SOFT:
            raise WeightsError(f"{self.source}: {path} is a soft link; links are refused")
        if kind == h5py.h5l.TYPE_EXTERNAL:
            raise WeightsError(f"{self.source}: {path} is an external link to another file; "
                               "refused")
        if kind != h5py.h5l.TYPE_HARD:
            raise WeightsError(f"{self.source}: {path} is a user-defined link; refused")
        try:
            return group[name]
        except H5_ERRORS as error:
            raise WeightsError(f"{self.source}: cannot read {path}: {error}") from None

    def group(self, path: str):
        """The group at `path` (`layers/dense/vars`), or None if it is absent."""
        import h5py

        node = self.file
        walked = []
        for part in path.split("/"):
            walked.append(part)
            node = self._child(node, part, "/".join(walked))
            if node is None:
                return None
            if not isinstance(node, h5py.Group):
                raise WeightsError(f"{self.source}: {'/'.join(walked)} is not a group")
        return node

    def has(self, name: str) -> bool:
        """True if the root holds a link called `name`."""
        return self._read(name, lambda: self.file.id.links.exists(name.encode()))

    def root_attribute(self, name: str) -> bool:
        """True if the root group has the attribute `name`."""
        return self._read(name, lambda: name in self.file.attrs)

    def _read(self, path: str, read):
        """`read()`, an h5py call on `path`; what libhdf5 finds corrupt is a WeightsError."""
        try:
            return read()
        except H5_ERRORS as error:
            raise WeightsError(f"{self.source}: cannot read {path}: {error}") from None

    def name_of(self, group) -> str | None:
        """The `name` attribute Keras stores on a `vars` group (the layer's own name)."""
        try:
            if "name" not in group.attrs:
                return None
            attribute = group.attrs.get_id("name")
            if attribute.get_storage_size() > 1024:
                return None
            value = group.attrs["name"]
        except H5_ERRORS:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value if isinstance(value, str) else None

    def variables(self, group, group_path: str, expected: list[tuple[str, tuple]],
                  what: str, integers: frozenset[str] | set[str] = frozenset()
                  ) -> list[np.ndarray]:
        """The datasets `0`, `1`, ... of a `vars` group, each checked against the expected
        (key, shape) before it is read; returned as float32 (the keys in `integers` may be
        stored as integers, as Keras keeps a counter)."""
        names = sorted(self._read(group_path, lambda: list(group)),
                       key=lambda n: (len(n), n)) if group is not None else []
        wanted = [str(i) for i in range(len(expected))]
        if names != wanted:
            listed = ", ".join(key.rsplit("/", 1)[1] for key, _ in expected) or "none"
            found = f"{len(names)} variables" if names == [str(i) for i in range(len(names))] \
                else f"variables named {names[:6]}"
            raise WeightsError(
                f"{self.source}: {what}: the file has {found} in {group_path}, seqcli expects "
                f"{len(expected)} ({listed}); was it saved from this model?")
        return [self._dataset(group, name, f"{group_path}/{name}", key, shape, what,
                              key in integers)
                for name, (key, shape) in zip(wanted, expected)]

    def _dataset(self, group, name: str, path: str, key: str, shape: tuple,
                 what: str, integer: bool = False) -> np.ndarray:
        import h5py

        dataset = self._child(group, name, path)
        if not isinstance(dataset, h5py.Dataset):
            raise WeightsError(f"{self.source}: {path} is not a dataset")
        self._read(path, lambda: self._check_storage(dataset, path))
        dtype = self._read(path, lambda: dataset.dtype)
        kinds = "fiu" if integer else "f"
        tagged = self._read(path, lambda: "dtype" in dataset.attrs)
        if dtype.kind not in kinds or dtype.itemsize not in (1, 2, 4, 8) or \
                dtype.kind == "f" and dtype.itemsize == 1 or tagged:
            shown = self._read(path, lambda: dataset.attrs.get("dtype", dtype)) if tagged \
                else dtype
            raise WeightsError(f"{self.source}: {path} ({what} {key.rsplit('/', 1)[1]}) has "
                               f"dtype {shown}; expected float32")
        stored_shape = self._read(path, lambda: tuple(dataset.shape))
        if stored_shape != tuple(shape):
            raise WeightsError(
                f"{self.source}: {path} ({what} {key.rsplit('/', 1)[1]}) has shape "
                f"{stored_shape}, seqcli expects {tuple(shape)}")
        # the model's shapes come from the same untrusted file: the bytes must be there too
        declared = math.prod(shape) * dtype.itemsize
        stored = self._read(path, dataset.id.get_storage_size)
        if stored > self.size or likely_zip_bomb(declared, stored):
            raise WeightsError(
                f"{self.source}: {path} declares {declared:,} bytes but the file stores "
                f"{min(stored, self.size):,} for it; refused as a likely decompression bomb")
        self.read_bytes += declared
        if self.read_bytes > MAX_KERAS_WEIGHTS_BYTES:
            raise WeightsError(f"{self.source}: the weights add up to more than "
                               f"{MAX_KERAS_WEIGHTS_BYTES:,} bytes; refused")
        try:
            array = dataset[()]
        except H5_ERRORS as error:
            raise WeightsError(f"{self.source}: cannot read {path}: {error}") from None
        array = np.asarray(array)
        with np.errstate(over="ignore"):
            result = np.ascontiguousarray(array, dtype=np.float32)
        if dtype.itemsize > 4 and np.any(np.isinf(result) & np.isfinite(array)):
            raise WeightsError(f"{self.source}: {path} has values beyond the float32 range")
        return result

    def _check_storage(self, dataset, path: str) -> None:
        """Refuse a dataset whose data lives in other files or needs a filter plugin."""
        if dataset.is_virtual:
            raise WeightsError(f"{self.source}: {path} is a virtual dataset (its data lives "
                               "in other files); refused")
        if dataset.external:
            raise WeightsError(f"{self.source}: {path} keeps its data in external files; "
                               "refused")
        plist = dataset.id.get_create_plist()
        for index in range(plist.get_nfilters()):
            code = plist.get_filter(index)[0]
            if code not in SAFE_FILTERS:
                raise WeightsError(f"{self.source}: {path} uses HDF5 filter {code}, which "
                                   "seqcli does not load (filter plugins run native code)")

    def weight_groups(self, top: str = "layers") -> Iterator[str]:
        """Every group path under `top` that holds datasets (hard links only, bounded depth)."""
        import h5py

        visits = [0]

        def walk(group, path: str, depth: int):
            visits[0] += 1
            if depth > MAX_GROUP_DEPTH or visits[0] > MAX_GROUPS:
                raise WeightsError(f"{self.source}: more than {MAX_GROUPS:,} groups or "
                                   f"groups nested over {MAX_GROUP_DEPTH} deep; refused")
            holds = False
            for name in self._read(path, lambda: list(group)):
                child = self._child(group, name, f"{path}/{name}")
                if isinstance(child, h5py.Group):
                    yield from walk(child, f"{path}/{name}", depth + 1)
                elif isinstance(child, h5py.Dataset):
                    holds = True
            if holds:
                yield path

        root = self.group(top)
        if root is not None:
            yield from walk(root, top, 0)
