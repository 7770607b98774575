"""What the kernels ask of the CPU that numba compiles for."""

from __future__ import annotations

import os
import sys

_WIDE: list = []  # [bool] once known

HALF_WIDTH_TUNING = "prefer-256-bit"
"""LLVM's tuning flag, set for Intel's AVX-512 CPUs (Skylake-SP to Sapphire Rapids and the
client cores alike), under which it compiles loops with vectors of 8 floats rather than 16, and
splits explicit 16-float vectors in two."""


def full_width_vectors() -> None:
    """Have numba compile with AVX-512's full 16-float vectors where the CPU has them. LLVM
    tunes Intel's AVX-512 CPUs for half-width vectors (`HALF_WIDTH_TUNING`): on them every
    kernel would run on half of each vector register (a jitted FMA loop: 103 against 212
    GFLOP/s a core), and the direct convolution, whose sums fill the 32 registers of 16 floats,
    would spill. Sets NUMBA_CPU_FEATURES to the host's features with that tuning turned off
    (`numba_startup` calls it on import, before numba compiles or loads a kernel). Left as it
    is where the environment names numba's target itself (NUMBA_CPU_NAME or NUMBA_CPU_FEATURES)
    or the CPU has no AVX-512; processes started from this one inherit it, so their kernels
    share numba's cache."""
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    from llvmlite import binding

    try:
        features = binding.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read this CPU's features: numba's own choice stands
        return
    if "+avx512f" in features.split(","):
        os.environ["NUMBA_CPU_FEATURES"] = f"{features},-{HALF_WIDTH_TUNING}"
        config = sys.modules.get("numba.core.config")
        if config is not None:  # numba came first: what it read is read again at each compile
            config.CPU_FEATURES = os.environ["NUMBA_CPU_FEATURES"]


def wide_vectors() -> bool:
    """True when numba compiles for a CPU with 32 registers of 16 floats (AVX-512): the direct
    kernel keeps 12 x 32 sums in them. Elsewhere convolutions go through BLAS."""
    if not _WIDE:
        full_width_vectors()  # numba's configuration as the kernels compile with it
        from llvmlite import binding
        from numba.core import config

        if config.CPU_FEATURES is not None:
            features = config.CPU_FEATURES
        elif config.CPU_NAME is not None:
            features = ""
        else:
            features = binding.get_host_cpu_features().flatten()
        _WIDE.append("+avx512f" in features.split(","))
    return _WIDE[0]
