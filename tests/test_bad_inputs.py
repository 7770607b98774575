"""The bad-input battery (issue 7): every hostile or broken model file, weights file, input
and output through the command line, as CONTRACT §2-3 promise.

For every refusal: the contract's exit code; exactly one message on stderr (for `validate`,
one `FILE:LINE:COL:` line per error), no traceback; nothing on stdout; every output file
that existed is byte-identical and no temp file is left beside it. Most runs are
in-process (`cli`); terminals, closed pipes and signals use real processes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, Result, on_terminal, run_process
from tests.test_fuzz import h5_with_huge_dataset

PRECIOUS = b"precious bytes that no failed run may touch\n"
DENSE = ("input_shape: [4]\nweights: w.safetensors\nlayers:\n"
         "  - {type: Dense, units: 3, activation: relu}\n  - {type: Dense, units: 2}\n")
_POSITION = re.compile(r"^[^\n:]+:\d+:\d+: ")


def refused(result, code: int, *fragments: str, lines: int | None = 1) -> None:
    """`result` is a clean refusal: `code`, nothing on stdout, `lines` error lines on stderr
    (None: at least one), each `seqcli: error: ...` or `FILE:LINE:COL: ...`, no traceback."""
    assert result.code == code, result
    assert result.out in ("", b""), result
    err = result.err if isinstance(result.err, str) else result.err.decode("utf-8", "replace")
    errors = err.splitlines()
    assert "Traceback" not in err and "internal error" not in err, err
    assert errors, result
    if lines is not None:
        assert len(errors) == lines, err
    assert all(line.startswith("seqcli: error: ") or _POSITION.match(line)
               for line in errors), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in `folder` (recursively) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def unchanged(folder: Path, before: dict[str, bytes]) -> None:
    """No file in `folder` changed, appeared or vanished: no temp file left either."""
    after = snapshot(folder)
    assert sorted(after) == sorted(before), (sorted(after), sorted(before))
    for name, data in before.items():
        assert after[name] == data, name


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def raw_npy(header: str, body: bytes = b"") -> bytes:
    """A version 1.0 `.npy` whose header dict is `header`, verbatim, then `body`."""
    text = header.encode("latin-1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body


@pytest.fixture
def stdin(monkeypatch):
    """`stdin(data)`: make the in-process CLI read `data` (bytes) from a pipe-like stdin."""
    def feed(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))

    return feed


def _permissions_are_bypassed() -> bool:
    """True when this process ignores file modes (root, or CAP_DAC_OVERRIDE)."""
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f".seqcli-probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.chmod(0)
    try:
        probe.open("rb").close()
        return True
    except PermissionError:
        return False
    finally:
        probe.unlink()


@pytest.fixture
def deny(monkeypatch):
    """`deny(path, mode=0)`: chmod `path`; where modes are not enforced (root), also make any
    open of it, or of anything under it, fail with EACCES as it would for a user."""
    bypassed = _permissions_are_bypassed()

    def apply(path: Path, mode: int = 0) -> None:
        path.chmod(mode)
        if not bypassed:
            return
        import builtins

        real_open, real_os_open, real_mkdtemp = builtins.open, os.open, __import__(
            "tempfile").mkdtemp

        def refused_path(target) -> bool:
            return isinstance(target, (str, os.PathLike)) and (
                Path(target).absolute().is_relative_to(path.absolute()))

        def fake_open(target, *args, **kwargs):
            if refused_path(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(target))
            return real_open(target, *args, **kwargs)

        def fake_os_open(target, *args, **kwargs):
            if refused_path(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(target))
            return real_os_open(target, *args, **kwargs)

        def fake_mkdtemp(*args, dir=None, **kwargs):  # noqa: A002 (tempfile's own name)
            if dir is not None and refused_path(dir):
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real_mkdtemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr("tempfile.mkdtemp", fake_mkdtemp)

    yield apply


@pytest.fixture
def work(tmp_path):
    """A folder with a Dense 4-3-2 model, its weights, an input, and an `out/` folder of
    precious files that failed runs must leave as they are."""
    from seqcli.io.weights import write_safetensors

    rng = np.random.default_rng(7)
    weights = {"dense/kernel": rng.normal(size=(4, 3)), "dense/bias": rng.normal(size=3),
               "dense_1/kernel": rng.normal(size=(3, 2)), "dense_1/bias": rng.normal(size=2)}
    (tmp_path / "m.yaml").write_text(DENSE)
    write_safetensors(tmp_path / "w.safetensors", weights)
    np.savez(tmp_path / "w.npz", **weights)
    np.save(tmp_path / "x.npy", rng.normal(size=(5, 4)).astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("y.npy", "all.npz", "w.safetensors", "w.npz", "frozen.yaml", "ranks.txt"):
        (out / name).write_bytes(PRECIOUS)
    return Work(tmp_path, weights)


class Work:
    """The `work` folder: `model`, `x`, `out/`, and helpers to add files and commands."""

    def __init__(self, root: Path, weights: dict):
        self.root, self.weights = root, weights
        self.model, self.x, self.out = root / "m.yaml", root / "x.npy", root / "out"

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def runs(self, model: Path) -> list[list]:
        """Commands that read `model` and would write into `out/`."""
        return [["predict", model, self.x, "-o", self.out / "y.npy"],
                ["extract", model, self.x, "--all", "-o", self.out / "all.npz"],
                ["init", model, "-o", self.out / "w.safetensors"],
                ["freeze", model, "--all-but-last", "-o", self.out / "frozen.yaml"]]


# --- model files -------------------------------------------------------------------------

# (id, model text, exit code, message fragment, number of `validate` lines)
BAD_MODELS = [
    ("empty", "", 65, "this one is empty", 1),
    ("comment-only", "# nothing here\n", 65, "this one is empty", 1),
    ("a list", "- type: Dense\n", 65, "this one is a list", 1),
    ("a scalar", "Dense\n", 65, "this one is a string", 1),
    ("broken YAML", "layers:\n  - {type: Dense, units: 3\n", 65, "invalid YAML", 1),
    ("tab indentation", "layers:\n\t- {type: Dense, units: 3}\n", 65, "invalid YAML", 1),
    ("two documents", "layers: []\n---\nlayers: []\n", 65, "invalid YAML", 1),
    ("duplicate keys", "input_shape: [4]\nlayers: []\ninput_shape: [5]\n", 65,
     "3:1: duplicate key 'input_shape' (first defined at line 1)", 1),
    ("duplicate layer keys", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, units: 4}\n",
     65, "duplicate key 'units'", 1),
    ("billion laughs",
     'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
     'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n'
     'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\nlayers: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n',
     65, "1:4: YAML anchors are not allowed (&a)", 1),
    ("alias", "input_shape: [4]\nlayers:\n  - *dense\n", 65,
     "3:5: YAML aliases are not allowed (*dense)", 1),
    ("merge key", "input_shape: [4]\nlayers:\n  - {<<: {type: Dense}, units: 3}\n", 65,
     "merge keys (<<) are not allowed", 1),
    ("python apply tag", "layers: !!python/object/apply:os.system ['touch PWNED']\n", 65,
     "1:9: YAML tags are not allowed (!!python/object/apply:os.system)", 1),
    ("python name tag", "input_shape: [4]\nlayers:\n  - !!python/name:os.system\n", 65,
     "tags are not allowed (!!python/name:os.system)", 1),
    ("python module tag", "layers:\n  - {type: !!python/module:os Dense}\n", 65,
     "tags are not allowed", 1),
    ("binary tag", "name: !!binary aGVsbG8=\nlayers: []\n", 65, "tags are not allowed (!!binary)",
     1),
    ("custom tag", "input_shape: [4]\nlayers:\n  - !Dense {units: 3}\n", 65,
     "tags are not allowed (!Dense)", 1),
    ("unknown key", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, activaton: relu}\n",
     65, "3:29: unknown key 'activaton' for Dense. Did you mean 'activation'?", 1),
    ("unknown top-level key", "input_shap: [4]\nlayers:\n  - {type: Dense, units: 3}\n", 65,
     "1:1: unknown key 'input_shap' for model file. Did you mean 'input_shape'?", 1),
    ("unknown type", "input_shape: [4]\nlayers:\n  - {type: Conv2d, filters: 3}\n", 65,
     "3:5: unknown layer type 'Conv2d'. Did you mean 'Conv2D'?", 1),
    ("unknown activation", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, "
     "activation: rlu}\n", 65, "Did you mean 'relu'?", 1),
    ("out-of-range values", "input_shape: [8, 8, 1]\nlayers:\n  - {type: Dense, units: 0}\n"
     "  - {type: Dropout, rate: 1.5}\n  - {type: Conv2D, filters: 2, kernel_size: -1}\n", 65,
     "units=0", 3),
    ("wrong types", "input_shape: [4]\nlayers:\n  - {type: Dense, units: '3'}\n"
     "  - {type: Dense, units: 3.5}\n  - {type: Dense, units: [3]}\n"
     "  - {type: Dense, units: 3, use_bias: yes}\n", 65, "valid integer", 4),
    ("layers not a list", "layers: {type: Dense}\n", 65, "expected a list", 1),
    ("a layer not a mapping", "input_shape: [4]\nlayers:\n  - Dense\n", 65,
     "expected a mapping", 1),
    ("input shape not a list", "input_shape: 4\nlayers:\n  - {type: Dense, units: 3}\n", 65,
     "1:14: model file input_shape: expected a list", 1),
    ("negative seed", "seed: -1\ninput_shape: [4]\nlayers:\n  - {type: Dense, units: 3}\n", 65,
     "seed", 1),
    ("duplicate layer names", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, name: a}\n"
     "  - {type: Dense, units: 3, name: a}\n", 65, "4:5: duplicate layer name 'a'", 1),
    ("layer named ..", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, name: '..'}\n",
     65, "layer name '..' must be", 1),
    ("layer name with a slash", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, "
     "name: a/b}\n", 65, "contain no '/'", 1),
    ("layer name with a NUL", 'input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, '
     'name: "a\\0b"}\n', 65, "control characters", 1),
    ("channels_first", "input_shape: [3, 8, 8]\nlayers:\n  - {type: Conv2D, filters: 2, "
     "kernel_size: 3, data_format: channels_first}\n", 65, "only data_format 'channels_last'", 1),
    ("impossible shapes", "input_shape: [4, 4, 1]\nlayers:\n  - {type: Conv2D, filters: 2, "
     "kernel_size: 5}\n", 65, "3:5: layer 'conv2d' (Conv2D): computed output size would be "
     "zero or negative", 1),
    ("rank mismatch", "input_shape: [4]\nlayers:\n  - {type: MaxPooling2D}\n", 65,
     "(height, width, channels)", 1),
    ("reshape that cannot be", "input_shape: [5]\nlayers:\n  - {type: Reshape, "
     "target_shape: [2, -1]}\n", 65, "size of the new array must be unchanged", 1),
    ("noise shape that cannot broadcast", "input_shape: [4]\nlayers:\n  - {type: Dropout, "
     "rate: 0.5, noise_shape: [null, 99999999999999999999]}\n", 65,
     "noise_shape needs one entry per axis of the input", 1),
    ("beyond int32", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 99999999999999999999}"
     "\n", 65, "at most 2147483647", 1),
    ("stride beyond int64", "input_shape: [8, 8, 1]\nlayers:\n  - {type: MaxPooling2D, "
     "strides: 9223372036854775808}\n", 65, "at most 2147483647", 1),
    ("tensor too large", "input_shape: [64, 64, 64]\nlayers:\n  - {type: Dense, "
     "units: 100000000}\n", 65, "more than the 2,147,483,647 seqcli allows", 1),
    ("input shape too large", "input_shape: [100000, 100000]\nlayers:\n"
     "  - {type: GlobalAveragePooling1D}\n", 65, "more than the 2,147,483,647", 1),
    ("control character", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3}\x07\n", 65,
     "3:28: invalid YAML: control character #x0007", 1),
    ("NUL byte", "\x00input_shape: [4]\n", 65, "1:1: invalid YAML: control character #x0000",
     1),
    ("ten thousand nested lists", "layers: " + "[" * 10_000 + "]" * 10_000 + "\n", 65,
     "nested more than 100 levels deep", 1),
    ("ten thousand nested mappings", "layers: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
     65, "nested more than 100 levels deep", 1),
    ("deep block nesting", "layers:\n" + "".join(" " * i + "-\n" for i in range(1000)), 65,
     "nested more than 100 levels deep", 1),
    ("deep nested models", "input_shape: [4]\nlayers:\n" + "".join(
        "    " * i + "  - type: Sequential\n" + "    " * i + "    layers:\n" for i in range(40))
     + "    " * 40 + "  - {type: Dense, units: 2}\n", 65, "nested more than 32 levels deep", 1),
    ("weights outside via ..", "input_shape: [4]\nweights: ../w.npz\nlayers:\n"
     "  - {type: Dense, units: 3}\n", 65, "2:10: weights file path '../w.npz' leads outside",
     1),
    ("weights absolute", "input_shape: [4]\nweights: /etc/passwd\nlayers:\n"
     "  - {type: Dense, units: 3}\n", 65, "is absolute", 1),
]


BUILD_ERRORS = {"impossible shapes", "rank mismatch", "reshape that cannot be",
                "tensor too large", "input shape too large", "noise shape that cannot broadcast"}
"""Cases found when shapes are inferred: `freeze`, which infers none, accepts them."""


@pytest.mark.parametrize(("case", "text", "code", "message", "lines"), BAD_MODELS,
                         ids=[case[0] for case in BAD_MODELS])
def test_bad_model_file(cli, work, case, text, code, message, lines):
    model = work.write("sub/bad.yaml", text)
    result = cli("validate", model)
    refused(result, code, message, lines=lines)
    assert all(line.startswith(f"{model}:") for line in result.err.splitlines())
    before = snapshot(work.root)
    for args in work.runs(model) + [["summary", model, "--json"]]:
        if args[0] == "freeze" and case in BUILD_ERRORS:
            continue
        refused(cli(*args), code, message, lines=None)
    unchanged(work.root, before)
    assert not (work.root / "sub" / "PWNED").exists() and not Path("PWNED").exists()


def test_missing_model_file(cli, work):
    for args in work.runs(work.root / "nope.yaml") + [["validate", work.root / "nope.yaml"]]:
        refused(cli(*args), 66, "nope.yaml: no such model file")


def test_model_file_that_is_a_folder(cli, work):
    before = snapshot(work.root)
    for args in work.runs(work.out) + [["summary", work.out]]:
        refused(cli(*args), 66, "is a folder, not a model file")
    unchanged(work.root, before)


def test_unreadable_model_file(cli, work, deny):
    deny(work.model)
    refused(cli("validate", work.model), 66, "cannot read the model file", "ermission denied")


def test_huge_model_file_is_refused_before_parsing(cli, work):
    model = work.write("big.yaml", "layers: []\n" + ("#" * 80 + "\n") * 60_000)
    started = time.monotonic()
    refused(cli("validate", model), 65, "1:1: model file is larger than 4 MB")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("encoded", "message"), [
    ("input_shape: [4]\nname: caf\u00e9\n".encode("latin-1"),
     "1:1: model file is not UTF-8 text (byte 26"),
    ("input_shape: [4]\n".encode("utf-16"), "1:1: model file is not UTF-8 text (byte 0"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "1:1: this is a PNG image, not a model file (YAML)"),
], ids=["latin-1", "utf-16", "binary"])
def test_non_utf8_model_file(cli, work, encoded, message):
    model = work.write("enc.yaml", encoded)
    refused(cli("validate", model), 65, message)


def test_model_file_from_a_fifo(cli, work):
    """`seqcli validate <(generate-model)`: a FIFO is read like a file; garbage is refused."""
    for text, code in [(DENSE, 0), ("layers: [\n", 65)]:
        fifo = work.root / "model.fifo"
        os.mkfifo(fifo)
        writer = threading.Thread(target=fifo.write_text, args=(text,))
        writer.start()
        result = cli("validate", fifo)
        writer.join(10)
        fifo.unlink()
        if code:
            refused(result, code, "invalid YAML")
        else:
            assert result.code == 0 and result.out.startswith("OK: "), result


def test_freeze_keeps_windows_line_ends(cli, work):
    model = work.write("crlf.yaml", "input_shape: [4]\r\nlayers:\r\n  - type: Dense\r\n"
                                    "    units: 3\r\n  - {type: Dense, units: 2}\r\n")
    result = cli("freeze", model, "--all-but-last", "--in-place")
    assert result.code == 0, result
    assert model.read_bytes() == (b"input_shape: [4]\r\nlayers:\r\n  - type: Dense\r\n"
                                  b"    trainable: false\r\n    units: 3\r\n"
                                  b"  - {type: Dense, units: 2}\r\n")


def test_model_on_stdin_that_is_binary(cli, work, stdin):
    stdin(b"\xff\xfe\x00garbage")
    refused(cli("summary", "-"), 65, "<stdin>:1:1: model file is not UTF-8 text")


def test_from_cycle_between_model_files(cli, work):
    work.write("a.yaml", "layers:\n  - {type: Sequential, from: b.yaml}\n")
    work.write("b.yaml", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 2}\n"
                         "  - {type: Sequential, from: c.yaml}\n")
    work.write("c.yaml", "layers:\n  - {type: Sequential, from: a.yaml}\n")
    before = snapshot(work.root)
    result = cli("validate", work.root / "a.yaml")
    refused(result, 65, "'from' makes a cycle between model files: a.yaml -> b.yaml -> c.yaml "
                        "-> a.yaml")
    assert result.err.startswith(f"{work.root / 'c.yaml'}:2:30: ")
    for args in work.runs(work.root / "a.yaml"):
        refused(cli(*args), 65, "cycle", lines=None)
    unchanged(work.root, before)


@pytest.mark.parametrize(("target", "message"), [
    ("nope.yaml", "/sub/nope.yaml: no such model file"),
    ("../out", "is a folder, not a model file"),
    ("../x.npy", "this is a .npy array, not a model file (YAML)"),
    ("../outside.yaml", "leads outside the model file's folder"),
], ids=["missing", "a folder", "binary", "outside"])
def test_bad_from_targets(cli, work, target, message):
    work.write("outside.yaml", "layers:\n  - {type: Dense, units: 2}\n")
    model = work.write("sub/m.yaml", "input_shape: [4]\nlayers:\n"
                                     f"  - {{type: Sequential, from: {target}}}\n")
    result = cli("validate", model, *([] if "outside" in target else ["--allow-outside"]))
    refused(result, 65, message)
    assert result.err.startswith(f"{model}:3:30: ")


def test_from_chain_longer_than_the_nesting_limit(cli, work):
    for index in range(40):
        work.write(f"chain{index}.yaml",
                   f"layers:\n  - {{type: Sequential, from: chain{index + 1}.yaml}}\n")
    work.write("chain40.yaml", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 2}\n")
    refused(cli("validate", work.root / "chain0.yaml"), 65, "nested more than 32 levels deep")


def test_weights_symlink_outside_is_refused_unless_allowed(cli, work):
    inner = work.root / "inner"
    inner.mkdir()
    (inner / "w.safetensors").symlink_to(work.root / "w.safetensors")
    model = work.write("inner/m.yaml", DENSE)
    refused(cli("validate", model), 65, "through a symbolic link", "--allow-outside")
    assert cli("validate", model, "--allow-outside").code == 0
    outside = work.write("inner/o.yaml", DENSE.replace("w.safetensors", "../w.safetensors"))
    refused(cli("predict", outside, work.x, "-o", work.out / "y.npy"), 65, "through '..'")
    assert cli("predict", outside, work.x, "-o", work.root / "y.npy", "--allow-outside").code == 0


# --- weights files -----------------------------------------------------------------------


def _safetensors(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _entry(shape, begin=0, dtype="F32"):
    size = int(np.prod(shape)) * {"F64": 8, "F16": 2, "BF16": 2}.get(dtype, 4)
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, begin + size]}


KERNEL = _entry((4, 3))
HOSTILE_SAFETENSORS = [
    ("truncated", lambda good: good[:-5], "not a valid safetensors file"),
    ("shorter than 8 bytes", lambda good: b"\x01\x02", "fewer than 8"),
    ("header length beyond the file", lambda good: struct.pack("<Q", 10**6) + good[8:],
     "beyond the end"),
    ("header length of 2**63", lambda good: struct.pack("<Q", 2**63) + b"{}",
     "over the 100000000 limit"),
    ("header not JSON", lambda good: struct.pack("<Q", 4) + b"{]}x", "the header is not JSON"),
    ("header a list", lambda good: _safetensors([1], b""), "not a JSON object"),
    ("deeply nested header", lambda good: struct.pack("<Q", 200_006) + b'{"a":' +
     b"[" * 100_000 + b"]" * 100_000 + b"}", "the header is not JSON"),
    ("duplicate keys", lambda good: struct.pack("<Q", 26) + b'{"a": {}, "a": {}}        ',
     "duplicate key 'a'"),
    ("shape bomb", lambda good: _safetensors({"dense/kernel": {
        "dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 48]}}, b"\0" * 48),
     "declares shape (1099511627776, 1099511627776)"),
    ("offsets beyond the data", lambda good: _safetensors({"dense/kernel": _entry((4, 3))},
                                                          b"\0" * 10), "outside the 10 bytes"),
    ("overlapping tensors", lambda good: _safetensors(
        {"dense/kernel": KERNEL, "dense/bias": _entry((12,))}, b"\0" * 48), "overlaps"),
    ("negative offsets", lambda good: _safetensors({"dense/kernel": {
        "dtype": "F32", "shape": [4, 3], "data_offsets": [-48, 0]}}, b"\0" * 48),
     "invalid data_offsets"),
    ("dtype a list", lambda good: _safetensors({"dense/kernel": dict(KERNEL, dtype=["F32"])},
                                               b"\0" * 48), "invalid dtype ['F32']"),
    ("integer tensor", lambda good: _safetensors({"dense/kernel": _entry((4, 3), dtype="I32")},
                                                 b"\0" * 48), "has dtype I32, expected a float"),
    ("bfloat16 tensor", lambda good: _safetensors({"dense/kernel": _entry((4, 3), dtype="BF16")},
                                                  b"\0" * 24), "has dtype BF16"),
    ("entry without dtype", lambda good: _safetensors({"dense/kernel": {"shape": [1]}}, b""),
     "lacks dtype, shape or data_offsets"),
    ("metadata not strings", lambda good: _safetensors(
        {"__metadata__": {"a": 1}, "dense/kernel": KERNEL}, b"\0" * 48),
     "not a valid safetensors file"),
    ("not safetensors at all", lambda good: b"PK\x03\x04" + b"\0" * 100, "header length"),
]


@pytest.mark.parametrize(("case", "make", "message"), HOSTILE_SAFETENSORS,
                         ids=[case[0] for case in HOSTILE_SAFETENSORS])
def test_hostile_safetensors(cli, work, case, make, message):
    hostile = work.write("h.safetensors", make((work.root / "w.safetensors").read_bytes()))
    before = snapshot(work.root)
    refused(cli("validate", work.model, "--weights", hostile), 65, message)
    refused(cli("predict", work.model, work.x, "--weights", hostile, "-o", work.out / "y.npy"),
            65, message)
    refused(cli("init", work.model, "--weights-from", hostile, "-o", work.out / "w.npz"),
            65, message)
    unchanged(work.root, before)


def _npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _declared_sizes(blob: bytes, size: int) -> bytes:
    """`blob` (a zip) with every central-directory entry claiming `size` uncompressed bytes."""
    data = bytearray(blob)
    at = data.find(b"PK\x01\x02")
    while at != -1:
        data[at + 24 : at + 28] = struct.pack("<I", size)
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


def _good_members(weights) -> dict[str, bytes]:
    return {f"{key}.npy": npy_bytes(np.asarray(value, np.float32))
            for key, value in weights.items()}


class Evil:
    """Unpickling this would create a file: the proof that nothing is unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


