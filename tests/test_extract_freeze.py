"""`seqcli extract` (the guide's feature extraction) and `seqcli freeze` (its transfer
learning), checked against Keras's own numbers."""

from __future__ import annotations

import difflib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

import seqcli
from seqcli.config.freeze import layer_paths
from seqcli.config.load import load_model
from seqcli.layers.core import ActivationLayer
from tests.conftest import CONFIGS, run_process

HERE = Path(__file__).parent / "keras_reference"
MANIFEST = json.loads((HERE / "manifest.json").read_text())["models"]
RUNNABLE = [m for m in MANIFEST if not m["summary_only"]]


@pytest.mark.parametrize("entry", RUNNABLE, ids=[m["stem"] for m in RUNNABLE])
def test_extract_all_equals_keras_layer_outputs(cli, entry, tmp_path):
    files = entry["files"]
    out = tmp_path / "all.npz"
    result = cli("extract", HERE / entry["model"], HERE / files["input"], "--all",
                 "--weights", HERE / files["weights"], "-o", out, "--batch-size", "2")
    assert result.code == 0, result
    got, expected = np.load(out), np.load(HERE / files["layers"])
    assert got.files == expected.files  # one array per top-level layer, in order
    summary = json.loads((HERE / files["summary"]).read_text())
    for row in summary["layers"]:
        assert list(got[row["name"]].shape[1:]) == row["output_shape"][1:]
    for name in expected.files:
        scale = max(float(np.abs(expected[name]).max()), 1e-6)
        assert float(np.abs(got[name] - expected[name]).max()) <= 2e-5 * scale, name


def test_extract_one_layer_to_npy(cli, tmp_path):
    entry = next(m for m in RUNNABLE if m["stem"] == "small_convnet")
    files = entry["files"]
    expected = np.load(HERE / files["layers"])
    name = expected.files[1]
    out = tmp_path / "one.npy"
    result = cli("extract", HERE / entry["model"], HERE / files["input"], "--layer", name,
                 "--weights", HERE / files["weights"], "-o", out)
    assert result.code == 0, result
    np.testing.assert_allclose(np.load(out), expected[name], rtol=1e-5, atol=1e-5)


def _nested_model(tmp_path) -> Path:
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [6, 6, 2]\nseed: 1\nlayers:\n"
                     "  - {type: Conv2D, filters: 3, kernel_size: 3, activation: relu}\n"
                     "  - type: Sequential\n    name: base\n    layers:\n"
                     "      - {type: Conv2D, filters: 2, kernel_size: 2}\n"
                     "      - {type: GlobalMaxPooling2D}\n"
                     "  - {type: Dense, units: 2}\n  - {type: Activation, activation: softmax}\n")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 6, 6, 2), np.float32))
    return model


def test_extract_nested_paths(cli, tmp_path):
    model = _nested_model(tmp_path)
    out = tmp_path / "f.npz"
    result = cli("extract", model, tmp_path / "x.npy", "--layer", "base/conv2d",
                 "--layer", "conv2d", "-o", out, "-q")
    assert result.code == 0, result
    got = np.load(out)
    assert got.files == ["base/conv2d", "conv2d"]  # in the order asked
    python = seqcli.load(model)
    x = np.load(tmp_path / "x.npy")
    first = python.get_layer("conv2d").forward(
        {k.split("/")[-1]: v for k, v in python.weights.items() if k.startswith("conv2d/")}, x)
    np.testing.assert_allclose(got["conv2d"], first, rtol=1e-6)
    inner = python.get_layer("base/conv2d").forward(
        {k.split("/")[-1]: v for k, v in python.weights.items()
         if k.startswith("base/conv2d/")}, first)
    np.testing.assert_allclose(got["base/conv2d"], inner, rtol=1e-6)


