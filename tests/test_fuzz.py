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
`model-*.yaml`, `model-*/` (a folder of model files; `model.yaml` is run), `input-*.npy`,
`weights-*.npz`, `weights-*.safetensors`, `keras-*.keras`).
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
import zlib
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
    diverged = (outcome.code == 1 and args[0] == "fit"  # the contract's numeric failure
                and re.search(r"^seqcli: error: the (loss|weight \S+) became ", outcome.err, re.M))
    assert outcome.code in CONTRACT_CODES or diverged, shown
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


ENTRY_KINDS = ["dense", "from", "inline", "missing"]
FAN_OUT = [1, 1, 2, 3, 60]
"""How many times an entry is repeated: 60 in files that use each other makes millions."""


@st.composite
def from_tree(draw) -> dict[str, str]:
    """Model files `f0.yaml`, `f1.yaml`... whose entries name each other with `from:` (inline
    too), each repeated up to 60 times: chains, fan-out, cycles and missing files."""
    count = draw(st.integers(1, 4))
    files = {}
    for index in range(count):
        entries = []
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(ENTRY_KINDS))
            target = f"f{draw(st.integers(0, count - 1))}.yaml"
            entry = {"dense": "{type: Dense, units: 2}",
                     "from": f"{{type: Sequential, from: {target}}}",
                     "inline": f"{{type: Sequential, layers: [{{type: Sequential, from: {target}}}]}}",
                     "missing": "{type: Sequential, from: nope.yaml}"}[kind]
            entries += [entry] * draw(st.sampled_from(FAN_OUT))
        head = "input_shape: [4]\n" if index == 0 else ""
        files[f"f{index}.yaml"] = head + "layers:\n" + "".join(f"  - {e}\n" for e in entries)
    return files


def expanded_layers(model: Path) -> int | None:
    """How many layers the model holds, nested ones included; None when it does not load."""
    from seqcli.config.freeze import layer_paths
    from seqcli.config.load import load_model
    from seqcli.errors import SeqcliError

    try:
        return len(layer_paths(load_model(str(model)).layers))
    except SeqcliError:
        return None


def run_tree_checks(folder: Path, model: Path) -> None:
    """Validate, summarise and freeze a model of `from:` files; predict with it when small."""
    commands = [["validate", model], ["summary", model, "--json"],
                ["freeze", model, "--all-but-last", "-o", folder / "frozen.yaml"]]
    if (expanded_layers(model) or 1_000) <= 200:
        np.save(folder / "x.npy", np.ones((2, 4), np.float32))
        commands.append(["predict", model, folder / "x.npy", "-o", folder / "y.npy"])
    for args in commands:
        assert_clean(run_cli(*args), args, folder)


@FUZZ
@given(files=from_tree(), data=st.data())
def test_from_trees(files, data):
    """Trees (and cycles) of files that pull each other in with `from:`, some mutated: a few
    KB may expand to millions of layers, which must be refused quickly."""
    work = fresh_folder()
    try:
        for name, text in files.items():
            (work / name).write_text(text)
        if data.draw(st.booleans(), label="mutate"):
            name = data.draw(st.sampled_from(sorted(files)), label="mutated file")
            (work / name).write_bytes(data.draw(mutated_model(files[name]), label=name))
        run_tree_checks(work, work / "f0.yaml")
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
                 "(100000000, 100000000)", "(1, 1099511627776)", "(1000000000000, 0)",
                 "(1000000000000, 4, 0)", "(" + "1, " * 70 + ")"]


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