HOSTILE_NPZ = [
    ("missing tensor", lambda w, root: _npz({k: v for k, v in _good_members(w).items()
                                             if k != "dense_1/bias.npy"}),
     ["missing tensor dense_1/bias of shape (2,)"], 1),
    ("extra tensor", lambda w, root: _npz(dict(_good_members(w), **{"extra.npy": npy_bytes(
        np.zeros(3, np.float32))})), ["unexpected tensor extra of shape (3,)"], 1),
    ("misshapen tensor", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": npy_bytes(np.zeros((3, 4), np.float32))})),
     ["dense/kernel has shape (3, 4), expected (4, 3)"], 1),
    ("every problem at once", lambda w, root: _npz({
        "dense/kernel.npy": npy_bytes(np.zeros((3, 4), np.float32)),
        "dense/bias.npy": npy_bytes(np.zeros(3, np.float32)),
        "dense_1/kernel.npy": npy_bytes(np.zeros((3, 2), np.float32)),
        "dense_1/bais.npy": npy_bytes(np.zeros(2, np.float32))}),
     ["dense/kernel has shape", "missing tensor dense_1/bias of shape (2,); did you mean "
      "'dense_1/bais' (same shape (2,))?", "unexpected tensor dense_1/bais"], 3),
    ("integer tensor", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": npy_bytes(np.zeros((4, 3), np.int32))})), ["dtype int32"], 1),
    ("complex tensor", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": npy_bytes(np.zeros((4, 3), np.complex64))})), ["complex64"], 1),
    ("boolean tensor", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": npy_bytes(np.zeros((4, 3), bool))})), ["bool"], 1),
    ("pickled objects", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": npy_bytes(np.array([Evil(str(root / "PWNED"))], object),
                                      allow_pickle=True)})), ["object array", "pickle"], 1),
    ("float64 beyond float32", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/bias.npy": npy_bytes(np.full(3, 1e300))})), ["beyond the float32 range"], 1),
    ("shape bomb", lambda w, root: _npz(dict(_good_members(w), **{"dense/kernel.npy": raw_npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999), }",
        b"\0" * 48)})), ["declares shape (99999999999, 99999) float32"], 1),
    ("header that is code", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": raw_npy("__import__('os').system('touch PWNED')")})),
     ["invalid .npy header"], 1),
    ("declared sizes of a zip bomb", lambda w, root: _declared_sizes(
        _npz(_good_members(w), zipfile.ZIP_DEFLATED), 0xFFFF_FFF0),
     ["likely zip bomb"], 1),
    ("a real zip bomb", lambda w, root: _npz(dict(_good_members(w), **{
        "dense/kernel.npy": npy_bytes(np.zeros((3_000, 1_000), np.float32))}),
        zipfile.ZIP_DEFLATED), ["compressed", "likely zip bomb"], 1),
    ("truncated archive", lambda w, root: _npz(_good_members(w))[:-30],
     ["not a valid .npz file"], 1),
    ("not a zip", lambda w, root: b"hello, not a zip", ["not a valid .npz file"], 1),
    ("member not an array", lambda w, root: _npz(dict(_good_members(w), **{"notes.txt": b"hi"})),
     ["member 'notes.txt' is not a .npy array"], 1),
    ("member path escaping", lambda w, root: _npz(dict(_good_members(w), **{
        "../../evil.npy": npy_bytes(np.zeros(1, np.float32))})),
     ["unexpected tensor ../../evil"], 1),
]


@pytest.mark.parametrize(("case", "make", "messages", "lines"), HOSTILE_NPZ,
                         ids=[case[0] for case in HOSTILE_NPZ])
def test_hostile_npz(cli, work, case, make, messages, lines):
    hostile = work.write("h.npz", make(work.weights, work.root))
    before = snapshot(work.root)
    refused(cli("validate", work.model, "--weights", hostile), 65, *messages, lines=lines)
    refused(cli("predict", work.model, work.x, "--weights", hostile, "-o", work.out / "y.npy"),
            65, *messages, lines=lines)
    unchanged(work.root, before)
    assert not (work.root / "PWNED").exists()
    assert not (work.root.parent / "evil.npy").exists()


def test_missing_weights(cli, work):
    model = work.write("nw.yaml", DENSE.replace("w.safetensors", "gone.safetensors"))
    before = snapshot(work.root)
    refused(cli("predict", model, work.x, "-o", work.out / "y.npy"), 66,
            "gone.safetensors does not exist yet", "seqcli init")
    for args in (["validate", model, "--weights", work.root / "gone.npz"],
                 ["predict", work.model, work.x, "--weights", work.root / "gone.npz"]):
        refused(cli(*args), 66, "gone.", "no such weights file")
    unchanged(work.root, before)


@pytest.mark.parametrize("kind", ["folder", "fifo", "unreadable", "suffix"])
def test_weights_that_cannot_be_read(cli, work, kind, deny):
    path = work.root / ("w.h5" if kind == "suffix" else "bad.npz")
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # never opened for reading: that would block
    else:
        path.write_bytes(work.root.joinpath("w.npz").read_bytes())
    if kind == "unreadable":
        deny(path)
    code, message = {"folder": (66, "is a directory"), "fifo": (66, "is not a regular file"),
                     "unreadable": (66, "ermission denied"),
                     "suffix": (65, "unsupported weights file type '.h5'")}[kind]
    refused(cli("validate", work.model, "--weights", path), code, message)


# --- inputs ------------------------------------------------------------------------------

BAD_INPUTS = [
    ("truncated", lambda: npy_bytes(np.zeros((5, 4), np.float32))[:-7], "truncated"),
    ("header only", lambda: npy_bytes(np.zeros((5, 4), np.float32))[:128], "truncated"),
    ("empty", lambda: b"", "no data at all"),
    ("not .npy", lambda: b"x,y\n1,2\n", "is CSV text, not a .npy array"),
    ("unsupported version", lambda: b"\x93NUMPY\x07\x00" + b"\0" * 20, "unsupported .npy format"),
    ("header too long", lambda: b"\x93NUMPY\x02\x00" + struct.pack("<I", 10**9) + b"{",
     "larger than 10000"),
    ("header not a dict", lambda: b"\x93NUMPY\x01\x00\x10\x00" + b"__import__('os')",
     "invalid .npy header"),
    ("pickled objects", lambda: npy_bytes(np.array([[Evil("PWNED")] * 4], object),
                                          allow_pickle=True), "object array"),
    ("complex", lambda: npy_bytes(np.zeros((2, 4), np.complex64)), "dtype complex64"),
    ("structured", lambda: npy_bytes(np.zeros((2, 4), [("a", "<f4")])), "structured array"),
    ("strings", lambda: npy_bytes(np.array([["1"] * 4])), "dtype <U1"),
    ("datetimes", lambda: npy_bytes(np.zeros((2, 4), "datetime64[s]")), "datetime64"),
    ("0-d", lambda: npy_bytes(np.float32(1)), "a 0-d array"),
    ("wrong feature size", lambda: npy_bytes(np.zeros((2, 5), np.float32)),
     "input has shape (2, 5), but the model expects (None, 4)"),
    ("wrong rank", lambda: npy_bytes(np.zeros((2, 4, 1), np.float32)), "expects (None, 4)"),
    ("one-dimensional", lambda: npy_bytes(np.zeros(4, np.float32)), "input has shape (4,)"),
    ("shape bomb", lambda: raw_npy("{'descr': '<f4', 'fortran_order': False, "
                                   "'shape': (4611686018427387904, 4), }", b"\0" * 64),
     "truncated"),
    ("Fortran shape bomb", lambda: raw_npy("{'descr': '<f4', 'fortran_order': True, "
                                           "'shape': (1000000000000, 4), }", b"\0" * 64),
     "truncated"),
    ("negative shape", lambda: raw_npy("{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (-2, 4), }"), "negative size"),
    ("trailing data", lambda: npy_bytes(np.zeros((2, 4), np.float32)) + b"more",
     "check that it is a single .npy array"),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_bad_input(cli, work, stdin, case, make, message, via):
    data = make()
    source = work.write("bad.npy", data)
    if via == "stdin":
        stdin(data)
        source = "-"
    before = snapshot(work.root)
    for args in (["predict", work.model, source, "-o", work.out / "y.npy"],
                 ["extract", work.model, source, "--all", "-o", work.out / "all.npz"],
                 ["predict", work.model, source, "--top-k", "1", "-o", work.out / "ranks.txt"]):
        if via == "stdin":
            stdin(data)
        refused(cli(*args), 65, message)
    unchanged(work.root, before)
    assert not Path("PWNED").exists() and not (work.root / "PWNED").exists()


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_input_too_large_for_a_deferred_build(cli, work, stdin, via):
    """A header declaring 10^23 values per sample: refused before the model is built."""
    model = work.write("deferred.yaml", "layers:\n  - {type: Dense, units: 2}\n")
    data = raw_npy("{'descr': '<f4', 'fortran_order': False, "
                   "'shape': (1, 99999999999999999999999), }", b"\0" * 64)
    source = work.write("huge.npy", data)
    stdin(data)
    result = cli("predict", model, "-" if via == "stdin" else source, "-o", work.out / "y.npy")
    refused(result, 65, "truncated" if via == "file" else "more than the 2,147,483,647")


def test_missing_and_unreadable_inputs(cli, work, deny):
    before = snapshot(work.root)
    refused(cli("predict", work.model, work.root / "nope.npy", "-o", work.out / "y.npy"), 66,
            "no such file")
    refused(cli("extract", work.model, work.out, "--all", "-o", work.out / "all.npz"), 65,
            "no image files there")  # a folder is read as images
    deny(work.x)
    refused(cli("predict", work.model, work.x, "-o", work.out / "y.npy"), 66,
            "ermission denied")
    unchanged(work.root, before)


CONVERSIONS = {
    "big-endian float32": lambda x: x.astype(">f4"),
    "big-endian float64": lambda x: x.astype(">f8"),
    "Fortran order": np.asfortranarray,
    "Fortran big-endian": lambda x: np.asfortranarray(x.astype(">f4")),
    "int16": lambda x: x.astype(np.int16),
}


@pytest.mark.parametrize("convert", CONVERSIONS.values(), ids=CONVERSIONS.keys())
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_byte_order_and_layout_are_converted(cli, work, stdin, convert, via):
    """Big-endian and Fortran-order inputs give the very bytes a native input gives."""
    native = np.arange(40, dtype=np.float32).reshape(10, 4) - 20
    np.save(work.root / "native.npy", native)
    converted = work.write("converted.npy", npy_bytes(convert(native)))
    outputs = {}
    for name, source in (("native", work.root / "native.npy"), ("converted", converted)):
        for command, extra, out in (("predict", [], "y.npy"), ("extract", ["--all"], "a.npz")):
            target = work.root / f"{name}-{out}"
            args = [command, work.model, source, *extra, "-o", target, "--batch-size", "3",
                    "--quiet"]
            if via == "stdin" and name == "converted":
                stdin(converted.read_bytes())
                args[2] = "-"
            result = cli(*args)
            assert result.code == 0 and result.err == "", result
            outputs[name, command] = target.read_bytes()
    assert outputs["native", "predict"] == outputs["converted", "predict"]
    assert outputs["native", "extract"] == outputs["converted", "extract"]


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_nan_and_inf_warn_with_the_count_and_the_run_goes_on(cli, work, stdin, via):
    x = np.ones((6, 4), np.float32)
    x[1, 0], x[1, 2], x[4, 3] = np.nan, np.inf, -np.inf
    x64 = x.astype(np.float64)
    x64[5, 1] = 1e300  # beyond float32: Inf once converted
    source = work.write("nan.npy", npy_bytes(x64))
    for command, extra, target in (("predict", [], "y.npy"), ("extract", ["--layer", "dense"],
                                                               "f.npy")):
        if via == "stdin":
            stdin(source.read_bytes())
        result = cli(command, work.model, "-" if via == "stdin" else source, *extra,
                     "-o", work.root / target, "--batch-size", "2", "--quiet")
        assert result.code == 0, result
        (warning,) = result.err.splitlines()
        assert warning.startswith("seqcli: warning: ")
        assert "1 NaN and 3 Inf values in 3 of 6 rows" in warning and "--strict" in warning
        y = np.load(work.root / target)
        assert np.isfinite(y[[0, 2, 3]]).all()


@pytest.mark.parametrize("command", ["predict", "extract"])
def test_strict_refuses_nan_and_inf(cli, work, stdin, command):
    x = np.ones((9, 4), np.float32)
    x[7, 1] = np.nan
    source = work.write("nan.npy", npy_bytes(x))
    extra = ["--layer", "dense"] if command == "extract" else []
    before = snapshot(work.root)
    for where in (source, "-"):
        stdin(source.read_bytes())
        result = cli(command, work.model, where, *extra, "--strict", "--batch-size", "2",
                     "-o", work.out / "y.npy")
        refused(result, 65, "row 7 holds NaN or Inf values; --strict refuses them")
    unchanged(work.root, before)
    finite = work.write("ok.npy", npy_bytes(np.ones((3, 4), np.float32)))
    result = cli(command, work.model, finite, *extra, "--strict", "--quiet",
                 "-o", work.root / "ok-y.npy")
    assert result.code == 0 and result.err == "", result


def test_outputs_overflowing_from_finite_inputs_warn(cli, work):
    model = work.write("ovf.yaml", "input_shape: [1]\nlayers:\n  - {type: Rescaling, scale: 1e38}"
                                   "\n  - {type: Activation, activation: exponential}\n")
    source = work.write("one.npy", npy_bytes(np.ones((3, 1), np.float32)))
    result = cli("predict", model, source, "-o", work.root / "y.npy", "--quiet")
    assert result.code == 0
    assert result.err == ("seqcli: warning: the outputs hold 0 NaN and 3 Inf values in 3 of 3 "
                          "rows, from finite inputs\n")


def test_weights_beyond_the_available_memory_are_refused_before_allocation(cli, work,
                                                                          monkeypatch):
    """A valid model whose initial weights cannot fit: one message, exit 1, nothing drawn."""
    from seqcli.runtime import initializers

    model = work.write("wide.yaml", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 1000}\n")
    monkeypatch.setattr("seqcli.runtime.weights.available_memory", lambda: 10_000)
    monkeypatch.setattr(initializers, "initial_value", lambda *args: pytest.fail("allocated"))
    before = snapshot(work.root)
    for args in (["predict", model, work.x, "-o", work.out / "y.npy"],
                 ["init", model, "-o", work.out / "w.npz"]):
        refused(cli(*args), 1, "wide.yaml: the model's weights need 50.78 KB of memory, more "
                               "than the 9.77 KB this machine has available")
    unchanged(work.root, before)


def test_output_may_replace_its_own_input(cli, work):
    expected = work.root / "expected.npy"
    assert cli("predict", work.model, work.x, "-o", expected).code == 0
    assert cli("predict", work.model, work.x, "-o", work.x).code == 0
    assert work.x.read_bytes() == expected.read_bytes()


# --- outputs -----------------------------------------------------------------------------


KERAS_FILE = REPO / "tests" / "keras_files" / "image_stack.keras"


def _writers(work: Work, out: Path) -> list[list]:
    """A command for every kind of output seqcli writes, all into `out`."""
    y = work.root / "y.npy"
    np.save(y, np.ones((5, 2), np.float32))
    return [
        ["predict", work.model, work.x, "-o", out / "y.npy"],
        ["predict", work.model, work.x, "--top-k", "2", "-o", out / "ranks.txt"],
        ["extract", work.model, work.x, "--layer", "dense", "-o", out / "f.npy"],
        ["extract", work.model, work.x, "--all", "-o", out / "all.npz"],
        ["init", work.model, "-o", out / "w.safetensors"],
        ["init", work.model, "-o", out / "w.npz"],
        ["freeze", work.model, "--all-but-last", "-o", out / "frozen.yaml"],
        ["fit", work.model, work.x, y, "--quiet", "-o", out / "fit.safetensors"],
        ["fit", work.model, work.x, y, "--quiet", "-o", out / "fit.npz", "--history",
         out / "h.json"],
        ["export-onnx", work.model, "-o", out / "m.onnx"],
        ["export-keras", work.model, "-o", out / "m.keras"],
        ["import-keras", KERAS_FILE, "-o", out / "imported.yaml", "--force"],
    ]


def test_output_folder_that_does_not_exist(cli, work):
    missing = work.root / "missing"
    for args in _writers(work, missing):
        refused(cli(*args), 73, "cannot write", "does not exist")
    assert not missing.exists()


def test_output_folder_without_write_permission(cli, work, deny):
    locked = work.root / "locked"
    locked.mkdir()
    for name in ("y.npy", "all.npz", "w.safetensors"):
        (locked / name).write_bytes(PRECIOUS)
    before = snapshot(locked)
    deny(locked, 0o555)
    for args in _writers(work, locked):
        refused(cli(*args), 73, "cannot write", "permission denied")
    locked.chmod(0o755)
    unchanged(locked, before)


def test_output_that_is_a_folder(cli, work):
    folders = work.root / "folders"
    for args in _writers(work, folders):
        for arg in args:
            if isinstance(arg, Path) and arg.parent == folders:
                arg.mkdir(parents=True, exist_ok=True)
        refused(cli(*args), 73, "it is a directory")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_to_a_full_device(cli, work):
    for args in _writers(work, work.root):
        if args[0] in ("init", "fit", "import-keras", "export-keras"):  # need a suffix
            continue
        args[args.index("-o") + 1] = "/dev/full"
        refused(cli(*args), 73, "cannot write /dev/full: no space left on device")


def _failing_fdopen(limit: int):
    """An `os.fdopen` whose files fail with ENOSPC once `limit` bytes are written to them."""
    real = os.fdopen

    class Full(io.FileIO):
        written = 0

        def write(self, data):
            if self.written + len(data) > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return super().write(data)

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" not in mode:
            return real(fd, mode, *args, **kwargs)
        buffered = io.BufferedWriter(Full(fd, "wb"), buffer_size=16)
        return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding="utf-8")

    return fdopen


@pytest.mark.parametrize("limit", [0, 100])
def test_failure_mid_write_leaves_every_output_intact(cli, work, monkeypatch, limit):
    """Atomic writes everywhere: a disk that fills up mid-write changes no existing file."""
    targets = work.out
    for name in ("y.npy", "ranks.txt", "f.npy", "all.npz", "w.safetensors", "w.npz",
                 "frozen.yaml", "fit.safetensors", "fit.npz", "h.json", "m.onnx", "m.keras",
                 "imported.yaml", "imported.safetensors"):
        (targets / name).write_bytes(PRECIOUS)
    commands = _writers(work, targets)
    before = snapshot(work.root)
    monkeypatch.setattr(os, "fdopen", _failing_fdopen(limit))
    for args in commands:
        refused(cli(*args), 73, "no space left on device")
    in_place = work.write("frozen-in-place.yaml", DENSE)
    before[in_place.name] = in_place.read_bytes()
    refused(cli("freeze", in_place, "--layer", "dense", "--in-place"), 73, "no space left")
    unchanged(work.root, before)


def test_interrupt_mid_run_leaves_every_output_intact(cli, work, monkeypatch):
    """Ctrl-C in the middle of a run (any writer): exit 130, old files intact, no temp."""
    from seqcli.runtime import model as runtime_model

    big = work.write("big.npy", npy_bytes(np.ones((50, 4), np.float32)))
    real_forward, calls = runtime_model.forward, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    before = snapshot(work.root)
    for args in (["predict", work.model, big, "-o", work.out / "y.npy", "--batch-size", "4"],
                 ["extract", work.model, big, "--all", "-o", work.out / "all.npz",
                  "--batch-size", "4"]):
        calls.clear()
        monkeypatch.setattr(runtime_model, "forward", interrupted)
        monkeypatch.setattr("seqcli.runtime.extract.forward", interrupted)
        result = cli(*args)
        assert result.code == 130 and result.err == "seqcli: error: interrupted\n", result
    unchanged(work.root, before)