def test_extract_stops_at_the_deepest_requested_layer(cli, tmp_path, monkeypatch):
    model = _nested_model(tmp_path)

    def never(self, weights, x):
        raise AssertionError("a layer after the requested ones ran")

    monkeypatch.setattr(ActivationLayer, "forward", never)
    result = cli("extract", model, tmp_path / "x.npy", "--layer", "dense", "-o",
                 tmp_path / "d.npy", "-q")
    assert result.code == 0, result
    assert np.load(tmp_path / "d.npy").shape == (3, 2)


def test_extract_unknown_layer(cli, tmp_path):
    model = _nested_model(tmp_path)
    result = cli("extract", model, tmp_path / "x.npy", "--layer", "bse/conv2d", "-o",
                 tmp_path / "o.npy")
    assert result.code == 2 and result.out == ""
    assert "Did you mean 'base/conv2d'?" in result.err
    assert "Layers: conv2d, base, base/conv2d, base/global_max_pooling2d, dense" in result.err
    assert not (tmp_path / "o.npy").exists()
    none = cli("extract", model, tmp_path / "x.npy", "-o", tmp_path / "o.npy")
    assert none.code == 2 and "--layer" in none.err


def test_extract_pipes(tmp_path):
    model = _nested_model(tmp_path)
    data = (tmp_path / "x.npy").read_bytes()
    done = run_process("extract", model, "--layer", "base", input=data)
    assert done.returncode == 0, done.stderr
    assert np.load(io.BytesIO(done.stdout)).shape == (3, 2)
    several = run_process("extract", model, "--all", "-q", input=data)
    assert several.returncode == 0, several.stderr
    archive = np.load(io.BytesIO(several.stdout))
    assert archive.files == ["conv2d", "base", "dense", "activation"]
    np.testing.assert_allclose(archive["activation"].sum(axis=1), 1, rtol=1e-6)


# ------------------------------------------------------------------------------ freeze

FROZEN_FIXTURES = ["batchnorm_frozen", "frozen_layers", "nested_deep", "nested_frozen"]
_TRAINABLE_LINE = re.compile(r"^[ \t]*trainable: (?:false|true)[ \t]*(?:#.*)?\n", re.M)
_TRAINABLE_FLOW = re.compile(r",\s*trainable: (?:false|true)")


@pytest.mark.parametrize("stem", FROZEN_FIXTURES)
def test_freeze_reproduces_keras_trainable_counts(cli, stem, tmp_path):
    """Take a Keras fixture's frozen model, remove its `trainable` settings, freeze the same
    layers with seqcli: the summary equals Keras's, and the diff is only `trainable` lines."""
    source = HERE / "models" / f"{stem}.yaml"
    frozen = [path for path, layer in layer_paths(load_model(str(source)).layers).items()
              if "trainable" in layer.model_fields_set and not layer.trainable]
    assert frozen
    plain = _TRAINABLE_FLOW.sub("", _TRAINABLE_LINE.sub("", source.read_text()))
    unfrozen = tmp_path / f"{stem}.yaml"
    unfrozen.write_text(plain)
    args = ["freeze", unfrozen]
    for path in frozen:
        args += ["--layer", path]
    result = cli(*args, "-o", tmp_path / "frozen.yaml")
    assert result.code == 0, result
    new_text = (tmp_path / "frozen.yaml").read_text()
    changed = [line for line in difflib.ndiff(plain.splitlines(), new_text.splitlines())
               if line.startswith(("+ ", "- "))]
    assert changed and all("trainable: false" in line for line in changed if line[0] == "+")
    assert len([c for c in changed if c[0] == "+"]) == len(frozen)
    expected = json.loads((HERE / "expected" / f"{stem}.summary.json").read_text())
    got = json.loads(cli("summary", tmp_path / "frozen.yaml", "--json").out)
    for key in ("total_params", "trainable_params", "non_trainable_params"):
        assert got[key] == expected[key], key
    assert [r["trainable_params"] for r in got["layers"]] == [
        r["trainable_params"] for r in expected["layers"]]


BLOCK_MODEL = """\
# A model with comments, quoting and blank lines

name: "demo"   # quoted on purpose
input_shape: [8]

layers:
  - type: Dense    # first
    units: 4

  - {type: Dense, units: 4}   # flow style
  - type: Sequential
    name: head
    layers:
      - type: Dense
        units: 2
        trainable: true
  - type: Dense
    trainable: false
    units: 1
"""


