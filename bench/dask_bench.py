"""Issue 19's figures: the guide's convnet on 1024 images through `seqcli predict --dask local:2`
against the same run in one process at `--threads 2` (whole processes, rounds interleaved,
medians), and against a cluster of two workers kept running (`--dask tcp://...`, what a
cluster costs once it is up). On that cluster, what one chunk costs: its work (read its rows,
run the model, write its outputs), the scheduler's overhead per task, and the bytes it moves;
from which the README says how throughput grows with workers.

`dask_figures(folder)` returns them for bench/run.py and `dask_markdown` writes them up; run
alone, the script prints both:

    .venv/bin/python bench/dask_bench.py [--images 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CONVNET = REPO / "configs" / "guide_convnet.yaml"
SEQCLI = [sys.executable, "-m", "seqcli"]
WORKERS = 2
GOAL = 1.10
"""Issue 19's goal: `--dask local:2` at most this many times the one-process run's time."""
LOCAL = f"--dask local:{WORKERS}"

# Runs a command and reports its wall time and peak RSS, in a small process of its own (a
# child forked straight from this one would inherit its resident-memory high-water mark).
LAUNCHER = """\
import os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def whole_process(command: list[str]) -> float:
    """Wall seconds of `command`, a whole process; an error if it fails."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, command)], cwd=REPO,
                          capture_output=True, text=True)
    elapsed, _, code = (done.stdout.split() + ["?", "?", "?"])[:3]
    if done.returncode != 0 or code != "0":
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {done.stderr.strip()}")
    return float(elapsed)


def _noop(value):
    return value


def scheduler_overhead(client, tasks: int = 2000) -> float:
    """Seconds of the scheduler's and workers' bookkeeping per task: `tasks` tasks that do
    nothing, on every worker at once, wall time over their number."""
    client.gather(client.map(_noop, range(200), pure=False))  # warm
    start = time.perf_counter()
    client.gather(client.map(_noop, range(tasks), pure=False))
    return (time.perf_counter() - start) / tasks


def chunk_records(client, command: list[str]) -> tuple[float, list[dict]]:
    """(wall seconds, the task stream's records of seqcli's chunk tasks) of one run of
    `command` on the cluster of `client`."""
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        elapsed = whole_process(command)
    records = [record for record in stream.data
               if str(record["key"]).startswith("seqcli-chunk-")]
    return elapsed, records


def _computes(record: dict) -> list[tuple[float, float]]:
    return [(part["start"], part["stop"]) for part in record["startstops"]
            if part["action"] == "compute"]


def chunk_costs(records: list[dict]) -> dict:
    """Per chunk: median work (seconds computing), and the median gap on a worker between the
    end of one chunk and the start of the next (the scheduler's round trip)."""
    work = [stop - start for record in records for start, stop in _computes(record)]
    gaps = []
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        by_worker.setdefault(record["worker"], []).extend(_computes(record))
    for spans in by_worker.values():
        spans.sort()
        gaps += [after[0] - before[1] for before, after in zip(spans, spans[1:])]
    return {"chunks": len(work), "work": statistics.median(work),
            "gap": statistics.median(gaps) if gaps else 0.0}


def task_message_bytes(data: Path, chunk_rows: int) -> tuple[int, int]:
    """(bytes of one chunk's task as the scheduler sends it, bytes of the model package each
    worker fetches once): the pickled arguments, the model aside."""
    from seqcli.dask.package import pack
    from seqcli.dask.scoring import ChunkOptions
    from seqcli.io.chunked import open_rows, row_reader
    from seqcli.io.stores import ROOT, NpyRegion
    from seqcli.runtime.runner import prepare_run

    runner = prepare_run(str(CONVNET))
    with open_rows(str(data)) as rows:
        runner.build(rows.shape)
        reader = row_reader(rows)
    region = NpyRegion(str(data.parent / ".y.npy.0.tmp"), "y.npy", 128, (10,))
    arguments = (reader, 0, chunk_rows, ChunkOptions(str(data), None, 32, 1, False),
                 (region, {"output": ROOT}))
    return len(pickle.dumps(arguments)), len(pickle.dumps(pack(runner.model)))


def dask_figures(folder: Path, images: int = 1024, rounds: int = 5) -> dict:
    """The figures of issue 19 (see the module's docstring), measured in `folder`."""
    from distributed import Client, LocalCluster

    data = folder / f"convnet{images}.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.random((images, 250, 250, 3), dtype=np.float32) * 255)
    base = [*SEQCLI, "predict", str(CONVNET), str(data), "-q"]
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster) as client:
        commands = {
            "one process, --threads 2": [*base, "-o", folder / "one.npy", "--threads", "2"],
            LOCAL: [*base, "-o", folder / "local.npy", "--dask", f"local:{WORKERS}"],
            "--dask tcp://… (running cluster)": [*base, "-o", folder / "tcp.npy", "--dask",
                                                 cluster.scheduler_address],
        }
        for command in commands.values():
            whole_process(command)  # warm: kernel cache, page cache, the workers' models
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, command in commands.items():
                time.sleep(0.2)
                times[name].append(whole_process(command))
        medians = {name: statistics.median(values) for name, values in times.items()}
        elapsed, records = chunk_records(client, commands["--dask tcp://… (running cluster)"])
        costs = chunk_costs(records)
        overhead = scheduler_overhead(client)
    same = all(np.array_equal(np.load(folder / "one.npy"), np.load(folder / name))
               for name in ("local.npy", "tcp.npy"))
    chunk_rows = images // costs["chunks"]
    message, package = task_message_bytes(data, chunk_rows)
    peer = medians["one process, --threads 2"]
    return {
        "images": images, "rounds": rounds, "workers": WORKERS, "seconds": medians,
        "ratios": {name: value / peer for name, value in medians.items()},
        "goal": GOAL, "holds": medians[LOCAL] / peer <= GOAL,
        "identical": same, "chunks": costs["chunks"], "chunk_rows": chunk_rows,
        "chunk_work": costs["work"], "chunk_gap": costs["gap"], "task_overhead": overhead,
        "run_seconds": elapsed, "input_bytes_per_chunk": chunk_rows * 250 * 250 * 3 * 4,
        "output_bytes_per_chunk": chunk_rows * 10 * 4, "task_message_bytes": message,
        "model_package_bytes": package,
    }


