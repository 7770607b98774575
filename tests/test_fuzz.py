"""Fuzzing (issue 7): mutated model files, `.npy` inputs and weights files never crash seqcli.

The property, for every mutated file and every command run on it: a clean refusal with a
contract exit code (2, 65, 66, 73) or success (0); never a traceback, never the "internal
error" path (exit 1), never a Python warning, never a hang (each run has a time limit), never
a jump of more than 1 GB in peak memory, never a temp file left behind. Runs are in-process
through `seqcli.cli.main`, for speed.

`SEQCLI_FUZZ_EXAMPLES` sets the examples per test (default 60: the file takes well under a
minute). A longer session, as CI's fuzz job runs it:

    SEQCLI_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py -q

Minimal reproducers of what fuzzing found live in `tests/fuzz_corpus/` and are replayed by
`test_corpus_replays_cleanly` on every run (file name prefix says what the file is:
`model-*.yaml`, `input-*.npy`, `weights-*.npz`, `weights-*.safetensors`).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqcli.cli import main

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "keras_reference"
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
EXAMPLES = int(os.environ.get("SEQCLI_FUZZ_EXAMPLES", "60"))
TIME_LIMIT = float(os.environ.get("SEQCLI_FUZZ_TIME_LIMIT", "30"))
"""Seconds one command may take before it counts as a hang."""
CONTRACT_CODES = {0, 2, 65, 66, 73}
MAX_MEMORY_GROWTH = 1024**3
"""Bytes by which one command may raise the process's peak memory: the fuzzed files are tiny,
so more means a size went unchecked."""

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

# Small models of the Keras reference set: each has weights and an input beside it.
SEED_STEMS = ["guide_dense_stack", "small_convnet", "nested_deep", "nested_frozen",
              "batchnorm", "separable", "reshape_to_image", "pooling2d_same", "text_conv1d",
              "zeropadding", "upsampling", "deferred_build", "explicit_names", "layernorm",
              "imdb_bidirectional_lstm", "masking_gru", "sequence_tagger", "lstm_autoencoder",
              "simple_rnn_masked", "activation_layer_types", "conv2d_transpose", "conv3d_layers",
              "pooling3d", "shape_resize", "shape_layers_2d", "shape_volumes",
              "normalization_given", "normalization_adapted", "groupnorm_convnet",
              "noise_layers", "augmentation_layers"]
# A model pulling another file in with `from:`, to mutate the reference itself.
FROM_MODEL = ("name: outer\ninput_shape: [4]\nlayers:\n"
              "  - {type: Sequential, name: base, from: base.yaml, trainable: false}\n"
              "  - type: Dense\n    units: 2\n    activation: softmax\n")
BASE_MODEL = "input_shape: [4]\nweights: base.npz\nlayers:\n  - {type: Dense, units: 3}\n"
# The model that fuzzed inputs and weights files are fed to.
TARGET_MODEL = ("input_shape: [4]\nweights: w.safetensors\nlayers:\n"
                "  - {type: Dense, units: 3, activation: relu}\n  - {type: Dense, units: 2}\n")
DEFERRED_MODEL = "layers:\n  - {type: Flatten}\n  - {type: Activation, activation: tanh}\n"
# Harness guard: the product promises checks, not memory, for huge but valid models
# (SECURITY.md), so mutated models that declare more than this are only validated.
MAX_RUN_ELEMENTS = 2_000_000


class Hang(BaseException):
    """A command ran past TIME_LIMIT (a BaseException, so `main` cannot swallow it)."""


@dataclass
class Outcome:
    code: int
    out: bytes
    err: str
    memory_growth: int = 0
    """How much the process's peak resident memory grew during the run, in bytes."""


def peak_memory() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Pipe(io.TextIOWrapper):
    """A text stream over bytes that is not a terminal."""

    def isatty(self) -> bool:
        return False