def many_axes_npy(axes: int) -> bytes:
    """A float32 `.npy` of shape (1, 1, ...) with `axes` axes, beyond numpy's 64 if asked."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({'1, ' * axes}), }}"
    header = header.encode("latin-1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(4)


def zeros_npy(descr: str, shape: tuple) -> bytes:
    """A `.npy` of zeros with a little noise (so that deflate stays under the zip-bomb ratio)."""
    array = np.zeros(shape, descr)
    array.reshape(-1)[::4096] = 1
    return npy_bytes(array)


MEMBER_VARIANTS = {  # another form of a wanted tensor, from its float32 value
    "float16": lambda a: npy_bytes(a.astype(np.float16)),
    "float64": lambda a: npy_bytes(a.astype(np.float64)),
    "big-endian": lambda a: npy_bytes(a.astype(">f4")),
    "Fortran": lambda a: npy_bytes(np.asfortranarray(a)),
    "int32": lambda a: npy_bytes(a.astype(np.int32)),
    "beyond float32": lambda a: npy_bytes(np.full(a.shape, 1e300)),
    "misshapen": lambda a: npy_bytes(np.zeros((*a.shape, 2), np.float32)),
    "misshapen and big": lambda a: zeros_npy("<f2", (1 << 24,)),
    "70 axes": lambda a: many_axes_npy(70),
}
EXTRA_MEMBERS = {  # a member no model wants: never read
    "extra.npy": lambda: npy_bytes(np.zeros(3, np.float32)),
    "extra16.npy": lambda: zeros_npy("<f2", (1 << 24,)),
    "extra64.npy": lambda: npy_bytes(np.full(2, 1e300)),
    "dense/kernel_1.npy": lambda: npy_bytes(np.zeros((4, 3), np.int8)),
}


@st.composite
def mutated_npz(draw, weights: dict) -> bytes:
    """An `.npz` whose members are edited (other dtypes, shapes and layouts of the wanted
    tensors, extra members, some deflated far) or whose bytes are (stored or deflated)."""
    buffer = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        warnings.simplefilter("ignore")  # duplicate member names are wanted here
        for key, array in weights.items():
            member = npy_bytes(np.asarray(array, np.float32))
            if draw(st.integers(0, 3)) == 0:
                member = draw(st.one_of(hostile_header_npy(), mutated_bytes(member)))
            elif draw(st.integers(0, 3)) == 0:
                variant = draw(st.sampled_from(sorted(MEMBER_VARIANTS)))
                member = MEMBER_VARIANTS[variant](np.asarray(array, np.float32))
            archive.writestr(draw(st.sampled_from([key + ".npy", key + ".npy", key, "../x.npy",
                                                   key + "/"])), member)
        for name in draw(st.lists(st.sampled_from(sorted(EXTRA_MEMBERS)), max_size=2)):
            archive.writestr(name, EXTRA_MEMBERS[name](), compress_type=zipfile.ZIP_DEFLATED)
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


@contextmanager
def truncated_at_read(victim: Path, size: int, at: int):
    """`victim` shrinks to `size` bytes just before read number `at` of it, as if another
    process truncated it: positioned reads of it (inputs, safetensors) and member reads of an
    npz count."""
    from seqcli.io import weights

    inode, reads = victim.stat().st_ino, [0]
    real_preadv, real_member_read = os.preadv, weights.readinto_exactly

    def count() -> None:
        reads[0] += 1
        if reads[0] == at:
            os.truncate(victim, size)

    def preadv(fd, buffers, offset):
        if os.fstat(fd).st_ino == inode:
            count()
        return real_preadv(fd, buffers, offset)

    def member_read(stream, array):
        count()
        return real_member_read(stream, array)

    os.preadv, weights.readinto_exactly = preadv, member_read
    try:
        yield
    finally:
        os.preadv, weights.readinto_exactly = real_preadv, real_member_read


def truncation_commands(folder: Path, work: Path, kind: str, batch_size: int):
    """(victim, commands) for a file of `kind` that shrinks while the commands read it."""
    x, model = work / "x.npy", folder / "m.yaml"
    size = ["--batch-size", str(batch_size)]
    if kind in ("input", "Fortran input"):
        return x, [["predict", model, x, "-o", work / "y.npy", *size],
                   ["extract", model, x, "--all", "-o", work / "all.npz", *size],
                   ["predict", model, x, "--top-k", "2", "-o", work / "ranks.txt", *size]]
    if kind == "fit data":
        return x, [["fit", model, x, work / "t.npy", "-o", work / "fit.npz", "--quiet", *size]]
    weights = work / ("w.npz" if kind == "npz" else "w.safetensors")
    return weights, [["validate", model, "--weights", weights],
                     ["predict", model, x, "--weights", weights, "-o", work / "y.npy"],
                     ["init", model, "--weights-from", weights, "-o", work / "i.npz"]]


@FUZZ
@given(kind=st.sampled_from(["input", "Fortran input", "fit data", "safetensors", "npz"]),
       at=st.integers(1, 12), keep=st.floats(0, 1), batch_size=st.integers(1, 8))
def test_files_truncated_while_read(target, kind, at, keep, batch_size):
    """Inputs, training data and weights files that another process truncates in the middle
    of a read: a clean answer, never SIGBUS (nothing is memory-mapped) or a traceback."""
    from seqcli.io.weights import write_safetensors

    folder, weights = target
    work = fresh_folder()
    try:
        rows = np.random.default_rng(at).normal(size=(24, 4)).astype(np.float32)
        files = {"x.npy": npy_bytes(np.asfortranarray(rows) if kind == "Fortran input"
                                    else rows),
                 "t.npy": npy_bytes(np.zeros((24, 2), np.float32))}
        np.savez(work / "w.npz", **weights)
        write_safetensors(work / "w.safetensors", weights)
        files.update((name, (work / name).read_bytes()) for name in ("w.npz", "w.safetensors"))
        victim, commands = truncation_commands(folder, work, kind, batch_size)
        for args in commands:
            for name, data in files.items():
                (work / name).write_bytes(data)
            with truncated_at_read(victim, int(len(files[victim.name]) * keep), at):
                outcome = run_cli(*args)
            assert_clean(outcome, args, work, stdout_used="--top-k" in args)
    finally:
        shutil.rmtree(work)


# --- .keras archives ---------------------------------------------------------------------

KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
_NUMBER = re.compile(rb"(?<=: )-?\d+(\.\d+)?(e-?\d+)?")
JSON_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1", b"0", b"2147483648",
                b"99999999999999999999999", b"true", b"null", b"\"3\"", b"[]"]


def h5_with_huge_dataset(h5: bytes) -> bytes:
    """The weights file `h5` with its first dataset declaring 2**31 x 2**20 float64 values
    (and storing none)."""
    import h5py

    buffer = io.BytesIO(h5)
    with h5py.File(buffer, "r+") as file:
        del file["layers/dense/vars/0"]
        file.create_dataset("layers/dense/vars/0", shape=(2**31, 2**20), dtype="f8",
                            chunks=(1, 1024))
    return buffer.getvalue()


@st.composite
def keras_member(draw, name: str, data: bytes) -> bytes | None:
    """Member `name` of a `.keras` file: kept, edited, replaced by something hostile (huge
    runs of zeros, deep or odd JSON, a truncated or hostile HDF5 file), or left out (None)."""
    forms = ["kept", "kept", "bytes", "zeros", "truncated", "empty", "missing"]
    forms += {"config.json": ["numbers", "deep"], "metadata.json": ["deep"],
              "model.weights.h5": ["huge dataset"]}.get(name, [])
    form = draw(st.sampled_from(forms))
    if form == "bytes":
        return draw(mutated_bytes(data))
    if form == "zeros":
        return bytes(draw(st.sampled_from([1024**2, 16 * 1024**2])))
    if form == "truncated":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if form == "numbers":
        found = list(_NUMBER.finditer(data))
        if found:
            match = draw(st.sampled_from(found))
            data = data[:match.start()] + draw(st.sampled_from(JSON_NUMBERS)) + data[match.end():]
        return data
    if form == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    if form == "huge dataset":
        return h5_with_huge_dataset(data)
    return {"kept": data, "empty": b"", "missing": None}[form]


@st.composite
def mutated_keras(draw, members: dict[str, bytes]) -> bytes:
    """A `.keras` zip whose members are edited or replaced (see `keras_member`), each stored
    or deflated (some far), with a stray member at times; or whose bytes are edited."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate member names are wanted here
        names = list(KERAS_MEMBERS) + draw(st.lists(st.sampled_from(
            [*KERAS_MEMBERS, "assets/x", "model.weights.npz"]), max_size=2))
        for name in names:
            data = draw(keras_member(name, members.get(name, b"{}")))
            if data is None:
                continue
            method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            archive.writestr(name, data, compress_type=method,
                             compresslevel=draw(st.sampled_from([1, 9])))
    blob = buffer.getvalue()
    if draw(st.integers(0, 3)) == 0:
        blob = draw(mutated_bytes(blob))
    return blob


