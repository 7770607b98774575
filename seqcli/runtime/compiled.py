"""Kernel compilation: a notice when numba compiles (its cache lacks a kernel), thread
settings, and the record of which kernel sources the cached kernels were built from."""

from __future__ import annotations

from seqcli.kernels.memory import keep_freed_memory as keep_freed_memory  # bench/ sets it first
from seqcli.kernels.notices import notify_compiling as notify_compiling  # the CLI asks here


def set_threads(threads: int | None) -> None:
    """Use `threads` for seqcli's kernels (its own pool: no numba parallel loops) and BLAS.
    They never nest: kernels that call BLAS from their threads keep it on one thread
    meanwhile."""
    if threads is None:
        return
    from threadpoolctl import threadpool_limits

    from seqcli.kernels.threads import set_threads as set_kernel_threads

    set_kernel_threads(threads)
    threadpool_limits(threads)


def clear_stale_kernels() -> bool:
    """Numba keys each cached kernel on its own source file only: a kernel that inlines a
    helper from another file (or an activation code) keeps a stale copy of it when that file
    changes. Unless the kernel sources, seqcli/activations.py and numba's version are those
    `record_kernel_sources` saw, remove every cached seqcli kernel; True if any was removed."""
    folder, digest = _kernel_sources()
    if folder is None:
        return False  # no cache yet (or another numba): nothing stale
    record = folder / "seqcli-kernels.sha256"
    if record.is_file() and record.read_bytes().strip() == digest.encode():
        return False
    entries = [*folder.glob("*.nbi"), *folder.glob("*.nbc")]
    for entry in entries:
        entry.unlink(missing_ok=True)
    return bool(entries)


def record_kernel_sources() -> None:
    """Note beside the cache which kernel sources its kernels were compiled from."""
    from seqcli.io.atomic import atomic_output

    folder, digest = _kernel_sources()
    if folder is not None:
        with atomic_output(folder / "seqcli-kernels.sha256", binary=False) as record:
            record.write(digest + "\n")


def _kernel_sources():
    """(numba's cache folder for seqcli's kernels or None, digest of what they are built from)."""
    import hashlib
    from pathlib import Path

    import numba

    from seqcli.kernels import numba_startup

    folder = numba_startup.cache_folder()
    kernels = Path(numba_startup.__file__).parent
    digest = hashlib.sha256(numba.__version__.encode())
    for source in [*sorted(kernels.glob("*.py")), kernels.parent / "activations.py"]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    exists = folder is not None and Path(folder).is_dir()
    return (Path(folder) if exists else None), digest.hexdigest()
