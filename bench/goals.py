"""Issue 18's table of goals, checked against what `make bench` measured: pure functions of the
measurements (no timing here), so that tests can check the arithmetic and the verdicts.

Each goal is a ratio of seqcli's time to a peer's measured in the same run (onnxruntime on the
exported graph, Keras 3 on JAX, PyTorch), or whole seconds, or, for training beside a busy
process, seqcli's slowdown over Keras's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Goal:
    """One goal of the issue's table (a row may hold two): what was measured against it."""

    row: int
    """The row of the issue's table, from 1."""
    work: str
    goal: float
    """The largest value that meets the goal."""
    unit: str
    """"×" for a ratio against `peer`, "s" for seconds."""
    peer: str = ""
    measured: float | None = None
    detail: str = ""
    """The figures the measurement comes from, or why there is none."""

    @property
    def verdict(self) -> str:
        """holds, misses, or not measured."""
        if self.measured is None:
            return "not measured"
        return "holds" if self.measured <= self.goal else "misses"


def median(values) -> float | None:
    """The median of `values`, None when there are none."""
    values = list(values)
    return statistics.median(values) if values else None


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, None when either is missing."""
    if ours is None or not peer:
        return None
    return ours / peer


def steady_epochs(runs: list[list[float]], skip: int = 1) -> list[float]:
    """Every epoch's seconds but the first `skip` of each run (those compile or load kernels)."""
    return [seconds for run in runs for seconds in run[skip:]]


def throughput_row(rows: list[dict], model: str, batch: int, threads: int) -> dict | None:
    """The throughput row of `model` at `batch` and `threads`, None when not measured."""
    for row in rows:
        if (row["model"], row["batch"], row["threads"]) == (model, batch, threads):
            return row
    return None


def ort_goal(row_number: int, work: str, rows: list[dict], model: str, batch: int,
             goal: float, missing: str) -> Goal:
    """An in-process ratio against onnxruntime at 2 threads, from the throughput rows."""
    row = throughput_row(rows, model, batch, 2)
    if row is None or "onnxruntime_ratio" not in row:
        return Goal(row_number, work, goal, "×", "onnxruntime", detail=missing)
    peer_ms = row["seqcli_ms"] / row["onnxruntime_ratio"]
    return Goal(row_number, work, goal, "×", "onnxruntime", row["onnxruntime_ratio"],
                f"seqcli {row['seqcli_ms']:.3f} ms, onnxruntime {peer_ms:.3f} ms a batch")


def process_goal(row: int, work: str, e2e: dict | None, goal: float, missing: str) -> Goal:
    """A whole-process ratio against the onnxruntime script, from `end_to_end`'s result."""
    if not e2e or "onnxruntime_s" not in e2e:
        return Goal(row, work, goal, "×", "onnxruntime", detail=missing)
    return Goal(row, work, goal, "×", "onnxruntime", e2e["seqcli_s"] / e2e["onnxruntime_s"],
                f"seqcli {e2e['seqcli_s']:.3f} s, onnxruntime script "
                f"{e2e['onnxruntime_s']:.3f} s")


def seconds_goal(row: int, work: str, start: dict[str, float], name: str, goal: float,
                 missing: str) -> Goal:
    """A whole-process time in seconds, from the start-up rows."""
    if name not in start:
        return Goal(row, work, goal, "s", detail=missing)
    return Goal(row, work, goal, "s", measured=start[name], detail=name)


FRAMEWORK_NAMES = {"seqcli": "seqcli", "keras": "Keras-JAX", "torch": "PyTorch"}


def fit_goal(row: int, work: str, fit: dict, case: str, peer: str, goal: float,
             missing: str) -> Goal:
    """seqcli's median steady epoch over `peer`'s, calm, from the training measurements:
    `fit[case]["seconds"][framework]["calm"]` the seconds of each steady epoch, and
    `fit[case]["notes"][framework]` why a framework has none."""
    name = FRAMEWORK_NAMES[peer]
    seconds = fit.get(case, {}).get("seconds", {})
    note = _note(fit, case, peer, missing)
    ours = median(seconds.get("seqcli", {}).get("calm", []))
    theirs = median(seconds.get(peer, {}).get("calm", []))
    if ours is None or theirs is None:
        return Goal(row, work, goal, "×", name, detail=note)
    return Goal(row, work, goal, "×", name, ours / theirs,
                f"seqcli {ours:.3f} s/epoch, {name} {theirs:.3f} s/epoch")


def _note(fit: dict, case: str, peer: str, missing: str) -> str:
    """Why a training case has no figure: the peer's note, seqcli's, or the section's."""
    notes = fit.get(case, {}).get("notes", {})
    return notes.get(peer) or notes.get("seqcli") or missing


def slowdown(times: dict) -> float | None:
    """Median busy epoch over median calm epoch, None when either is missing."""
    return ratio(median(times.get("busy", [])), median(times.get("calm", [])))