def test_no_command_writes_files_but_through_atomic_output():
    """Every file seqcli writes goes through `atomic_output` (or a writer built on it)."""
    forbidden = re.compile(r"atomic=True|\.write_text\(|\.write_bytes\(|np\.save\(|np\.savez(_compressed)?\(|"
                           r"\.tofile\(|open_memmap\(|(?<![.\w])open\([^)]*['\"][wax]b?\+?['\"]")
    offenders = []
    for path in sorted((REPO / "seqcli").rglob("*.py")):
        if path.name == "atomic.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if forbidden.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_usage_errors_are_one_line(cli, work):
    for args, message in [
        (["predict", work.model, work.x, "--batch-size", "0"], "--batch-size"),
        (["predict", work.model, work.x, "--bogus"], "No such option"),
        (["predict"], "Missing argument"),
        (["extract", work.model, work.x, "--layer", "dens"], "Did you mean 'dense'?"),
        (["predict", work.model, work.x, "--argmax", "--top-k", "2"], "alternatives"),
        (["init", work.model, "--seed", "-1", "-o", work.out / "w.npz"], "--seed"),
        (["fit", work.model, work.x, work.x, "-o", work.out / "w.h5"], "end in .safetensors"),
        (["summary", work.model, "--input-shape", "4,y"], "--input-shape"),
    ]:
        refused(cli(*args), 2, message)


# --- real processes: terminals, closed pipes, signals ------------------------------------


def test_binary_output_to_a_terminal_is_refused(work):
    for args in (["predict", work.model, work.x],
                 ["extract", work.model, work.x, "--layer", "dense"],
                 ["extract", work.model, work.x, "--all"],
                 ["init", work.model, "-o", "-"]):
        code, err, shown = on_terminal(*args)
        assert code == 2, err
        assert err.startswith("seqcli: error: refusing to write binary") and err.count("\n") == 1
        assert shown == b""
    code, err, shown = on_terminal("predict", work.model, work.x, "--argmax")  # text is fine
    assert code == 0 and len(shown.split()) == 5, err


def test_input_from_a_terminal_is_refused(work):
    for args in (["predict", work.model, "-o", work.out / "y.npy"], ["summary", "-"]):
        code, err, _ = on_terminal(*args, stdin_terminal=True)
        assert code == 2 and err.startswith("seqcli: error: refusing to read"), err
        assert err.count("\n") == 1


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    """A model and an input that take seconds to predict in batches of 1."""
    folder = tmp_path_factory.mktemp("long")
    (folder / "m.yaml").write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 3}\n")
    np.save(folder / "x.npy", np.ones((300_000, 4), np.float32))
    return folder


@pytest.mark.parametrize("args", [
    ["predict", "m.yaml", "x.npy"],
    ["predict", "m.yaml", "x.npy", "--top-k", "2"],
    ["extract", "m.yaml", "x.npy", "--all"],
    ["extract", "m.yaml", "x.npy", "--layer", "dense"],
], ids=["npy", "text", "npz", "one layer"])
def test_stdout_closed_early_is_a_quiet_exit_1(long_input, args):
    """`seqcli predict ... | head -c1`: exit 1, nothing on stderr (no "Exception ignored")."""
    process = subprocess.Popen([sys.executable, "-m", "seqcli", *args, "--batch-size", "1000",
                                "--quiet"],
                               cwd=long_input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(process.stdout.read(1)) == 1
    process.stdout.close()
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(120) == 1
    assert err == b""


def _wait_for_temp(folder: Path, process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not [p for p in folder.iterdir() if p.name.endswith(".tmp")]:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no temp file appeared"
        time.sleep(0.05)
    time.sleep(0.3)  # well into the run


@pytest.mark.parametrize(("signum", "code", "message"), [
    (signal.SIGINT, 130, b"seqcli: error: interrupted\n"),
    (signal.SIGTERM, 143, b"seqcli: error: terminated by SIGTERM\n"),
], ids=["SIGINT", "SIGTERM"])
def test_signal_in_the_middle_of_a_long_predict(long_input, tmp_path, signum, code, message):
    target = tmp_path / "y.npy"
    target.write_bytes(PRECIOUS)
    process = subprocess.Popen([sys.executable, "-m", "seqcli", "predict", "m.yaml", "x.npy",
                                "-o", target, "--batch-size", "1", "--quiet"], cwd=long_input,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=_interruptible)
    _wait_for_temp(tmp_path, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert (out, err) == (b"", message)
    assert sorted(os.listdir(tmp_path)) == ["y.npy"] and target.read_bytes() == PRECIOUS


def _interruptible() -> None:
    """In a child about to run seqcli: Ctrl-C's default handling, even where the test run was
    started with SIGINT ignored (a background job of a non-interactive shell is)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


SLOW_FSYNC = """
import os, sys, time
real_fsync = os.fsync
def slow_fsync(fd):
    time.sleep(60)
    real_fsync(fd)
os.fsync = slow_fsync
from seqcli.cli import run
sys.argv = ["seqcli", *sys.argv[1:]]
run()
"""


def test_ctrl_c_during_an_in_place_freeze(tmp_path):
    """The model file stays as it was and the temp file beside it goes."""
    model = tmp_path / "m.yaml"
    model.write_text(DENSE.replace("weights: w.safetensors\n", ""))
    before = model.read_bytes()
    process = subprocess.Popen([sys.executable, "-c", SLOW_FSYNC, "freeze", str(model),
                                "--all-but-last", "--in-place"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=_interruptible)
    _wait_for_temp(tmp_path, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert (out, err) == (b"", b"seqcli: error: interrupted\n")
    assert os.listdir(tmp_path) == ["m.yaml"] and model.read_bytes() == before


def test_debug_shows_the_traceback(work):
    done = run_process("validate", work.root / "nope.yaml", env={"SEQCLI_DEBUG": "1"})
    assert done.returncode != 0 and b"Traceback" in done.stderr
    done = run_process("validate", work.root / "nope.yaml")
    assert done.returncode == 66 and b"Traceback" not in done.stderr


# --- issue 16: outputs ---


@pytest.fixture
def immutable():
    """`immutable(path)`: `chattr +i path` until the test ends; skips where that is refused."""
    made = []

    def apply(path: Path) -> None:
        try:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        except FileNotFoundError:
            pytest.skip("no chattr here")
        if done.returncode != 0:
            pytest.skip("chattr +i is refused here")
        made.append(path)

    yield apply
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


UNWRITABLE = {  # kind of output that cannot be replaced -> the message's fragment
    "folder": "it is a directory",
    "read-only": "it is read-only",
    "immutable": "permission denied",
    "full device": "no space left on device",
}


def _unwritable(path: Path, kind: str, immutable) -> str:
    """Make `path` an output of `kind` (see UNWRITABLE); its message fragment."""
    if kind == "folder":
        path.mkdir()
    elif kind == "full device":
        if not os.path.exists("/dev/full"):
            pytest.skip("needs /dev/full")
        path.symlink_to("/dev/full")
    else:
        path.write_bytes(PRECIOUS)
        if kind == "read-only":
            path.chmod(0o444)
        else:
            immutable(path)
    return UNWRITABLE[kind]


@pytest.mark.parametrize("kind", UNWRITABLE)
@pytest.mark.parametrize("blocked", ["imported.yaml", "imported.safetensors"])
def test_import_keras_writes_the_model_file_and_its_weights_or_neither(cli, work, immutable,
                                                                       blocked, kind):
    """Whichever of the two cannot be written, the other is neither replaced nor left new."""
    target = work.out / "imported.yaml"
    for name in ("imported.yaml", "imported.safetensors"):
        if name != blocked:
            (work.out / name).write_bytes(PRECIOUS)
    message = _unwritable(work.out / blocked, kind, immutable)
    before = snapshot(work.out)
    refused(cli("import-keras", KERAS_FILE, "-o", target, "--quiet", "--force"), 73, message)
    unchanged(work.out, before)
    if blocked == "imported.yaml":  # nor is a new weights file left without its model file
        (work.out / "imported.safetensors").unlink()
        refused(cli("import-keras", KERAS_FILE, "-o", target, "--quiet"), 73, message)
        assert not (work.out / "imported.safetensors").exists()


def test_all_or_none_stages_every_output_until_the_block_ends(tmp_path):
    from seqcli.io.atomic import all_or_none, atomic_output

    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(PRECIOUS)
    with pytest.raises(RuntimeError), all_or_none():
        with atomic_output(first) as out:
            out.write(b"new a")
        assert first.read_bytes() == PRECIOUS  # written, fsynced, not yet in place
        with atomic_output(second) as out:
            out.write(b"new b")
        raise RuntimeError("the command fails after writing both")
    assert os.listdir(tmp_path) == ["a.bin"] and first.read_bytes() == PRECIOUS
    with all_or_none():
        with atomic_output(first) as out:
            out.write(b"new a")
        with all_or_none():  # a block within another joins it
            with atomic_output(second) as out:
                out.write(b"new b")
        assert not second.exists()
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]
    assert (first.read_bytes(), second.read_bytes()) == (b"new a", b"new b")


def test_all_or_none_checks_every_target_before_the_first_rename(tmp_path):
    """A target that became a folder while the files were written stops every rename."""
    from seqcli.errors import OutputError
    from seqcli.io.atomic import all_or_none, atomic_output

    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(PRECIOUS)
    with pytest.raises(OutputError, match="b.bin: it is a directory"), all_or_none():
        for target in (first, second):
            with atomic_output(target) as out:
                out.write(b"new")
        second.mkdir()
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]
    assert first.read_bytes() == PRECIOUS and second.is_dir()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_fit_keeps_its_weights_when_the_history_fails(cli, work):
    """The weights are written first, the history fails (a full device): `-o` stays as it was."""
    y = work.write("y.npy", npy_bytes(np.ones((5, 2), np.float32)))
    before = snapshot(work.out)
    for output in ("w.safetensors", "w.npz", "new.npz"):
        refused(cli("fit", work.model, work.x, y, "--quiet", "-o", work.out / output,
                    "--history", "/dev/full"), 73, "cannot write /dev/full: no space left")
    unchanged(work.out, before)


def test_fit_refuses_one_file_for_weights_and_history(cli, work):
    y = work.write("y.npy", npy_bytes(np.ones((5, 2), np.float32)))
    before = snapshot(work.root)
    refused(cli("fit", work.model, work.x, y, "-o", work.out / "w.npz", "--history",
                work.out / ".." / "out" / "w.npz"), 2, "-o and --history name the same file")
    unchanged(work.root, before)


def _work_fails(monkeypatch) -> None:
    """Make the first step of every command's work fail: a refusal must come before it."""
    def work_started(*args, **kwargs):
        raise AssertionError("the work started before the outputs were checked")

    for name in ("seqcli.runtime.runner.prepare_run",  # predict, extract
                 "seqcli.build.build",  # init
                 "seqcli.config.freeze.plan",  # freeze
                 "seqcli.training.data.read_training_arrays",  # fit
                 "seqcli.config.load.load_model",  # export-keras
                 "seqcli.interop.onnx_export.convert_model_file",  # export-onnx
                 "seqcli.interop.keras_import.read_keras_file",  # import-keras
                 "seqcli.cli.keras.load"):  # import-keras --weights-only
        monkeypatch.setattr(name, work_started)


OUTPUT_DEFECTS = {  # what is wrong with every output -> the message's fragment
    "missing folder": "does not exist",
    "parent is a file": "a parent of it is not a folder",
    "folder": "it is a directory",
    "read-only": "it is read-only",
}


@pytest.mark.parametrize("defect", OUTPUT_DEFECTS)
def test_every_output_is_checked_before_the_work_starts(cli, work, monkeypatch, defect):
    """Each command and output option: a bad output path is refused up front (73)."""
    out = work.root / "bad"
    if defect == "parent is a file":
        out.write_bytes(PRECIOUS)
    elif defect != "missing folder":
        out.mkdir()
    commands = _writers(work, out) + [
        ["import-keras", work.model, "--weights-only", KERAS_FILE, "-o", out / "w.npz"],
        ["fit", work.model, work.x, work.root / "y.npy", "-o", work.root / "fit.npz",
         "--history", out / "h.json"],
    ]
    if defect == "read-only":
        in_place = work.write("in-place.yaml", DENSE)
        in_place.chmod(0o444)
        commands.append(["freeze", in_place, "--layer", "dense", "--in-place"])
    for args in commands:
        for arg in args:
            if isinstance(arg, Path) and arg.parent == out and defect == "folder":
                arg.mkdir(exist_ok=True)
            elif isinstance(arg, Path) and arg.parent == out and defect == "read-only":
                arg.write_bytes(PRECIOUS)
                arg.chmod(0o444)
    before = snapshot(work.root)
    _work_fails(monkeypatch)
    for args in commands:
        result = cli(*args)
        assert result.code == 73, (args, result)
        refused(result, 73, "cannot write", OUTPUT_DEFECTS[defect])
    unchanged(work.root, before)


@pytest.fixture
def stdout_work(work):
    """`work` with targets for `fit`, and a model without weights (its note goes to stderr)."""
    np.save(work.root / "y.npy", np.ones((5, 2), np.float32))
    work.write("bare.yaml", DENSE.replace("weights: w.safetensors\n", ""))
    return work


STDOUT_COMMANDS = {  # every command that can print to stdout
    "summary": ["summary", "m.yaml"],
    "summary --json": ["summary", "m.yaml", "--json"],
    "validate": ["validate", "m.yaml"],
    "bench": ["bench", "m.yaml", "--seconds", "0"],
    "bench --json": ["bench", "m.yaml", "--seconds", "0", "--json"],
    "predict": ["predict", "m.yaml", "x.npy", "--quiet"],
    "predict --argmax": ["predict", "m.yaml", "x.npy", "--argmax", "--quiet"],
    "predict --top-k": ["predict", "m.yaml", "x.npy", "--top-k", "2", "--quiet"],
    "extract": ["extract", "m.yaml", "x.npy", "--layer", "dense", "--quiet"],
    "extract --all": ["extract", "m.yaml", "x.npy", "--all", "--quiet"],
    "freeze": ["freeze", "m.yaml", "--all-but-last"],
    "init -o -": ["init", "m.yaml", "-o", "-"],
    "import-keras --weights-only": [
        "import-keras", REPO / "tests" / "keras_reference" / "models" / "nested_frozen.yaml",
        "--weights-only", KERAS_FILE.parent / "ref_nested_frozen.weights.h5", "-o", "-"],
    "export-keras": ["export-keras", "m.yaml", "-o", "-", "--quiet"],
    "export-onnx": ["export-onnx", "m.yaml", "-o", "-", "--quiet"],
    "fit --history -": ["fit", "m.yaml", "x.npy", "y.npy", "-o", "fit.npz", "--history", "-",
                        "--quiet"],
    "--version": ["--version"],
}


def _with_stdout(folder: Path, args: list, stdout: str, stderr=subprocess.PIPE):
    """Run seqcli in `folder` with stdout `closed` (`>&-`) or on `/dev/full`: a `Result`."""

    with open(os.devnull if stdout == "closed" else "/dev/full", "wb") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "seqcli", *map(str, args)], cwd=folder, stdout=sink,
            stderr=stderr, timeout=300,
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None)
    return Result(done.returncode, b"", done.stderr.decode() if done.stderr else "")


@pytest.mark.parametrize("stdout", [
    "closed",
    pytest.param("full", marks=pytest.mark.skipif(not os.path.exists("/dev/full"),
                                                  reason="needs /dev/full"))])
@pytest.mark.parametrize("command", STDOUT_COMMANDS)
def test_stdout_closed_or_full_is_a_clear_exit_73(stdout_work, command, stdout):
    """`seqcli ... >&-` and `seqcli ... >/dev/full`: one line, exit 73, no traceback."""
    args = STDOUT_COMMANDS[command]
    before = snapshot(stdout_work.root)
    message = "it is closed" if stdout == "closed" else "no space left on device"
    refused(_with_stdout(stdout_work.root, args, stdout), 73,
            f"seqcli: error: cannot write <stdout>: {message}")
    unchanged(stdout_work.root, before)


def test_files_are_written_with_stdout_closed(stdout_work):
    """Only what goes to stdout is refused; no output file takes stdout's descriptor."""
    for args in (["predict", "bare.yaml", "x.npy", "-o", "y2.npy"],
                 ["init", "bare.yaml", "-o", "w2.npz"]):
        done = _with_stdout(stdout_work.root, args, "closed")
        assert done.code == 0 and "Traceback" not in done.err, done
    assert np.load(stdout_work.root / "y2.npy").shape == (5, 2)
    assert sorted(np.load(stdout_work.root / "w2.npz")) == sorted(stdout_work.weights)


def test_stderr_closed_keeps_notes_off_stdout(stdout_work):
    """`seqcli predict bare.yaml x.npy 2>&-`: the note on initial weights is dropped, not
    written into the `.npy` on stdout."""
    done = subprocess.run([sys.executable, "-m", "seqcli", "predict", "bare.yaml", "x.npy"],
                          cwd=stdout_work.root, stdout=subprocess.PIPE, timeout=300,
                          preexec_fn=lambda: os.close(2))
    assert done.returncode == 0
    assert np.load(io.BytesIO(done.stdout)).shape == (5, 2)


# --- issue 16: input arrays and weights files ---


class _Shrinking:
    """`victim` loses its tail, down to `size` bytes, just before its read number `at` (from
    1): a file truncated by another process while a command reads it. Positioned reads
    (inputs, safetensors) count when they read `victim`; zip member reads (npz) all count."""

    def __init__(self, monkeypatch, victim: Path, size: int, at: int):
        from seqcli.io import weights

        self.victim, self.size, self.at, self.reads = victim, size, at, 0
        inode, real_preadv, real_member_read = victim.stat().st_ino, os.preadv, \
            weights.readinto_exactly

        def preadv(fd, buffers, offset):
            if os.fstat(fd).st_ino == inode:
                self._count()
            return real_preadv(fd, buffers, offset)

        def member_read(stream, array):
            self._count()
            return real_member_read(stream, array)

        monkeypatch.setattr(os, "preadv", preadv)
        monkeypatch.setattr(weights, "readinto_exactly", member_read)

    def _count(self) -> None:
        self.reads += 1
        if self.reads == self.at:
            os.truncate(self.victim, self.size)


INPUT_READERS = {  # a command reading its input in batches of 2 -> its output in out/
    "predict": ["predict", "{model}", "{x}", "--batch-size", "2", "-o", "y.npy"],
    "predict --top-k": ["predict", "{model}", "{x}", "--batch-size", "2", "--top-k", "1",
                        "-o", "ranks.txt"],
    "extract": ["extract", "{model}", "{x}", "--batch-size", "2", "--layer", "dense",
                "-o", "y.npy"],
    "extract --all": ["extract", "{model}", "{x}", "--batch-size", "2", "--all",
                      "-o", "all.npz"],
}


def _command(work: Work, template: list, **names) -> list:
    """`template` with `{model}`, `{x}`... filled in; a bare file name is one in `out/`."""
    args = []
    for part in template:
        if part.startswith("{"):
            args.append(names[part[1:-1]])
        elif part.endswith((".npy", ".npz", ".txt", ".safetensors", ".yaml")):
            args.append(work.out / part)
        else:
            args.append(part)
    return args


@pytest.mark.parametrize("layout", ["C", "Fortran"])
@pytest.mark.parametrize("command", INPUT_READERS)
def test_input_truncated_while_it_is_read(cli, work, monkeypatch, command, layout):
    """The input shrinks after some batches are out: a clear 65, never SIGBUS (the file is
    read, not mapped), every output as it was."""
    array = np.arange(36, dtype=np.float32).reshape(9, 4)
    x = work.write("long.npy", npy_bytes(np.asfortranarray(array) if layout == "Fortran"
                                         else array))
    if layout == "Fortran":  # blocks of 2 rows: one read per column (4) and block
        monkeypatch.setattr("seqcli.io.arrays._READ_CHUNK", 16)
    before = snapshot(work.out)
    _Shrinking(monkeypatch, x, 200, at=6 if layout == "Fortran" else 3)  # after a batch
    refused(cli(*_command(work, INPUT_READERS[command], model=work.model, x=x)), 65,
            f"{x}: the file was truncated while it was read")
    unchanged(work.out, before)


@pytest.mark.parametrize("victim", ["X", "Y"])
def test_training_data_truncated_while_fit_reads_it(cli, work, monkeypatch, victim):
    np.save(work.root / "y.npy", np.ones((5, 2), np.float32))
    path = work.x if victim == "X" else work.root / "y.npy"
    before = snapshot(work.out)
    _Shrinking(monkeypatch, path, 130, at=1)
    refused(cli("fit", work.model, work.x, work.root / "y.npy", "-o", work.out / "w.npz"),
            65, f"{path}: the file was truncated while it was read")
    unchanged(work.out, before)


def _base_weights(work: Work, suffix: str) -> Path:
    """`base.safetensors` or `base.npz`: the first Dense layer's weights of `work`."""
    from seqcli.io.weights import write_safetensors

    base = {key: value for key, value in work.weights.items() if key.startswith("dense/")}
    path = work.root / f"base{suffix}"
    if suffix == ".npz":
        np.savez(path, **base)
    else:
        write_safetensors(path, base)
    return path


def _nested(work: Work, weights: str) -> Path:
    """A model taking its first layers, and their weights (`weights`), from `base.yaml`."""
    work.write("base.yaml", f"input_shape: [4]\nweights: {weights}\nlayers:\n"
                            "  - {type: Dense, units: 3, activation: relu}\n")
    return work.write("outer.yaml", "input_shape: [4]\nlayers:\n"
                                    "  - {type: Sequential, name: base, from: base.yaml}\n"
                                    "  - {type: Dense, units: 2}\n")


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("how", ["validate", "predict", "init --weights-from", "from:"])
def test_weights_truncated_while_they_are_read(cli, work, monkeypatch, suffix, how):
    """A weights file that shrinks between its header and its data, or within its data."""
    weights = work.root / f"w{suffix}"
    if how == "from:":
        weights = _base_weights(work, suffix)
        args = ["predict", _nested(work, weights.name), work.x, "-o", work.out / "y.npy"]
    else:
        args = {"validate": ["validate", work.model, "--weights", weights],
                "predict": ["predict", work.model, work.x, "--weights", weights, "-o",
                            work.out / "y.npy"],
                "init --weights-from": ["init", work.model, "--weights-from", weights, "-o",
                                        work.out / "w.npz"]}[how]
    before = snapshot(work.out)
    _Shrinking(monkeypatch, weights, weights.stat().st_size // 2, at=2 if suffix ==
               ".safetensors" else 1)  # a small member is read with its header: the next fails
    refused(cli(*args), 65, f"{weights}: the file was truncated while it was read")
    unchanged(work.out, before)


def test_weights_changed_between_header_and_data(cli, work, monkeypatch):
    from seqcli.io import weights

    real = weights.open_weights

    def open_then_shrink(path):
        opened = real(path)
        os.truncate(path, path.stat().st_size - 8)
        return opened

    monkeypatch.setattr(weights, "open_weights", open_then_shrink)
    monkeypatch.setattr("seqcli.runtime.weights.open_weights", open_then_shrink)
    for name in ("w.safetensors", "w.npz"):
        refused(cli("validate", work.model, "--weights", work.root / name), 65,
                "the file changed while it was read")


@pytest.mark.parametrize("args", [
    ["predict", "m.yaml", "x.npy", "-o", "y.npy"],
    ["extract", "m.yaml", "x.npy", "--all", "-o", "y.npz"],
], ids=["predict", "extract"])
def test_input_truncated_by_another_process_mid_run(long_input, tmp_path, args):
    """The issue's reproduction with a real process: no SIGBUS, one line, exit 65, the
    output as it was and no temp file."""
    for name in ("m.yaml", "x.npy"):
        (tmp_path / name).write_bytes((long_input / name).read_bytes())
    target = tmp_path / args[-1]
    target.write_bytes(PRECIOUS)
    process = subprocess.Popen([sys.executable, "-m", "seqcli", *args, "--batch-size", "1",
                                "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    _wait_for_temp(tmp_path, process)
    os.truncate(tmp_path / "x.npy", 128)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 65, err
    assert out == b"" and err.count(b"\n") == 1, err
    assert err.startswith(b"seqcli: error: x.npy: the file was truncated while it was read")
    assert sorted(os.listdir(tmp_path)) == sorted(["m.yaml", "x.npy", args[-1]])
    assert target.read_bytes() == PRECIOUS


ZERO_SIZE_MODELS = {  # model text -> the input (beyond 10**12 rows) whose samples are empty
    "declared": (DENSE, "(1000000000000, 0)"),
    "deferred Dense": ("layers:\n  - {type: Dense, units: 2}\n", "(1000000000000, 0)"),
    "deferred Activation": ("layers:\n  - {type: Activation, activation: relu}\n",
                            "(1000000000000, 0)"),
    "deferred Conv2D": ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: 1}\n",
                        "(1000000000000, 4, 4, 0)"),
    "unknown steps": ("input_shape: [null, 4]\nlayers:\n  - {type: LSTM, units: 2}\n",
                      "(1000000000000, 0, 4)"),
    "deferred Embedding": ("layers:\n  - {type: Embedding, input_dim: 5, output_dim: 2}\n",
                           "(1000000000000, 0)"),
}


@pytest.mark.parametrize("via", ["file", "stdin"])
@pytest.mark.parametrize("case", ZERO_SIZE_MODELS)
def test_zero_size_samples_are_refused_at_once(cli, work, stdin, case, via):
    """A 128-byte header declaring 10**12 empty samples: refused before any batch, in no
    time, by every command that takes an input."""
    text, shape = ZERO_SIZE_MODELS[case]
    model = work.write("zero.yaml", text)
    data = raw_npy(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
    source = work.write("zero.npy", data)
    np.save(work.root / "y.npy", np.zeros((10, 2), np.float32))
    before = snapshot(work.out)
    commands = [["predict", model, source, "-o", work.out / "y.npy"],
                ["extract", model, source, "--all", "-o", work.out / "all.npz"],
                ["predict", model, source, "--top-k", "1", "-o", work.out / "ranks.txt"]]
    if via == "file":
        work.write("yz.npy", raw_npy(f"{{'descr': '<f4', 'fortran_order': False, "
                                     f"'shape': {shape}, }}"))
        commands.append(["fit", model, source, work.root / "yz.npy", "-o", work.out / "w.npz"])
    for args in commands:
        if via == "stdin":
            stdin(data)
            args[2] = "-"
        start = time.monotonic()
        refused(cli(*args), 65, "a model cannot take empty samples")
        assert time.monotonic() - start < 10
    unchanged(work.out, before)


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_zero_rows_give_zero_rows_at_once(cli, work, stdin, via):
    """(0, 4) is a valid input, as in Keras: a (0, 2) output."""
    data = npy_bytes(np.zeros((0, 4), np.float32))
    source = work.write("none.npy", data)
    for command, extra, name in (("predict", [], "y0.npy"), ("extract", ["--all"], "a0.npz")):
        stdin(data)
        result = cli(command, work.model, "-" if via == "stdin" else source, *extra,
                     "-o", work.root / name, "--quiet")
        assert (result.code, result.err) == (0, ""), result
    assert np.load(work.root / "y0.npy").shape == (0, 2)
    with np.load(work.root / "a0.npz") as found:
        assert {key: found[key].shape for key in found} == {"dense": (0, 3), "dense_1": (0, 2)}
    refused(cli("fit", work.model, source, source, "-o", work.out / "w.npz"), 65,
            "no rows to train on")


def _rank70(body: bytes = b"\0" * 4) -> bytes:
    return raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ("1, " * 70),
                   body)


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_inputs_of_more_than_64_axes_are_bad_data(cli, work, stdin, via):
    model = work.write("deferred.yaml", "layers:\n  - {type: Dense, units: 2}\n")
    source = work.write("r70.npy", _rank70())
    np.save(work.root / "y.npy", np.ones((1, 2), np.float32))
    before = snapshot(work.out)
    commands = [["predict", model, source, "-o", work.out / "y.npy"],
                ["extract", model, source, "--all", "-o", work.out / "all.npz"]]
    if via == "file":
        commands += [["fit", model, source, work.root / "y.npy", "-o", work.out / "w.npz"]]
    for args in commands:
        if via == "stdin":
            stdin(_rank70())
            args[2] = "-"
        refused(cli(*args), 65, "the array has 70 axes, more than the 64 numpy allows")
    unchanged(work.out, before)


def test_weights_of_more_than_64_axes_are_bad_data(cli, work):
    npz = work.write("r70.npz", _npz(dict(_good_members(work.weights),
                                          **{"dense/kernel.npy": _rank70()})))
    sft = work.write("r70.safetensors", _safetensors(
        {"dense/kernel": {"dtype": "F32", "shape": [1] * 70, "data_offsets": [0, 4]}}, bytes(4)))
    for path in (npz, sft):
        refused(cli("validate", work.model, "--weights", path), 65, "70 axes, more than the 64")
        refused(cli("init", work.model, "--weights-from", path, "-o", work.out / "w.npz"), 65,
                "70 axes, more than the 64")


DEFERRED_EMPTY = {  # a model without input shape -> an input bringing an axis of size 0
    "Dense": ("layers:\n  - {type: Dense, units: 2}\n", (5, 0)),
    "Conv2D channels": ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: 1}\n",
                        (2, 3, 3, 0)),
    "Conv2D height": ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: 1}\n",
                      (2, 0, 3, 3)),
    "LayerNormalization": ("layers:\n  - {type: LayerNormalization}\n", (5, 0)),
    "Flatten then Dense": ("layers:\n  - {type: Flatten}\n  - {type: Dense, units: 2}\n",
                           (5, 3, 0)),
    "GRU steps": ("input_shape: [null, 3]\nlayers:\n  - {type: GRU, units: 2}\n", (5, 0, 3)),
    "Embedding": ("layers:\n  - {type: Embedding, input_dim: 5, output_dim: 2}\n", (5, 0)),
}