def run_cli(*args, stdin: bytes = b"") -> Outcome:
    """`seqcli ARGS...` in-process with its own stdin, stdout and stderr."""
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    streams = (sys.stdin, sys.stdout, sys.stderr)
    fakes = (_Pipe(io.BytesIO(stdin), encoding="utf-8"), _Pipe(out_bytes, encoding="utf-8"),
             _Pipe(err_bytes, encoding="utf-8"))
    sys.stdin, sys.stdout, sys.stderr = fakes
    peak = peak_memory()
    try:
        with time_limit(TIME_LIMIT), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main([str(arg) for arg in args])
    finally:
        for stream in fakes[1:]:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdin, sys.stdout, sys.stderr = streams
    err = err_bytes.getvalue().decode("utf-8", "replace")
    err += "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)  # as Python shows them
    outcome = Outcome(code, out_bytes.getvalue(), err, peak_memory() - peak)
    del fakes  # closing the wrappers closes the buffers: only after reading them
    return outcome


_POSITION = re.compile(r"^[^\n]*:\d+:\d+: ")


def assert_clean(outcome: Outcome, args, folder: Path, *, stdout_used: bool = False) -> None:
    """The fuzzing property for one command's outcome."""
    shown = f"seqcli {' '.join(map(str, args))} -> {outcome.code}\nstderr: {outcome.err[:2000]}"
    assert outcome.code in CONTRACT_CODES, shown
    assert "Traceback" not in outcome.err and "internal error" not in outcome.err, shown
    assert "Warning:" not in outcome.err, shown  # Python/numpy warnings are noise
    assert outcome.memory_growth < MAX_MEMORY_GROWTH, shown
    if outcome.code != 0:
        lines = outcome.err.splitlines()
        assert lines, shown
        assert all(line.startswith("seqcli: ") or _POSITION.match(line) for line in lines), shown
        if not stdout_used:
            assert outcome.out == b"", shown
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")
                or name.startswith(".seqcli-")], shown


def fresh_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="seqcli-fuzz-"))


# --- mutations ---------------------------------------------------------------------------

YAML_FRAGMENTS = [
    "&a ", "*a", "!!python/object/apply:os.system ['true'] ", "!!str ", "!tag ", "<<: ", "{", "}",
    "[", "]", "- ", ": ", ",", "\n", "  ", "\t", "---\n", "...\n", "%YAML 1.1\n", "? ", "|\n",
    ">\n", "'", '"', "#", "~", "null", "1e999", ".nan", "-.inf", "-1", "0", "1.5", "true",
    "99999999999999999999", "0x7fffffffffffffff", "0o777", "\u00e9", "\x00", "\ufeff",
    "type: Sequential\n", "from: ../outside.yaml", "from: model.yaml", "from: base.yaml",
    "weights: base.npz", "weights: /etc/passwd", "weights: ../w.npz", "layers: []",
    "- {type: Dense, units: 3}", "- {type: Input, shape: [4]}", "input_shape: [0]",
    "input_shape: [null]", "name: a/b", "trainable: false", "data_format: channels_first",
    "padding: same", "kernel_size: [3, 3, 3]", "strides: 0", "units: 100000000",
    "target_shape: [-1]", "- type: Dense\n    units: 2\n", "[" * 60, "]" * 60, "{a: " * 60,
]
REPLACEMENT_VALUES = [
    "0", "-1", "1", "2", "3", "1.5", "-0.0", "1e-300", "1e300", ".inf", ".nan", "null", "~",
    "true", "false", "yes", "''", '""', "[]", "{}", "[1]", "[1, 2]", "[-1, 2]", "[[1, 2], [3, 4]]",
    "[null, 2]", "abc", "Dense", "Sequential", "Input", "same", "valid", "causal", "relu",
    "nearest", "2147483648", "9223372036854775808", "99999999999999999999999",
    "channels_first", "0x10", "'3'", "[3, 3]", "{type: Dense}", "model.yaml", "base.yaml",
]
KEYS = ["type", "name", "units", "filters", "kernel_size", "strides", "padding", "pool_size",
        "layers", "from", "weights", "input_shape", "shape", "batch_shape", "trainable", "axis",
        "target_shape", "size", "rate", "noise_shape", "groups", "depth_multiplier", "seed",
        "dilation_rate", "activation", "use_bias", "keepdims", "epsilon", "center", "scale",
        "interpolation", "data_format", "dtype", "unit", "<<", "? x"]
