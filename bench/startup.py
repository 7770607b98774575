"""Whole-process start-up of `seqcli summary` (every config) and of a small `predict`,
beside a bare `python -c pass` measured in the same run. Median of several runs.

    make bench            # or: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEQCLI = [sys.executable, "-m", "seqcli"]


def timed(command: list[str], runs: int) -> float:
    """Median wall time of `command`, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    baseline = timed([sys.executable, "-c", "pass"], runs)
    rows = [("python -c pass (peer)", baseline)]
    for config in sorted((REPO / "configs").glob("*.yaml")):
        rows.append((f"seqcli summary configs/{config.name}",
                     timed(SEQCLI + ["summary", str(config)], runs)))
    with tempfile.TemporaryDirectory() as folder:
        import numpy as np

        data = os.path.join(folder, "x.npy")
        np.save(data, np.ones((8, 4), np.float32))
        command = SEQCLI + ["predict", "configs/dense_stack.yaml", data, "-o",
                            os.path.join(folder, "y.npy"), "--quiet"]
        timed(command, 1)  # make sure the kernel cache is warm
        rows.append(("seqcli predict (Dense stack, warm cache)", timed(command, runs)))
    print(f"{'command':<58} {'median s':>9} {'× python':>9}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds:>9.3f} {seconds / baseline:>9.1f}")


if __name__ == "__main__":
    main()