@pytest.mark.parametrize("case", DEFERRED_EMPTY)
def test_an_axis_of_size_0_in_a_deferred_build_is_bad_data(cli, work, case):
    text, shape = DEFERRED_EMPTY[case]
    model = work.write("deferred.yaml", text)
    source = work.write("empty.npy", npy_bytes(np.zeros(shape, np.float32)))
    np.save(work.root / "y.npy", np.ones((shape[0], 2), np.float32))
    before = snapshot(work.out)
    for args in (["predict", model, source, "-o", work.out / "y.npy"],
                 ["extract", model, source, "--all", "-o", work.out / "all.npz"],
                 ["fit", model, source, work.root / "y.npy", "-o", work.out / "w.npz"]):
        refused(cli(*args), 65, f"axis {shape.index(0)} of the input has size 0")
    refused(cli("bench", model, "--input-shape", "4,0"), 2, "positive integers")
    unchanged(work.out, before)


def _compressed_npz(members: dict[str, bytes], big: dict[str, tuple[str, int]]) -> bytes:
    """An `.npz` of `members`, then `big` members {name: (descr, count)} of zeros, deflated
    (about 900:1, under the zip-bomb ratio) and streamed: a few hundred KB on disk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, (descr, count) in big.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": descr, "fortran_order": False, "shape": (count,)})
            with archive.open(name, "w", force_zip64=True) as member:
                member.write(header.getvalue())
                chunk = bytearray(4 << 20)
                chunk[::65536] = bytes(range(1, 65))  # a little noise: under 1000:1
                left = count * np.dtype(descr).itemsize
                while left:
                    member.write(chunk[:min(left, len(chunk))])
                    left -= min(left, len(chunk))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def heavy_weights(tmp_path_factory):
    """Weights files for the `work` model holding, beside the tensors it wants, one tensor it
    does not (300 MB once inflated or read), and one it wants, misshapen and as big."""
    from seqcli.io.weights import write_safetensors

    folder = tmp_path_factory.mktemp("heavy")
    rng = np.random.default_rng(7)
    weights = {"dense/kernel": rng.normal(size=(4, 3)), "dense/bias": rng.normal(size=3),
               "dense_1/kernel": rng.normal(size=(3, 2)), "dense_1/bias": rng.normal(size=2)}
    good = _good_members(weights)
    (folder / "extra.npz").write_bytes(_compressed_npz(good, {"extra.npy": ("<f2", 150 << 20)}))
    (folder / "misshapen.npz").write_bytes(_compressed_npz(
        {k: v for k, v in good.items() if k != "dense/kernel.npy"},
        {"dense/kernel.npy": ("<f2", 150 << 20)}))
    write_safetensors(folder / "extra.safetensors", weights)
    _append_sparse_tensor(folder / "extra.safetensors", "extra", 75 << 20)
    (folder / "m.yaml").write_text(DENSE.replace("w.safetensors", "extra.npz"))
    np.save(folder / "x.npy", np.ones((3, 4), np.float32))
    return folder


def _append_sparse_tensor(path: Path, key: str, count: int) -> None:
    """Add a float32 tensor of `count` zeros to a safetensors file, as a hole (no disk)."""
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    data = blob[8 + length:]
    header[key] = {"dtype": "F32", "shape": [count], "data_offsets": [len(data),
                                                                     len(data) + 4 * count]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as file:
        file.write(len(text).to_bytes(8, "little") + text + data)
        file.truncate(8 + len(text) + len(data) + 4 * count)


def _peak_rss_mb(*args, cwd, patch: str = "") -> tuple[int, bytes]:
    """(exit code and stderr, peak resident memory in MB) of `seqcli ARGS` in a fresh
    process, after running `patch` in it."""
    script = (f"import sys\n{patch}\nfrom seqcli.cli import run\n"
              "sys.argv = ['seqcli', *sys.argv[1:]]\nrun()\n")
    probe = ("import resource, subprocess, sys; "
             "done = subprocess.run(sys.argv[1:], capture_output=True); "
             "sys.stdout.write(f'{done.returncode} '); sys.stdout.flush(); "
             "sys.stdout.buffer.write(done.stderr); "
             "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-c", script,
                           *map(str, args)], capture_output=True, cwd=cwd, timeout=300)
    code, err = done.stdout.split(b" ", 1)
    return (int(code), err), int(done.stderr) // 1024


@pytest.mark.parametrize("case", [
    ("extra.npz", ["predict", "m.yaml", "x.npy", "--weights", "extra.npz", "-o", "y.npy"], 65,
     b"unexpected tensor extra of shape (157286400,)"),
    ("extra.npz", ["validate", "m.yaml"], 65, b"unexpected tensor extra"),
    ("extra.safetensors", ["validate", "m.yaml", "--weights", "extra.safetensors"], 65,
     b"unexpected tensor extra of shape (78643200,)"),
    ("misshapen.npz", ["validate", "m.yaml", "--weights", "misshapen.npz"], 65,
     b"dense/kernel has shape (157286400,), expected (4, 3)"),
    ("extra.npz", ["init", "m.yaml", "--weights-from", "extra.npz", "-o", "i.npz"], 0,
     b"not used: extra"),
    ("extra.safetensors", ["init", "m.yaml", "--weights-from", "extra.safetensors", "-o",
                           "i.npz"], 0, b"not used: extra"),
], ids=["predict npz", "validate npz", "validate safetensors", "misshapen npz",
        "init --weights-from npz", "init --weights-from safetensors"])
def test_tensors_a_model_does_not_want_are_never_read(heavy_weights, case):
    """Keys, shapes and dtypes come from the headers: an unwanted 300 MB tensor (a few
    hundred KB deflated, or a hole in the file) is refused or left unread."""
    _, args, code, message = case
    (result_code, err), peak = _peak_rss_mb(*args, cwd=heavy_weights)
    assert result_code == code and message in err, err
    assert peak < 250, peak  # reading the tensor would take 300 MB or more


def test_unwanted_tensors_are_not_read_in_process(cli, work):
    """The same, without measuring: the unwanted tensors' data would be refused if read (a
    bad CRC; float64 beyond float32's range), so the answer shows they were not."""
    good = _good_members(work.weights)
    values = np.arange(4096.0)  # beyond the 4 KB zipfile reads with a member's header
    corrupt = bytearray(_npz(dict(good, **{"extra.npy": npy_bytes(values)})))
    at = corrupt.index(values[4000:].tobytes())
    corrupt[at] ^= 0xFF
    npz = work.write("extra.npz", bytes(corrupt))
    from seqcli.io.weights import write_safetensors

    sft = work.root / "extra.safetensors"
    write_safetensors(sft, work.weights)
    blob = sft.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header, data = json.loads(blob[8:8 + length]), blob[8 + length:]
    header["extra"] = {"dtype": "F64", "shape": [2], "data_offsets": [len(data), len(data) + 16]}
    sft.write_bytes(_safetensors(header, data + np.full(2, 1e300).tobytes()))
    for path in (npz, sft):
        refused(cli("validate", work.model, "--weights", path), 65, "unexpected tensor extra")
        result = cli("init", work.model, "--weights-from", path, "-o", work.root / "i.npz")
        assert result.code == 0 and "not used: extra" in result.err, result


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("main", ["nested only", "model weights", "--weights"])
def test_nested_weights_are_sized_before_any_is_read(cli, work, monkeypatch, suffix, main):
    """`from:` files bring their weights: the memory they all need is checked from their
    headers, before a byte of data is read."""
    from seqcli.io import weights as weights_io
    from seqcli.io.weights import write_safetensors

    outer = _nested(work, _base_weights(work, suffix).name)
    args = ["predict", outer, work.x, "-o", work.out / "y.npy"]
    head = {key.replace("dense_1/", "dense/"): value for key, value in work.weights.items()
            if key.startswith("dense_1/")}
    write_safetensors(work.root / "head.safetensors", head)
    if main == "model weights":
        outer.write_text("weights: head.safetensors\n" + outer.read_text())
    elif main == "--weights":
        args += ["--weights", work.root / "head.safetensors"]
    monkeypatch.setattr("seqcli.runtime.weights.available_memory", lambda: 40)
    monkeypatch.setattr(weights_io, "read_into", lambda *a: pytest.fail("data read"))
    monkeypatch.setattr(weights_io, "readinto_exactly", lambda *a: pytest.fail("data read"))
    before = snapshot(work.out)
    refused(cli(*args), 1, "outer.yaml: the model's weights need",
            "of memory, more than the 40.00 B this machine has available")
    unchanged(work.out, before)


def test_nested_weights_beyond_memory_cost_no_memory(tmp_path):
    """The issue's reproduction: eight `from:` copies of a model with 256 MB of weights (a
    file with a hole), on a machine said to have 512 MB: refused at once, memory unspent."""
    n = 8192
    header = {"dense/kernel": {"dtype": "F32", "shape": [n, n], "data_offsets": [0, 4 * n * n]},
              "dense/bias": {"dtype": "F32", "shape": [n],
                             "data_offsets": [4 * n * n, 4 * n * n + 4 * n]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(tmp_path / "base.safetensors", "wb") as file:
        file.write(len(text).to_bytes(8, "little") + text)
        file.truncate(8 + len(text) + 4 * n * n + 4 * n)
    (tmp_path / "base.yaml").write_text(f"input_shape: [{n}]\nweights: base.safetensors\n"
                                        f"layers:\n  - {{type: Dense, units: {n}}}\n")
    (tmp_path / "outer.yaml").write_text(f"input_shape: [{n}]\nlayers:\n" + "".join(
        f"  - {{type: Sequential, name: s{i}, from: base.yaml}}\n" for i in range(8)))
    np.save(tmp_path / "x.npy", np.ones((1, n), np.float32))
    patch = ("import seqcli.runtime.weights as weights\n"
             "weights.available_memory = lambda: 512 << 20")
    (code, err), peak = _peak_rss_mb("predict", "outer.yaml", "x.npy", "-o", "y.npy",
                                     cwd=tmp_path, patch=patch)
    assert code == 1 and err == (b"seqcli: error: outer.yaml: the model's weights need 2.00 GB "
                                 b"of memory, more than the 512.00 MB this machine has "
                                 b"available; check the layer sizes in the model file\n"), err
    assert peak < 250, peak
    assert not (tmp_path / "y.npy").exists()


def test_training_data_beyond_memory_is_refused_before_it_is_read(cli, work, monkeypatch):
    """fit reads X and Y whole: their size, from the headers, is checked first."""
    np.save(work.root / "y.npy", np.ones((5, 2), np.float32))
    monkeypatch.setattr("seqcli.runtime.weights.available_memory", lambda: 100)
    monkeypatch.setattr(os, "preadv", lambda *args: pytest.fail("data read"))
    before = snapshot(work.out)
    refused(cli("fit", work.model, work.x, work.root / "y.npy", "-o", work.out / "w.npz"), 1,
            "hold 120.00 B of training data, more than the 100.00 B of memory this machine "
            "has available")
    unchanged(work.out, before)


def test_fortran_inputs_are_read_in_blocks_of_rows(monkeypatch, tmp_path):
    """A Fortran-order file (a row's values a column apart) is read a block of rows at a time,
    one read per column, and gives the rows a C-order file gives."""
    from seqcli.io.arrays import open_input

    array = np.arange(7 * 3 * 2, dtype=">f8").reshape(7, 3, 2)
    np.save(tmp_path / "f.npy", np.asfortranarray(array))
    monkeypatch.setattr("seqcli.io.arrays._READ_CHUNK", 24)  # blocks of one batch
    reads = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda *args: reads.append(1) or real(*args))
    with open_input(str(tmp_path / "f.npy")) as inputs:
        batches = list(inputs.batches(3))
        np.testing.assert_array_equal(inputs.read_all(), array)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), array.astype(np.float32))
    assert len(reads) == 3 * 6 + 336 // 24  # a read per block and column; then all at once


# --- issue 16: model files ---


def _fan_out_tree(folder: Path, width: int, depth: int) -> Path:
    """`m0.yaml` with `width` entries `from: m1.yaml`, which has `width` entries
    `from: m2.yaml`, and so on `depth` levels down: width**depth Dense layers from a few KB."""
    for level in range(depth):
        head = "input_shape: [4]\n" if level == 0 else ""
        entries = f"  - {{type: Sequential, from: m{level + 1}.yaml}}\n" * width
        (folder / f"m{level}.yaml").write_text(f"{head}layers:\n{entries}")
    (folder / f"m{depth}.yaml").write_text("layers:\n" + "  - {type: Dense, units: 2}\n" * width)
    return folder / "m0.yaml"


_COST_PROBE = """\
import resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run([sys.executable, "-m", "seqcli", *sys.argv[1:]], capture_output=True)
sys.stderr.buffer.write(done.stderr)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(done.returncode, time.monotonic() - started, peak, len(done.stdout))
"""


def _cost(*args, cwd: Path):
    """`seqcli ARGS` in a fresh process: (its Result, seconds, peak memory in bytes), measured
    by a parent of its own so that no earlier child of the tests counts."""

    done = subprocess.run([sys.executable, "-c", _COST_PROBE, *map(str, args)],
                          capture_output=True, cwd=cwd, timeout=300)
    code, seconds, peak, out = done.stdout.split()
    return Result(int(code), "" if out == b"0" else "(output)", done.stderr.decode()), \
        float(seconds), int(peak)


@pytest.mark.parametrize(("width", "depth"), [(60, 3), (60, 4), (8, 7)],
                         ids=["60x3", "60x4", "8x7"])