def busy_goal(row: int, work: str, fit: dict, case: str, missing: str) -> Goal:
    """seqcli's slowdown beside a busy process over Keras's (≤ 1: no worse than Keras)."""
    seconds = fit.get(case, {}).get("seconds", {})
    ours = slowdown(seconds.get("seqcli", {}))
    theirs = slowdown(seconds.get("keras", {}))
    if ours is None or theirs is None:
        return Goal(row, work, 1.0, "×", "Keras-JAX's slowdown",
                    detail=_note(fit, case, "keras", missing))
    return Goal(row, work, 1.0, "×", "Keras-JAX's slowdown", ours / theirs,
                f"busy/calm: seqcli {ours:.2f}×, Keras-JAX {theirs:.2f}×")


NOT_MEASURED = "not measured in this run"
SUMMARY = "seqcli summary configs/guide_convnet.yaml"
SMALL_PREDICT = "seqcli predict Dense stack (8x4), warm cache"


def issue_goals(rows: list[dict], e2e: dict | None, e2e_one: dict | None,
                start: dict[str, float], fit: dict, missing: dict[str, str]) -> list[Goal]:
    """Every row of issue 18's table, from the measurements of one run: `rows` the throughput
    rows, `e2e`/`e2e_one` the whole-process runs of 256 images and of one, `start` the
    start-up seconds by name, `fit` the training epochs (`fit_goal`); `missing` says, by
    section (throughput, e2e, startup, training), why a section has no figure."""
    inference = missing.get("throughput", NOT_MEASURED)
    whole = missing.get("e2e", NOT_MEASURED)
    started = missing.get("startup", NOT_MEASURED)
    training = missing.get("training", NOT_MEASURED)
    return [
        process_goal(1, "guide convnet, 256 images .npy → .npy, whole process, 2 threads", e2e,
                     1.0, whole),
        process_goal(2, "one image, whole process", e2e_one, 1.2, whole),
        seconds_goal(3, "`seqcli summary` whole process", start, SUMMARY, 0.10, started),
        seconds_goal(4, "`seqcli predict`, small model, warm cache, whole process", start,
                     SMALL_PREDICT, 0.20, started),
        ort_goal(5, "guide convnet batch 1, 2 threads", rows, "guide_convnet", 1, 1.0,
                 inference),
        ort_goal(6, "MobileNet-style stack batch 1, 2 threads", rows, "mobilenet_style", 1,
                 1.0, inference),
        ort_goal(6, "MobileNet-style stack batch 32, 2 threads", rows, "mobilenet_style", 32,
                 1.0, inference),
        ort_goal(7, "MLP 784-512-512-10 batch 1, 2 threads", rows, "mlp", 1, 1.0, inference),
        ort_goal(8, "Conv1D text model batch 1, 2 threads", rows, "conv1d_text", 1, 1.0,
                 inference),
        fit_goal(9, "`fit`, MNIST-size convnet, 1 thread, s/epoch", fit, "convnet_1", "keras",
                 0.5, training),
        fit_goal(9, "`fit`, MNIST-size convnet, 1 thread, s/epoch", fit, "convnet_1", "torch",
                 1.0, training),
        fit_goal(10, "`fit`, MLP 784-256-10, 1 thread, s/epoch", fit, "mlp_1", "keras", 0.7,
                 training),
        busy_goal(11, "`fit` at 2 threads beside one busy process (MNIST-size convnet)", fit,
                  "convnet_2", training),
    ]


def format_measured(goal: Goal) -> str:
    """The measured value as the table shows it: 1.23× or 0.123 s, — when missing."""
    if goal.measured is None:
        return "—"
    return f"{goal.measured:.3f} s" if goal.unit == "s" else f"{goal.measured:.2f}×"


def format_goal(goal: Goal) -> str:
    """The goal as the table shows it: ≤ 1.0× onnxruntime, ≤ 0.10 s."""
    if goal.unit == "s":
        return f"≤ {goal.goal:.2f} s"
    return f"≤ {goal.goal:.1f}× {goal.peer}"


def goals_markdown(goals: list[Goal]) -> list[str]:
    """The Goals section's table, one line per goal, and a line that sums the verdicts."""
    lines = ["| row | work | measured | goal | verdict | from |", "|---:|---|---:|---|---|---|"]
    for goal in goals:
        verdict = goal.verdict if goal.verdict != "misses" else "**misses**"
        lines.append(f"| {goal.row} | {goal.work} | {format_measured(goal)} | "
                     f"{format_goal(goal)} | {verdict} | {goal.detail} |")
    counts = {verdict: sum(goal.verdict == verdict for goal in goals)
              for verdict in ("holds", "misses", "not measured")}
    lines += ["", f"{counts['holds']} of {len(goals)} goals hold, {counts['misses']} miss, "
              f"{counts['not measured']} not measured."]
    return lines