_KEY = re.compile(r"(?<=[\s{,])[A-Za-z_]+(?=:)")
_VALUE = re.compile(r"(?<=: )[^\s,{}\[\]#][^,{}\[\]\n#]*|(?<=- )\S[^\n#]*|(?<=\[)[^\[\],\n]+")


@st.composite
def mutated_bytes(draw, data: bytes, fragments: list[bytes] | None = None) -> bytes:
    """`data` after 1-4 random byte-level edits (flips, deletions, duplications, insertions)."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "delete", "duplicate", "insert", "truncate",
                                     "byte"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            at = min(at, len(data) - 1)
            data[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            data[at : at + draw(st.integers(1, 16))] = b""
        elif kind == "duplicate":
            piece = data[at : at + draw(st.integers(1, 64))]
            where = draw(st.integers(0, len(data)))
            data[where:where] = piece
        elif kind == "truncate":
            del data[at:]
        else:
            piece = draw(st.sampled_from(fragments)) if fragments else draw(st.binary(min_size=1, max_size=8))
            data[at:at] = piece
    return bytes(data)


@st.composite
def mutated_model(draw, text: str) -> bytes:
    """A model file after text-level edits: swapped values, YAML fragments, byte edits."""
    for _ in range(draw(st.integers(0, 3))):
        swap_key = draw(st.integers(0, 3)) == 0
        found = list((_KEY if swap_key else _VALUE).finditer(text))
        if not found:
            break
        match = draw(st.sampled_from(found))
        replacement = draw(st.sampled_from(KEYS if swap_key else REPLACEMENT_VALUES))
        text = text[: match.start()] + replacement + text[match.end():]
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = draw(mutated_bytes(data, [f.encode("utf-8") for f in YAML_FRAGMENTS]))
    return data


# --- seeds -------------------------------------------------------------------------------


def reference(stem: str) -> tuple[str, dict[str, np.ndarray], np.ndarray]:
    text = (REFERENCE / "models" / f"{stem}.yaml").read_text(encoding="utf-8")
    with np.load(REFERENCE / "weights" / f"{stem}.npz") as weights:
        arrays = {key: weights[key] for key in weights.files}
    return text, arrays, np.load(REFERENCE / "inputs" / f"{stem}.npy")


def small_output_shape(model_path: Path, sample_shape: tuple) -> tuple | None:
    """The model's per-sample output shape when it builds for `sample_shape` and stays small
    (see MAX_RUN_ELEMENTS); None otherwise."""
    from seqcli.build import build
    from seqcli.config.load import load_model
    from seqcli.errors import SeqcliError

    try:
        loaded = load_model(str(model_path))
        built = build(loaded, None if loaded.input_shape else sample_shape)
    except (SeqcliError, RecursionError, ValueError, TypeError, OverflowError):
        return None
    outputs = sum(math.prod(d or 1 for d in info.output_shape) for info in built.walk())
    if built.total_params + outputs * 4 > MAX_RUN_ELEMENTS:
        return None
    return built.output_shape


def model_commands(folder: Path, model: Path, x: Path | None, y: Path | None) -> list[list]:
    """The commands run on a (mutated) model file: those that run it only with `x` (and
    train it only with targets `y`)."""
    commands = [["validate", model], ["summary", model, "--json", "--expand-nested"],
                ["freeze", model, "--all-but-last", "-o", folder / "frozen.yaml"],
                ["freeze", model, "--layer", "*", "--unfreeze", "*/dense*", "-o",
                 folder / "frozen.yaml"]]
    if x is not None:
        commands += [["predict", model, x, "-o", folder / "y.npy", "--batch-size", "2"],
                     ["extract", model, x, "--all", "-o", folder / "all.npz"]]
    if y is not None:
        commands += [["fit", model, x, y, "--epochs", "1", "--batch-size", "2", "--quiet",
                      "-o", folder / "fit.npz"]]
    return commands


def run_model_checks(folder: Path, model: Path, x: Path) -> None:
    """Run every model command on `model`; predict, extract and fit only if it stays small."""
    inputs = np.load(x, mmap_mode="r")
    output_shape = small_output_shape(model, tuple(inputs.shape[1:]))
    y = None
    if output_shape is not None and None not in output_shape:
        y = folder / "targets.npy"
        np.save(y, np.zeros((len(inputs), *output_shape), np.float32))
    for args in model_commands(folder, model, x if output_shape else None, y):
        assert_clean(run_cli(*args), args, folder)


# --- the fuzz tests ----------------------------------------------------------------------


class Seeds(dict):
    """{stem: (folder, model text)}, shown briefly in Hypothesis's reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed models>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Each seed model in its own folder with its weights (as `weights:`) and input."""
    root = tmp_path_factory.mktemp("seeds")
    found = Seeds()
    for stem in SEED_STEMS:
        text, arrays, x = reference(stem)
        folder = root / stem
        folder.mkdir()
        np.savez(folder / "w.npz", **arrays)
        np.save(folder / "x.npy", x)
        found[stem] = (folder, "weights: w.npz\n" + text)
    return found