def test_from_fan_out_is_refused_before_it_is_built(cli, work, width, depth):
    """A few KB of `from:` files that expand to millions of layers: refused at once, naming
    the file and the limit, by every command."""
    model = _fan_out_tree(work.root, width, depth)
    before = snapshot(work.root)
    started = time.monotonic()
    result = cli("validate", model)
    assert time.monotonic() - started < 10
    refused(result, 65, "more than 100,000 layers once its nested models and 'from:' files are "
                        "expanded", "seqcli allows at most 100,000")
    assert re.match(rf"{re.escape(str(work.root))}/m\d\.yaml:\d+:5: ", result.err)
    for args in work.runs(model) + [["summary", model, "--json"]]:
        refused(cli(*args), 65, "more than 100,000 layers")
    unchanged(work.root, before)


def test_from_fan_out_costs_little_time_and_memory(work):
    """The reported case (four levels of 60) in a real process: seconds and MB, not hours."""
    model = _fan_out_tree(work.root, 60, 4)
    result, seconds, peak = _cost("validate", model, cwd=work.root)
    refused(result, 65, "more than 100,000 layers")
    assert seconds < 10 and peak < 400 * 1024**2, (seconds, peak)


def test_inline_fan_out_and_mixed_nesting_are_counted_too(cli, work):
    """Nested models written inline multiply like `from:` files."""
    inner = "      - {type: Sequential, from: leaf.yaml}\n" * 400
    work.write("leaf.yaml", "layers:\n" + "  - {type: Dense, units: 2}\n" * 500)
    model = work.write("inline.yaml", "input_shape: [4]\nlayers:\n"
                       + "  - type: Sequential\n    layers:\n" + inner)
    refused(cli("validate", model), 65, "more than 100,000 layers", "this entry adds 501")


def test_a_from_file_used_many_times_is_read_once(cli, work, monkeypatch):
    """Just below the limit, a model of many `from:` uses loads, each file read once."""
    from seqcli.config import load

    reads = []
    real = load._read_regular
    monkeypatch.setattr(load, "_read_regular", lambda path: reads.append(path) or real(path))
    model = _fan_out_tree(work.root, 30, 2)  # 30 * (1 + 30 * (1 + 30)) = 27,930 layers
    result = cli("validate", model)
    assert result.code == 0 and "OK: " in result.out, result
    assert sorted(path.name for path in reads) == ["m1.yaml", "m2.yaml"]


def test_from_cycle_and_depth_stop_the_count(cli, work):
    """A cycle or a chain too deep is reported once, even where fan-out would multiply it."""
    work.write("a.yaml", "input_shape: [4]\nlayers:\n" + "  - {type: Sequential, from: b.yaml}\n" * 50)
    work.write("b.yaml", "layers:\n" + "  - {type: Sequential, from: a.yaml}\n" * 50)
    refused(cli("validate", work.root / "a.yaml"), 65,
            "'from' makes a cycle between model files: a.yaml -> b.yaml -> a.yaml")


def test_yaml_values_across_from_files_are_bounded(cli, work):
    """Many long lists, in one file or spread over the files `from:` names, stop the reader."""
    statistic = "[" + ", ".join(["1.0"] * 9_000) + "]"
    for index in range(12):
        work.write(f"norm{index}.yaml", "layers:\n  - {type: Normalization, "
                   f"mean: {statistic}, variance: {statistic}}}\n")
    entries = "".join(f"  - {{type: Sequential, from: norm{index}.yaml}}\n" for index in range(12))
    model = work.write("spread.yaml", "input_shape: [4]\nlayers:\n" + entries)
    started = time.monotonic()
    refused(cli("validate", model), 65, "more than 100,000 YAML values")
    one = work.write("one.yaml", "input_shape: [4]\nlayers:\n" + "".join(
        f"  - {{type: Normalization, mean: {statistic}, variance: {statistic}}}\n"
        for _ in range(6)))
    refused(cli("validate", one), 65, f"{one}:", "more than 100,000 YAML values")
    assert time.monotonic() - started < 20


_MILLION = ", ".join(["1"] * 1_000_000)
LONG_VALUES = [
    ("input_shape", f"input_shape: [{_MILLION}]\nlayers:\n  - {{type: Dense, units: 2}}\n",
     "1:14: this list has more than 10,000 items"),
    ("name", f"name: [{_MILLION}]\ninput_shape: [4]\nlayers:\n  - {{type: Dense, units: 2}}\n",
     "1:7: this list has more than 10,000 items"),
    ("target_shape", f"input_shape: [4]\nlayers:\n  - {{type: Reshape, target_shape: [{_MILLION}]}}\n",
     "3:35: this list has more than 10,000 items"),
    ("layers", "input_shape: [4]\nlayers:\n" + "  - {type: Flatten}\n" * 20_000,
     "3:3: this list has more than 10,000 items"),
    ("mapping", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 2, "
     + ", ".join(f"k{i}: 1" for i in range(200_000)) + "}\n",
     "3:5: this mapping has more than 10,000 items"),
    ("shape of 9,999", "input_shape: [" + ", ".join(["-1"] * 9_999) + "]\nlayers:\n"
     "  - {type: Dense, units: 2}\n", "every dimension must be positive. Received: [-1, -1"),
    ("rank 100", "input_shape: [" + ", ".join(["1"] * 100) + "]\nlayers:\n"
     "  - {type: Dense, units: 2}\n", "a shape has at most 63 axes"),
    ("kernel_size", "input_shape: [4, 4, 1]\nlayers:\n  - {type: Conv2D, filters: 2, kernel_size: ["
     + ", ".join(["2"] * 9_999) + "]}\n", "Received: kernel_size=[2, 2"),
    ("statistic", "input_shape: [4]\nlayers:\n  - {type: Normalization, mean: [" + ", ".join(
        ["1"] * 9_999) + "], variance: [" + ", ".join(["-1"] * 9_999) + "]}\n",
     "a variance cannot be negative"),
    ("string", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 2, activation: "
     + "r" * 3_000_000 + "}\n", "unknown activation 'rrrr"),
    ("quoted string", "input_shape: [4, 4, 1]\nlayers:\n  - {type: Conv2D, filters: 2, "
     "kernel_size: 2, padding: '" + "s" * 3_000_000 + "'}\n", "(3,000,002 characters)"),
    ("type", "input_shape: [4]\nlayers:\n  - {type: " + "D" * 3_000_000 + ", units: 2}\n",
     "unknown layer type 'DDDD"),
    ("key", "input_shape: [4]\nlayers:\n  - type: Dense\n    units: 2\n    ? " + "k" * 3_000_000
     + "\n    : 1\n", "unknown key 'kkkk"),
    ("from", "input_shape: [4]\nlayers:\n  - {type: Sequential, from: '" + "f" * 3_000_000
     + "'}\n", "3:30: "),
    ("weights", "input_shape: [4]\nweights: '" + "w" * 3_000_000 + ".npz'\nlayers:\n"
     "  - {type: Dense, units: 2}\n", "2:10: "),
]


@pytest.mark.parametrize(("case", "text", "message"), LONG_VALUES,
                         ids=[case[0] for case in LONG_VALUES])
def test_long_lists_and_values_are_refused_fast_and_quoted_short(cli, work, case, text, message):
    """A list of a million items is refused as it is read; no message echoes a huge value."""
    model = work.write("long.yaml", text)
    before = snapshot(work.root)
    started = time.monotonic()
    result = cli("validate", model)
    assert time.monotonic() - started < 10
    refused(result, 65, message)
    for args in work.runs(model)[:1] + [["summary", model]]:
        result = cli(*args)
        refused(result, 65, message)
        assert len(result.err) < 1_500, len(result.err)
    unchanged(work.root, before)


def test_a_million_item_list_in_a_real_process(work):
    model = work.write("long.yaml", f"input_shape: [{_MILLION}]\nlayers:\n  - {{type: Flatten}}\n")
    result, seconds, peak = _cost("summary", model, cwd=work.root)
    refused(result, 65, "this list has more than 10,000 items")
    assert seconds < 10 and peak < 400 * 1024**2, (seconds, peak)


def test_thousands_of_problems_are_listed_up_to_a_hundred(cli, work):
    model = work.write("keys.yaml", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 2, "
                       + ", ".join(f"k{i}: 1" for i in range(5_000)) + "}\n")
    result = cli("validate", model)
    refused(result, 65, "unknown key 'k0'", "seqcli: error: 4,900 more problems not shown",
            lines=101)


def _special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a socket and a character device, as `from:` or `weights:` might name them."""
    import socket

    os.mkfifo(folder / "fifo.yaml")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.yaml"))
    server.close()
    return {"FIFO": folder / "fifo.yaml", "socket": folder / "socket.yaml",
            "character device": Path("/dev/zero")}


@pytest.mark.parametrize("kind", ["FIFO", "socket", "character device"])
def test_from_naming_a_special_file_is_refused_without_waiting(work, kind):
    """`from:` naming a FIFO, a socket or a device: refused at once (a FIFO once hung), as
    `weights:` naming one is; in a nested file too."""
    target = _special_files(work.root)[kind]
    relative = os.path.relpath(target, work.root)
    model = work.write("special.yaml", "input_shape: [4]\nlayers:\n"
                       f"  - {{type: Sequential, from: '{relative}'}}\n")
    work.write("outer.yaml", "input_shape: [4]\nlayers:\n"
                             "  - {type: Sequential, from: special.yaml}\n")

    before = snapshot(work.root)
    for args in (["validate", model, "--allow-outside"],
                 ["validate", work.root / "outer.yaml", "--allow-outside"],
                 ["predict", model, work.x, "-o", work.out / "y.npy", "--allow-outside"],
                 ["freeze", model, "--layer", "*", "-o", work.out / "frozen.yaml",
                  "--allow-outside"]):
        done = subprocess.run([sys.executable, "-m", "seqcli", *map(str, args)],
                              capture_output=True, cwd=work.root, timeout=60)
        result = Result(done.returncode, done.stdout, done.stderr)
        refused(result, 65, f"is not a regular file but a {kind}; pass a model file",
                f"{model}:3:30: 'from: {relative}'")
    unchanged(work.root, before)


def test_weights_naming_a_special_file_in_a_from_file(cli, work):
    """The check `from:` now shares: `weights:` naming a FIFO, from a nested file."""
    os.mkfifo(work.root / "fifo.npz")
    work.write("base.yaml", "weights: fifo.npz\nlayers:\n  - {type: Dense, units: 3}\n")
    model = work.write("outer.yaml", "input_shape: [4]\nlayers:\n"
                                     "  - {type: Sequential, from: base.yaml}\n")
    refused(cli("predict", model, work.x, "-o", work.out / "y.npy"), 66,
            "is not a regular file but a FIFO; pass a weights file")


FREEZE_SYNTAXES = [
    ("block", "input_shape: [4]\nlayers:\n  - type: Dense\n    units: 3\n  - type: Dense\n"
     "    units: 2\n"),
    ("flow trailing comma", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3,}\n"
     "  - {type: Dense, units: 2,}\n"),
    ("flow over lines", "input_shape: [4]\nlayers:\n  - {\n      type: Dense,\n      units: 3,\n"
     "    }\n  - {type: Dense, units: 2}\n"),
    ("flow with a comment inside", "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3  # 3\n"
     "    }\n  - {type: Dense, units: 2}\n"),
    ("flow layers list", "input_shape: [4]\nlayers: [\n  {type: Dense, units: 3},\n"
     "  {type: Dense, units: 2},\n]\n"),
    ("all flow, no line end", "{input_shape: [4], layers: [{type: Dense, units: 3}, "
     "{type: Dense, units: 2}]}"),
    ("quoted keys", "input_shape: [4]\nlayers:\n  - \"type\": Dense\n    'units': 3\n"
     "  - {\"type\": \"Dense\", 'units': 2}\n"),
    ("explicit keys", "input_shape: [4]\nlayers:\n  - ? type\n    : Dense\n    ? units\n"
     "    : 3\n  - {? type : Dense, ? units : 2}\n"),
    ("comments and blank lines", "# top\ninput_shape: [4]  # shape\nlayers:  # the layers\n"
     "  # first\n  - type: Dense  # dense\n    # units next\n    units: 3  # three\n\n"
     "  - type: Dense\n    units: 2\n# end\n"),
    ("CRLF", "input_shape: [4]\r\nlayers:\r\n  - type: Dense\r\n    units: 3\r\n"
     "  - {type: Dense, units: 2}\r\n"),
    ("CR only", "input_shape: [4]\rlayers:\r  - type: Dense\r    units: 3\r"
     "  - {type: Dense, units: 2}\r"),
    ("CR only, no line end", "input_shape: [4]\rlayers:\r  - units: 3\r    type: Dense\r"
     "  - units: 2\r    type: Dense"),
    ("NEL line break", "input_shape: [4]\nlayers:\n  - type: Dense\u0085    units: 3\n"
     "  - type: Dense\n    units: 2\n"),
    ("byte-order mark", "\ufeffinput_shape: [4]\nlayers:\n  - type: Dense\n    units: 3\n"
     "  - type: Dense\n    units: 2\n"),
    ("document markers", "%YAML 1.1\n--- # start\ninput_shape: [4]\nlayers:\n"
     "  - type: Dense\n    units: 3\n  - type: Dense\n    units: 2\n... # end\n"),
    ("type last, then a block scalar", "input_shape: [4]\nlayers:\n  - units: 3\n    type: >-\n"
     "      Dense\n  - units: 2\n    type: Dense\n"),
    ("dash alone, unindented list", "input_shape: [4]\nlayers:\n-\n  type: Dense\n  units: 3\n"
     "-   type: Dense\n    units: 2\n"),
    ("existing trainable, explicit", "input_shape: [4]\nlayers:\n  - type: Dense\n"
     "    ? trainable\n    : true\n    units: 3\n  - {type: Dense, units: 2, 'trainable': true}\n"),
    ("nested inline", "input_shape: [4]\nlayers:\n  - type: Sequential\n    layers:\n"
     "      - ? type\n        : Dense\n        units: 3\n      - {type: Dense, units: 3,}\n"
     "  - {type: Sequential, layers: [{type: Dense, units: 2},]}\n"),
    ("from entries", "input_shape: [4]\nlayers:\n  - {type: Sequential, from: base.yaml,}\n"
     "  - ? type\n    : Sequential\n    from: base.yaml\n    name: again\n"
     "  - {type: Dense, units: 2}\n"),
    ("strings that look like numbers", "input_shape: [4]\nname: '1e-3'\nlayers:\n"
     "  - {type: Dense, units: 3, name: 'null'}\n  - {type: Dense, units: 2, name: '0o17'}\n"),
    ("single-pair mappings in a flow list", "input_shape: [4]\n"
     "layers: [type: Flatten, {type: Dense, units: 2}]  # written out whole\n"),
]


@pytest.mark.parametrize(("case", "text"), FREEZE_SYNTAXES, ids=[c[0] for c in FREEZE_SYNTAXES])
def test_freeze_freezes_whatever_validate_accepts(cli, work, case, text):
    """Every YAML spelling `validate` accepts, `freeze` freezes: the result loads to the same
    model with only the trainable flags changed; in place (comments kept) wherever the
    syntax allows, else written out whole with a note."""
    from seqcli.config.freeze import layer_paths
    from seqcli.config.load import load_model

    def settings(path):
        layers = layer_paths(load_model(str(path)).layers)
        return {name: (layer.trainable, layer.model_dump(exclude={"trainable", "layers"}))
                for name, layer in layers.items()}

    work.write("base.yaml", "layers:\n  - {type: Dense, units: 3}\n")
    model = work.write("syntax.yaml", text.encode("utf-8"))
    assert cli("validate", model).code == 0
    before = settings(model)
    top = [name for name in before if "/" not in name]
    frozen_file = work.root / "frozen.yaml"  # beside the model: `from:` paths still resolve
    for args, frozen in ((["--all-but-last"], set(top[:-1])),
                         (["--layer", top[-1], "--unfreeze", top[0]], {top[-1]})):
        result = cli("freeze", model, *args, "-o", frozen_file)
        assert result.code == 0, result
        whole = "written out whole" in result.err
        assert whole == ("whole" in text and args[0] == "--all-but-last"), result.err
        new = frozen_file.read_bytes().decode("utf-8")
        after = settings(frozen_file)
        assert after.keys() == before.keys()
        for name, (trainable, rest) in before.items():
            assert after[name][1] == rest, name
            if name in frozen or any(name.startswith(f"{parent}/") for parent in frozen):
                trainable = False
            elif name == top[0] and args[0] == "--layer":
                trainable = True
            assert after[name][0] == trainable, name
        if not whole:  # edited in place: every other character as it was
            assert _without_trainable(new) == _without_trainable(text)


def _without_trainable(text: str) -> str:
    """`text` without whitespace, commas and `trainable` pairs."""
    return re.sub(r"\??(trainable|'trainable'|\"trainable\"):(true|false)", "",
                  re.sub(r"[\s,]", "", text))


TAGGED = [
    ("non-specific", "units: ! 5", "(!)"),
    ("non-specific on a list", "input_shape: ! [4]", "(!)"),
    ("core", "units: !!int 5", "(!!int)"),
    ("verbatim", "units: !<tag:yaml.org,2002:int> 5", "(!!int)"),
    ("local", "units: !local 5", "(!local)"),
    ("on a key", "!!str units: 5", "(!!str)"),
    ("on an explicit key", "? !x units\n    : 5", "(!x)"),
    ("on a mapping", "activation: !act {type: ReLU}", "(!act)"),
    ("through a %TAG", None, "(tag:example.com,2000:units)"),
]


@pytest.mark.parametrize(("case", "setting", "shown"), TAGGED, ids=[c[0] for c in TAGGED])
def test_every_yaml_tag_is_refused(cli, work, case, setting, shown):
    """Tags are errors (contract §1), whatever their form and wherever they sit."""
    if setting is None:
        text = ("%TAG ! tag:example.com,2000:\n---\ninput_shape: [4]\nlayers:\n"
                "  - type: Dense\n    !units 5: 5\n")
    elif setting.startswith("input_shape"):
        text = f"{setting}\nlayers:\n  - type: Dense\n    units: 5\n"
    else:
        text = f"input_shape: [4]\nlayers:\n  - type: Dense\n    {setting}\n" + (
            "" if "units" in setting else "    units: 5\n")
    model = work.write("tagged.yaml", text)
    before = snapshot(work.root)
    for args in [["validate", model], ["summary", model]] + work.runs(model):
        refused(cli(*args), 65, f"YAML tags are not allowed {shown}")
    unchanged(work.root, before)


HUGE_SCALARS = [
    ("int of 5,000 digits", "units: " + "9" * 5_000, "3:26:"),
    ("int of 4,301 digits", "units: " + "1" * 4_301, "3:26:"),
    ("hex of 50,000 digits", "units: 0x" + "f" * 50_000, "3:26:"),
    ("octal", "units: 0o" + "7" * 5_000, "3:26:"),
    ("exponent", "units: 1e" + "9" * 5_000, "3:26:"),
    ("float of 50,000 digits", "units: 2, input_shape: [1." + "1" * 50_000 + "]", "3:43:"),
    ("an explicit key", "units: 2, ? " + "9" * 5_000 + " : 1", "3:31:"),
]


@pytest.mark.parametrize(("case", "pair", "where"), HUGE_SCALARS,
                         ids=[c[0] for c in HUGE_SCALARS])
def test_huge_numbers_are_bad_data_with_a_position(cli, work, case, pair, where):
    """Python will not convert an integer of more than 4,300 digits: such a number in a model
    file, or a float or key as long, is refused where it is written, not an internal error."""
    model = work.write("huge.yaml", f"input_shape: [4]\nlayers:\n  - {{type: Dense, {pair}}}\n")
    result = cli("validate", model)
    refused(result, 65, "characters is out of range; numbers in a model file have at most 100")
    assert result.err.startswith(f"{model}:{where}"), result.err
    for args in work.runs(model) + [["summary", model]]:
        refused(cli(*args), 65, "is out of range")


def test_a_huge_seed_is_bad_data_with_a_position(cli, work):
    seed = work.write("seed.yaml", f"seed: {'7' * 4_400}\ninput_shape: [4]\nlayers:\n"
                                   "  - {type: Dense, units: 2}\n")
    for args in [["validate", seed]] + work.runs(seed):
        refused(cli(*args), 65, f"{seed}:1:7: a number written with 4,400 characters")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\udc80b"])
@pytest.mark.parametrize("key", ["name", "activation", "from", "weights", "key"])
def test_lone_surrogate_escapes_are_bad_data(cli, work, escape, key):
    """`"\\ud800"` decodes to half a surrogate pair: no file name, key or message can hold it."""
    entry = {"name": f'{{type: Dense, units: 2, name: "{escape}"}}',
             "activation": f'{{type: Dense, units: 2, activation: "{escape}"}}',
             "from": f'{{type: Sequential, from: "{escape}.yaml"}}',
             "weights": "{type: Dense, units: 2}",
             "key": f'{{type: Dense, units: 2, "{escape}": 1}}'}[key]
    weights = f'weights: "{escape}.npz"\n' if key == "weights" else ""
    model = work.write("surrogate.yaml", f"input_shape: [4]\n{weights}layers:\n  - {entry}\n")
    for args in [["validate", model]] + work.runs(model):
        refused(cli(*args), 65, "half of a UTF-16 surrogate pair")


LONG_NAMES = [
    ("layer", "input_shape: [4]\nlayers:\n  - {{type: Dense, units: 2, name: {name}}}\n"),
    ("nested layer", "input_shape: [4]\nlayers:\n  - type: Sequential\n    layers:\n"
     "      - {{type: Dense, units: 2, name: {name}}}\n"),
    ("nested model", "input_shape: [4]\nlayers:\n  - type: Sequential\n    name: {name}\n"
     "    layers: [{{type: Dense, units: 2}}]\n"),
    ("wrapped layer", "input_shape: [3, 4]\nlayers:\n  - {{type: Bidirectional, layer: "
     "{{type: LSTM, units: 2, name: {name}}}}}\n"),
    ("time-distributed layer", "input_shape: [3, 4]\nlayers:\n  - {{type: TimeDistributed, "
     "layer: {{type: Dense, units: 2, name: {name}}}}}\n"),
    ("activation layer", "input_shape: [4]\nlayers:\n  - {{type: Dense, units: 2, activation: "
     "{{type: PReLU, name: {name}}}}}\n"),
    ("model", "name: {name}\ninput_shape: [4]\nlayers:\n  - {{type: Dense, units: 2}}\n"),
    ("model of a from file", "input_shape: [4]\nlayers:\n  - {{type: Sequential, "
     "from: named.yaml}}\n"),
]


@pytest.mark.parametrize(("case", "template"), LONG_NAMES, ids=[c[0] for c in LONG_NAMES])
def test_names_too_long_for_weight_keys_are_refused_by_validate(cli, work, case, template):
    """A name over 1,024 bytes (65,536 here, or 600 two-byte characters) is refused where it is
    written, by `validate` too: weight keys and `.npz` member names could not hold it."""
    for name in ("n" * 65_536, "\u00e9" * 600):
        work.write("named.yaml", f"name: {name}\nlayers:\n  - {{type: Dense, units: 2}}\n")
        model = work.write("long_name.yaml", template.format(name=name))
        before = snapshot(work.root)
        result = cli("validate", model)
        refused(result, 65, "bytes is too long: names have at most 1,024")
        assert len(result.err) < 1000
        for args in work.runs(model):
            refused(cli(*args), 65, "bytes is too long")
        unchanged(work.root, before)


def test_names_at_the_limit_fit_every_writer(cli, work):
    """1,024-byte names, nested and wrapped: `.npz` and safetensors writers all take them."""
    name = "n" * 1_024
    model = work.write("limit.yaml", f"name: {name}\ninput_shape: [3, 4]\nlayers:\n"
                       f"  - type: Sequential\n    name: {name}\n    layers:\n"
                       f"      - type: Sequential\n        name: {'m' * 1_024}\n        layers:\n"
                       f"          - {{type: Bidirectional, layer: {{type: LSTM, units: 2, "
                       f"name: {'l' * 1_024}}}}}\n"
                       f"  - {{type: Dense, units: 2, activation: {{type: PReLU, "
                       f"name: {'p' * 1_024}}}}}\n")
    x = work.write("x3.npy", npy_bytes(np.ones((2, 3, 4), np.float32)))
    assert cli("validate", model).code == 0
    for args in (["init", model, "-o", work.root / "w.npz"],
                 ["init", model, "-o", work.root / "w2.safetensors"],
                 ["extract", model, x, "--all", "-o", work.root / "all.npz"]):
        result = cli(*args)
        assert result.code == 0, result
    assert any(len(key) > 3_000 for key in np.load(work.root / "w.npz").files)


# --- issue 16: .keras archives, training's numbers, bench sizes ---


@pytest.fixture
def keras_work(work):
    """`work` with `m.keras`: the Dense 4-3-2 model exported by seqcli's own export-keras."""
    from seqcli.cli import main

    assert main(["export-keras", str(work.model), "-o", str(work.root / "m.keras"), "-q"]) == 0
    return work


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _keras_with(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED,
                level: int | None = None) -> Path:
    """Write a `.keras` zip of `members` (bytes, or a callable writing into the member's
    stream), every member with `method`."""
    with zipfile.ZipFile(path, "w", method, compresslevel=level) as archive:
        for name, data in members.items():
            if callable(data):
                with archive.open(name, "w", force_zip64=True) as stream:
                    data(stream)
            else:
                archive.writestr(name, data)
    return path


