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
import pty
import re
import select
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

from tests.conftest import REPO, run_process

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


@pytest.mark.parametrize(("encoded", "byte"), [
    ("input_shape: [4]\nname: caf\u00e9\n".encode("latin-1"), 26),
    ("input_shape: [4]\n".encode("utf-16"), 0),
    (b"\x89PNG\r\n\x1a\n\x00\x00", 0),
], ids=["latin-1", "utf-16", "binary"])
def test_non_utf8_model_file(cli, work, encoded, byte):
    model = work.write("enc.yaml", encoded)
    refused(cli("validate", model), 65, f"1:1: model file is not UTF-8 text (byte {byte}")


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
    ("../x.npy", "model file is not UTF-8 text"),
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
      "dense_1/bais?", "unexpected tensor dense_1/bais"], 3),
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
    for args in (["validate", model], ["summary", model],
                 ["predict", model, work.x, "-o", work.out / "y.npy"],
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
    ("not .npy", lambda: b"x,y\n1,2\n", "not a .npy file"),
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
    refused(cli("extract", work.model, work.out, "--all", "-o", work.out / "all.npz"), 66,
            "is a directory")
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
        ["import-keras", KERAS_FILE, "-o", out / "imported.yaml"],
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


def _on_terminal(*args, stdin_terminal=False, cwd=None):
    """Run seqcli with stdout (or stdin) on a pseudo-terminal; (code, stderr, terminal)."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "seqcli", *map(str, args)],
                              stdin=follower if stdin_terminal else subprocess.DEVNULL,
                              stdout=subprocess.PIPE if stdin_terminal else follower,
                              stderr=subprocess.PIPE, cwd=cwd, timeout=300)
        shown = b""
        while select.select([leader], [], [], 0.1)[0]:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(follower)
        os.close(leader)
    return done.returncode, done.stderr.decode(), shown


def test_binary_output_to_a_terminal_is_refused(work):
    for args in (["predict", work.model, work.x],
                 ["extract", work.model, work.x, "--layer", "dense"],
                 ["extract", work.model, work.x, "--all"],
                 ["init", work.model, "-o", "-"]):
        code, err, shown = _on_terminal(*args)
        assert code == 2, err
        assert err.startswith("seqcli: error: refusing to write binary") and err.count("\n") == 1
        assert shown == b""
    code, err, shown = _on_terminal("predict", work.model, work.x, "--argmax")  # text is fine
    assert code == 0 and len(shown.split()) == 5, err


def test_input_from_a_terminal_is_refused(work):
    for args in (["predict", work.model, "-o", work.out / "y.npy"], ["summary", "-"]):
        code, err, _ = _on_terminal(*args, stdin_terminal=True)
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
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_temp(tmp_path, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert (out, err) == (b"", message)
    assert sorted(os.listdir(tmp_path)) == ["y.npy"] and target.read_bytes() == PRECIOUS


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
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
