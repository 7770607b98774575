"""The kernels' other paths, each checked against the same references: the im2col + BLAS
convolution that CPUs without AVX-512 take, and plain numpy matmuls when BLAS is not called
from the kernels' threads (SEQCLI_NUMBA_BLAS=0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("env", [
    {"NUMBA_CPU_NAME": "generic"},
    {"SEQCLI_NUMBA_BLAS": "0"},
], ids=["no-avx512", "numpy-matmul"])
def test_convolution_and_dense_paths(env, tmp_path):
    full = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), **env)
    probe = subprocess.run(
        [sys.executable, "-c", "from seqcli.kernels import conv, dense; "
         "print(conv._wide_vectors(), dense._blas() is not None)"],
        env=full, capture_output=True, text=True, timeout=600)
    wide, blas = probe.stdout.split()
    if "NUMBA_CPU_NAME" in env:
        assert wide == "False"
    else:
        assert blas == "False"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "test_kernels.py"), "-k", "conv or dense"],
        env=full, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