def _zeros(size: int):
    """A member writer of `size` zero bytes, a MiB at a time."""
    def write(stream) -> None:
        chunk = bytes(1024**2)
        for _ in range(size // len(chunk)):
            stream.write(chunk)

    return write


def _declare(path: Path, member: str, **sizes: int) -> None:
    """Rewrite the central directory entry of `member`: declared `file_size` and/or
    `compress_size` (what the zip claims, not what it holds)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack("<H", data[at + 28:at + 30])[0]
        if data[at + 46:at + 46 + length] == member.encode():
            if "compress_size" in sizes:
                data[at + 20:at + 24] = struct.pack("<I", sizes["compress_size"])
            if "file_size" in sizes:
                data[at + 24:at + 28] = struct.pack("<I", sizes["file_size"])
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def _keras_variants(path: Path, members: dict[str, bytes]):
    """(id, writes the hostile archive, exit code, message fragment)."""
    weights = members["model.weights.h5"]

    def big(member: str, size: int):
        return lambda: _keras_with(path, {**members, member: _zeros(size)},
                                   zipfile.ZIP_DEFLATED, 1)

    def lying(member: str, size: int, **declared: int):
        def make():
            big(member, size)()
            _declare(path, member, **declared)
        return make

    def method(kind: int):
        return lambda: _keras_with(path, members, kind)

    return [
        ("weights-64MiB-of-zeros", big("model.weights.h5", 64 * 1024**2), 65,
         "model.weights.h5 declares 67,108,864 bytes, over the"),
        ("weights-declaring-less", lying("model.weights.h5", 64 * 1024**2, file_size=1000),
         65, "cannot read model.weights.h5"),
        ("weights-declaring-more-stored", lying("model.weights.h5", 64 * 1024**2,
                                                compress_size=2**31), 65,
         "model.weights.h5 declares 67,108,864 bytes, over the"),
        ("config-bomb", big("config.json", 16 * 1024**2), 65, "config.json declares"),
        ("config-declaring-less", lying("config.json", 16 * 1024**2, file_size=1400), 65,
         "cannot read config.json"),
        ("bzip2", method(zipfile.ZIP_BZIP2), 65, "compressed with bzip2"),
        ("lzma", method(zipfile.ZIP_LZMA), 65, "compressed with lzma"),
        ("corrupt-deflate", lambda: path.write_bytes(_corrupted_deflate(path, members)), 65,
         "cannot read"),
        ("huge-hdf5-dataset", lambda: _keras_with(
            path, {**members, "model.weights.h5": h5_with_huge_dataset(weights)}), 65,
         "has shape (2147483648, 1048576), seqcli expects (4, 3)"),
        ("truncated-hdf5", lambda: _keras_with(
            path, {**members, "model.weights.h5": weights[:len(weights) // 2]}), 65,
         "not a readable HDF5 file"),
    ]


def _corrupted_deflate(path: Path, members: dict[str, bytes]) -> bytes:
    """The archive of `members`, deflated, with bytes flipped inside the weights' stream."""
    _keras_with(path, members, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.find(b"model.weights.h5") + len("model.weights.h5") + 100
    for index in range(start, start + 64):
        data[index] ^= 0x55
    return bytes(data)


KERAS_VARIANTS = [variant[0] for variant in _keras_variants(Path("."), {"model.weights.h5": b""})]


@pytest.mark.parametrize("variant", KERAS_VARIANTS)
def test_hostile_keras_members_are_refused_while_inflated(cli, keras_work, monkeypatch,
                                                          variant):
    """Every member of a `.keras` is bounded while it is inflated (absolute size, ratio,
    compression method), whatever the zip declares; the HDF5 inside is checked before it
    is read. One line, exit 65, nothing written, nothing left in the temporary folder."""
    temporary = keras_work.root / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    hostile = keras_work.root / "hostile.keras"
    members = _members(keras_work.root / "m.keras")
    _, make, code, message = next(v for v in _keras_variants(hostile, members)
                                  if v[0] == variant)
    make()
    before = snapshot(keras_work.root)
    refused(cli("import-keras", hostile, "-o", keras_work.out / "imported.yaml"), code, message)
    unchanged(keras_work.root, before)
    assert not list(temporary.iterdir())


@pytest.mark.parametrize(("member", "level", "message"), [
    ("model.weights.h5", 1, "model.weights.h5 inflates to more than the"),
    ("model.weights.h5", 9, "model.weights.h5 inflates more than 1000:1"),
    ("config.json", 1, "config.json inflates to more than the 4,194,304-byte limit"),
])
def test_keras_members_are_bounded_while_inflated_not_only_by_their_headers(
        cli, keras_work, monkeypatch, member, level, message):
    """With the checks of the zip's headers out of the way, inflating still stops at the
    bound: bytes are counted as they come (for the ratio, under a model large enough not to
    reach its size bound first)."""
    from seqcli.interop.keras_archive import KerasArchive

    monkeypatch.setattr(KerasArchive, "_member", lambda self, name, limit: self.zip.getinfo(name))
    if "1000:1" in message:
        monkeypatch.setattr("seqcli.interop.keras_import.weights_size_limit", lambda *a: 2**40)
    members = _members(keras_work.root / "m.keras")
    hostile = _keras_with(keras_work.root / "hostile.keras",
                          {**members, member: _zeros(64 * 1024**2)}, zipfile.ZIP_DEFLATED, level)
    before = snapshot(keras_work.root)
    refused(cli("import-keras", hostile, "-o", keras_work.out / "imported.yaml"), 65, message)
    unchanged(keras_work.root, before)


def test_a_keras_file_that_is_not_a_regular_file_is_refused(cli, keras_work):
    fifo = keras_work.root / "fifo.keras"
    os.mkfifo(fifo)
    (keras_work.root / "folder.keras").mkdir()
    before = snapshot(keras_work.root)
    for args in (["import-keras", fifo, "-o", keras_work.out / "i.yaml"],
                 ["import-keras", keras_work.root / "folder.keras", "-o",
                  keras_work.out / "i.yaml"],
                 ["import-keras", keras_work.model, "--weights-only", fifo, "-o",
                  keras_work.out / "w.safetensors"]):
        refused(cli(*args), 66, "is not a regular file but a FIFO" if fifo in args else
                "is a folder")
    unchanged(keras_work.root, before)


def test_keras_metadata_is_read_bounded(cli, keras_work):
    """metadata.json only names the Keras version: a huge one is not read, and the import
    goes on."""
    members = _members(keras_work.root / "m.keras")
    hostile = _keras_with(keras_work.root / "meta.keras",
                          {**members, "metadata.json": _zeros(64 * 1024**2)},
                          zipfile.ZIP_DEFLATED, 1)
    result = cli("import-keras", hostile, "-o", keras_work.root / "meta.yaml", "-q")
    assert result.code == 0, result
    assert "Keras" not in (keras_work.root / "meta.yaml").read_text().splitlines()[0]


def test_a_keras_zip_bomb_costs_little_memory_time_or_disk(keras_work, tmp_path):
    """The issue's file: a 1 GiB `model.weights.h5` of zeros deflated into a few MB. A real
    process: exit 65 within seconds, a few hundred MB at most, TMPDIR left empty."""
    members = _members(keras_work.root / "m.keras")
    bomb = _keras_with(tmp_path / "bomb.keras",
                       {**members, "model.weights.h5": _zeros(1024**3)},
                       zipfile.ZIP_DEFLATED, 1)
    assert bomb.stat().st_size < 8 * 1024**2
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    code = ("import resource, subprocess, sys, time\n"
            "start = time.monotonic()\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "seconds = time.monotonic() - start\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(done.returncode, seconds, peak, done.stderr.decode().strip(), sep='|')\n")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "seqcli",
                           "import-keras", str(bomb), "-o", str(tmp_path / "out.yaml")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TMPDIR=str(temporary)))
    returncode, seconds, peak_kb, message = done.stdout.strip().split("|", 3)
    assert int(returncode) == 65, done
    assert message.startswith("seqcli: error: ") and "\n" not in message, message
    assert float(seconds) < 10 and int(peak_kb) < 400 * 1024, (seconds, peak_kb)
    assert not list(temporary.iterdir()) and not (tmp_path / "out.yaml").exists()


def test_keras_weights_bound_what_is_inflated(keras_work):
    """The bound follows the model: its weights as float64 in four copies (the weights and an
    optimizer's slots) plus HDF5's bookkeeping; never more than the fixed cap."""
    from seqcli.interop.keras_archive import weights_size_limit
    from seqcli.io.limits import KERAS_H5_BASE_BYTES, MAX_KERAS_WEIGHTS_BYTES

    small = weights_size_limit(2, 4, 23)
    assert KERAS_H5_BASE_BYTES < small < 2 * KERAS_H5_BASE_BYTES
    assert weights_size_limit(2, 4, 10**6) > 4 * 8 * 10**6
    assert weights_size_limit(2, 4, 10**12) == MAX_KERAS_WEIGHTS_BYTES
    assert len(_members(keras_work.root / "m.keras")["model.weights.h5"]) < small


@pytest.fixture
def fit_work(work):
    """`work` with targets `y.npy` for its 5 rows, and precious `out/h.json`."""
    rng = np.random.default_rng(3)
    np.save(work.root / "y.npy", rng.normal(size=(5, 2)).astype(np.float32))
    (work.out / "h.json").write_bytes(PRECIOUS)
    return work


def _fit(work, x=None, y=None, *options):
    return ["fit", work.model, x or work.x, y or work.root / "y.npy", "-o",
            work.out / "w.safetensors", "--history", work.out / "h.json", "--quiet", *options]


def _float_options() -> dict[str, list[str]]:
    """Every command's float options, by command name: the parameters its function annotates
    as float, named as the command line spells them."""
    import typing

    import typer

    from seqcli.cli import app

    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        hints = typing.get_type_hints(command.callback, include_extras=True)
        for param in command.params:
            base = typing.get_args(hints[param.name])[0]
            if float in (base, *typing.get_args(base)):
                found.setdefault(name, []).append(param.opts[0])
    return found


def test_every_float_option_of_every_command_refuses_nan_and_infinity(cli, fit_work):
    """NaN, ±infinity and a float beyond the double range are usage errors (exit 2) in
    every float option of every command, checked before anything runs."""
    required = {"fit": _fit(fit_work)[1:], "bench": [fit_work.model],
                "predict": [fit_work.model, fit_work.x]}
    options = _float_options()
    assert set(options) <= set(required), "a new command with a float option: add it here"
    assert options["fit"] and options["bench"]
    before = snapshot(fit_work.root)
    for command, names in options.items():
        for name in names:
            for value in ("nan", "inf", "-inf", "1e999", "-nan"):
                refused(cli(command, *required[command], name, value), 2, name,
                        "expected a finite number")
    unchanged(fit_work.root, before)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--learning-rate", "-1"], "of at least 0"),
    (["--momentum", "1.5"], "between 0 and 1"),
    (["--validation-split", "1"], "between 0 and 0.99"),
    (["--epochs", str(2**62)], "less than or equal to 1000000"),
    (["--batch-size", str(2**62)], "less than or equal to 2147483647"),
    (["--seed", str(2**64)], "less than or equal to 18446744073709551615"),
    (["--seed", "9" * 5000], "--seed"),
    (["--threads", str(2**62)], "--threads"),
])
def test_fit_options_out_of_range_are_usage_errors(cli, fit_work, args, fragment):
    before = snapshot(fit_work.root)
    refused(cli(*_fit(fit_work), *args), 2, fragment)
    unchanged(fit_work.root, before)


@pytest.mark.parametrize("args", [
    ["predict", "{model}", "{x}", "-o", "{out}/y.npy"],
    ["extract", "{model}", "{x}", "--all", "-o", "{out}/all.npz"],
    ["bench", "{model}"],
    ["summary", "{model}"],
])
@pytest.mark.parametrize("size", [str(2**31), str(2**62), str(10**30)])
def test_batch_sizes_beyond_the_limit_are_usage_errors(cli, work, args, size):
    """`--batch-size 2**62` in any command: exit 2, one line, before any work."""
    before = snapshot(work.root)
    filled = [a.format(model=work.model, x=work.x, out=work.out) for a in args]
    refused(cli(*filled, "--batch-size", size), 2, "--batch-size")
    unchanged(work.root, before)


@pytest.mark.parametrize("seed", [str(2**64), "9" * 5000, "-1"])
def test_init_seeds_beyond_the_range_are_usage_errors(cli, work, seed):
    before = snapshot(work.root)
    refused(cli("init", work.model, "-o", work.out / "w.safetensors", "--seed", seed), 2,
            "--seed")
    unchanged(work.root, before)


@pytest.mark.parametrize("seconds", ["1e9", "3601", "-1"])
def test_bench_seconds_are_bounded(cli, work, seconds):
    refused(cli("bench", work.model, "--seconds", seconds), 2, "--seconds",
            "between 0 and 3600")


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_allocation(cli, work):
    """`bench --batch-size 2**31 - 1`: allocating it would take 56 GB; exit 1 with what it
    needs, not an internal error or the OOM killer."""
    refused(cli("bench", work.model, "--batch-size", str(2**31 - 1), "--seconds", "0"), 1,
            "out of memory: a batch of 2,147,483,647 samples needs", "--batch-size")


@pytest.mark.parametrize("args", [
    ["predict", "{model}", "{x}", "-o", "{out}/y.npy"],
    ["extract", "{model}", "{x}", "--all", "-o", "{out}/all.npz"],
    ["fit", "{model}", "{x}", "{root}/y.npy", "-o", "{out}/w.safetensors"],
    ["bench", "{model}", "--seconds", "0"],
])
def test_batch_memory_is_checked_in_every_command(cli, fit_work, monkeypatch, args):
    monkeypatch.setattr("seqcli.runtime.memory.available_memory", lambda: 100)
    before = snapshot(fit_work.root)
    filled = [a.format(model=fit_work.model, x=fit_work.x, out=fit_work.out,
                       root=fit_work.root) for a in args]
    refused(cli(*filled, "--batch-size", "5"), 1, "out of memory: a batch of 5 samples needs")
    unchanged(fit_work.root, before)


def _with_values(array: np.ndarray, *values: float) -> np.ndarray:
    array = array.astype(np.float64 if any(abs(v) > 1e38 for v in values) else array.dtype)
    for index, value in enumerate(values):
        array.flat[index * 4] = value
    return array


@pytest.mark.parametrize(("which", "values", "counts"), [
    ("x", (np.nan, np.nan, np.inf), "2 NaN and 1 Inf values in 3 of 5 rows"),
    ("y", (np.nan,), "1 NaN and 0 Inf values in 1 of 5 rows"),
    ("x", (1e300, -1e300), "0 NaN and 2 Inf values in 2 of 5 rows"),  # beyond float32
    ("xv", (np.inf,), "0 NaN and 1 Inf values in 1 of 5 rows"),
    ("yv", (-np.inf,), "0 NaN and 1 Inf values in 1 of 5 rows"),
])
def test_fit_refuses_non_finite_training_data_with_counts(cli, fit_work, which, values,
                                                          counts):
    """NaN or Inf in X, Y or the validation data: exit 65, the counts, nothing written."""
    x, y = np.load(fit_work.x), np.load(fit_work.root / "y.npy")
    source = {"x": x, "xv": x, "y": y, "yv": y}[which]
    bad = fit_work.write(f"bad_{which}.npy", npy_bytes(_with_values(source, *values)))
    args = {"x": _fit(fit_work, bad), "y": _fit(fit_work, None, bad),
            "xv": [*_fit(fit_work), "--validation-data", bad, fit_work.root / "y.npy"],
            "yv": [*_fit(fit_work), "--validation-data", fit_work.x, bad]}[which]
    before = snapshot(fit_work.root)
    refused(cli(*args), 65, f"bad_{which}.npy holds {counts}")
    unchanged(fit_work.root, before)


def test_fit_stops_when_the_loss_becomes_non_finite(cli, fit_work):
    """A loss that becomes Inf or NaN stops training: exit 1, where it happened, and -o and
    --history are untouched."""
    before = snapshot(fit_work.root)
    refused(cli(*_fit(fit_work), "--optimizer", "sgd", "--learning-rate", "1e30",
                "--epochs", "5"), 1, "the loss became", "at epoch 2, batch 1",
            "no weights written")
    unchanged(fit_work.root, before)


def test_fit_from_weights_holding_nan_stops_at_the_first_batch(cli, fit_work):
    from seqcli.io.weights import write_safetensors

    weights = dict(fit_work.weights, **{"dense/bias": np.full(3, np.nan)})
    write_safetensors(fit_work.root / "nan.safetensors", weights)
    before = snapshot(fit_work.root)
    refused(cli(*_fit(fit_work), "--weights", fit_work.root / "nan.safetensors"), 1,
            "the loss became NaN at epoch 1, batch 1; no weights written")
    unchanged(fit_work.root, before)


def test_fit_with_checkpoints_keeps_the_last_finite_epoch(cli, fit_work):
    from seqcli.io.weights import read_weights

    result = cli(*_fit(fit_work), "--optimizer", "sgd", "--learning-rate", "1e30",
                 "--epochs", "5", "--checkpoint")
    refused(result, 1, "the loss became", f"{fit_work.out / 'w.safetensors'} keeps the "
                                          "weights of epoch 1")
    kept = read_weights(fit_work.out / "w.safetensors")
    assert all(np.isfinite(array).all() for array in kept.values())
    assert (fit_work.out / "h.json").read_bytes() == PRECIOUS


def test_training_stops_on_weights_that_become_non_finite():
    """The loss of the last batch is computed before its update: the weights are checked at
    the end of every epoch too."""
    from seqcli.errors import DivergedError
    from seqcli.training.fit import check_weights_finite

    check_weights_finite({"dense/kernel": np.ones((2, 2), np.float32)}, 0)
    with pytest.raises(DivergedError, match="dense/kernel became NaN or Inf during epoch 3"):
        check_weights_finite({"dense/kernel": np.array([1, np.inf], np.float32)}, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_optimizers_refuse_non_finite_settings(optimizer):
    from seqcli.training.optimizers import get_optimizer

    for rate in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="learning rate must be a finite number"):
            get_optimizer(optimizer, rate)
    if optimizer != "adam":
        with pytest.raises(ValueError, match="momentum must be between 0 and 1"):
            get_optimizer(optimizer, 0.01, float("nan"))


