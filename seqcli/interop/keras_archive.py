"""Reading untrusted Keras files: the `.keras` zip and its (or a standalone) `.h5` weights.

Nothing in a file runs code or decides how much memory is taken. Zip members are sized
and their compression ratio checked before they are inflated; `config.json` is capped at
a few MB. In the HDF5 file only hard links are followed (soft and external links are
refused, whatever they point at), datasets with external storage, virtual datasets or
filters beyond deflate/shuffle/fletcher32/lzf (others load plugins) are refused, and a
dataset's dtype and shape are checked against what the model needs before it is read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from seqcli.errors import ConfigError, MissingFileError, WeightsError
from seqcli.interop.keras_format import CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER
from seqcli.io.limits import MAX_COMPRESSION_RATIO, likely_zip_bomb

MAX_CONFIG_BYTES = 4 * 1024**2
"""A model's config.json is kilobytes; anything over this is refused unread."""
MAX_METADATA_BYTES = 64 * 1024
MAX_WEIGHTS_BYTES = 16 * 1024**3
"""The largest model.weights.h5 member inflated to disk, and the most weight bytes read."""
MAX_GROUP_DEPTH = 64
MAX_GROUPS = 100_000
"""Groups walked when looking for unexpected weights (hard links can make cycles)."""
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK"
# HDF5 filters built into libhdf5 or h5py: deflate, shuffle, fletcher32, lzf
SAFE_FILTERS = frozenset({1, 2, 3, 32000})


def file_signature(path: Path, what: str) -> bytes:
    """The first 8 bytes of the regular file `path` (MissingFileError when unreadable)."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise MissingFileError(f"{path}: is a folder; pass a {what}")
        with open(path, "rb") as file:
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
        if info.file_size > limit:
            raise ConfigError(
                f"{self.source}: {name} declares {info.file_size:,} bytes, over the "
                f"{limit:,}-byte limit; refused")
        if likely_zip_bomb(info.file_size, info.compress_size):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ConfigError(
                f"{self.source}: {name} is compressed {ratio:,.0f}:1, more than "
                f"{MAX_COMPRESSION_RATIO}:1; refused as a likely zip bomb")
        return info

    def read_json(self, name: str, limit: int) -> dict:
        """Member `name` parsed as a JSON object."""
        info = self._member(name, limit)
        try:
            with self.zip.open(info) as stream:
                data = stream.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            raise ConfigError(f"{self.source}: cannot read {name}: {err}") from None
        if len(data) > limit:
            raise ConfigError(f"{self.source}: {name} is over the {limit:,}-byte limit")
        try:
            document = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            raise ConfigError(f"{self.source}: {name} is not valid JSON ({error})") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{self.source}: {name} is not a JSON object")
        return document

    def config(self) -> dict:
        """The model's config.json."""
        return self.read_json(CONFIG_MEMBER, MAX_CONFIG_BYTES)

    def keras_version(self) -> str | None:
        """The Keras version metadata.json names, if it is there and readable."""
        if METADATA_MEMBER not in self.names:
            return None
        try:
            version = self.read_json(METADATA_MEMBER, MAX_METADATA_BYTES).get("keras_version")
        except ConfigError:
            return None
        return version if isinstance(version, str) and len(version) < 40 else None

    @contextmanager
    def weights(self) -> Iterator[SafeH5]:
        """model.weights.h5, inflated to a temporary file and opened read-only."""
        if WEIGHTS_MEMBER not in self.names and "model.weights.npz" in self.names:
            raise ConfigError(f"{self.source}: its weights are stored as model.weights.npz "
                              "(weights_format='npz'); re-save it in Keras with the default "
                              "h5 weights format")
        info = self._member(WEIGHTS_MEMBER, MAX_WEIGHTS_BYTES)
        with tempfile.TemporaryFile() as copy:
            try:
                with self.zip.open(info) as stream:
                    shutil.copyfileobj(stream, copy, 1024**2)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError,
                    NotImplementedError) as error:
                raise WeightsError(f"{self.source}: cannot read {WEIGHTS_MEMBER}: "
                                   f"{error}") from None
            copy.seek(0)
            with SafeH5.open(copy, f"{self.source}: {WEIGHTS_MEMBER}") as h5:
                yield h5


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
        """Open a path or binary file object as HDF5 (WeightsError if it is not one)."""
        import h5py

        if isinstance(target, (str, Path)):
            size = os.stat(target).st_size
        else:
            size = target.seek(0, os.SEEK_END)
            target.seek(0)
        try:
            file = h5py.File(target, "r")
        except (OSError, ValueError) as error:
            raise WeightsError(f"{source}: not a readable HDF5 file ({error})") from None
        try:
            yield cls(file, source, size)
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
        except (KeyError, ValueError, OSError) as error:
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
        except (KeyError, ValueError, OSError) as error:
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
        return self.file.id.links.exists(name.encode())

    def root_attribute(self, name: str) -> bool:
        """True if the root group has the attribute `name`."""
        return name in self.file.attrs

    def name_of(self, group) -> str | None:
        """The `name` attribute Keras stores on a `vars` group (the layer's own name)."""
        try:
            if "name" not in group.attrs:
                return None
            attribute = group.attrs.get_id("name")
            if attribute.get_storage_size() > 1024:
                return None
            value = group.attrs["name"]
        except (OSError, ValueError, TypeError, KeyError):
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
        names = sorted(group.keys(), key=lambda n: (len(n), n)) if group is not None else []
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
        dtype = dataset.dtype
        kinds = "fiu" if integer else "f"
        if dtype.kind not in kinds or dtype.itemsize not in (1, 2, 4, 8) or \
                dtype.kind == "f" and dtype.itemsize == 1 or "dtype" in dataset.attrs:
            shown = dataset.attrs.get("dtype", dtype) if "dtype" in dataset.attrs else dtype
            raise WeightsError(f"{self.source}: {path} ({what} {key.rsplit('/', 1)[1]}) has "
                               f"dtype {shown}; expected float32")
        if tuple(dataset.shape) != tuple(shape):
            raise WeightsError(
                f"{self.source}: {path} ({what} {key.rsplit('/', 1)[1]}) has shape "
                f"{tuple(dataset.shape)}, seqcli expects {tuple(shape)}")
        # the model's shapes come from the same untrusted file: the bytes must be there too
        declared = math.prod(shape) * dtype.itemsize
        stored = dataset.id.get_storage_size()
        if stored > self.size or likely_zip_bomb(declared, stored):
            raise WeightsError(
                f"{self.source}: {path} declares {declared:,} bytes but the file stores "
                f"{min(stored, self.size):,} for it; refused as a likely decompression bomb")
        self.read_bytes += declared
        if self.read_bytes > MAX_WEIGHTS_BYTES:
            raise WeightsError(f"{self.source}: the weights add up to more than "
                               f"{MAX_WEIGHTS_BYTES:,} bytes; refused")
        try:
            array = dataset[()]
        except (OSError, ValueError, TypeError) as error:
            raise WeightsError(f"{self.source}: cannot read {path}: {error}") from None
        array = np.asarray(array)
        with np.errstate(over="ignore"):
            result = np.ascontiguousarray(array, dtype=np.float32)
        if dtype.itemsize > 4 and np.any(np.isinf(result) & np.isfinite(array)):
            raise WeightsError(f"{self.source}: {path} has values beyond the float32 range")
        return result

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
            for name in list(group.keys()):
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
