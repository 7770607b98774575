"""The file I/O layer: atomic outputs, model-relative paths, weights files, `.npy` streams.

Each refusal is checked with its exception class (hence its exit code) and a message
substring; hostile files are built small, in `tmp_path`.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from seqcli.errors import (
    InputDataError,
    MissingFileError,
    OutputError,
    UsageError,
    WeightsError,
)
from seqcli.io import weights as weights_module
from seqcli.io.arrays import (
    InputArray,
    NpyWriter,
    npy_header_bytes,
    open_input,
    read_exactly,
    read_npy_header,
    save_npz,
)
from seqcli.io.atomic import atomic_output
from seqcli.io.paths import resolve_relative
from seqcli.io.weights import check_weights, read_weights, write_safetensors

REPO = Path(__file__).resolve().parents[1]


def _permissions_are_bypassed() -> bool:
    """True when this process may read a mode-000 file (root, or CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_bytes(b"")
        probe.chmod(0)
        try:
            probe.open("rb").close()
        except PermissionError:
            return False
        return True


PERMISSIONS_BYPASSED = _permissions_are_bypassed()


@pytest.fixture
def deny(monkeypatch):
    """`deny(path, mode)`: chmod `path`; where permissions are not enforced (root), also make
    opening anything under it fail with EACCES, as it would for an ordinary user."""
    def apply(path: Path, mode: int) -> None:
        path.chmod(mode)
        if not PERMISSIONS_BYPASSED:
            return
        real_open, real_os_open = builtins.open, os.open

        def refused(target) -> bool:
            return isinstance(target, (str, os.PathLike)) and Path(target).is_relative_to(path)

        def fake_open(target, *args, **kwargs):
            if refused(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(target))
            return real_open(target, *args, **kwargs)

        def fake_os_open(target, *args, **kwargs):
            if refused(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(target))
            return real_os_open(target, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)

    return apply


def leftovers(folder: Path) -> list[str]:
    """Temp files `atomic_output` may have left behind."""
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def raw_npy(shape, descr="<f4", fortran_order=False, body=b"") -> bytes:
    """A `.npy` file with any header numpy can write, and `body` as its data."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": descr, "shape": shape, "fortran_order": fortran_order}
    )
    return buffer.getvalue() + body


class Trickle(io.RawIOBase):
    """A non-seekable byte stream that hands out at most `chunk` bytes per read, like a pipe."""

    def __init__(self, data: bytes, chunk: int = 7):
        self._data = memoryview(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._chunk, len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


class FakeStream(io.TextIOWrapper):
    """A text stream over bytes that may claim to be a terminal."""

    def __init__(self, buffer, *, tty: bool = False):
        super().__init__(buffer, encoding="utf-8")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def fake_stdin(monkeypatch, data: bytes, *, tty: bool = False, chunk: int = 7) -> None:
    stream = FakeStream(io.BufferedReader(Trickle(data, chunk)), tty=tty)
    assert not stream.buffer.seekable()
    monkeypatch.setattr(sys, "stdin", stream)


def fake_stdout(monkeypatch, *, tty: bool = False, raw=None) -> io.BytesIO:
    buffer = raw if raw is not None else io.BytesIO()
    stream = FakeStream(buffer, tty=tty)
    monkeypatch.setattr(sys, "stdout", stream)
    return buffer


# --- atomic_output -----------------------------------------------------------------------


def test_atomic_output_creates_file_with_umask_mode(tmp_path):
    target = tmp_path / "out.bin"
    old = os.umask(0o027)
    try:
        with atomic_output(target) as file:
            file.write(b"hello")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_atomic_output_replaces_and_keeps_mode_of_existing_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with atomic_output(str(target)) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_output_text_mode(tmp_path):
    target = tmp_path / "model.yaml"
    with atomic_output(target, binary=False) as file:
        file.write("name: é\n")
    assert target.read_text(encoding="utf-8") == "name: é\n"


def test_temp_file_is_hidden_beside_target(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_output(target) as file:
        file.write(b"x")
        [temp] = leftovers(tmp_path)
        assert temp.startswith(".out.bin.") and not target.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("interruption", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_existing_file_byte_identical(tmp_path, interruption):
    target = tmp_path / "out.bin"
    original = bytes(range(256)) * 10
    target.write_bytes(original)
    with pytest.raises(type(interruption)):
        with atomic_output(target) as file:
            file.write(b"partial data")
            file.flush()
            raise interruption
    assert target.read_bytes() == original
    assert leftovers(tmp_path) == []


def test_failure_creates_no_file(tmp_path):
    with pytest.raises(ValueError):
        with atomic_output(tmp_path / "new.bin") as file:
            file.write(b"x")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist") as caught:
        with atomic_output(tmp_path / "nope" / "out.npy"):
            pass
    assert caught.value.exit_code == 73
    assert "out.npy" in str(caught.value) and "\n" not in str(caught.value)


def test_directory_target_is_output_error(tmp_path):
    for target in [tmp_path, f"{tmp_path}/new/"]:
        with pytest.raises(OutputError, match="is a directory; give a file name"):
            with atomic_output(target):
                pass
    assert os.listdir(tmp_path) == []


def test_long_file_name_gets_a_short_temp_name(tmp_path):
    target = tmp_path / ("x" * 250)
    with atomic_output(target) as file:
        file.writelines([b"a", b"b"])
    assert target.read_bytes() == b"ab"


def test_parent_that_is_a_file_is_output_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="not a folder"):
        with atomic_output(tmp_path / "file" / "out.npy"):
            pass


def test_read_only_folder_is_output_error(tmp_path, deny):
    folder = tmp_path / "locked"
    folder.mkdir()
    deny(folder, 0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            with atomic_output(folder / "out.npy"):
                pass
    finally:
        folder.chmod(0o700)


def test_no_space_while_writing_is_output_error(tmp_path, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out.bin"
    target.write_bytes(b"keep me")
    monkeypatch.setattr(os, "fdopen", lambda fd, mode, **kwargs: FullDisk(fd, "wb"))
    with pytest.raises(OutputError, match="no space left on device"):
        with atomic_output(target) as file:
            file.write(b"data")
    assert target.read_bytes() == b"keep me"
    assert leftovers(tmp_path) == []


def test_no_space_at_fsync_is_output_error(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out.bin"
    target.write_bytes(b"keep me")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="no space left"):
        with atomic_output(target) as file:
            file.write(b"data")
    assert target.read_bytes() == b"keep me"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_is_output_error():
    with pytest.raises(OutputError, match="/dev/full: no space left on device"):
        with atomic_output("/dev/full") as file:
            file.write(b"x" * 100)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_dev_null_is_written_directly():
    with atomic_output("/dev/null") as file:
        file.write(b"x" * 100)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_is_written_directly(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with atomic_output(fifo) as file:
        file.write(b"through the pipe")
    reader.join(5)
    assert received == [b"through the pipe"]


def test_symlink_target_is_written_through(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    with atomic_output(link) as file:
        file.write(b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_stdout_binary(monkeypatch):
    buffer = fake_stdout(monkeypatch)
    with atomic_output("-") as file:
        file.write(b"\x93NUMPY")
    assert buffer.getvalue() == b"\x93NUMPY"


def test_stdout_text(monkeypatch):
    buffer = fake_stdout(monkeypatch)
    with atomic_output("-", binary=False) as file:
        file.write("text\n")
    assert buffer.getvalue() == b"text\n"


def test_binary_to_terminal_is_refused(monkeypatch):
    buffer = fake_stdout(monkeypatch, tty=True)
    with pytest.raises(UsageError, match="refusing to write binary .npy data to a terminal"):
        with atomic_output("-"):
            pass
    assert buffer.getvalue() == b""
    with atomic_output("-", binary=False) as file:  # text is fine on a terminal
        file.write("ok")


class ClosedPipe(io.RawIOBase):
    """A stdout whose writes fail with `error` (until it is set to None, for a clean teardown)."""

    def __init__(self, error: OSError):
        self.error = error

    def writable(self) -> bool:
        return True

    def write(self, data):
        if self.error is not None:
            raise self.error
        return len(data)


@pytest.fixture
def failing_stdout(monkeypatch):
    """Make stdout fail with a given error; returns a function taking the error."""
    pipes = []

    def install(error: OSError) -> None:
        pipes.append(ClosedPipe(error))
        fake_stdout(monkeypatch, raw=io.BufferedWriter(pipes[-1]))

    yield install
    for pipe in pipes:
        pipe.error = None


def test_closed_stdout_raises_broken_pipe(failing_stdout):
    failing_stdout(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    with pytest.raises(BrokenPipeError):
        with atomic_output("-") as file:
            file.write(b"x" * 100_000)


def test_full_stdout_is_output_error(failing_stdout):
    failing_stdout(OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutputError, match="<stdout>: no space left"):
        with atomic_output("-") as file:
            file.write(b"x" * 100_000)


# --- resolve_relative --------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.npz").write_bytes(b"")
    (tmp_path / "secret.npz").write_bytes(b"")
    return folder


@pytest.mark.parametrize("relative", ["sub/w.npz", "./sub/w.npz", "sub/../sub/w.npz", "new.npz"])
def test_paths_inside_are_resolved(model_dir, relative):
    resolved = resolve_relative(model_dir, relative, allow_outside=False, what="weights")
    assert resolved == (model_dir / relative).resolve()
    assert resolved.is_absolute()


@pytest.mark.parametrize("relative", ["../secret.npz", "sub/../../secret.npz"])
def test_dotdot_escape_is_refused(model_dir, relative):
    with pytest.raises(ValueError, match=r"through '\.\.'.*--allow-outside"):
        resolve_relative(model_dir, relative, allow_outside=False, what="weights")
    allowed = resolve_relative(model_dir, relative, allow_outside=True, what="weights")
    assert allowed == (model_dir.parent / "secret.npz").resolve()


def test_absolute_path_is_refused(model_dir):
    absolute = str(model_dir / "sub" / "w.npz")
    with pytest.raises(ValueError, match="is absolute.*--allow-outside"):
        resolve_relative(model_dir, absolute, allow_outside=False, what="weights")
    assert resolve_relative(model_dir, absolute, allow_outside=True, what="weights").exists()


def test_symlink_escape_is_refused(model_dir):
    (model_dir / "link.npz").symlink_to(model_dir.parent / "secret.npz")
    (model_dir / "up").symlink_to(model_dir.parent)
    for relative in ["link.npz", "up/secret.npz"]:
        with pytest.raises(ValueError, match="through a symbolic link.*--allow-outside"):
            resolve_relative(model_dir, relative, allow_outside=False, what="weights")
    allowed = resolve_relative(model_dir, "link.npz", allow_outside=True, what="weights")
    assert allowed == (model_dir.parent / "secret.npz").resolve()


def test_symlinks_inside_and_symlinked_base_are_fine(model_dir, tmp_path):
    (model_dir / "inner.npz").symlink_to(model_dir / "sub" / "w.npz")
    assert resolve_relative(model_dir, "inner.npz", allow_outside=False, what="w").exists()
    alias = tmp_path / "alias"
    alias.symlink_to(model_dir)
    assert resolve_relative(alias, "sub/w.npz", allow_outside=False, what="w").exists()


def test_symlink_loop_empty_and_nul_paths(model_dir):
    (model_dir / "loop").symlink_to(model_dir / "loop")
    for relative, message in [
        ("loop/x", "cannot be resolved|outside"),
        ("", "empty"),
        ("a\0b", "NUL"),
    ]:
        with pytest.raises(ValueError, match=message):
            resolve_relative(model_dir, relative, allow_outside=False, what="weights")


# --- weights: round trips ----------------------------------------------------------------


def sample_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "dense_1/kernel": rng.standard_normal((4, 3)).astype(np.float32),
        "dense_1/bias": rng.standard_normal(3).astype(np.float32),
        "head/dense/kernel": rng.standard_normal((3, 2)).astype(np.float32),
        "batch_normalization/moving_mean": np.zeros(2, np.float32),
        "scalar": np.float32(3.5) * np.ones((), np.float32),
    }


def test_safetensors_round_trip_keeps_order_and_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    weights = sample_weights()
    write_safetensors(path, weights, metadata={"format": "seqcli"})
    found = read_weights(path)
    assert list(found) == list(weights)
    for key, value in weights.items():
        assert found[key].dtype == np.float32 and found[key].flags.c_contiguous
        assert found[key].flags.writeable and found[key].flags.owndata
        np.testing.assert_array_equal(found[key], value)
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    assert length % 8 == 0
    assert list(json.loads(blob[8 : 8 + length])) == ["__metadata__", *weights]
    with safetensors.safe_open(str(path), framework="numpy") as file:
        assert file.metadata() == {"format": "seqcli"}
        np.testing.assert_array_equal(
            file.get_tensor("head/dense/kernel"), weights["head/dense/kernel"]
        )


def test_write_safetensors_converts_to_float32(tmp_path):
    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"b": np.arange(3, dtype=np.float64), "a": [[1, 2]]})
    found = read_weights(path)
    assert list(found) == ["b", "a"] and found["a"].dtype == np.float32
    np.testing.assert_array_equal(found["a"], [[1.0, 2.0]])


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed, save_npz])
def test_npz_round_trip(tmp_path, save):
    path = tmp_path / "model.npz"
    weights = sample_weights()
    if save is save_npz:
        save_npz(path, weights)
    else:
        save(path, **weights)
    found = read_weights(path)
    assert list(found) == list(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(found[key], value)


def test_npz_float_kinds_are_converted(tmp_path):
    path = tmp_path / "w.npz"
    base = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.savez(
        path,
        half=base.astype(np.float16),
        double=base,
        big=base.astype(">f4"),
        fortran=np.asfortranarray(base.astype(np.float32)),
    )
    found = read_weights(path)
    for key, value in found.items():
        assert value.dtype == np.dtype("=f4") and value.flags.c_contiguous, key
    np.testing.assert_array_equal(found["big"], base.astype(np.float32))
    np.testing.assert_array_equal(found["fortran"], base.astype(np.float32))
    np.testing.assert_array_equal(found["half"], base.astype(np.float16).astype(np.float32))


def test_safetensors_float_kinds_are_converted(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(
        safetensors.numpy.save({"h": np.ones(2, np.float16), "d": np.full(2, 0.1, np.float64)})
    )
    found = read_weights(path)
    assert all(value.dtype == np.float32 for value in found.values())
    np.testing.assert_array_equal(found["d"], np.full(2, 0.1, np.float32))


# --- weights: refusals -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["w.h5", "w.npy", "weights"])
def test_unsupported_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"\.safetensors or \.npz") as caught:
        read_weights(path)
    assert caught.value.exit_code == 65


def test_missing_or_unreadable_weights(tmp_path):
    with pytest.raises(MissingFileError, match="no such weights file") as caught:
        read_weights(tmp_path / "nope.safetensors")
    assert caught.value.exit_code == 66
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(MissingFileError, match="is a directory"):
        read_weights(tmp_path / "dir.npz")


def test_unreadable_weights(tmp_path, deny):
    path = tmp_path / "w.npz"
    np.savez(path, a=np.ones(1))
    deny(path, 0)
    with pytest.raises(MissingFileError, match="permission denied"):
        read_weights(path)


@pytest.mark.parametrize(
    ("array", "dtype_text"),
    [
        (np.arange(3, dtype=np.int32), "int32"),
        (np.array([True, False]), "bool"),
        (np.ones(2, np.complex64), "complex64"),
        (np.ones(2, np.uint8), "uint8"),
    ],
)
def test_non_float_tensors_are_refused(tmp_path, array, dtype_text):
    npz = tmp_path / "w.npz"
    np.savez(npz, **{"dense/kernel": array})
    with pytest.raises(WeightsError, match=f"dense/kernel .*{dtype_text}"):
        read_weights(npz)
    if array.dtype.kind != "c":  # safetensors has no complex numpy dtype
        sft = tmp_path / "w.safetensors"
        sft.write_bytes(safetensors.numpy.save({"dense/kernel": array}))
        with pytest.raises(WeightsError, match="dense/kernel has dtype"):
            read_weights(sft)


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, evil=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(WeightsError, match="evil is an object array.*allow_pickle=False"):
        read_weights(path)


def test_npz_structured_array_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, rec=np.zeros(2, dtype=[("a", "<f4"), ("b", "<f4")]))
    with pytest.raises(WeightsError, match="rec is a structured array"):
        read_weights(path)


def test_float64_beyond_float32_range_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, big=np.array([1e300]))
    with pytest.raises(WeightsError, match="big has values beyond the float32 range"):
        read_weights(path)


def write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_npz_shape_bomb_header_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    write_zip(path, {"k.npy": raw_npy((10**6, 10**6), body=b"\0" * 16)})
    assert path.stat().st_size < 1000
    with pytest.raises(WeightsError, match=r"k declares shape \(1000000, 1000000\)"):
        read_weights(path)


def test_npz_header_declaring_fewer_bytes_is_refused(tmp_path):
    path = tmp_path / "short.npz"
    write_zip(path, {"k.npy": raw_npy((2,), body=b"\0" * 16)})
    with pytest.raises(WeightsError, match="holds 16 bytes"):
        read_weights(path)


def test_npz_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    header = raw_npy((16 * 1024**2,))  # 64 MiB of zeros: deflate squeezes it over 1000:1
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("k.npy", "w") as member:
            member.write(header)
            chunk = bytes(1024**2)
            for _ in range(64):
                member.write(chunk)
    assert path.stat().st_size < 200_000
    with pytest.raises(WeightsError, match=r"compressed \d+:1.*zip bomb"):
        read_weights(path)


def test_npz_total_size_is_capped(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    np.savez(path, a=np.ones(200, np.float32), b=np.ones(200, np.float32))
    monkeypatch.setattr(weights_module, "MAX_TOTAL_SIZE", 1000)
    with pytest.raises(WeightsError, match="more than 1000 bytes in total"):
        read_weights(path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"notes.txt": b"hello"}, "'notes.txt' is not a .npy array"),
        ({"k.npy": b"not an array at all"}, "not a .npy file"),
        ({"k.npy": b"\x93NUMPY\x01\x00\xff\x00" + b"{" * 100}, "truncated .npy header"),
        ({"k.npy": b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 100}, "larger than 10000"),
        ({"k.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n"}, "invalid .npy header"),
        ({"k.npy": b"\x93NUMPY\x03\x00" + bytes(20)}, "version 3.0"),
    ],
)
def test_npz_bad_members_are_refused(tmp_path, members, message):
    path = tmp_path / "w.npz"
    write_zip(path, members)
    with pytest.raises(WeightsError, match=message):
        read_weights(path)


def test_npz_corrupted_data_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, k=np.arange(64, dtype=np.float32))
    blob = bytearray(path.read_bytes())
    at = blob.index(np.arange(64, dtype=np.float32)[40:].tobytes())
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="not a valid .npz file.*CRC"):
        read_weights(path)


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(npy_bytes(np.ones(3)))
    with pytest.raises(WeightsError, match="not a valid .npz file"):
        read_weights(path)


def safetensors_blob(header, data: bytes = b"", length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


def f32(shape, begin, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x01\x02", "fewer than 8"),
        (safetensors_blob({"a": f32([1], 0, 4)}, bytes(4), length=10**9), "over the"),
        (safetensors_blob({"a": f32([1], 0, 4)}, bytes(4), length=5000), "beyond the end"),
        (safetensors_blob(b"not json", b""), "not JSON"),
        (safetensors_blob(b"[" * 100_000, b""), "not JSON"),
        (safetensors_blob(b"\xff\xfe{}", b""), "not JSON"),
        (safetensors_blob([1, 2], b""), "not a JSON object"),
        (safetensors_blob(b'{"a": {}, "a": {}}', b""), "duplicate key 'a'"),
        (safetensors_blob({"a": {"dtype": "F32"}}), "lacks dtype, shape or data_offsets"),
        (safetensors_blob({"a": f32([1], 0, 4000)}, bytes(4)), "outside the 4 bytes"),
        (safetensors_blob({"a": f32([1], 8, 4)}, bytes(8)), "outside"),
        (safetensors_blob({"a": f32([-1], 0, 4)}, bytes(4)), "invalid shape"),
        (safetensors_blob({"a": f32([True], 0, 4)}, bytes(4)), "invalid shape"),
        (safetensors_blob({"a": f32([1], 0, "4")}, bytes(4)), "invalid data_offsets"),
        (safetensors_blob({"a": f32([10**6, 10**6], 0, 4)}, bytes(4)), "declares shape"),
        (safetensors_blob({"a": f32([2], 0, 8), "b": f32([2], 4, 12)}, bytes(12)), "overlaps"),
        (safetensors_blob({"a": f32([1], 0, 4), "b": f32([1], 8, 12)}, bytes(12)), "offset"),
        (safetensors_blob({"a": f32([1], 0, 4)}, bytes(8)), "not fully covered"),
        (safetensors_blob({"a": f32([1], 0, 2, "BF16")}, bytes(2)), "a has dtype BF16"),
    ],
)
def test_hostile_safetensors_are_refused(tmp_path, blob, message):
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob)
    with pytest.raises(WeightsError, match=message) as caught:
        read_weights(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.exit_code == 65


# --- check_weights -----------------------------------------------------------------------


def test_check_weights_accepts_a_match():
    check_weights(
        {"d/kernel": (2, 3), "d/bias": (3,)},
        {"d/bias": np.zeros(3), "d/kernel": np.zeros((2, 3))},
        "w.npz",
    )


def test_check_weights_reports_shape_as_in_contract():
    with pytest.raises(WeightsError) as caught:
        check_weights(
            {"dense/kernel": (4, 2)}, {"dense/kernel": np.zeros((3, 2))}, "model.safetensors"
        )
    assert str(caught.value) == "model.safetensors: dense/kernel has shape (3, 2), expected (4, 2)"


def test_check_weights_lists_every_problem_once():
    expected = {"dense/kernel": (4, 2), "dense/bias": (2,), "head/dense/kernel": (2, 1)}
    found = {
        "dense/kernel": np.zeros((3, 2)),
        "dense/bais": np.zeros(2),
        "head/dense/kernel": np.zeros((2, 1), np.int32),
        "stray": np.zeros(1),
    }
    with pytest.raises(WeightsError) as caught:
        check_weights(expected, found, "w.npz")
    lines = str(caught.value).splitlines()
    assert lines == [
        "w.npz: dense/kernel has shape (3, 2), expected (4, 2)",
        "w.npz: missing tensor dense/bias of shape (2,); did you mean 'dense/bais' (same shape "
        "(2,))?",
        "w.npz: head/dense/kernel has dtype int32, expected float32",
        "w.npz: unexpected tensor dense/bais of shape (2,)",
        "w.npz: unexpected tensor stray of shape (1,)",
    ]


# --- .npy inputs -------------------------------------------------------------------------


INPUT_CASES = {
    "float32": np.arange(30, dtype=np.float32).reshape(5, 3, 2) / 3,
    "float64": np.arange(30, dtype=np.float64).reshape(5, 6) / 7,
    "float16": np.arange(10, dtype=np.float16).reshape(10, 1),
    "int32": np.arange(-6, 6, dtype=np.int32).reshape(4, 3),
    "uint8": np.arange(12, dtype=np.uint8),
    "bool": np.array([[True, False], [False, True], [True, True]]),
    "big-endian": (np.arange(24, dtype=np.float64).reshape(4, 3, 2) / 5).astype(">f8"),
    "fortran": np.asfortranarray(np.arange(60, dtype=np.float32).reshape(5, 4, 3)),
    "big-endian fortran": np.asfortranarray(np.arange(12, dtype=">i4").reshape(4, 3)),
    "empty": np.zeros((0, 3), np.float32),
}


def check_batches(inputs: InputArray, expected: np.ndarray, batch_size: int) -> None:
    batches = list(inputs.batches(batch_size))
    assert [len(batch) for batch in batches] == [
        min(batch_size, len(expected) - start) for start in range(0, len(expected), batch_size)
    ]
    for batch in batches:
        assert batch.dtype == np.dtype("=f4") and batch.flags.c_contiguous
        assert type(batch) is np.ndarray and batch.flags.writeable
    joined = np.concatenate(batches) if batches else np.zeros((0, *expected.shape[1:]), np.float32)
    np.testing.assert_array_equal(joined, expected.astype(np.float32))


@pytest.mark.parametrize("case", INPUT_CASES)
@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_file_inputs_are_converted_per_batch(tmp_path, case, batch_size):
    array = INPUT_CASES[case]
    path = tmp_path / "x.npy"
    np.save(path, array)
    inputs = open_input(str(path))
    assert inputs.shape == array.shape and inputs.dtype == array.dtype
    assert inputs.source == str(path)
    check_batches(inputs, array, batch_size)
    check_batches(inputs, array, batch_size)  # a file can be read again


@pytest.mark.parametrize("case", INPUT_CASES)
def test_stdin_inputs_are_streamed(monkeypatch, case):
    array = INPUT_CASES[case]
    fake_stdin(monkeypatch, npy_bytes(array))
    inputs = open_input("-")
    assert inputs.source == "<stdin>" and inputs.shape == array.shape
    check_batches(inputs, array, 2)
    with pytest.raises(RuntimeError, match="only be read once"):
        inputs.batches(2)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    batch_size=st.integers(1, 5),
    chunk=st.integers(1, 50),
    fortran=st.booleans(),
)
def test_stream_batches_cover_all_rows(shape, batch_size, chunk, fortran):
    array = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    array = np.asfortranarray(array) if fortran else array
    stream = io.BufferedReader(Trickle(npy_bytes(array), chunk))
    inputs = InputArray("<stdin>", read_npy_header(stream), stream=stream)
    check_batches(inputs, array, batch_size)


def test_read_exactly_loops_over_short_reads():
    stream = Trickle(b"0123456789", chunk=3)
    assert read_exactly(stream, 0) == b""
    assert read_exactly(stream, 8) == b"01234567"
    assert read_exactly(stream, 8) == b"89"
    assert read_exactly(stream, 8) == b""


def test_stdin_terminal_is_refused(monkeypatch):
    fake_stdin(monkeypatch, b"", tty=True)
    with pytest.raises(UsageError, match="refusing to read .npy data from a terminal") as caught:
        open_input("-")
    assert caught.value.exit_code == 2


def test_truncated_stdin_is_refused_after_the_full_batches(monkeypatch):
    data = npy_bytes(np.ones((5, 4), np.float32))
    fake_stdin(monkeypatch, data[:-20])
    batches = open_input("-").batches(2)
    assert next(batches).shape == (2, 4)
    message = r"<stdin>: truncated: .*\(5, 4\) float32 \(80 bytes of data\).*after 60 bytes"
    with pytest.raises(InputDataError, match=message):
        list(batches)


@pytest.mark.parametrize("fortran_order", [False, True])
def test_stdin_shape_bomb_allocates_nothing_big(monkeypatch, fortran_order):
    fake_stdin(monkeypatch, raw_npy((10**6, 10**6), fortran_order=fortran_order, body=bytes(64)))
    inputs = open_input("-")
    with pytest.raises(InputDataError, match="truncated.*after 64 bytes"):
        list(inputs.batches(1000))


def test_trailing_data_on_stdin_is_refused(monkeypatch):
    fake_stdin(monkeypatch, npy_bytes(np.ones((2, 2))) + b"more")
    with pytest.raises(InputDataError, match="data after the 2 rows"):
        list(open_input("-").batches(5))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x93NUMPY", "not a .npy file"),
        (b"PK\x03\x04 a zip, not an array", "is a ZIP archive, not a .npy array"),
    ],
)
def test_bad_stdin_headers_are_refused(monkeypatch, data, message):
    fake_stdin(monkeypatch, data)
    with pytest.raises(InputDataError, match=f"<stdin>: .*{message}"):
        open_input("-")


def test_fifo_input_is_streamed(tmp_path):
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)
    array = np.arange(12, dtype=np.float64).reshape(6, 2)
    writer = threading.Thread(target=lambda: fifo.write_bytes(npy_bytes(array)))
    writer.start()
    inputs = open_input(str(fifo))
    check_batches(inputs, array, 4)
    writer.join(5)
    assert inputs._stream.closed  # the opened pipe is closed once read


def test_missing_input_file(tmp_path):
    with pytest.raises(MissingFileError, match="no such file") as caught:
        open_input(str(tmp_path / "nope.npy"))
    assert caught.value.exit_code == 66
    with pytest.raises(MissingFileError, match="is a directory"):
        open_input(str(tmp_path))


def test_unreadable_input_file(tmp_path, deny):
    path = tmp_path / "x.npy"
    np.save(path, np.ones(2))
    deny(path, 0)
    with pytest.raises(MissingFileError, match="permission denied"):
        open_input(str(path))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello world, this is text", "is a text file, not a .npy array"),
        (raw_npy((3,), body=b"\0" * 8), r"truncated.*\(3,\) float32 \(12 bytes of data\).*holds 8"),
        (raw_npy((10**6, 10**6), body=b"\0" * 8), "truncated"),
        (raw_npy((3,), body=b"\0" * 16), "4 bytes follow"),
        (raw_npy((), body=b"\0" * 4), "0-d array"),
        (raw_npy((-1, 2)), "negative size"),
        (raw_npy((2,), "|O", body=b"\0" * 16), "object array"),
        (raw_npy((2,), [("a", "<f4")], body=b"\0" * 8), "structured array"),
        (raw_npy((2,), "<c8", body=b"\0" * 16), "dtype complex64"),
        (raw_npy((2,), "<U2", body=b"\0" * 16), "dtype <U2"),
        (raw_npy((2,), "<M8[s]", body=b"\0" * 16), "dtype datetime64"),
        (b"\x93NUMPY\x01\x00\x08\x00{'a': 1\n", "invalid .npy header"),
        (b"\x93NUMPY\x02\x00\x00\x00\x01\x00" + b" " * 100, "larger than 10000"),
        (b"\x93NUMPY\x01\x00\x50\x00{'descr'", "truncated .npy header"),
        (b"\x93NUMPY\x09\x00" + bytes(10), "version 9.0"),
    ],
)
def test_bad_input_files_are_refused(tmp_path, data, message):
    path = tmp_path / "x.npy"
    path.write_bytes(data)
    with pytest.raises(InputDataError, match=message) as caught:
        open_input(str(path))
    assert caught.value.exit_code == 65
    assert str(caught.value).startswith(f"{path}: ")


def test_pickled_object_array_file_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="object array"):
        open_input(str(path))


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size(tmp_path, batch_size):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((2, 2)))
    with pytest.raises(UsageError, match="positive integer"):
        open_input(str(path)).batches(batch_size)


# --- .npy outputs ------------------------------------------------------------------------


def test_npy_writer_round_trip(tmp_path):
    path = tmp_path / "out.npy"
    array = np.arange(40, dtype=np.float64).reshape(10, 2, 2) / 3
    with NpyWriter(str(path), (2, 2), 10) as writer:
        for start in range(0, 10, 3):
            writer.write(array[start : start + 3])
    loaded = np.load(path)
    assert loaded.dtype == np.dtype("<f4") and not np.isfortran(loaded)
    np.testing.assert_array_equal(loaded, array.astype(np.float32))
    assert (path.stat().st_size - loaded.nbytes) % 64 == 0  # numpy's header alignment


def test_npy_writer_to_stdout(monkeypatch):
    buffer = fake_stdout(monkeypatch)
    with NpyWriter("-", (3,), 2) as writer:
        writer.write(np.ones((2, 3)))
    np.testing.assert_array_equal(np.load(io.BytesIO(buffer.getvalue())), np.ones((2, 3)))


def test_npy_writer_refuses_terminal(monkeypatch):
    fake_stdout(monkeypatch, tty=True)
    with pytest.raises(UsageError, match="terminal"):
        with NpyWriter("-", (3,), 2):
            pass


def test_npy_writer_broken_pipe_propagates(failing_stdout):
    failing_stdout(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    with pytest.raises(BrokenPipeError):
        with NpyWriter("-", (1000,), 100) as writer:
            for _ in range(100):
                writer.write(np.ones((1, 1000)))


@pytest.mark.parametrize("rows_written", [0, 2])
def test_npy_writer_too_few_rows_discards_output(tmp_path, rows_written):
    path = tmp_path / "out.npy"
    path.write_bytes(b"previous result")
    with pytest.raises(RuntimeError, match=f"wrote {rows_written} of the 3 rows"):
        with NpyWriter(str(path), (2,), 3) as writer:
            if rows_written:
                writer.write(np.ones((rows_written, 2)))
    assert path.read_bytes() == b"previous result"
    assert leftovers(tmp_path) == []


def test_npy_writer_misuse_and_errors_discard_output(tmp_path):
    path = tmp_path / "out.npy"
    with pytest.raises(ValueError, match="more than the 1 rows"):
        with NpyWriter(str(path), (2,), 1) as writer:
            writer.write(np.ones((2, 2)))
    with pytest.raises(ValueError, match="does not match rows of shape"):
        with NpyWriter(str(path), (2,), 1) as writer:
            writer.write(np.ones((1, 3)))
    with pytest.raises(KeyboardInterrupt):
        with NpyWriter(str(path), (2,), 1):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_npy_writer_to_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with NpyWriter(str(tmp_path / "no" / "out.npy"), (2,), 1):
            pass


def test_npy_header_falls_back_to_version_2():
    assert npy_header_bytes((3, 4), np.dtype("<f4"))[6:8] == b"\x01\x00"
    header = npy_header_bytes((1,) * 30_000, np.dtype("<f4"))
    assert header[6:8] == b"\x02\x00" and len(header) % 64 == 0


def test_save_npz_round_trip_with_slash_keys(tmp_path):
    path = tmp_path / "layers.npz"
    arrays = {"head/dense": np.ones((2, 3)), "conv2d": np.arange(4.0).reshape(1, 2, 2)}
    save_npz(path, arrays)
    with np.load(path, allow_pickle=False) as loaded:
        assert loaded.files == ["head/dense", "conv2d"]
        for key, value in arrays.items():
            assert loaded[key].dtype == np.float32
            np.testing.assert_array_equal(loaded[key], value)
    first = path.read_bytes()
    save_npz(path, arrays)
    assert path.read_bytes() == first  # fixed timestamps: reproducible


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../../b", "a\\b", "a/./b"])
def test_save_npz_refuses_unsafe_keys(tmp_path, key):
    path = tmp_path / "x.npz"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="unsafe .npz key"):
        save_npz(path, {key: np.ones(1)})
    assert path.read_bytes() == b"old"


def test_save_npz_to_stdout_pipe(monkeypatch):
    class Pipe(io.BufferedWriter):
        def seekable(self):
            return False

        def tell(self):
            raise OSError(errno.ESPIPE, "Illegal seek")

    raw = io.BytesIO()
    stream = FakeStream(Pipe(raw))
    monkeypatch.setattr(sys, "stdout", stream)
    save_npz("-", {"a/b": np.ones(3)})
    with np.load(io.BytesIO(raw.getvalue())) as loaded:
        np.testing.assert_array_equal(loaded["a/b"], np.ones(3))


# --- real pipes --------------------------------------------------------------------------

PIPE_SCRIPT = """
import os, sys
from seqcli.io.arrays import NpyWriter, open_input
inputs = open_input("-")
try:
    with NpyWriter("-", inputs.shape[1:], inputs.shape[0]) as writer:
        for batch in inputs.batches(int(sys.argv[1])):
            writer.write(batch * 2)
except BrokenPipeError:  # as the CLI does: no flush error at exit, then a quiet exit
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(42)
"""


def test_real_pipe_stdin_to_stdout():
    array = np.arange(5000, dtype=">f8").reshape(1000, 5)
    result = subprocess.run(
        [sys.executable, "-c", PIPE_SCRIPT, "7"],
        input=npy_bytes(array),
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    np.testing.assert_array_equal(np.load(io.BytesIO(result.stdout)), array * 2)


def test_real_pipe_closed_early_raises_broken_pipe():
    array = np.zeros((200_000, 8), np.float32)  # 6.4 MB, far more than a pipe buffer
    process = subprocess.Popen(
        [sys.executable, "-c", PIPE_SCRIPT, "1000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )

    def feed():
        try:
            process.stdin.write(npy_bytes(array))
            process.stdin.close()
        except BrokenPipeError:  # the child may exit before reading everything
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert process.stdout.read(10).startswith(b"\x93NUMPY")
    process.stdout.close()
    process.wait(60)
    feeder.join(60)
    assert process.returncode == 42, process.stderr.read().decode()
    process.stderr.close()


def test_dev_stdout_path_follows_the_real_stdout(tmp_path):
    script = (
        "from seqcli.io.atomic import atomic_output\n"
        "with atomic_output('/dev/stdout') as file:\n"
        "    file.write(b'via /dev/stdout')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=REPO, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"via /dev/stdout"


def test_terminal_device_path_is_refused():
    leader, follower = os.openpty()  # a real pseudo-terminal, like -o /dev/tty
    try:
        with pytest.raises(UsageError, match="refusing to write binary .npy data to a terminal"):
            with atomic_output(os.ttyname(follower)):
                pass
    finally:
        os.close(leader)
        os.close(follower)


def test_empty_rows_round_trip(tmp_path):
    path = tmp_path / "out.npy"
    with NpyWriter(str(path), (0, 3), 2) as writer:
        writer.write(np.zeros((2, 0, 3)))
    assert np.load(path).shape == (2, 0, 3)
    check_batches(open_input(str(path)), np.zeros((2, 0, 3)), 1)


def test_io_layer_does_not_import_numba():
    script = (
        "import sys\n"
        "import seqcli.io.arrays, seqcli.io.atomic, seqcli.io.paths, seqcli.io.weights\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=REPO, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()


def test_file_batches_are_read_not_mapped_and_the_file_stays_as_it_was(tmp_path):
    """A file's batches are read into arrays of their own, never a memory map (which a file
    truncated meanwhile turns into SIGBUS): writing to one changes neither the file nor the
    rows read later; the file may be read-only."""
    array = np.arange(40, dtype=np.float32).reshape(10, 4)
    path = tmp_path / "x.npy"
    np.save(path, array)
    before = path.read_bytes()
    path.chmod(0o444)
    inputs = open_input(str(path))
    seen = []
    for batch in inputs.batches(3):
        assert batch.base is None and batch.flags.writeable
        seen.append(batch.copy())
        batch[...] = -1  # a consumer scribbling on its batch
    np.testing.assert_array_equal(np.concatenate(seen), array)
    assert path.read_bytes() == before
    whole = open_input(str(path)).read_all()  # fit's rows: in memory, the file's dtype
    assert type(whole) is np.ndarray and whole.dtype == array.dtype
    np.testing.assert_array_equal(whole, array)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 4), }"
    header += " " * (129 - 10 - len(header)) + "\n"  # data at byte 130: not float32-aligned
    (tmp_path / "odd.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                       + header.encode() + array.tobytes())
    batches = list(open_input(str(tmp_path / "odd.npy")).batches(4))
    assert all(batch.flags.aligned for batch in batches)  # as the kernels expect
    np.testing.assert_array_equal(np.concatenate(batches), array)