class KerasMembers(dict):
    """{member name: bytes} of a `.keras` file, shown briefly in Hypothesis's reports."""

    def __repr__(self) -> str:
        return f"<.keras members {', '.join(self)}>"


@pytest.fixture(scope="module")
def keras_target(target):
    """The target model exported by seqcli's own export-keras, as its members."""
    folder, _ = target
    path = folder / "m.keras"
    if not path.exists():
        assert main(["export-keras", str(folder / "m.yaml"), "-o", str(path), "-q"]) == 0
    with zipfile.ZipFile(path) as archive:
        return KerasMembers((name, archive.read(name)) for name in KERAS_MEMBERS)


def keras_commands(folder: Path, work: Path, keras: Path, h5: Path) -> list[list]:
    """The commands run on a (mutated) `.keras` file and on its weights as a standalone
    weights file."""
    return [["import-keras", keras, "-o", work / "imported.yaml"],
            ["import-keras", folder / "m.yaml", "--weights-only", h5, "-o",
             work / "w.safetensors"]]


@FUZZ
@given(data=st.data())
def test_mutated_keras_files(target, keras_target, data):
    """`.keras` archives with edited, hostile or missing members: a clean answer, bounded in
    time and memory, and nothing left in the temporary folder."""
    folder, _ = target
    work = fresh_folder()
    try:
        keras = work / "m.keras"
        keras.write_bytes(data.draw(mutated_keras(keras_target), label="keras"))
        replay_keras(folder, work, keras)
    finally:
        shutil.rmtree(work)