def copy_seed(folder: Path) -> Path:
    target = fresh_folder()
    for name in ("w.npz", "x.npy"):
        shutil.copy(folder / name, target / name)
    return target


@FUZZ
@given(data=st.data(), stem=st.sampled_from(SEED_STEMS))
def test_mutated_model_files(seeds, data, stem):
    folder, text = seeds[stem]
    work = copy_seed(folder)
    try:
        model = work / "model.yaml"
        model.write_bytes(data.draw(mutated_model(text), label="model"))
        run_model_checks(work, model, work / "x.npy")
    finally:
        shutil.rmtree(work)


@FUZZ
@given(data=st.data(), which=st.sampled_from(["outer", "base"]))
def test_mutated_from_models(data, which):
    work = fresh_folder()
    try:
        (work / "model.yaml").write_text(FROM_MODEL)
        (work / "base.yaml").write_text(BASE_MODEL)
        np.savez(work / "base.npz", **{"dense/kernel": np.ones((4, 3)), "dense/bias": np.zeros(3)})
        np.save(work / "x.npy", np.ones((3, 4), np.float32))
        target = work / ("model.yaml" if which == "outer" else "base.yaml")
        target.write_bytes(data.draw(mutated_model(target.read_text()), label=which))
        run_model_checks(work, work / "model.yaml", work / "x.npy")
    finally:
        shutil.rmtree(work)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


INPUT_SEEDS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(12, dtype=">f8").reshape(3, 4),
    np.asfortranarray(np.arange(24, dtype=np.int16).reshape(6, 4)),
    np.array([[np.nan, 1, np.inf, -np.inf]] * 2, np.float32),
    np.zeros((0, 4), np.uint8),
    np.ones((2, 4), bool),
]
HEADER_DESCRS = ["<f4", ">f4", "<f8", "|u1", "<i8", "|b1", "<f2", "<c8", "|O", "<U3", "|V4",
                 "[('a', '<f4')]", "'<f4'", "(3,)<f4", "<M8[s]", "f4", "<f16", "xyz"]
HEADER_SHAPES = ["(3, 4)", "(3,)", "()", "(0, 4)", "(-1, 4)", "(2**62, 4)", "(9223372036854775807, 4)",
                 "(3L, 4L)", "(3, 4L)", "(True, 4)", "(3, 4, 0)", "(1, 99999999999999999999999)",
                 "(99999999999999999999999, 4)", "(3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)",
                 "(1, 4, 1)", "(3, 4.0)", "([3], 4)", "(3, None)", "'a'", "(" * 30 + ")" * 30,
                 "(100000000, 100000000)", "(1, 1099511627776)"]


