"""Training beside its peers for `make bench`: seqcli's fit, Keras 3 on JAX and PyTorch (when
installed), each in a process of its own (bench/fit_worker.py) on the same fixed random
dataset, in interleaved rounds; the seconds of every steady epoch (each process's first epoch
compiles or loads kernels, and is dropped). One case is also run beside a busy process (a
`python -c "while True: pass"` started for it) to compare how each framework slows down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.goals import FRAMEWORK_NAMES, median, ratio, slowdown

WORKER = Path(__file__).resolve().parent / "fit_worker.py"


@dataclass(frozen=True)
class FitCase:
    """A model trained by several frameworks on `threads` threads."""

    key: str
    title: str
    model: str
    """The stem of its file in bench/models/ (fit_worker.py builds it for the peers)."""
    input_shape: tuple[int, ...]
    samples: int
    threads: int
    epochs: int
    """Epochs per process, the first one dropped."""
    frameworks: tuple[str, ...]
    busy: bool = False
    """Also measured beside one busy process."""


CASES = (
    FitCase("convnet_1", "MNIST-size convnet", "mnist_convnet", (28, 28, 1), 3072, 1, 4,
            ("seqcli", "keras", "torch")),
    FitCase("mlp_1", "MLP 784-256-10", "mlp_784_256_10", (784,), 16384, 1, 6,
            ("seqcli", "keras", "torch")),
    FitCase("convnet_2", "MNIST-size convnet", "mnist_convnet", (28, 28, 1), 3072, 2, 3,
            ("seqcli", "keras"), busy=True),
)

PEER_IMPORTS = {"keras": "import keras, jax", "torch": "import torch"}
PEER_INSTALL = {"keras": "pip install -e '.[bench]' installs it; make bench does",
                "torch": ("make bench installs a CPU build of it from this machine's disk when "
                          "one is there; TORCH=torch==X.Y.Z picks the release")}
NOT_INSTALLED = "peer not installed"


def peer_notes(python: str) -> dict[str, str]:
    """Why each peer cannot run in `python`, by framework; empty when all can."""
    notes = {}
    for framework, statement in PEER_IMPORTS.items():
        done = subprocess.run([python, "-c", statement], capture_output=True, text=True,
                              env=dict(os.environ, KERAS_BACKEND="jax"))
        if done.returncode != 0:
            where = "this Python" if python == sys.executable else python
            notes[framework] = (f"{NOT_INSTALLED}: {FRAMEWORK_NAMES[framework]} is not "
                                f"importable in {where} ({PEER_INSTALL[framework]})")
    return notes


def write_dataset(folder: Path, case: FitCase) -> tuple[Path, Path]:
    """A fixed random dataset for the case: inputs in [0, 1), one-hot labels of 10 classes."""
    x_path = folder / f"fit_{case.model}_{case.samples}_x.npy"
    y_path = folder / f"fit_{case.model}_{case.samples}_y.npy"
    if not x_path.exists():
        rng = np.random.default_rng(0)
        np.save(x_path, rng.random((case.samples, *case.input_shape), dtype=np.float32))
        labels = rng.integers(0, 10, case.samples)
        np.save(y_path, np.eye(10, dtype=np.float32)[labels])
    return x_path, y_path


def worker_command(case: FitCase, framework: str, python: str, x: Path, y: Path,
                   epochs: int) -> list[str]:
    """The worker's command line; one thread is pinned to CPU 0 where taskset exists."""
    pin = ["taskset", "-c", "0"] if case.threads == 1 and shutil.which("taskset") else []
    return [*pin, python, str(WORKER), framework, case.model, str(x), str(y),
            "--epochs", str(epochs), "--threads", str(case.threads)]