NON_FINITE_SETTINGS = [  # (id, layer entries, the setting named in the message)
    ("BatchNormalization-epsilon", "- {type: BatchNormalization, epsilon: .nan}", "epsilon"),
    ("BatchNormalization-momentum", "- {type: BatchNormalization, momentum: .nan}",
     "momentum"),
    ("Rescaling-scale", "- {type: Rescaling, scale: .inf}", "scale"),
    ("Rescaling-offset", "- {type: Rescaling, scale: 1, offset: -.inf}", "offset"),
    ("LayerNormalization-epsilon", "- {type: LayerNormalization, epsilon: .inf}", "epsilon"),
    ("ReLU-max_value", "- {type: ReLU, max_value: .inf}", "max_value"),
    ("ReLU-threshold", "- {type: ReLU, threshold: .nan}", "threshold"),
    ("LeakyReLU-negative_slope", "- {type: LeakyReLU, negative_slope: .NaN}",
     "negative_slope"),
    ("ELU-alpha", "- {type: ELU, alpha: .inf}", "alpha"),
    ("Masking-mask_value", "- {type: Masking, mask_value: .nan}", "mask_value"),
    ("activation-mapping", "- {type: Dense, units: 2, activation: {type: LeakyReLU, "
     "negative_slope: .inf}}", "negative_slope"),
    ("nested", "- type: Sequential\n    layers:\n      - {type: BatchNormalization, "
     "epsilon: .nan}", "epsilon"),
    ("Dropout-rate", "- {type: Dropout, rate: .nan}", "rate"),
    ("GaussianNoise-stddev", "- {type: GaussianNoise, stddev: .inf}", "stddev"),
]


@pytest.mark.parametrize(("case", "entries", "setting"), NON_FINITE_SETTINGS,
                         ids=[case[0] for case in NON_FINITE_SETTINGS])
def test_non_finite_layer_settings_are_refused_with_their_position(cli, fit_work, case,
                                                                    entries, setting):
    """NaN or infinity in any float setting of any layer: exit 65, `FILE:LINE:COL:`, for
    validate and for the commands that would run the model."""
    model = fit_work.write("bad.yaml", f"input_shape: [4]\nlayers:\n  {entries}\n"
                                       "  - {type: Dense, units: 2}\n")
    before = snapshot(fit_work.root)
    for args in (["validate", model], ["predict", model, fit_work.x, "-o",
                                       fit_work.out / "y.npy"],
                 ["fit", model, fit_work.x, fit_work.root / "y.npy", "-o",
                  fit_work.out / "w.safetensors"]):
        result = cli(*args)
        refused(result, 65, setting)
        assert re.match(rf"^{re.escape(str(model))}:\d+:\d+: ", result.err), result.err
    unchanged(fit_work.root, before)


def test_every_layer_schema_refuses_nan_and_infinity():
    """The class of the fix: every layer type (and the activation layers inside others)
    validates its float settings as finite."""
    from seqcli.layers.base import LAYER_REGISTRY

    assert LAYER_REGISTRY
    for name, cls in LAYER_REGISTRY.items():
        assert cls.model_config.get("allow_inf_nan") is False, name


def test_import_keras_refuses_a_config_holding_nan(cli, keras_work):
    """Keras's config.json is JSON, where `NaN` parses: the imported model is refused."""
    members = _members(keras_work.root / "m.keras")
    config = json.loads(members["config.json"])
    config["config"]["layers"][-1]["config"]["activation"] = "linear"
    config["config"]["layers"].append({
        "module": "keras.layers", "class_name": "BatchNormalization",
        "config": {"name": "bn", "epsilon": float("nan")}, "registered_name": None})
    hostile = _keras_with(keras_work.root / "nan.keras",
                          {**members, "config.json": json.dumps(config).encode()})
    before = snapshot(keras_work.root)
    refused(cli("import-keras", hostile, "-o", keras_work.out / "imported.yaml"), 65,
            "epsilon")
    unchanged(keras_work.root, before)


# --- issue 16: numba cache and dilated convolutions ---
# The kernel cache is an optimisation: a damaged entry is compiled again (and replaced), an
# unwritable cache runs uncached, each with one warning line. Every test points numba at a
# cache of its own (NUMBA_CACHE_DIR), never at the shared one.

# gelu: the one activation a small model's numpy path leaves to the kernels (numba's cache)
CACHE_MODEL = "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, activation: gelu}\n"


def _run_with_cache(folder: Path, cache: Path, env=None, preexec_fn=None):
    """`seqcli predict -q m.yaml x.npy` in `folder` (the .npy on stdout), numba's cache at
    `cache`: a `Result` with stdout as bytes."""

    done = subprocess.run(
        [sys.executable, "-m", "seqcli", "predict", "-q", "m.yaml", "x.npy"], cwd=folder,
        capture_output=True, timeout=600, preexec_fn=preexec_fn,
        env=dict(os.environ, NUMBA_CACHE_DIR=str(cache), **(env or {})))
    return Result(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """(folder with the model and its input, a numba cache holding just what it needs, the
    answer)."""
    folder = tmp_path_factory.mktemp("cache-model")
    (folder / "m.yaml").write_text(CACHE_MODEL)
    np.save(folder / "x.npy", np.linspace(-2, 2, 20, dtype=np.float32).reshape(5, 4))
    cache = folder / "cache"
    first = _run_with_cache(folder, cache)
    assert first.code == 0 and "warning" not in first.err, first
    return folder, cache, first.out


def _answers_with_one_warning(result, answer: bytes, warning: str) -> None:
    """`result` is the right answer, exit 0, with exactly one `seqcli: warning:` line (holding
    `warning`) and no other complaint."""
    assert result.code == 0 and result.out == answer, result
    warnings = [line for line in result.err.splitlines() if line.startswith("seqcli: warning:")]
    assert len(warnings) == 1 and warning in warnings[0], result.err
    assert "Traceback" not in result.err and "seqcli: error" not in result.err, result.err


def _no_temp_files(cache: Path) -> None:
    assert not [path for path in cache.rglob("*") if ".tmp" in path.name], list(cache.rglob("*"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _scramble(path: Path) -> None:
    data = bytearray(path.read_bytes())  # the middle third: object code, pickle intact
    for index in range(len(data) // 3, 2 * len(data) // 3):
        data[index] = (index * 131 + 7) % 256
    path.write_bytes(bytes(data))


def _zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("pattern", ["*.nbi", "*.nbc", "seqcli-nrt-*.o"],
                         ids=["index", "data", "runtime"])
@pytest.mark.parametrize("damage", [_truncate, _scramble, _zero, _fifo],
                         ids=["truncated", "scrambled", "zeroed", "fifo"])
def test_damaged_kernel_cache_is_compiled_again_and_replaced(warm_cache, tmp_path, pattern,
                                                             damage):
    """A truncated, scrambled (a valid pickle around damaged object code, which LLVM would
    crash on), zeroed or FIFO (which would block) index, data file or cached runtime: the
    run answers, says so once, and replaces the entries, so that the next run is quiet."""
    import shutil

    folder, cache, answer = warm_cache
    mine = tmp_path / "cache"
    shutil.copytree(cache, mine)
    damaged = sorted(mine.rglob(pattern))
    assert damaged
    for path in damaged:
        damage(path)
    _answers_with_one_warning(_run_with_cache(folder, mine), answer,
                              "damaged kernel cache entry")
    again = _run_with_cache(folder, mine)
    assert again.code == 0 and again.out == answer and again.err == "", again
    _no_temp_files(mine)


def test_kernel_cache_entry_that_is_a_folder(warm_cache, tmp_path):
    """A data file replaced by a folder: compiled, and unsaved, with one warning per run."""
    import shutil

    folder, cache, answer = warm_cache
    mine = tmp_path / "cache"
    shutil.copytree(cache, mine)
    for path in mine.rglob("*.nbc"):
        path.unlink()
        path.mkdir()
    for _ in range(2):
        _answers_with_one_warning(_run_with_cache(folder, mine), answer, "not a regular file")
    _no_temp_files(mine)


def _no_file_writes():
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write to a file fails (EFBIG)


def test_kernel_cache_that_cannot_be_written_runs_uncached(warm_cache, tmp_path):
    """A cache where nothing can be written (file size limit 0: as a full disk, for any
    user): kernels are compiled each run, with one warning, and no temp file is left."""
    folder, _, answer = warm_cache
    cache = tmp_path / "cache"
    for _ in range(2):
        _answers_with_one_warning(_run_with_cache(folder, cache, preexec_fn=_no_file_writes),
                                  answer, "cannot save compiled kernels")
    _no_temp_files(cache)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root)")
def test_kernel_cache_on_a_full_disk_runs_uncached(warm_cache, tmp_path):
    """A cache folder on a full file system (a tiny tmpfs, filled up): the run answers, with
    one warning, and leaves no temp file."""
    folder, _, answer = warm_cache
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(disk / "filler", "wb") as filler:
            with pytest.raises(OSError):
                filler.write(bytes(1 << 20))
                filler.flush()
        _answers_with_one_warning(_run_with_cache(folder, disk / "cache"), answer,
                                  "No space left on device")
        _no_temp_files(disk)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_kernel_cache_path_that_is_a_file_or_read_only(warm_cache, tmp_path):
    """NUMBA_CACHE_DIR naming a file, or a read-only folder: numba caches elsewhere, or the
    run goes uncached; it answers either way."""
    folder, _, answer = warm_cache
    (tmp_path / "a-file").write_bytes(b"")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    for cache in (tmp_path / "a-file", tmp_path / "a-file" / "below", read_only):
        done = _run_with_cache(folder, cache)
        assert done.code == 0 and done.out == answer, done
        assert "Traceback" not in done.err and "seqcli: error" not in done.err, done


def test_no_writable_cache_folder_anywhere(warm_cache, tmp_path):
    """seqcli installed read-only, and NUMBA_CACHE_DIR and the user's cache folder unusable:
    numba would refuse to define the kernels at all; they run uncached instead, with one
    warning."""
    import shutil

    folder, _, answer = warm_cache
    source = tmp_path / "install"
    shutil.copytree(REPO / "seqcli", source / "seqcli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "a-file").write_bytes(b"")
    unusable = str(tmp_path / "a-file" / "below")
    if os.geteuid() == 0:
        if not (_mount("--bind", str(source), str(source))
                and _mount("-o", "remount,bind,ro", str(source))):
            pytest.skip("cannot mount read-only here")
    else:
        for path in [source, *source.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        done = _run_with_cache(folder, tmp_path / "a-file", env={
            "PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1", "HOME": unusable,
            "XDG_CACHE_HOME": unusable})
        _answers_with_one_warning(done, answer, "cannot save compiled kernels")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(source)], check=True)


# Dilations far beyond the input with 'same' or 'causal' padding: the taps that read only
# padding are dropped, so memory and time follow the receptive field, not (k-1)·d.
HUGE_DILATIONS = {
    "Conv2D": ({"type": "Conv2D", "filters": 2, "kernel_size": 3, "dilation_rate": 10000,
                "padding": "same"}, [32, 32, 1]),
    "Conv2D one axis": ({"type": "Conv2D", "filters": 2, "kernel_size": 3,
                         "dilation_rate": [1, 100000000], "padding": "same"}, [32, 32, 1]),
    "Conv1D causal": ({"type": "Conv1D", "filters": 2, "kernel_size": 3,
                       "dilation_rate": 100000000, "padding": "causal"}, [32, 1]),
    "Conv3D": ({"type": "Conv3D", "filters": 2, "kernel_size": 3, "dilation_rate": 100000,
                "padding": "same"}, [6, 6, 6, 20]),
    "DepthwiseConv2D": ({"type": "DepthwiseConv2D", "kernel_size": 3,
                         "dilation_rate": 2147483647, "padding": "same"}, [32, 32, 2]),
    "DepthwiseConv1D": ({"type": "DepthwiseConv1D", "kernel_size": 4,
                         "dilation_rate": 10000000, "padding": "same"}, [32, 2]),
    "SeparableConv1D": ({"type": "SeparableConv1D", "filters": 2, "kernel_size": 3,
                         "dilation_rate": 10000000, "padding": "same"}, [32, 2]),
    "SeparableConv2D": ({"type": "SeparableConv2D", "filters": 2, "kernel_size": 3,
                         "dilation_rate": 10000, "padding": "same"}, [32, 32, 2]),
    "Conv2DTranspose": ({"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3,
                         "dilation_rate": 10000, "padding": "same"}, [8, 8, 1]),
    "MaxPooling2D": ({"type": "MaxPooling2D", "pool_size": 1000000, "strides": 1,
                      "padding": "same"}, [32, 32, 1]),
    "AveragePooling3D": ({"type": "AveragePooling3D", "pool_size": 10000, "strides": 1,
                          "padding": "same"}, [6, 6, 6, 1]),
}


def _peak_run(folder: Path, *args) -> tuple[subprocess.CompletedProcess, int, float]:
    """(the run, its peak resident memory in MB, its seconds) of `seqcli ARGS...` in
    `folder`, measured by a wrapper process."""
    code = ("import resource, subprocess, sys, time\n"
            "start = time.monotonic()\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "sys.stderr.buffer.write(done.stderr)\n"
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
            " time.monotonic() - start)\n")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "seqcli",
                           *map(str, args)], cwd=folder, capture_output=True, text=True,
                          timeout=600)
    code, rss, seconds = done.stdout.split()
    done.returncode = int(code)
    return done, int(rss) // 1024, float(seconds)


@pytest.mark.parametrize("case", HUGE_DILATIONS)
def test_huge_dilation_costs_what_the_receptive_field_needs(tmp_path, case):
    """predict and fit of a few-parameter layer whose dilation (or pool) dwarfs its input:
    a few hundred MB at most, seconds (once 578 MB and more, or a false "out of memory")."""
    layer, shape = HUGE_DILATIONS[case]
    (tmp_path / "m.yaml").write_text(json.dumps({"input_shape": shape, "layers": [layer]}))
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    done, rss, seconds = _peak_run(tmp_path, "predict", "-q", "m.yaml", "x.npy",
                                   "-o", "y.npy")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert rss < 300 and seconds < 30, (rss, seconds)
    y = np.load(tmp_path / "y.npy")
    assert np.isfinite(y).all()
    if "Pooling" in case:
        return
    np.save(tmp_path / "t.npy", np.zeros_like(y))
    done, rss, seconds = _peak_run(tmp_path, "fit", "-q", "m.yaml", "x.npy", "t.npy",
                                   "--epochs", "2", "-o", "w.safetensors")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert rss < 400 and seconds < 30, (rss, seconds)


def _trimmed_cases():
    """(x shape, kernel spatial size, strides, dilation, padding) of 2-D convolutions whose
    windows read padding only at some taps, or at every tap of an axis."""
    from seqcli.shapes import paddings

    cases = []
    for spatial, kernel, strides, dilation, mode in [
        ((7, 5), (3, 3), (1, 1), (9, 40), "same"),
        ((4, 5), (4, 2), (1, 1), (5, 8), "same"),
        ((1, 6), (2, 3), (1, 1), (3, 7), "same"),  # height: no tap reads input
        ((3, 2), (3, 2), (3, 2), (2, 2), "same"),  # input cut at both ends
        ((6, 4), (3, 2), (1, 1), (5, 9), "causal"),
        ((5, 6), (3, 3), (2, 2), (4, 5), ((7, 1), (0, 9))),
    ]:
        pads = mode if isinstance(mode, tuple) else paddings(spatial, kernel, strides, mode,
                                                               dilation)
        cases.append((spatial, kernel, strides, dilation, pads))
    return cases


@pytest.mark.parametrize("case", _trimmed_cases())
def test_convolutions_without_padding_only_taps_match_the_references(case):
    """Dropping the taps that read only padding changes no output and no gradient: forwards
    against the float64 references, gradients against exact differences (a convolution is
    linear in its input and in its kernel), for Conv2D (grouped), depthwise and Conv3D."""
    from seqcli.kernels.conv import conv2d_forward, depthwise_conv2d_forward
    from seqcli.kernels.conv3d import conv3d_forward
    from seqcli.kernels.geometry import UsefulWindow
    from seqcli.kernels.grad_conv import conv2d_backward, depthwise_conv2d_backward
    from seqcli.kernels.grad_conv3d import conv3d_backward
    from tests import naive_conv, naive_grad

    spatial, size, strides, dilation, pads = case
    assert UsefulWindow(spatial, size, strides, dilation, pads).trimmed
    strides3, dilation3, pads3 = (1, *strides), (1, *dilation), ((0, 0), *pads)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, *spatial, 4)).astype(np.float32)
    calls = [  # (x, kernel, bias, forward, backward, float64 reference)
        (x, rng.normal(size=(*size, 2, 6)), rng.normal(size=6),
         lambda x, k, b: conv2d_forward(x, k, b, strides, dilation, pads, 2, 0),
         lambda x, k, dy: conv2d_backward(x, k, strides, dilation, pads, 2, dy),
         lambda x, k, b: naive_grad.conv2d64(x, k, b, strides, dilation, pads, 2)),
        (x, rng.normal(size=(*size, 4, 2)), rng.normal(size=8),
         lambda x, k, b: depthwise_conv2d_forward(x, k, b, strides, dilation, pads, 0),
         lambda x, k, dy: depthwise_conv2d_backward(x, k, strides, dilation, pads, dy),
         lambda x, k, b: naive_grad.depthwise_conv2d64(x, k, b, strides, dilation, pads)),
        (x[:, None], rng.normal(size=(1, *size, 4, 3)), rng.normal(size=3),
         lambda x, k, b: conv3d_forward(x, k, b, strides3, dilation3, pads3, 1, 0),
         lambda x, k, dy: conv3d_backward(x, k, strides3, dilation3, pads3, 1, dy),
         lambda x, k, b: naive_conv.conv3d64(x, k, b, strides3, dilation3, pads3, 1)),
    ]
    for x, kernel, bias, forward, backward, reference in calls:
        _matches_reference(x, kernel.astype(np.float32), bias.astype(np.float32), forward,
                           backward, reference, rng)


def _matches_reference(x, kernel, bias, forward, backward, reference, rng) -> None:
    """`forward` and `backward` of (x, kernel, bias) agree with the float64 `reference`:
    the gradients with its exact differences (a convolution is linear in x and kernel)."""
    from tests import naive_grad

    y = forward(x, kernel, bias)
    np.testing.assert_allclose(y, reference(x, kernel, bias), rtol=1e-5, atol=1e-5)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx, dkernel, dbias = backward(x, kernel, dy)
    zero = np.zeros_like(bias)
    for grad, wrt in ((dx, 0), (dkernel, 1)):
        exact = naive_grad.numeric_vjp(lambda x, k: reference(x, k, zero), [x, kernel], wrt,
                                       dy, 1.0)
        np.testing.assert_allclose(grad, exact, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbias, dy.reshape(-1, len(bias)).sum(0), rtol=1e-4, atol=1e-4)


def _limited_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("command", ["predict", "fit"])
def test_running_out_of_memory_names_what_is_too_big(tmp_path, command):
    """A model that truly needs more memory than there is (a transposed convolution whose
    'valid' output grows with its dilation: 7.46 GB a row, in a 4 GB address space): one
    line saying what takes how much (the layer and its output, or the batch where the
    machine's free memory shows it is too big beforehand), exit 1, files untouched."""

    (tmp_path / "m.yaml").write_text(
        "input_shape: [8, 8, 1]\nlayers:\n"
        "  - {type: Conv2DTranspose, filters: 5, kernel_size: 3, dilation_rate: 10000}\n"
        "  - {type: GlobalAveragePooling2D}\n")
    np.save(tmp_path / "x.npy", np.ones((1, 8, 8, 1), np.float32))
    np.save(tmp_path / "t.npy", np.ones((1, 5), np.float32))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "w.npz").write_bytes(PRECIOUS)
    before = snapshot(tmp_path)
    args = (["predict", "m.yaml", "x.npy", "-o", "out/w.npz"] if command == "predict"
            else ["fit", "m.yaml", "x.npy", "t.npy", "-o", "out/w.npz"])
    done = subprocess.run([sys.executable, "-m", "seqcli", *args, "-q", "--threads", "1"],
                          cwd=tmp_path, capture_output=True, timeout=600,
                          preexec_fn=_limited_memory,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="2"))
    result = Result(done.returncode, done.stdout, done.stderr.decode())
    refused(result, 1, "out of memory", "7.46 GB")
    assert ("in layer 'conv2d_transpose' (Conv2DTranspose): its output, (None, 20008, "
            "20008, 5), takes 7.46 GB per row" in result.err or "a batch of 1 sample" in
            result.err), result.err
    unchanged(tmp_path, before)


# --- issue 16: axes beyond numpy's limit, declared or made by a layer ---