@st.composite
def hostile_header_npy(draw) -> bytes:
    """A `.npy` with a header dict numpy might or might not accept, and some data."""
    descr = draw(st.sampled_from(HEADER_DESCRS))
    quoted = descr if descr.startswith(("[", "'", "(")) else repr(descr)
    shape = draw(st.sampled_from(HEADER_SHAPES))
    fortran = draw(st.sampled_from(["False", "True", "0", "None"]))
    extra = draw(st.sampled_from(["", ", 'extra': 1", ", 'shape': (1,)"]))
    header = f"{{'descr': {quoted}, 'fortran_order': {fortran}, 'shape': {shape}{extra}, }}"
    header = header.encode("latin-1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00"]))
    length = (struct.pack("<H", len(header)) if version == b"\x01\x00"
              else struct.pack("<I", len(header)))
    body = draw(st.sampled_from([b"", b"\x00" * 48, b"\x01" * 47, b"\xff" * 96]))
    return b"\x93NUMPY" + version + length + header + body


@st.composite
def fuzzed_input(draw) -> bytes:
    if draw(st.booleans()):
        return draw(hostile_header_npy())
    seed = npy_bytes(draw(st.sampled_from(INPUT_SEEDS)))
    return draw(mutated_bytes(seed))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A small model with a weights file, and a deferred-build one, for inputs and weights."""
    from seqcli.io.weights import write_safetensors

    folder = tmp_path_factory.mktemp("target")
    (folder / "m.yaml").write_text(TARGET_MODEL)
    (folder / "deferred.yaml").write_text(DEFERRED_MODEL)
    rng = np.random.default_rng(0)
    weights = {"dense/kernel": rng.normal(size=(4, 3)), "dense/bias": rng.normal(size=3),
               "dense_1/kernel": rng.normal(size=(3, 2)), "dense_1/bias": rng.normal(size=2)}
    write_safetensors(folder / "w.safetensors", weights)
    np.save(folder / "x.npy", rng.normal(size=(3, 4)).astype(np.float32))
    return folder, weights


def input_commands(folder: Path, work: Path, x: Path, data: bytes):
    """(args, stdin) pairs run on a fuzzed input."""
    out = work / "y.npy"
    for model in ("m.yaml", "deferred.yaml"):
        yield ["predict", folder / model, x, "-o", out], b""
        yield ["predict", folder / model, "-", "-o", out, "--batch-size", "1"], data
    yield ["predict", folder / "m.yaml", x, "-o", out, "--strict"], b""
    yield ["extract", folder / "m.yaml", x, "--all", "-o", work / "all.npz"], b""
    yield ["predict", folder / "m.yaml", x, "--top-k", "2"], b""


@FUZZ
@given(data=fuzzed_input())
def test_mutated_inputs(target, data):
    folder, _ = target
    work = fresh_folder()
    try:
        x = work / "x.npy"
        x.write_bytes(data)
        for args, stdin in input_commands(folder, work, x, data):
            assert_clean(run_cli(*args, stdin=stdin), args, work, stdout_used="--top-k" in args)
    finally:
        shutil.rmtree(work)


def _json_containers(inner):
    keys = st.sampled_from(["dtype", "shape", "data_offsets", "x", "__metadata__"])
    return st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() |
    st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "dense/kernel", ""]),
    _json_containers, max_leaves=12,
)


@st.composite
def mutated_safetensors(draw, weights: dict) -> bytes:
    """A safetensors file with its header's entries or bytes edited."""
    import safetensors.numpy

    from seqcli.io.weights import _reorder_header

    tensors = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    blob = _reorder_header(safetensors.numpy.save(tensors), list(tensors))
    length = int.from_bytes(blob[:8], "little")
    header, body = json.loads(blob[8 : 8 + length]), blob[8 + length:]
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(sorted(header) + ["__metadata__", "new"]))
            if draw(st.booleans()) and isinstance(header.get(key), dict):
                field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
                header[key][field] = draw(JSON_VALUES)
            else:
                header[key] = draw(JSON_VALUES)
        text = json.dumps(header).encode("utf-8")
        text += b" " * (-len(text) % 8)
        blob = struct.pack("<Q", len(text)) + text + body
    if draw(st.booleans()):
        blob = draw(mutated_bytes(blob))
    return blob


