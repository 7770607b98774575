"""`seqcli bench` runs and prints well-formed reports, and `make bench`'s pure parts (goal
verdicts, ratio tables, the training worker's report) compute what they say. No timing is
asserted: benchmarks are not tests; no peer (Keras, PyTorch) is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import goals as bench_goals
from bench import readme as bench_readme
from bench import run as bench_run
from bench import training as bench_training
from bench.goals import Goal, goals_markdown, issue_goals
from seqcli.benchmark import fma_peak
from tests.conftest import CONFIGS, REPO

TINY_CONVNET = """\
input_shape: [9, 8, 2]
seed: 1
layers:
  - {type: Conv2D, filters: 16, kernel_size: 3, padding: same, activation: relu}
  - {type: MaxPooling2D}
  - {type: GlobalMaxPooling2D}
  - {type: Dense, units: 3, activation: softmax}
"""


def test_bench_json_document(cli):
    result = cli("bench", CONFIGS / "dense_stack.yaml", "--batch-size", "4", "--seconds", "0.05",
                 "--json", "--per-layer", "--threads", "1")
    assert result.code == 0, result
    document = json.loads(result.out)
    assert document["input_shape"] == [None, 4]
    assert document["batch_size"] == 4 and document["threads"] == 1
    assert document["macs_per_sample"] == 4 * 2 + 2 * 3 + 3 * 4
    assert document["runs"] >= 5 and document["images_per_s"] > 0
    latency = document["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert document["gemm_gflops"] > 0 and document["gflops"] > 0
    assert document["peak_gflops"] > 0
    assert document["peak_share"] == pytest.approx(document["gflops"] / document["peak_gflops"])
    assert all(row["peak_share"] >= 0 for row in document["layers"])
    assert document["first_run_s"] > 0 and document["compiled"] >= 0
    assert [row["path"] for row in document["layers"]] == ["dense", "dense_1", "dense_2"]
    assert abs(sum(row["time_share"] for row in document["layers"]) - 1) < 1e-6


def test_bench_text_report_per_layer(cli, tmp_path):
    model = tmp_path / "tiny.yaml"
    model.write_text(TINY_CONVNET)
    result = cli("bench", model, "--batch-size", "3", "--seconds", "0.05", "--per-layer")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines[:5]] == ["model", "load", "first", "steady",
                                                        "compute"]
    assert "images/s" in lines[3] and "p99" in lines[3]
    assert "% of this machine's float32 FMA peak" in lines[4] and "% of its float32 GEMM" in lines[4]
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["layer", "type", "MFLOP/img", "ms/batch", "GFLOP/s", "%peak",
                                "%GEMM", "%time"]
    assert [row.split()[0] for row in table[1:]] == [
        "conv2d", "max_pooling2d", "global_max_pooling2d", "dense"]


def test_bench_deferred_model_needs_an_input_shape(cli, tmp_path):
    model = tmp_path / "deferred.yaml"
    model.write_text("layers:\n  - {type: Dense, units: 2}\n")
    result = cli("bench", model, "--seconds", "0.01")
    assert result.code == 2 and "--input-shape" in result.err
    result = cli("bench", model, "--seconds", "0.01", "--input-shape", "5", "--json")
    assert result.code == 0 and json.loads(result.out)["input_shape"] == [None, 5]


def test_bench_refuses_a_zero_batch(cli):
    result = cli("bench", CONFIGS / "dense_stack.yaml", "--batch-size", "0")
    assert result.code == 2


def test_fma_peak_counts_every_thread_up_to_the_cpus(monkeypatch):
    """The peak of T threads counts the loops of T threads, up to the CPUs this process may
    use (the rate itself is measured, so only its scaling is checked)."""
    import seqcli.benchmark as benchmark

    monkeypatch.setattr(benchmark.time, "perf_counter", _fake_clock())
    monkeypatch.setattr(benchmark, "_usable_cpus", lambda: 2)
    one, two, four = (fma_peak(threads, seconds=0) for threads in (1, 2, 4))
    assert one > 0
    assert two == pytest.approx(2 * one, rel=1e-3) and four == pytest.approx(2 * one, rel=1e-3)


def test_fma_peak_runs_the_loops_of_all_threads_at_once(monkeypatch):
    """The threads' loops run together (CPUs that share a core's FMA units then count once),
    each run on as many threads as asked, up to the CPUs."""
    import threading
    import time

    import seqcli.benchmark as benchmark

    lock, running, most, threads_seen = threading.Lock(), [0], [0], set()

    def loop(rounds):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            threads_seen.add(threading.get_ident())
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return 0.0

    monkeypatch.setattr(benchmark, "_fma_loop", loop)
    monkeypatch.setattr(benchmark, "_usable_cpus", lambda: 3)
    peak = fma_peak(4, seconds=0.05)
    assert most[0] == 3 and len(threads_seen) >= 3
    one = fma_peak(1, seconds=0.05)
    assert 2.0 < peak / one <= 3.05  # three loops in the time of one: three times the rate


def _fake_clock(step: float = 1e-3):
    """A perf_counter that advances `step` seconds at each call."""
    now = [0.0]

    def clock():
        now[0] += step
        return now[0]

    return clock


# ----------------------------------------------------------------------------- make bench


def _throughput_row(model, batch, threads, seqcli_ms, ort_ratio):
    return {"model": model, "batch": batch, "threads": threads, "seqcli_ms": seqcli_ms,
            "seqcli_ips": batch / seqcli_ms * 1e3, "gflops": 1.0,
            "onnxruntime_ratio": ort_ratio}


ROWS = [_throughput_row("guide_convnet", 1, 2, 1.0, 0.9),
        _throughput_row("guide_convnet", 1, 1, 2.0, 3.0),  # 1 thread: no goal of its own
        _throughput_row("mobilenet_style", 1, 2, 1.5, 1.5),
        _throughput_row("mobilenet_style", 32, 2, 16.0, 1.0),
        _throughput_row("mlp", 1, 2, 0.05, 2.5),
        _throughput_row("conv1d_text", 1, 2, 0.3, 0.75)]
FIT = {
    "convnet_1": {"seconds": {"seqcli": {"calm": [1.0, 3.0, 2.0]},
                              "keras": {"calm": [5.0, 4.0, 4.5]}},
                  "notes": {"torch": "peer not installed: PyTorch is not importable"}},
    "mlp_1": {"seconds": {"seqcli": {"calm": [0.2]}, "keras": {"calm": [0.25]}},
              "notes": {}},
    "convnet_2": {"seconds": {"seqcli": {"calm": [1.0, 1.0], "busy": [3.0, 3.0]},
                              "keras": {"calm": [2.0], "busy": [4.0]}},
                  "notes": {}},
}


def _goals(**changes):
    measured = {"rows": ROWS, "e2e": {"images": 256, "seqcli_s": 0.5, "onnxruntime_s": 0.4},
                "e2e_one": {"images": 1, "seqcli_s": 0.3, "onnxruntime_s": 0.3},
                "start": {bench_goals.SUMMARY: 0.08, bench_goals.SMALL_PREDICT: 0.25},
                "fit": FIT, "missing": {}}
    measured.update(changes)
    return issue_goals(measured["rows"], measured["e2e"], measured["e2e_one"],
                       measured["start"], measured["fit"], measured["missing"])


def test_issue_goals_cover_every_row_of_the_table_with_its_verdict():
    found = _goals()
    assert sorted({goal.row for goal in found}) == list(range(1, 12))
    table = {(goal.row, goal.peer, goal.work.split(" batch ")[-1]): goal for goal in found}
    expected = {  # row: measured value, verdict
        (1, "onnxruntime"): (0.5 / 0.4, "misses"),
        (2, "onnxruntime"): (1.0, "holds"),
        (3, ""): (0.08, "holds"),
        (4, ""): (0.25, "misses"),
        (5, "onnxruntime"): (0.9, "holds"),
        (7, "onnxruntime"): (2.5, "misses"),
        (8, "onnxruntime"): (0.75, "holds"),
        (9, "Keras-JAX"): (2.0 / 4.5, "holds"),  # medians of the steady epochs
        (9, "PyTorch"): (None, "not measured"),
        (10, "Keras-JAX"): (0.8, "misses"),
        (11, "Keras-JAX's slowdown"): (3.0 / 2.0, "misses"),
    }
    by_row = {(goal.row, goal.peer): goal for goal in found if goal.row != 6}
    for key, (value, verdict) in expected.items():
        goal = by_row[key]
        assert goal.verdict == verdict, key
        assert goal.measured == (None if value is None else pytest.approx(value)), key
    mobilenet = [goal for goal in found if goal.row == 6]
    assert [(goal.measured, goal.verdict) for goal in mobilenet] == [(1.5, "misses"),
                                                                    (1.0, "holds")]
    assert "PyTorch is not importable" in by_row[(9, "PyTorch")].detail
    assert "seqcli 3.00×, Keras-JAX 2.00×" in by_row[(11, "Keras-JAX's slowdown")].detail
    assert len(table) == len(found)


def test_a_goal_holds_at_its_limit_and_misses_past_it():
    assert Goal(1, "w", 1.0, "×", "onnxruntime", 1.0).verdict == "holds"
    assert Goal(1, "w", 1.0, "×", "onnxruntime", 1.0001).verdict == "misses"
    assert Goal(3, "w", 0.1, "s", measured=0.1).verdict == "holds"
    assert Goal(3, "w", 0.1, "s").verdict == "not measured"


def test_goals_say_why_a_section_has_no_figure():
    reasons = bench_run.missing_reasons(("throughput", "training"), None)
    assert set(reasons) == {"e2e", "startup", "big", "dask"}
    assert "skipped" in reasons["e2e"]
    found = _goals(rows=[], e2e=None, e2e_one=None, start={}, fit={}, missing=reasons)
    assert all(goal.verdict == "not measured" for goal in found)
    details = {goal.row: goal.detail for goal in found}
    assert "skipped" in details[1] and "skipped" in details[3]
    assert details[5] == "not measured in this run"  # throughput ran but measured nothing
    reasons = bench_run.missing_reasons(bench_run.SECTIONS, "onnxruntime is missing")
    assert reasons == {"throughput": "peer not installed: onnxruntime is missing",
                       "e2e": "peer not installed: onnxruntime is missing"}


def test_a_failed_seqcli_fit_is_named_over_the_section_note():
    fit = {"convnet_1": {"seconds": {"keras": {"calm": [1.0]}},
                         "notes": {"seqcli": "seqcli failed: boom"}}}
    goal = bench_goals.fit_goal(9, "fit", fit, "convnet_1", "keras", 0.5, "section note")
    assert goal.verdict == "not measured" and goal.detail == "seqcli failed: boom"


def test_goals_markdown_table_and_tally():
    lines = goals_markdown([Goal(1, "a", 1.0, "×", "onnxruntime", 1.25, "x"),
                            Goal(3, "b", 0.1, "s", measured=0.0812),
                            Goal(9, "c", 0.5, "×", "Keras-JAX", detail="peer not installed")])
    assert lines[0].split("|")[1:-1] == [" row ", " work ", " measured ", " goal ", " verdict ",
                                         " from "]
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:5]]
    assert cells[0] == ["1", "a", "1.25×", "≤ 1.0× onnxruntime", "**misses**", "x"]
    assert cells[1] == ["3", "b", "0.081 s", "≤ 0.10 s", "holds", ""]
    assert cells[2] == ["9", "c", "—", "≤ 0.5× Keras-JAX", "not measured", "peer not installed"]
    assert lines[-1] == "1 of 3 goals hold, 1 miss, 1 not measured."


def test_steady_epochs_drop_each_runs_first():
    assert bench_goals.steady_epochs([[9.0, 1.0, 2.0], [8.0, 3.0]]) == [1.0, 2.0, 3.0]
    assert bench_goals.median([]) is None and bench_goals.ratio(1.0, None) is None
    assert bench_goals.slowdown({"calm": [2.0, 4.0], "busy": [9.0]}) == 3.0
    assert bench_goals.slowdown({"calm": [2.0]}) is None


def test_training_table_lists_each_case_and_load():
    lines = bench_training.training_markdown(FIT)
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:6]]
    assert rows[0] == ["MNIST-size convnet", "3,072", "1", "calm", "2.000", "4.500", "—",
                       "0.44", "—"]
    assert rows[1][:6] == ["MLP 784-256-10", "16,384", "1", "calm", "0.200", "0.250"]
    assert rows[2][2:5] == ["2", "calm", "1.000"]
    assert rows[3][2:7] == ["2", "beside a busy process", "3.000", "4.000", "—"]
    notes = lines[lines.index("") + 1:]
    assert "- MNIST-size convnet at 2 threads, busy over calm: seqcli 3.00×, Keras-JAX 2.00×." \
        in notes
    assert "- PyTorch: peer not installed: PyTorch is not importable." in notes


def test_training_cases_pin_one_thread_and_build_their_dataset(tmp_path):
    case = bench_training.FitCase("c", "tiny", "mlp_784_256_10", (3,), 5, 1, 2, ("seqcli",))
    x_path, y_path = bench_training.write_dataset(tmp_path, case)
    x, y = np.load(x_path), np.load(y_path)
    assert x.shape == (5, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() < 1
    assert y.shape == (5, 10) and (y.sum(axis=1) == 1).all()
    command = bench_training.worker_command(case, "seqcli", "python", x_path, y_path, 2)
    assert command[command.index("python") + 1:] == [
        str(bench_training.WORKER), "seqcli", "mlp_784_256_10", str(x_path), str(y_path),
        "--epochs", "2", "--threads", "1"]
    two = bench_training.FitCase("c", "tiny", "m", (3,), 5, 2, 2, ("seqcli",))
    assert bench_training.worker_command(two, "seqcli", "python", x_path, y_path, 2)[0] \
        == "python"


def test_fit_worker_reports_seqcli_epochs(tmp_path):
    """The worker `make bench` runs for seqcli's side of the training rows."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((40, 784), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.eye(10, dtype=np.float32)[rng.integers(0, 10, 40)])
    done = subprocess.run([sys.executable, str(REPO / "bench" / "fit_worker.py"), "seqcli",
                           "mlp_784_256_10", tmp_path / "x.npy", tmp_path / "y.npy",
                           "--epochs", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["framework"] == "seqcli" and len(report["epoch_seconds"]) == 2
    assert all(seconds > 0 for seconds in report["epoch_seconds"])
    assert set(report["last_epoch"]) == {"loss", "accuracy"}
    assert np.isfinite(report["last_epoch"]["loss"])


def test_openblas_overrides_are_reported_when_dropped():
    assert bench_run.openblas_note("") == "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE not set."
    note = bench_run.openblas_note("OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512")
    assert note.startswith("the caller's environment set OPENBLAS_CORETYPE=Haswell, "
                           "OPENBLAS_L2_SIZE=512, dropped for this run")


def test_bench_runs_itself_again_without_the_openblas_overrides(tmp_path):
    """`bench/run.py` replaces itself by a run without the overrides, which knows what was
    dropped (checked through --help, which measures nothing)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import os, sys\n"
                     "sys.argv = [sys.argv[0], '--help']\n"
                     f"sys.path.insert(0, {str(REPO)!r})\n"
                     "from bench import run\n"
                     "if os.environ.get(run.DROPPED):\n"
                     "    print(os.environ[run.DROPPED], 'OPENBLAS_CORETYPE' in os.environ)\n"
                     "    raise SystemExit(0)\n"
                     "run.drop_openblas_overrides()\n"
                     "print('not dropped')\n")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("OPENBLAS_")}
    done = subprocess.run([sys.executable, probe], capture_output=True, text=True,
                          env=dict(env, OPENBLAS_CORETYPE="Haswell"), timeout=120)
    assert done.stdout.strip() == "OPENBLAS_CORETYPE=Haswell False", done.stderr
    done = subprocess.run([sys.executable, probe], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stdout.strip() == "not dropped", done.stderr


def test_sections_are_checked():
    assert bench_run.parse_sections("training, e2e") == ("training", "e2e")
    with pytest.raises(Exception, match="unknown section"):
        bench_run.parse_sections("trainig")


def test_end_to_end_table_has_a_pair_of_rows_per_image_count():
    result = {"images": 256, "seqcli_s": 0.5, "seqcli_rss": 2**27, "onnxruntime_s": 0.4,
              "onnxruntime_rss": 2**28, "agree": 6e-5}
    one = {"images": 1, "seqcli_s": 0.3, "seqcli_rss": 2**27}
    lines = bench_run.end_to_end_markdown([result, one])
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:5]]
    assert [row[0] for row in rows] == ["256", "256", "1"]
    assert rows[0][2:] == ["0.500", "512", "128 MB", "1.25"]
    assert rows[1][2:] == ["0.400", "640", "256 MB", "1.00"]
    assert rows[2][2:] == ["0.300", "3", "128 MB", "—"]
    assert lines[-1] == "Largest difference between the two outputs: 6e-05 (256 images)."


def test_readme_blocks_are_replaced_between_their_markers_only(tmp_path):
    text = ("intro\n<!-- make bench: goals -->\nold\nlines\n<!-- /make bench: goals -->\n"
            "prose\n<!-- make bench: training -->\n<!-- /make bench: training -->\nend\n")
    replaced = bench_readme.replace_block(text, "goals", ["new"])
    assert replaced == text.replace("old\nlines\n", "\nnew\n\n")
    replaced = bench_readme.replace_block(replaced, "training", ["a", "b"])
    assert replaced.endswith("<!-- make bench: training -->\n\na\nb\n\n"
                             "<!-- /make bench: training -->\nend\n")
    assert bench_readme.replace_block(replaced, "goals", ["new"]) == replaced
    with pytest.raises(KeyError):
        bench_readme.replace_block(text, "throughput", [])
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert bench_readme.update_readme(readme, {"goals": ["x"], "throughput": ["y"]}) == \
        ["throughput"]
    assert "<!-- make bench: goals -->\n\nx\n\n<!-- /make bench: goals -->" in readme.read_text()


def test_the_readme_has_every_block_a_full_run_writes():
    text = (REPO / "README.md").read_text()
    for name in ("goals", "throughput", "processes", "training"):
        bench_readme.replace_block(text, name, [])


def test_readme_throughput_and_process_tables():
    lines = bench_readme.throughput_lines([
        {"model": "mlp", "batch": 1, "threads": 2, "seqcli_ips": 18549.4,
         "onnxruntime_ratio": 2.9, "numpy_ratio": 1.56},
        {"model": "other", "batch": 32, "threads": 1, "seqcli_ips": 10.0}])
    assert lines[2] == "| MLP 784-512-512-10 | 1 | 2 | 18,549 | 2.90 | 1.56 |"
    assert lines[3] == "| other | 32 | 1 | 10 |  |  |"
    start = [("python -c pass (peer)", 0.02), (bench_goals.SUMMARY, 0.15)]
    lines = bench_run.processes_lines(start, {"images": 256, "seqcli_s": 0.5,
                                              "onnxruntime_s": 0.4}, None)
    assert lines[2:] == [
        "| `seqcli summary` (guide convnet) | 0.15 | 8× `python -c pass` |",
        "| the guide convnet on 256 images, file to file (onnxruntime script: 0.40 s) | 0.50 | "
        "1.25× onnxruntime |"]


def test_a_peer_that_cannot_be_imported_is_named_not_run():
    notes = bench_training.peer_notes("/bin/false")
    assert set(notes) == {"keras", "torch"}
    assert notes["keras"].startswith("peer not installed: Keras-JAX is not importable in "
                                     "/bin/false")