def replay_keras(folder: Path, work: Path, keras: Path) -> None:
    """Run the `.keras` commands in `work` (the archive's weights as a standalone file too,
    where they can be taken out), with the temporary folder inside `work`, which each must
    leave empty."""
    h5 = work / "m.weights.h5"
    try:
        with zipfile.ZipFile(keras) as archive:
            h5.write_bytes(archive.read("model.weights.h5")[:64 * 1024**2])
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError,
            NotImplementedError, zlib.error):
        h5.write_bytes(b"")
    temporary = work / "tmp"
    temporary.mkdir(exist_ok=True)
    saved, tempfile.tempdir = tempfile.tempdir, str(temporary)
    try:
        for args in keras_commands(folder, work, keras, h5):
            assert_clean(run_cli(*args), args, work)
            assert not list(temporary.iterdir()), args
    finally:
        tempfile.tempdir = saved


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


def replay_model_tree(path: Path, tmp_path: Path) -> None:
    """A `model-*/` folder of files that name each other with `from:`: run on `model.yaml`."""
    work = tmp_path / "tree"
    shutil.copytree(path, work)
    run_tree_checks(work, work / "model.yaml")


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name)
def test_corpus_replays_cleanly(target, path, tmp_path):
    """Every reproducer fuzzing found still gets a clean answer."""
    folder, _ = target
    if path.name.startswith("model-") and path.is_dir():
        replay_model_tree(path, tmp_path)
    elif path.name.startswith("model-"):
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
    elif path.name.startswith("keras-"):
        keras = tmp_path / "m.keras"
        shutil.copy(path, keras)
        replay_keras(folder, tmp_path, keras)
    elif path.name.startswith("weights-"):
        weights = tmp_path / ("w" + "".join(path.suffixes[-1:]))
        shutil.copy(path, weights)
        for args in (["validate", folder / "m.yaml", "--weights", weights],
                     ["predict", folder / "m.yaml", folder / "x.npy", "--weights", weights,
                      "-o", tmp_path / "y.npy"]):
            assert_clean(run_cli(*args), args, tmp_path)
    else:
        pytest.fail(f"{path.name}: corpus files start with model-, input-, weights- or "
                    "keras-")