@st.composite
def mutated_npz(draw, weights: dict) -> bytes:
    """An `.npz` whose members or bytes are edited (stored or deflated)."""
    buffer = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        warnings.simplefilter("ignore")  # duplicate member names are wanted here
        for key, array in weights.items():
            member = npy_bytes(np.asarray(array, np.float32))
            if draw(st.integers(0, 3)) == 0:
                member = draw(st.one_of(hostile_header_npy(), mutated_bytes(member)))
            archive.writestr(draw(st.sampled_from([key + ".npy", key + ".npy", key, "../x.npy",
                                                   key + "/"])), member)
    blob = buffer.getvalue()
    if draw(st.booleans()):
        blob = draw(mutated_bytes(blob))
    return blob


@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".safetensors", ".npz"]))
def test_mutated_weights_files(target, data, suffix):
    folder, weights = target
    strategy = mutated_safetensors(weights) if suffix == ".safetensors" else mutated_npz(weights)
    work = fresh_folder()
    try:
        path = work / f"w{suffix}"
        path.write_bytes(data.draw(strategy, label="weights"))
        for args in (["validate", folder / "m.yaml", "--weights", path],
                     ["predict", folder / "m.yaml", folder / "x.npy", "--weights", path,
                      "-o", work / "y.npy"],
                     ["init", folder / "m.yaml", "--weights-from", path, "-o", work / "i.npz"]):
            assert_clean(run_cli(*args), args, work)
    finally:
        shutil.rmtree(work)


# --- the regression corpus ---------------------------------------------------------------


def declared_input_shape(model: Path) -> tuple:
    """The model's per-sample input shape where it declares a small one (unknown sizes as 3),
    else (4,): an input the replayed model runs on, when it loads."""
    from seqcli.config.load import load_model
    from seqcli.errors import SeqcliError

    try:
        shape = load_model(str(model)).input_shape
    except SeqcliError:
        return (4,)
    shape = tuple(3 if size is None else size for size in shape or (4,))
    return shape if math.prod(shape) <= 10_000 else (4,)


def corpus_files() -> list[Path]:
    return sorted(path for path in CORPUS.iterdir() if path.name != "README.md")


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name)
def test_corpus_replays_cleanly(target, path, tmp_path):
    """Every reproducer fuzzing found still gets a clean answer."""
    folder, _ = target
    if path.name.startswith("model-"):
        model = tmp_path / "model.yaml"
        shutil.copy(path, model)
        np.save(tmp_path / "x.npy", np.ones((2, *declared_input_shape(model)), np.float32))
        run_model_checks(tmp_path, model, tmp_path / "x.npy")
    elif path.name.startswith("input-"):
        data = path.read_bytes()
        x = tmp_path / "x.npy"
        x.write_bytes(data)
        for args, stdin in input_commands(folder, tmp_path, x, data):
            assert_clean(run_cli(*args, stdin=stdin), args, tmp_path,
                         stdout_used="--top-k" in args)
    elif path.name.startswith("weights-"):
        weights = tmp_path / ("w" + "".join(path.suffixes[-1:]))
        shutil.copy(path, weights)
        for args in (["validate", folder / "m.yaml", "--weights", weights],
                     ["predict", folder / "m.yaml", folder / "x.npy", "--weights", weights,
                      "-o", tmp_path / "y.npy"]):
            assert_clean(run_cli(*args), args, tmp_path)
    else:
        pytest.fail(f"{path.name}: corpus files start with model-, input- or weights-")
