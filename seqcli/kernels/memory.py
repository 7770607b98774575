"""How the C allocator serves the kernels' arrays: set once, when the first kernel module is
imported (`seqcli.kernels`), so that the command line and the Python API run alike."""

from __future__ import annotations

_MEMORY_KEPT: list = []  # [True] once done


def keep_freed_memory() -> None:
    """Let the C allocator keep freed memory for reuse (glibc only; elsewhere nothing).

    Every layer allocates its output, a few MB per chunk of rows, and training its gradients
    too. glibc hands blocks that large out as fresh mappings and returns them to the system on
    free, so each layer of each chunk starts on pages the kernel must fault in and zero again:
    15-20% of a convnet's inference on two threads. Blocks up to 32 MB come from the heap
    instead, which keeps up to 256 MB of free memory for the next chunk; peak memory stays
    what the largest batch needs."""
    if _MEMORY_KEPT:
        return
    _MEMORY_KEPT.append(True)
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)
