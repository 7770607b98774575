"""seqcli against Keras 3 itself: summaries and outputs recorded by Keras (fixtures made by
tests/keras_reference/make_fixtures.py), reproduced here without Keras, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent / "keras_reference"
MANIFEST = json.loads((HERE / "manifest.json").read_text())
MODELS = MANIFEST["models"]
SUMMARY_KEYS = ("name", "type", "output_shape", "params", "trainable_params")


@pytest.mark.parametrize("entry", MODELS, ids=[m["stem"] for m in MODELS])
def test_summary_equals_keras(cli, entry):
    expected = json.loads((HERE / entry["files"]["summary"]).read_text())
    args = ["summary", HERE / entry["model"], "--json"]
    if entry["deferred"]:
        args += ["--input-shape", ",".join(map(str, entry["input_shape"]))]
    result = cli(*args)
    assert result.code == 0, result
    got = json.loads(result.out)
    assert [{k: row[k] for k in SUMMARY_KEYS} for row in got["layers"]] == [
        {k: row[k] for k in SUMMARY_KEYS} for row in expected["layers"]]
    for key in ("name", "input_shape", "total_params", "trainable_params",
                "non_trainable_params"):
        assert got[key] == expected[key], key


RUNNABLE = [m for m in MODELS if not m["summary_only"]]


@pytest.mark.parametrize("entry", RUNNABLE, ids=[m["stem"] for m in RUNNABLE])
def test_predict_equals_keras(cli, entry, tmp_path, numpy_small_runs):
    files = entry["files"]
    out = tmp_path / "out.npy"
    result = cli("predict", HERE / entry["model"], HERE / files["input"],
                 "--weights", HERE / files["weights"], "-o", out, "--batch-size", "2")
    assert result.code == 0, result
    got, expected = np.load(out), np.load(HERE / files["output"])
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-6)
    # the contract's bar is 2e-4 of the output's scale; the kernels do much better
    assert float(np.abs(got - expected).max()) <= 2e-5 * scale


@pytest.mark.parametrize("entry", RUNNABLE, ids=[m["stem"] for m in RUNNABLE])
def test_kernels_equal_keras(entry):
    """The same fixtures through the jitted kernels: `predict` above runs these small inputs
    on the numpy path of a small run (seqcli/kernels/small.py); batches fed one by one
    (`predict_batches`, outside a small run) take the kernels."""
    from seqcli.runtime.model import load

    files = entry["files"]
    model = load(HERE / entry["model"], weights=str(HERE / files["weights"]))
    x, expected = np.load(HERE / files["input"]), np.load(HERE / files["output"])
    model.build(x.shape[1:] if entry["deferred"] else None)
    got = np.concatenate(list(model.predict_batches(iter([x[:2], x[2:]]))))
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-6)
    assert float(np.abs(got - expected).max()) <= 2e-5 * scale