@contextmanager
def busy_process():
    """One process spinning on a core for the duration of the block."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        process.kill()
        process.wait()


def run_worker(command: list[str]) -> dict:
    """The worker's JSON report; RuntimeError with the end of its stderr when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, KERAS_BACKEND="jax"))
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def measure_training(folder: Path, peer_python: str, rounds: int, quick: bool,
                     cases=CASES) -> tuple[dict, dict[str, str]]:
    """fit[case.key] = {"seconds": {framework: {"calm": [...], "busy": [...]}}, "notes":
    {framework: why it has no figure}}, and each framework's version; rounds interleave the
    frameworks and the calm and busy runs."""
    missing = peer_notes(peer_python)
    fit = {case.key: {"seconds": {}, "notes": {}} for case in cases}
    versions: dict[str, str] = {}
    for _ in range(rounds):
        for case in cases:
            x, y = write_dataset(folder, case)
            for load in ("calm", "busy") if case.busy else ("calm",):
                for framework in case.frameworks:
                    _measure_one(fit[case.key], versions, missing, case, framework, load,
                                 peer_python, x, y, 2 if quick else case.epochs)
    return fit, versions


def _measure_one(result: dict, versions: dict, missing: dict, case: FitCase, framework: str,
                 load: str, peer_python: str, x: Path, y: Path, epochs: int) -> None:
    """One worker run, its steady epochs added to `result` (or a note why not)."""
    if framework in missing:
        result["notes"][framework] = missing[framework]
        return
    if framework in result["notes"]:  # it failed in an earlier round
        return
    python = sys.executable if framework == "seqcli" else peer_python
    command = worker_command(case, framework, python, x, y, epochs)
    try:
        if load == "busy":
            with busy_process():
                report = run_worker(command)
        else:
            report = run_worker(command)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        result["notes"][framework] = f"{FRAMEWORK_NAMES[framework]} failed: {error}"
        print(f"  {case.key} {framework} {load}: {error}", flush=True)
        return
    versions.setdefault(framework, report["version"])
    steady = report["epoch_seconds"][1:]
    result["seconds"].setdefault(framework, {}).setdefault(load, []).extend(steady)
    print(f"  {case.key} {framework} {load}: "
          + ", ".join(f"{seconds:.3f}" for seconds in steady)
          + f" s/epoch (last epoch: loss {report['last_epoch']['loss']:.4f})", flush=True)


def training_markdown(fit: dict, cases=CASES) -> list[str]:
    """The training table: median seconds per steady epoch of each framework, calm and busy,
    and seqcli's ratio to each peer; then the notes."""
    lines = ["| model | samples | threads | load | seqcli s/epoch | Keras-JAX s/epoch | "
             "PyTorch s/epoch | vs Keras | vs PyTorch |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    notes = []
    for case in cases:
        seconds = fit.get(case.key, {}).get("seconds", {})
        for load in ("calm", "busy") if case.busy else ("calm",):
            times = {name: median(seconds.get(name, {}).get(load, []))
                     for name in FRAMEWORK_NAMES}
            cells = [_cell(times[name], ".3f") for name in FRAMEWORK_NAMES]
            ratios = [_cell(ratio(times["seqcli"], times[peer]), ".2f")
                      for peer in ("keras", "torch")]
            lines.append(f"| {case.title} | {case.samples:,} | {case.threads} | "
                         f"{'beside a busy process' if load == 'busy' else 'calm'} | "
                         + " | ".join(cells + ratios) + " |")
        if case.busy:
            slowdowns = {name: slowdown(seconds.get(name, {})) for name in case.frameworks}
            notes.append(f"{case.title} at {case.threads} threads, busy over calm: "
                         + ", ".join(f"{FRAMEWORK_NAMES[name]} {_cell(value, '.2f')}×"
                                     for name, value in slowdowns.items()) + ".")
        for framework, note in fit.get(case.key, {}).get("notes", {}).items():
            where = "" if note.startswith(NOT_INSTALLED) else \
                f"{case.title}, {case.threads} thread(s), "
            notes.append(f"{where}{FRAMEWORK_NAMES[framework]}: {note}.")
    return lines + [""] + [f"- {note}" for note in dict.fromkeys(notes)]


def _cell(value: float | None, fmt: str) -> str:
    """A table cell: the value formatted, — when missing."""
    return "—" if value is None else format(value, fmt)
