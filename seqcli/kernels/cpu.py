"""What the kernels ask of the CPU that numba compiles for."""

from __future__ import annotations

_WIDE: list = []  # [bool] once known


def wide_vectors() -> bool:
    """True when numba compiles for a CPU with 32 registers of 16 floats (AVX-512): the direct
    kernel keeps 12 x 32 sums in them. Elsewhere convolutions go through BLAS."""
    if not _WIDE:
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
