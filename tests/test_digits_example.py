"""The README's transfer-learning example, run as a user runs it: pre-train on digits 0-4,
freeze the base, train a new head on digits 5-9, reach at least 95% held-out accuracy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from seqcli.io.weights import read_weights

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "run.sh"


def test_digits_transfer_learning(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(EXAMPLE), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(re.search(r"held-out accuracy on digits 5-9: ([0-9.]+)", done.stdout)[1])
    assert accuracy >= 0.95
    evaluated = re.search(r"^loss: ([0-9.]+) - accuracy: ([0-9.]+)$", done.stdout, re.M)
    assert evaluated and float(evaluated[2]) == accuracy  # evaluate counts the same hits
    pretrained = read_weights(tmp_path / "pretrained.safetensors")
    transferred = read_weights(tmp_path / "transferred.safetensors")
    base = [key for key in transferred if key.startswith("base/")]
    assert base and all(np.array_equal(transferred[k], pretrained[k]) for k in base)  # frozen
    assert "trainable: false" in (tmp_path / "transfer.yaml").read_text()
