"""How much memory this machine has left, and sizes as Keras prints them.

Standard library only: `seqcli summary` prints sizes without loading numpy.
"""

from __future__ import annotations

from pathlib import Path


def available_memory() -> int | None:
    """Bytes this process may still allocate: Linux's MemAvailable plus free swap, within a
    cgroup (v2) memory limit; None where that is unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            info = {name: int(value.split()[0]) * 1024
                    for name, value in (line.split(":", 1) for line in file if ":" in line)}
        available = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii").strip()
        if limit != "max":
            available = min(available, int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return available


def readable_size(size: float) -> str:
    """Keras's memory size: `140.00 B`, `190.12 KB` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"