def _diff(old: str, new: str) -> list[str]:
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                   lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_freeze_touches_only_trainable_lines(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(BLOCK_MODEL)
    result = cli("freeze", model, "--all-but-last")
    assert result.code == 0, result
    assert _diff(BLOCK_MODEL, result.out) == [
        "+    trainable: false",
        "-  - {type: Dense, units: 4}   # flow style",
        "+  - {type: Dense, units: 4, trainable: false}   # flow style",
        "+    trainable: false",
    ]
    assert model.read_text() == BLOCK_MODEL  # stdout by default, the file is untouched


def test_freeze_globs_paths_unfreeze_and_up_to(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(BLOCK_MODEL)
    out = cli("freeze", model, "--layer", "dense*").out
    assert _diff(BLOCK_MODEL, out) == [
        "+    trainable: false",
        "-  - {type: Dense, units: 4}   # flow style",
        "+  - {type: Dense, units: 4, trainable: false}   # flow style"]
    unfrozen = cli("freeze", model, "--unfreeze", "dense_2", "--layer", "head/dense").out
    assert _diff(BLOCK_MODEL, unfrozen) == [
        "-        trainable: true", "+        trainable: false",
        "-    trainable: false", "+    trainable: true"]
    up_to = cli("freeze", model, "--up-to", "dense_1").out
    assert sum(line.startswith("+") for line in _diff(BLOCK_MODEL, up_to)) == 2
    bad = cli("freeze", model, "--up-to", "dens_1")
    assert bad.code == 2 and "Did you mean 'dense_1'?" in bad.err


def test_freeze_in_place_and_refusals(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(BLOCK_MODEL)
    assert cli("freeze", model, "--layer", "head", "--in-place").code == 0
    assert _diff(BLOCK_MODEL, model.read_text()) == ["+    trainable: false"]
    assert "  - type: Sequential\n    trainable: false\n    name: head\n" in model.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.yaml"]  # no temp file left
    before = model.read_text()
    for args in (["--layer", "nope"], [], ["--layer", "head", "--in-place", "-o", "x.yaml"]):
        result = cli("freeze", model, *args)
        assert result.code == 2, args
        assert result.out == ""
    assert model.read_text() == before


def test_freeze_warns_when_a_frozen_parent_wins(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(BLOCK_MODEL.replace("    name: head\n", "    name: head\n    trainable: false\n"))
    result = cli("freeze", model, "--unfreeze", "head/dense")
    assert result.code == 0
    assert "stays frozen while its nested model 'head' is frozen" in result.err


def test_freeze_refuses_layers_of_another_file(cli, tmp_path):
    (tmp_path / "base.yaml").write_text("layers:\n  - {type: Dense, units: 3}\n")
    (tmp_path / "m.yaml").write_text("input_shape: [4]\nlayers:\n"
                                     "  - {type: Sequential, name: base, from: base.yaml}\n")
    result = cli("freeze", tmp_path / "m.yaml", "--layer", "base/dense")
    assert result.code == 2 and "base.yaml" in result.err
    assert cli("freeze", tmp_path / "m.yaml", "--layer", "base").code == 0


def test_freeze_pipeline_into_summary():
    """`seqcli freeze m.yaml --all-but-last | seqcli summary - --show-trainable`."""
    frozen = run_process("freeze", CONFIGS / "dense_stack.yaml", "--all-but-last")
    assert frozen.returncode == 0, frozen.stderr
    summary = run_process("summary", "-", "--json", input=frozen.stdout)
    doc = json.loads(summary.stdout)
    assert (doc["trainable_params"], doc["non_trainable_params"]) == (16, 19)
    table = run_process("summary", "-", "--show-trainable", input=frozen.stdout).stdout.decode()
    flags = [line.split()[-1] for line in table.splitlines()[3:6]]
    assert flags == ["N", "N", "Y"]