@pytest.mark.parametrize("model, fragment", [
    ("input_shape: %s\nlayers:\n  - {type: Dense, units: 2}\n" % ([1] * 64),
     "a shape has at most 63 axes (with the batch axis, numpy's limit of 64)"),
    ("input_shape: [4]\nlayers:\n  - {type: Reshape, target_shape: %s}\n" % ([1] * 70 + [4]),
     "its output would have 71 axes; with the batch axis an array has at most 64"),
    ("input_shape: %s\nlayers:\n  - {type: Embedding, input_dim: 3, output_dim: 2}\n"
     % ([1] * 63), "its output would have 64 axes"),
])
def test_shapes_beyond_numpys_axes_are_refused_before_any_array(cli, tmp_path, model, fragment):
    path = tmp_path / "m.yaml"
    path.write_text(model)
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    refused(cli("validate", path), 65, fragment)
    refused(cli("summary", path), 65, fragment)
    refused(cli("predict", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy"), 65, fragment)
    assert not (tmp_path / "y.npy").exists()


def test_a_layer_adding_an_axis_to_a_63_axis_input_is_refused(cli, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("layers:\n  - {type: Embedding, input_dim: 3, output_dim: 2}\n")
    np.save(tmp_path / "x.npy", np.zeros((1,) * 64, np.float32))
    refused(cli("predict", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy"), 65,
            "its output would have 64 axes")


@pytest.mark.parametrize("args", [["summary", "-"], ["validate", "-"],
                                  ["predict", "configs/dense_stack.yaml"]])
def test_a_closed_stdin_is_named_as_missing(args):
    done = subprocess.run([sys.executable, "-m", "seqcli", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, cwd=REPO, timeout=300,
                          preexec_fn=lambda: os.close(0))
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode().startswith("seqcli: error: there is no standard input; ")
    assert done.stderr.count(b"\n") == 1


# --- issue 20: plot and report ---

_PICTURED = "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, activation: relu}\n"


@pytest.fixture
def pictured(tmp_path):
    """A folder with a model, an input for it, and outputs that a failed run must not touch."""
    (tmp_path / "m.yaml").write_text(_PICTURED)
    (tmp_path / "unbuilt.yaml").write_text("layers:\n  - {type: Dense, units: 3}\n")
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    for name in ("old.svg", "old.png", "old.html"):
        (tmp_path / name).write_bytes(PRECIOUS)
    return tmp_path


@pytest.mark.parametrize("args, code, fragments", [
    (["m.yaml", "-o", "m.pdf"], 2, ["-o m.pdf: the diagram goes to a .svg or .png file; "
                                    "name it m.svg"]),
    (["missing.yaml", "-o", "old.svg"], 66, ["missing.yaml"]),
    (["unbuilt.yaml", "-o", "old.svg"], 2, ["has no input shape yet", "--input-shape"]),
    (["m.yaml", "-o", "old.svg", "--rankdir", "BT"], 2, ["--rankdir"]),
    (["m.yaml", "-o", "no/such/folder/m.svg"], 73, ["folder", "does not exist"]),
    (["m.yaml", "-o", "."], 73, ["it is a directory"]),
    (["m.yaml", "-o", "old.svg", "--input-shape", "5"], 2, ["--input-shape (5,) differs from the model's declared input shape (4,)"]),
])
def test_plot_refusals(cli, pictured, monkeypatch, args, code, fragments):
    monkeypatch.chdir(pictured)
    before = snapshot(pictured)
    refused(cli("plot", *args), code, *fragments)
    unchanged(pictured, before)


def test_plot_refuses_a_broken_model_file(cli, pictured):
    (pictured / "bad.yaml").write_text("input_shape: [4]\nlayers:\n  - {type: Dens, units: 3}\n")
    before = snapshot(pictured)
    refused(cli("plot", pictured / "bad.yaml", "-o", pictured / "old.svg"), 65, "bad.yaml:3:5: unknown",
            "Did you mean 'Dense'?")
    unchanged(pictured, before)


def test_png_without_pillow_names_the_extra_and_writes_nothing(cli, pictured, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` fails as if not installed
    before = snapshot(pictured)
    refused(cli("plot", pictured / "m.yaml", "-o", pictured / "old.png"), 1,
            "a .png diagram needs the 'Pillow' package, which is not installed: pip install "
            "'seqcli[images]'")
    unchanged(pictured, before)


def test_plot_to_a_read_only_file_leaves_it(cli, pictured):
    (pictured / "old.svg").chmod(0o444)
    before = snapshot(pictured)
    refused(cli("plot", pictured / "m.yaml", "-o", pictured / "old.svg"), 73, "read-only")
    unchanged(pictured, before)


def _history(folder: Path, name: str, data: bytes) -> Path:
    (folder / name).write_bytes(data)
    return folder / name


@pytest.mark.parametrize("content, fragment", [
    (b"", "not JSON (line 1, column 1: Expecting value)"),
    (b"{loss: [1]}", "not JSON (line 1, column 2"),
    (b"\xff\xfe{}", "not UTF-8 text (byte 0 is invalid)"),
    (b"[1, 2]", "holds a list holding something other than numbers;"),
    (b"{}", "holds an empty object"),
    (b'"loss"', "holds a string"),
    (b'{"loss": []}', "'loss' holds an empty list, not a list of numbers, one per epoch"),
    (b'{"loss": [1, "2"]}', "'loss' holds a list holding something other than numbers"),
    (b'{"loss": [true]}', "'loss' holds a list holding something other than numbers"),
    (b'{"loss": 0.5}', "'loss' holds a number, not a list of numbers"),
    (b'{"loss": {"a": 1}}', "'loss' holds an object"),
    (b"[" * 100_000, "not JSON (nested too deeply)"),
])
def test_report_refuses_a_file_that_is_not_a_history(cli, pictured, content, fragment):
    history = _history(pictured, "h.json", content)
    before = snapshot(pictured)
    refused(cli("report", pictured / "m.yaml", "--history", history, "-o",
                pictured / "old.html"), 65, f"{history}: ", fragment,
            "expected the JSON object seqcli fit --history writes")
    unchanged(pictured, before)


def test_report_refuses_a_huge_history_before_reading_it_all(cli, pictured, monkeypatch):
    from seqcli.visual import history

    monkeypatch.setattr(history, "MAX_HISTORY_BYTES", 10)
    path = _history(pictured, "h.json", b'{"loss": [1, 2, 3]}')
    refused(cli("report", pictured / "m.yaml", "--history", path, "-o", pictured / "r.html"),
            65, "more than 10 bytes")


@pytest.mark.parametrize("args, code, fragments", [
    (["m.yaml", "-o", "r.txt"], 2, ["-o r.txt: the report (HTML) goes to a .html or .htm "
                                    "file; name it r.html"]),
    (["m.yaml", "--history", "nothing.json", "-o", "old.html"], 66,
     ["nothing.json: no such file; check the --history path"]),
    (["m.yaml", "--history", ".", "-o", "old.html"], 66, ["is a folder"]),
    (["m.yaml", "missing.npy", "-o", "old.html"], 66, ["missing.npy"]),
    (["m.yaml", "m.yaml", "-o", "old.html"], 65, ["m.yaml"]),
    (["m.yaml", "wide.npy", "-o", "old.html"], 65, ["input has shape (2, 5), but the model expects (None, 4)"]),
    (["m.yaml", "empty.npy", "-o", "old.html"], 65,
     ["empty.npy holds no samples; a report shows the first samples' predictions"]),
    (["m.yaml", "x.npy", "--input-shape", "4", "-o", "old.html"], 2,
     ["--input-shape is for a report without INPUT"]),
    (["unbuilt.yaml", "-o", "old.html"], 2, ["has no input shape yet", "--input-shape"]),
    (["m.yaml", "-o", "old.html", "--history", "old.html"], 2, ["name the same file"]),
    (["m.yaml", "-", "--history", "-", "-o", "old.html"], 2, ["stdin"]),
    (["m.yaml", "x.npy", "--samples", "0", "-o", "old.html"], 2, ["--samples"]),
    (["m.yaml", "-o", "no/such/folder/r.html"], 73, ["does not exist"]),
])
def test_report_refusals(cli, pictured, monkeypatch, args, code, fragments):
    monkeypatch.chdir(pictured)
    np.save(pictured / "wide.npy", np.ones((2, 5), np.float32))
    np.save(pictured / "empty.npy", np.ones((0, 4), np.float32))
    before = snapshot(pictured)
    refused(cli("report", *args), code, *fragments)
    unchanged(pictured, before)


def test_report_to_a_terminal_is_refused(pictured):
    code, err, shown = on_terminal("report", pictured / "m.yaml", "-q")
    assert code == 2 and shown == b"", err
    assert err == ("seqcli: error: refusing to write an HTML page to a terminal; redirect "
                   "stdout or pass -o FILE.html\n")


# --- issue 21: regularizers and constraints ---

@pytest.mark.parametrize("keys, fragments", [
    ("kernel_regularizer: {type: Orthogonal, factor: 0.1}",
     ["3:49: Dense kernel_regularizer: unknown regularizer 'Orthogonal'", "L1, L2, L1L2"]),
    ("kernel_regularizer: {l3: 0.1}", ["expected a regularizer such as {l2: 0.01}"]),
    ("kernel_regularizer: {l2: -0.1}", ["factor l2 must be a finite number, at least 0",
                                        "l2=-0.1"]),
    ("bias_regularizer: {l1: .nan}", ["factor l1 must be a finite number", "l1=nan"]),
    ("activity_regularizer: {type: L2, l1: 0.1}", ["the L2 regularizer takes l2 only"]),
    ("kernel_constraint: {type: Clip}",
     ["unknown constraint 'Clip'", "MaxNorm, NonNeg, UnitNorm, MinMaxNorm"]),
    ("kernel_constraint: {type: MaxNorm, max_value: -1}",
     ["the MaxNorm constraint's max_value must be a finite number, at least 0"]),
    ("kernel_constraint: {type: MinMaxNorm, min_value: 2, max_value: 1}",
     ["min_value (2.0) is above its max_value (1.0)"]),
    ("kernel_constraint: {type: UnitNorm, axis: first}", ["axis is an int or a list of ints"]),
    ("use_bias: false, bias_constraint: NonNeg",
     ["bias_constraint applies to the bias, which use_bias: false removes"]),
    ("use_bias: false, bias_regularizer: {l2: 0.1}",
     ["bias_regularizer applies to the bias"]),
    ("kernel_constraint: {type: MaxNorm, max_value: 2, axis: 3}",
     ["the constraint of its weight kernel: MaxNorm's axis 3 is out of range for a weight of "
      "2 axes; use an axis in [-2, 1]"]),
    ("kernel_constraint: {type: UnitNorm, axis: [0, -3]}", ["UnitNorm's axis -3 is out of range"]),
])
def test_bad_regularizers_and_constraints_are_refused(cli, tmp_path, keys, fragments):
    model = tmp_path / "m.yaml"
    model.write_text(f"input_shape: [3]\nlayers:\n  - {{type: Dense, units: 2, {keys}}}\n")
    refused(cli("validate", model), 65, *fragments)


@pytest.mark.parametrize("layer, fragments", [
    ("{type: Flatten, kernel_constraint: NonNeg}",
     ["unknown key 'kernel_constraint' for Flatten"]),
    ("{type: BatchNormalization, center: false, beta_regularizer: {l2: 0.1}}",
     ["beta_regularizer applies to the beta, which center: false removes"]),
    ("{type: Bidirectional, layer: {type: LSTM, units: 2, kernel_constraint: NonNeg}}",
     ["Bidirectional does not train its wrapped layer's regularizers or constraints"]),
])
def test_regularizers_and_constraints_on_a_layer_without_that_weight(cli, tmp_path, layer,
                                                                     fragments):
    model = tmp_path / "m.yaml"
    model.write_text(f"input_shape: [3, 2]\nlayers:\n  - {layer}\n")
    refused(cli("validate", model), 65, *fragments)


# --- issue 20: images in ---

IMAGE_MODEL = """input_shape: {shape}
layers:
  - {{type: Conv2D, filters: 2, kernel_size: 3}}
  - {{type: Flatten}}
  - {{type: Dense, units: 2, activation: softmax}}
"""


@pytest.fixture
def pictures(tmp_path):
    """A folder `pics/` of two good 12x10 PNGs, a model on 8x8 RGB images, and `out/` with a
    precious file that failed runs must leave as it is."""
    from PIL import Image

    rng = np.random.default_rng(20)
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(pics / name)
    (tmp_path / "m.yaml").write_text(IMAGE_MODEL.format(shape="[8, 8, 3]"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "y.npy").write_bytes(PRECIOUS)
    return tmp_path


def _png_bytes(size=(12, 10)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny IDAT chunk."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, code, fragment", [
    ("cut.png", lambda: _noise_png()[:300], 65, "cut.png"),
    ("text.png", lambda: b"not a picture at all\n", 65, "text.png"),
    ("empty.jpg", lambda: b"", 65, "empty.jpg"),
    ("cut.jpg", lambda: _jpeg_bytes()[:200], 65, "cut.jpg"),
    ("bomb.png", lambda: _png_claiming(100_000, 100_000), 65, "bomb.png"),
])
def test_bad_image_in_a_folder_is_bad_data_naming_it(cli, pictures, name, content, code,
                                                     fragment):
    (pictures / "pics" / name).write_bytes(content())
    before = snapshot(pictures)
    result = cli("predict", pictures / "m.yaml", pictures / "pics", "-o",
                 pictures / "out" / "y.npy", "-q")
    refused(result, code, fragment)
    unchanged(pictures, before)


def test_of_several_bad_images_the_first_is_named(cli, pictures):
    """Images decode side by side, but the error is always the first bad file's, in row
    order."""
    for name in ("c.png", "e.png", "f.png"):
        (pictures / "pics" / name).write_bytes(_noise_png())
    for name in ("d.png", "g.png"):
        (pictures / "pics" / name).write_bytes(_noise_png()[:500])
    for _ in range(3):
        refused(cli("predict", pictures / "m.yaml", pictures / "pics", "-q"), 65, "d.png")


def _noise_png() -> bytes:
    """A PNG of 40x40 random pixels (some 4.8 KB: cut short, it lacks pixel data)."""
    from PIL import Image

    buffer = io.BytesIO()
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_bomb_is_refused_in_bounded_memory_and_time(pictures):
    """Pillow's limit stops an image that claims 10 gigapixels before it is decoded."""
    (pictures / "pics" / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    result, seconds, peak = _cost("predict", pictures / "m.yaml", pictures / "pics" / "bomb.png",
                                  "-q", cwd=pictures)
    refused(result, 65, "bomb.png")
    assert seconds < 60 and peak < 400 * 2**20


def test_an_image_at_pillows_limit_costs_bounded_memory(pictures):
    """A 1.4 MB JPEG of 88 million pixels (just under Pillow's limit) is read strip by strip:
    Pillow's own buffer and one copy, never a dozen int32 planes (5.5 GB)."""
    from PIL import Image

    Image.new("RGB", (9400, 9400), (200, 10, 10)).save(pictures / "pics" / "huge.jpg",
                                                        quality=90)
    result, seconds, peak = _cost("predict", pictures / "m.yaml", pictures / "pics" / "huge.jpg",
                                  "--argmax", "-q", cwd=pictures)
    assert result.code == 0, result
    assert seconds < 60 and peak < 900 * 2**20, (seconds, peak)


@pytest.mark.parametrize("paths, code, fragment", [
    (["missing.png"], 66, "missing.png"),
    (["nothing/"], 65, "nothing"),
    (["notes/"], 65, "notes"),
    (["pics/*.jpeg"], 66, "*.jpeg"),
])
def test_image_inputs_that_hold_no_image(cli, pictures, paths, code, fragment):
    (pictures / "nothing").mkdir()
    (pictures / "notes").mkdir()
    (pictures / "notes" / "readme.txt").write_text("no pictures here\n")
    before = snapshot(pictures)
    result = cli("predict", pictures / "m.yaml", *[pictures / p for p in paths], "-q")
    refused(result, code, fragment)
    unchanged(pictures, before)


@pytest.mark.parametrize("shape, code, fragment", [
    (None, 2, "declares no input shape"),
    ("[null, null, 3]", 65, "None"),
    ("[8, 8, 2]", 65, "2"),
])
def test_models_that_cannot_take_images(cli, pictures, shape, code, fragment):
    if shape is None:
        (pictures / "m.yaml").write_text("layers:\n  - {type: Flatten}\n"
                                         "  - {type: Dense, units: 2}\n")
    else:
        (pictures / "m.yaml").write_text(
            IMAGE_MODEL.format(shape=shape).replace("Flatten", "GlobalAveragePooling2D"))
    refused(cli("predict", pictures / "m.yaml", pictures / "pics", "-q"), code, fragment)


def test_a_vector_model_cannot_take_images(cli, pictures):
    (pictures / "m.yaml").write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 2}\n")
    refused(cli("predict", pictures / "m.yaml", pictures / "pics", "-q"), 65, "(None, 4)",
            "images are (height, width, channels)")


@pytest.mark.parametrize("extra, inputs, fragment", [
    (["--crop-to-aspect-ratio", "--pad-to-aspect-ratio"], ["pics"], "alternatives"),
    (["--interpolation", "cubic"], ["pics"], "bicubic"),
    (["--interpolation", "nearest"], ["x.npy"], "for image inputs"),
    (["--crop-to-aspect-ratio"], ["x.npy"], "for image inputs"),
    ([], ["x.npy", "x.npy"], "several are taken only as image files"),
])
def test_image_options_that_do_not_fit_are_usage_errors(cli, pictures, extra, inputs, fragment):
    np.save(pictures / "x.npy", np.zeros((2, 8, 8, 3), np.float32))
    before = snapshot(pictures)
    result = cli("predict", pictures / "m.yaml", *[pictures / p for p in inputs], *extra,
                 "-o", pictures / "out" / "y.npy", "-q")
    refused(result, 2, fragment)
    unchanged(pictures, before)


def test_an_array_among_images_is_refused(cli, pictures):
    np.save(pictures / "x.npy", np.zeros((2, 8, 8, 3), np.float32))
    refused(cli("predict", pictures / "m.yaml", pictures / "x.npy", pictures / "pics" / "a.png",
                "-q"), 65, "x.npy: not an image file name")


def _classes(root: Path, names: list[str]) -> Path:
    """`root/data/<name>/` with two PNGs each."""
    data = root / "data"
    for name in names:
        (data / name).mkdir(parents=True)
        for index in range(2):
            (data / name / f"{index}.png").write_bytes(_png_bytes())
    return data


@pytest.mark.parametrize("command", ["fit", "evaluate"])
def test_class_folders_that_do_not_fit_the_model(cli, pictures, command):
    data = _classes(pictures, ["cat", "dog", "fox"])
    before = snapshot(pictures)
    extra = ["-o", pictures / "out" / "w.safetensors"] if command == "fit" else []
    result = cli(command, pictures / "m.yaml", data, *extra, "-q",
                 "--loss", "sparse_categorical_crossentropy")
    refused(result, 65, "3 class folders (cat, dog, fox)", "outputs 2 values")
    unchanged(pictures, before)


def test_a_folder_without_class_folders_needs_y(cli, pictures):
    before = snapshot(pictures)
    result = cli("fit", pictures / "m.yaml", pictures / "pics", "-o",
                 pictures / "out" / "w.safetensors", "-q")
    refused(result, 65, "pics")
    unchanged(pictures, before)


def test_folder_names_that_are_not_utf8(cli, pictures):
    """A class folder named in bytes that are not UTF-8: its files' paths are written with the
    bytes escaped (`\\xff`), and --class-names, which cannot hold the name, is refused before
    training, writing nothing."""
    data = pictures / "odd"
    strange = os.fsencode(data) + b"/a\xff"
    os.makedirs(strange)
    (data / "b").mkdir()
    for folder in (os.fsdecode(strange), str(data / "b")):
        (Path(folder) / "0.png").write_bytes(_png_bytes())
    lines = pictures / "out" / "lines.txt"
    result = cli("predict", pictures / "m.yaml", data, "--argmax", "-o", lines, "-q")
    assert result.code == 0, result
    assert [line.split("\t")[0] for line in lines.read_text().splitlines()] == [
        f"{data}/a\\xff/0.png", f"{data}/b/0.png"]
    before = snapshot(pictures / "out")
    result = cli("fit", pictures / "m.yaml", data, "-o", pictures / "out" / "w.npz",
                 "--class-names", pictures / "out" / "classes.txt", "-q",
                 "--loss", "sparse_categorical_crossentropy")
    refused(result, 65, "not named in UTF-8")
    unchanged(pictures / "out", before)


def test_fit_without_output_is_a_usage_error(cli, pictures):
    refused(cli("fit", pictures / "m.yaml", pictures / "pics", "-q"), 2,
            "Missing option '-o' / '--output'")


def test_fit_on_an_array_needs_y(cli, pictures):
    np.save(pictures / "x.npy", np.zeros((2, 8, 8, 3), np.float32))
    result = cli("fit", pictures / "m.yaml", pictures / "x.npy", "-o",
                 pictures / "out" / "w.safetensors", "-q")
    refused(result, 2, "Y (the targets) is missing")


@pytest.mark.parametrize("args, fragment", [
    (["x.npy", "t.npy", "--class-names", "out/classes.txt"], "not images"),
    (["pics", "t.npy", "--class-names", "out/classes.txt"], "labelled by Y"),
])
def test_class_names_need_class_folders(cli, pictures, args, fragment):
    np.save(pictures / "x.npy", np.zeros((2, 8, 8, 3), np.float32))
    np.save(pictures / "t.npy", np.zeros((2,), np.int64))
    before = snapshot(pictures)
    result = cli("evaluate", pictures / "m.yaml", *[pictures / a if not a.startswith("--")
                                                    else a for a in args], "-q")
    refused(result, 2, fragment)
    unchanged(pictures, before)


def test_evaluate_class_names_to_stdout_is_refused(cli, pictures):
    data = _classes(pictures, ["cat", "dog"])
    refused(cli("evaluate", pictures / "m.yaml", data, "--class-names", "-", "-q"), 2,
            "stdout holds the results")


def test_images_and_targets_of_another_count(cli, pictures):
    np.save(pictures / "t.npy", np.zeros((3,), np.int64))
    before = snapshot(pictures)
    result = cli("fit", pictures / "m.yaml", pictures / "pics", pictures / "t.npy", "-o",
                 pictures / "out" / "w.safetensors", "-q")
    refused(result, 65, "2 images", "3 rows")
    unchanged(pictures, before)