def dask_markdown(figures: dict) -> str:
    """The figures as a Markdown section."""
    lines = [f"## The guide's convnet on a Dask cluster ({figures['images']} images, whole "
             f"processes, median of {figures['rounds']} interleaved rounds)", "",
             "| command | seconds | images/s | ratio |", "|---|---:|---:|---:|"]
    for name, seconds in figures["seconds"].items():
        lines.append(f"| `seqcli predict … {name}` | {seconds:.2f} | "
                     f"{figures['images'] / seconds:,.0f} | {figures['ratios'][name]:.2f} |")
    work, gap = figures["chunk_work"], figures["chunk_gap"]
    verdict = "holds" if figures["holds"] else "**misses**"
    lines += [
        "", f"Goal: `{LOCAL}` at most {figures['goal']:.2f}× the one-process time: "
        f"{figures['ratios'][LOCAL]:.2f}×, {verdict}.",
        "", f"Outputs identical to the one-process run: {'yes' if figures['identical'] else 'NO'}."
        f" On the running cluster ({figures['workers']} workers of one thread): "
        f"{figures['chunks']} chunks of {figures['chunk_rows']} images; a chunk's work (read, "
        f"run, write) {work * 1e3:.0f} ms (median), the gap between two chunks on a worker "
        f"{gap * 1e3:.1f} ms, the scheduler's cost per task (no-op tasks) "
        f"{figures['task_overhead'] * 1e3:.2f} ms. Bytes per chunk: "
        f"{figures['input_bytes_per_chunk'] / 2**20:.1f} MiB read from storage and "
        f"{figures['output_bytes_per_chunk']:,} B written by the worker itself, "
        f"{figures['task_message_bytes']:,} B of task from the scheduler; the model "
        f"({figures['model_package_bytes'] / 1024:.0f} KiB) once per worker.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seqcli-dask-bench-") as folder:
        figures = dask_figures(Path(folder), options.images, options.rounds)
    print(dask_markdown(figures))


if __name__ == "__main__":
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    main()
