"""`make bench`: seqcli beside its peers, measured side by side in one run, written as Markdown
to bench/RESULTS.md (and printed), with issue 18's table of goals and whether each holds; a
run of every section (not --quick) also rewrites the README's tables of figures
(bench/readme.py).
Peers: onnxruntime on the graph `seqcli export-onnx` writes (in process, and as a Python
script for whole-process runs), plain numpy (the MLP as an `x @ W + b` chain), and for
training Keras 3 on JAX and PyTorch, each in a process of its own (bench/training.py). A peer
that is not installed is skipped with a note. The machine is shared and noisy: every figure
that matters is a ratio against a peer measured in the same run, interleaved with it (rounds
of seqcli, peer, peer, ...), medians.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (which pin OpenBLAS to an older kernel) are dropped:
when the caller's environment sets them, the script runs itself again without them and says so.

    make bench                 # installs the training peers (the bench extra), then this
    .venv/bin/python bench/run.py [--quick] [--sections throughput,training] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODELS = REPO / "bench" / "models"

from bench.goals import SMALL_PREDICT, SUMMARY, goals_markdown, issue_goals  # noqa: E402
from bench.readme import throughput_lines, update_readme  # noqa: E402
from bench.training import CASES, measure_training, training_markdown  # noqa: E402

OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
DROPPED = "SEQCLI_BENCH_DROPPED"
"""Where the first run hands the settings it dropped to the second."""


def drop_openblas_overrides() -> None:
    """Run this script again without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (OpenBLAS reads them
    once, when it loads), telling the new run which were set; the process is replaced."""
    found = [f"{name}={os.environ[name]}" for name in OPENBLAS_OVERRIDES if name in os.environ]
    if found:
        env = {name: value for name, value in os.environ.items()
               if name not in OPENBLAS_OVERRIDES}
        env[DROPPED] = " ".join(found)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


CONVNET = REPO / "configs" / "guide_convnet.yaml"
SEQCLI = [sys.executable, "-m", "seqcli"]

ORT_SCRIPT = """\
import sys
import numpy as np
import onnxruntime as ort
model, data, output = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
x = np.load(data, mmap_mode="r")
outputs = [session.run(None, {name: np.ascontiguousarray(x[i:i + 32], dtype=np.float32)})[0]
           for i in range(0, len(x), 32)]
np.save(output, np.concatenate(outputs))
"""


# ----------------------------------------------------------------------------- helpers


def interleaved(peers: dict, seconds: float, rounds: int) -> dict[str, float]:
    """Median seconds per call of each peer's `run`, measured in turns (a pause between turns
    lets the previous peer's spinning threads go idle)."""
    from seqcli.benchmark import timed_runs

    times: dict[str, list[float]] = {name: [] for name in peers}
    for run in peers.values():
        run()  # warm
    for _ in range(rounds):
        for name, run in peers.items():
            time.sleep(0.05)
            times[name] += timed_runs(run, seconds / rounds, 3)
    return {name: statistics.median(values) for name, values in times.items()}


# Runs a command and reports its wall time and peak RSS. It is a separate, small process: a
# child forked straight from this big one would inherit its resident-memory high-water mark.
LAUNCHER = """\
import os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def run_process(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak resident memory (bytes) of a whole process."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, command)], cwd=REPO,
                          env=env, capture_output=True, text=True)
    try:
        elapsed, rss, code = done.stdout.split()
    except ValueError:
        code = "?"
    if done.returncode != 0 or code != "0":
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {done.stderr.strip()}")
    return float(elapsed), int(rss)


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class Threads:
    """numba's and BLAS's thread counts for a block."""

    def __init__(self, count: int):
        self.count = count

    def __enter__(self):
        import numba
        from threadpoolctl import threadpool_limits

        from seqcli.kernels.threads import set_threads, thread_count

        self.before = numba.get_num_threads(), thread_count()
        numba.set_num_threads(self.count)
        set_threads(self.count)
        self.limits = threadpool_limits(self.count)
        return self

    def __exit__(self, *exc_info):
        import numba

        from seqcli.kernels.threads import set_threads

        numba.set_num_threads(self.before[0])
        set_threads(self.before[1])
        self.limits.restore_original_limits()


class OrtPeer:
    """onnxruntime sessions on the exported graph of a model file, one per thread count."""

    def __init__(self, model: Path, folder: Path):
        from seqcli.interop.onnx_export import export_onnx

        self.path = folder / (model.stem + ".onnx")
        export_onnx(str(model), str(self.path))
        self.sessions = {}

    def runner(self, x: np.ndarray, threads: int):
        import onnxruntime as ort

        if threads not in self.sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.sessions[threads] = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"])
        session = self.sessions[threads]
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: x})


def ort_note() -> str | None:
    """Why the onnxruntime peer is missing, or None when it can run."""
    if not have("onnxruntime"):
        return "onnxruntime is not installed (pip install -e '.[dev]')"
    if not (REPO / "seqcli" / "interop" / "onnx_export.py").exists():
        return "the ONNX exporter (seqcli/interop/onnx_export.py) is not there yet"
    try:
        import onnx  # noqa: F401

        from seqcli.interop import onnx_export  # noqa: F401
    except ImportError as error:
        return f"the ONNX exporter cannot run: {error}"
    return None


def numpy_mlp(model):
    """The plain numpy peer of a Dense stack: `x @ W + b`, relu between."""
    weights = model.weights
    layers = [(weights[f"{info.path}/kernel"], weights[f"{info.path}/bias"],
               info.layer.activation) for info in model.built_model.layers]

    def run(x):
        for kernel, bias, activation in layers:
            x = x @ kernel + bias
            if activation == "relu":
                x = np.maximum(x, 0)
        return x

    return run


# ----------------------------------------------------------------------------- sections


def throughput(rows: list, model_file: Path, cases, folder: Path, seconds: float,
               rounds: int, ort: str | None, with_numpy: bool = False) -> None:
    """seqcli (in process) against its peers, per (batch, threads) case."""
    import seqcli

    model = seqcli.load(model_file)
    model.build()
    macs = model.built_model.macs
    peer = OrtPeer(model_file, folder) if ort is None else None
    rng = np.random.default_rng(0)
    for batch, threads in cases:
        shape = (batch, *model.built_model.input_shape)
        if model.built_model.takes_ids:  # word ids, as int64 (what onnxruntime takes)
            x = rng.integers(0, model.built_model.leaves()[0].layer.input_dim, shape)
        else:
            x = rng.standard_normal(shape, dtype=np.float32)
        with Threads(threads):
            runs = {"seqcli": lambda x=x: model(x)}
            if peer is not None:
                runs["onnxruntime"] = peer.runner(x, threads)
            if with_numpy:
                chain = numpy_mlp(model)
                runs["numpy"] = lambda x=x, chain=chain: chain(x)
            medians = interleaved(runs, seconds, rounds)
        ours = medians["seqcli"]
        row = {"model": model_file.stem, "batch": batch, "threads": threads,
               "seqcli_ips": batch / ours, "seqcli_ms": ours * 1e3,
               "gflops": 2 * macs * batch / ours / 1e9}
        for name in ("onnxruntime", "numpy"):
            if name in medians:
                row[f"{name}_ips"] = batch / medians[name]
                row[f"{name}_ratio"] = ours / medians[name]
        rows.append(row)
        print(f"  {model_file.stem} batch {batch} threads {threads}: "
              + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float)),
              flush=True)


def end_to_end(folder: Path, ort: str | None, repeats: int, images: int) -> dict:
    """`seqcli predict` of `images` images of the guide's convnet against a Python script
    running onnxruntime on the same .npy (its start-up included), both whole processes on
    every core, interleaved; medians."""
    data = folder / f"convnet{images}.npy"
    rng = np.random.default_rng(0)
    np.save(data, (rng.random((images, 250, 250, 3), dtype=np.float32) * 255))
    ours = [*SEQCLI, "predict", str(CONVNET), str(data), "-o", str(folder / "ours.npy"), "-q"]
    result = {"images": images}
    run_process(ours)  # warm the kernel cache and the page cache
    peer = None
    if ort is None:
        script = folder / "ort_predict.py"
        script.write_text(ORT_SCRIPT)
        onnx_file = folder / "guide_convnet_e2e.onnx"
        if not onnx_file.exists():
            from seqcli.interop.onnx_export import export_onnx

            export_onnx(str(CONVNET), str(onnx_file))
        peer = [sys.executable, str(script), str(onnx_file), str(data), str(folder / "ort.npy")]
        run_process(peer)
    times = {"seqcli": [], "onnxruntime": []}
    memory = {"seqcli": 0, "onnxruntime": 0}
    for _ in range(repeats):
        for name, command in (("seqcli", ours), ("onnxruntime", peer)):
            if command is None:
                continue
            elapsed, rss = run_process(command)
            times[name].append(elapsed)
            memory[name] = max(memory[name], rss)
    for name, values in times.items():
        if values:
            result[f"{name}_s"] = statistics.median(values)
            result[f"{name}_rss"] = memory[name]
    if peer is not None:
        result["agree"] = float(np.max(np.abs(np.load(folder / "ours.npy")
                                              - np.load(folder / "ort.npy"))))
    data.unlink()
    return result


def startup(folder: Path, runs: int, cold_runs: int) -> list[tuple[str, float]]:
    """Whole-process times: python -c pass, summary, small predicts warm and cold."""
    x_dense = folder / "dense8.npy"
    np.save(x_dense, np.ones((8, 4), np.float32))
    x_conv = folder / "small8.npy"
    np.save(x_conv, np.ones((8, 28, 28, 1), np.float32))
    out = str(folder / "y.npy")
    commands = [
        ("python -c pass (peer)", [sys.executable, "-c", "pass"]),
        (SUMMARY, [*SEQCLI, "summary", str(CONVNET)]),
        (SMALL_PREDICT,
         [*SEQCLI, "predict", "configs/dense_stack.yaml", str(x_dense), "-o", out, "-q"]),
        ("seqcli predict small convnet (8x28x28x1), warm cache",
         [*SEQCLI, "predict", str(MODELS / "small_convnet.yaml"), str(x_conv), "-o", out, "-q"]),
    ]
    rows = []
    for name, command in commands:
        run_process(command)
        rows.append((name, statistics.median(run_process(command)[0] for _ in range(runs))))
        print(f"  {name}: {rows[-1][1]:.3f} s", flush=True)
    for name, command in commands[2:]:
        times = []
        for _ in range(cold_runs):
            cache = tempfile.mkdtemp(prefix="numba-cold-", dir=folder)
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            times.append(run_process(command, env=env)[0])
            shutil.rmtree(cache, ignore_errors=True)
        cold = name.replace("warm cache", "cold cache (empty NUMBA_CACHE_DIR)")
        rows.append((cold, statistics.median(times)))
        print(f"  {cold}: {rows[-1][1]:.3f} s", flush=True)
    return rows


def big_predict(folder: Path, gigabytes: float) -> dict:
    """`seqcli predict` of the MLP over a `gigabytes` GiB .npy: time and peak resident memory."""
    from numpy.lib.format import open_memmap

    rows = int(gigabytes * 2**30) // (784 * 4)
    data = folder / "big.npy"
    array = open_memmap(data, mode="w+", dtype=np.float32, shape=(rows, 784))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 1 << 16):
        stop = min(rows, start + (1 << 16))
        array[start:stop] = rng.random((stop - start, 784), dtype=np.float32)
    array.flush()
    del array
    output = folder / "big_out.npy"
    elapsed, rss = run_process([*SEQCLI, "predict", str(MODELS / "mlp.yaml"), str(data), "-o",
                                str(output), "-q", "--batch-size", "256"])
    size = data.stat().st_size
    data.unlink()
    output.unlink()
    return {"rows": rows, "bytes": size, "seconds": elapsed, "rss": rss}


# ----------------------------------------------------------------------------- report


def environment() -> list[str]:
    """The machine, the versions, numpy's BLAS, and the float32 FMA peak and GEMM rates
    measured here (the scale `seqcli bench` reports shares of)."""
    import numba
    from threadpoolctl import threadpool_info

    from seqcli.benchmark import blas_description, fma_peak, gemm_rate

    found = [f"numpy {np.__version__}", f"numba {numba.__version__}"]
    if have("onnxruntime"):
        import onnxruntime

        found.append(f"onnxruntime {onnxruntime.__version__}")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas_threads = max((lib.get("num_threads", 0) for lib in threadpool_info()), default=0)
    gemm = {threads: gemm_rate(threads, seconds=0.5) for threads in (1, 2)}
    peak = {threads: fma_peak(threads, seconds=0.5) for threads in (1, 2)}
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        + ", ".join(found) + ".",
        f"- numpy's BLAS: {blas_description()}, {blas_threads} threads by default; "
        + openblas_note(os.environ.get(DROPPED, "")),
        f"- float32 FMA peak, measured as `seqcli bench` does (a jitted loop of independent "
        f"multiply-adds on every thread at once, the best of short runs): "
        f"{peak[1]:.0f} GFLOP/s on 1 thread, {peak[2]:.0f} GFLOP/s on 2"
        + (" (the two CPUs share FMA units: hyperthreads, or a virtual machine's CPUs on "
           "shared cores)." if peak[2] < 1.6 * peak[1] else "."),
        f"- float32 numpy GEMM (1024^3), measured here: {gemm[1]:.0f} GFLOP/s on 1 thread "
        f"({100 * gemm[1] / peak[1]:.0f}% of the peak), {gemm[2]:.0f} GFLOP/s on 2.",
    ]


def openblas_note(dropped: str) -> str:
    """What the run did about the OpenBLAS overrides: `dropped` lists those the caller's
    environment set (NAME=VALUE, space-separated), empty when it set none."""
    if not dropped:
        return "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE not set."
    return (f"the caller's environment set {', '.join(dropped.split())}, dropped for this run "
            "(they pin OpenBLAS to an older kernel that halves numpy's float32 GEMM here).")


def peer_versions(versions: dict[str, str]) -> list[str]:
    """The training peers' versions, as their workers reported them."""
    found = [version for name, version in sorted(versions.items()) if name != "seqcli"]
    return [f"- Training peers: {', '.join(found)}."] if found else []


def report(env_lines, goals, rows, e2e, e2e_one, start_rows, big, fit, notes, elapsed) -> str:
    """RESULTS.md: the goals first, then each section that was measured."""
    out = ["# seqcli benchmarks", "",
           f"Written by `make bench` ({time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s). "
           "Ratios are seqcli's time over the peer's, measured side by side in this run "
           "(< 1: seqcli is faster). The machine is shared: absolute figures vary from run to "
           "run, ratios much less.", "", *env_lines, ""]
    out += [f"- Note: {note}" for note in notes] + ([""] if notes else [])
    out += ["## Goals (issue table)", "",
            "Issue 18's goals, each from this run's measurements below; whole processes on "
            "every core, in-process rows at 2 threads, training at 1 thread pinned to one CPU "
            "(and at 2 threads beside one busy process: seqcli's slowdown over Keras's).", "",
            *goals_markdown(goals), ""]
    if rows:
        out += throughput_markdown(rows)
    if e2e:
        out += ["## The guide's convnet end to end (whole processes, median)", "",
                *end_to_end_markdown([e2e, e2e_one]), ""]
    if start_rows:
        out += ["## Start-up (whole process, median)", "",
                "| command | seconds | × python -c pass |", "|---|---:|---:|"]
        base = start_rows[0][1]
        out += [f"| {name} | {seconds:.3f} | {seconds / base:.1f} |"
                for name, seconds in start_rows] + [""]
    if big:
        out += [f"## predict over a {big['bytes'] / 2**30:.1f} GiB input", "",
                f"`seqcli predict bench/models/mlp.yaml big.npy -o out.npy --batch-size 256` on "
                f"{big['rows']:,} rows of 784 float32: {big['seconds']:.1f} s "
                f"({big['bytes'] / big['seconds'] / 2**20:.0f} MB/s, "
                f"{big['rows'] / big['seconds']:,.0f} rows/s), peak resident memory "
                f"{big['rss'] / 2**20:.0f} MB.", ""]
    if fit:
        out += ["## Training (`fit`, whole epochs, median of the steady ones)", "",
                "Each framework in a process of its own on the same fixed random dataset "
                "(adam, categorical_crossentropy, batches of 128, accuracy tracked), "
                "interleaved rounds; each process's first epoch (compiling, or loading "
                "kernels) is dropped. One thread: seqcli `--threads 1`, Keras with "
                "XLA_FLAGS=\"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1\", "
                "PyTorch `torch.set_num_threads(1)`, each pinned to CPU 0 with taskset.", "",
                *training_markdown(fit), ""]
    other = other_targets(rows, start_rows, big)
    if other:
        out += ["## Other targets", "", *other, ""]
    out += ["## Reproduce", "",
            "    make bench            # about 6 minutes on a quiet machine; writes this file",
            "    .venv/bin/python bench/run.py --sections training --output /tmp/training.md",
            "    .venv/bin/seqcli bench configs/guide_convnet.yaml --batch-size 32 --per-layer",
            ""]
    return "\n".join(out)


def throughput_markdown(rows: list[dict]) -> list[str]:
    """The in-process throughput table."""
    out = ["## Throughput (in process, steady state, median time per batch)", "",
           "| model | batch | threads | seqcli samples/s | ms/batch | GFLOP/s | onnxruntime "
           "samples/s | ratio vs ORT | numpy samples/s | ratio vs numpy |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(row, key, fmt):
        return format(row[key], fmt) if key in row else "—"

    for row in rows:
        out.append(f"| {row['model']} | {row['batch']} | {row['threads']} | "
                   f"{row['seqcli_ips']:,.1f} | {row['seqcli_ms']:.3f} | {row['gflops']:.1f} | "
                   f"{cell(row, 'onnxruntime_ips', ',.1f')} | "
                   f"{cell(row, 'onnxruntime_ratio', '.2f')} | {cell(row, 'numpy_ips', ',.1f')}"
                   f" | {cell(row, 'numpy_ratio', '.2f')} |")
    return out + [""]


def end_to_end_markdown(results: list[dict]) -> list[str]:
    """One pair of rows (seqcli, the onnxruntime script) per measured image count."""
    out = ["| images | command | seconds | images/s | peak RSS | ratio |",
           "|---:|---|---:|---:|---:|---:|"]
    agree = []
    for result in results:
        if not result:
            continue
        images = result["images"]
        runs = [("`seqcli predict configs/guide_convnet.yaml x.npy -o y.npy`", "seqcli")]
        if "onnxruntime_s" in result:
            runs.append(("python script: onnxruntime on the exported graph, same file, "
                         "batches of 32", "onnxruntime"))
            agree.append(f"{result['agree']:.2g} ({images} image{'s' if images > 1 else ''})")
        for command, name in runs:
            ratio = (f"{result[f'{name}_s'] / result['onnxruntime_s']:.2f}"
                     if "onnxruntime_s" in result else "—")
            out.append(f"| {images} | {command} | {result[f'{name}_s']:.3f} | "
                       f"{images / result[f'{name}_s']:.0f} | "
                       f"{result[f'{name}_rss'] / 2**20:.0f} MB | {ratio} |")
    if agree:
        out += ["", f"Largest difference between the two outputs: {', '.join(agree)}."]
    return out


def processes_lines(start_rows: list[tuple[str, float]], e2e: dict | None,
                    e2e_one: dict | None) -> list[str]:
    """The README's table of whole processes: start-up, and the guide's convnet on a file."""
    names = {SUMMARY: "`seqcli summary` (guide convnet)",
             SMALL_PREDICT: "`seqcli predict`, small Dense model, warm kernel cache",
             "seqcli predict small convnet (8x28x28x1), warm cache":
                 "`seqcli predict`, small convnet, warm kernel cache",
             "seqcli predict small convnet (8x28x28x1), cold cache (empty NUMBA_CACHE_DIR)":
                 "`seqcli predict`, small convnet, first run ever (compiling kernels)"}
    lines = ["| command | seconds | peer |", "|---|---:|---|"]
    times = dict(start_rows)
    base = times.get("python -c pass (peer)")
    for name, shown in names.items():
        if name in times:
            peer = f"{times[name] / base:.0f}× `python -c pass`" if base else ""
            lines.append(f"| {shown} | {times[name]:.2f} | {peer} |")
    for result in (e2e, e2e_one):
        if result and "onnxruntime_s" in result:
            images = result["images"]
            lines.append(f"| the guide convnet on {images} image{'s' if images > 1 else ''}, "
                         f"file to file (onnxruntime script: {result['onnxruntime_s']:.2f} s) | "
                         f"{result['seqcli_s']:.2f} | "
                         f"{result['seqcli_s'] / result['onnxruntime_s']:.2f}× onnxruntime |")
    return lines


def other_targets(rows, start_rows, big) -> list[str]:
    """Targets of earlier issues that the goals table does not cover."""
    def mark(ok):
        return "holds" if ok else "**misses**"

    lines = []
    for batch, limit in ((4096, 1.1), (1, 2.0)):
        found = [r for r in rows if r["model"] == "mlp" and r["batch"] == batch
                 and "numpy_ratio" in r]
        if found:
            ratio = found[0]["numpy_ratio"]
            lines.append(f"- MLP at batch {batch}: {ratio:.2f}× numpy's `x @ W + b` chain "
                         f"(target ≤ {limit}×): {mark(ratio <= limit)}.")
    for model in ("lstm_text", "gru_series", "dcgan_generator"):
        found = [r for r in rows if r["model"] == model and r["batch"] == 32
                 and "onnxruntime_ratio" in r]
        for row in found:
            ratio = row["onnxruntime_ratio"]
            lines.append(f"- {model} at batch 32, {row['threads']} thread(s): {ratio:.2f}× "
                         f"onnxruntime's time (target ≤ 1.0×): {mark(ratio <= 1.0)}.")
    times = dict(start_rows)
    checks = [("seqcli predict small convnet (8x28x28x1), warm cache", 0.8),
              ("seqcli predict small convnet (8x28x28x1), cold cache (empty NUMBA_CACHE_DIR)", 15)]
    for name, limit in checks:
        if name in times:
            lines.append(f"- {name}: {times[name]:.2f} s (target < {limit} s): "
                         f"{mark(times[name] < limit)}.")
    if big:
        lines.append(f"- predict over {big['bytes'] / 2**30:.1f} GiB: peak RSS "
                     f"{big['rss'] / 2**20:.0f} MB (target < 500 MB): "
                     f"{mark(big['rss'] < 500 * 2**20)}.")
    return lines


# ----------------------------------------------------------------------------- main

SECTIONS = ("throughput", "e2e", "startup", "big", "training", "dask")


def parse_sections(text: str) -> tuple[str, ...]:
    """The comma-separated section names of --sections, checked."""
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none)'}:"
                                         f" choose among {', '.join(SECTIONS)}")
    return chosen


def missing_reasons(sections: tuple[str, ...], ort: str | None) -> dict[str, str]:
    """Why a section has no figures for the goals: skipped, or its peer is missing."""
    reasons = {name: "not measured: section skipped (--sections)" for name in SECTIONS
               if name not in sections}
    if ort:
        for name in ("throughput", "e2e"):
            reasons.setdefault(name, f"peer not installed: {ort}")
    return reasons


def inference(sections, folder: Path, ort: str | None, quick: bool) -> dict:
    """The in-process throughput rows, the whole-process runs and the big predict."""
    seconds, rounds = (0.3, 1) if quick else (1.5, 3)
    measured: dict = {"rows": [], "e2e": None, "e2e_one": None, "start": [], "big": None}
    if "throughput" in sections:
        print("throughput", flush=True)
        rows = measured["rows"]
        for model_file, cases, with_numpy in (
                (CONVNET, [(b, t) for t in (1, 2) for b in (1, 8, 32)], False),
                (MODELS / "mlp.yaml", [(1, 2), (64, 2), (4096, 2)], True),
                (MODELS / "mobilenet_style.yaml", [(1, 2), (32, 2)], False),
                (MODELS / "conv1d_text.yaml", [(1, 2), (32, 2)], False),
                (MODELS / "lstm_text.yaml", [(32, 1), (32, 2)], False),
                (MODELS / "gru_series.yaml", [(1, 1), (32, 2)], False),
                (MODELS / "dcgan_generator.yaml", [(1, 1), (32, 2)], False)):
            throughput(rows, model_file, cases, folder, seconds, rounds, ort, with_numpy)
    if "e2e" in sections:
        print("end to end", flush=True)
        for key, images in (("e2e", 256), ("e2e_one", 1)):
            measured[key] = end_to_end(folder, ort, 1 if quick else 7, images)
            print(f"  {measured[key]}", flush=True)
    if "startup" in sections:
        print("start-up", flush=True)
        measured["start"] = startup(folder, 3 if quick else 7, 1 if quick else 2)
    if "big" in sections:
        print("big predict", flush=True)
        measured["big"] = big_predict(folder, 0.25 if quick else 4.0)
        print(f"  {measured['big']}", flush=True)
    return measured


def main() -> None:
    drop_openblas_overrides()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="where to write the report (default: "
                        "bench/RESULTS.md for a run of every section; a run of some sections "
                        "only prints it)")
    parser.add_argument("--quick", action="store_true", help="shorter timings (a smoke run)")
    parser.add_argument("--sections", type=parse_sections, default=SECTIONS,
                        help=f"comma-separated, among {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the Python that runs Keras and PyTorch (default: this one)")
    args = parser.parse_args()
    output = args.output or (str(REPO / "bench" / "RESULTS.md")
                             if set(args.sections) == set(SECTIONS) else None)
    began = time.perf_counter()
    if os.environ.get(DROPPED):
        print(f"note: {openblas_note(os.environ[DROPPED])}", flush=True)
    ort = ort_note()
    notes = [f"onnxruntime peer skipped: {ort}."] if ort else []
    print("environment", flush=True)
    env_lines = environment()
    with tempfile.TemporaryDirectory(prefix="seqcli-bench-") as name:
        folder = Path(name)
        measured = inference(args.sections, folder, ort, args.quick)
        fit, versions = {}, {}
        if "training" in args.sections:
            print("training", flush=True)
            fit, versions = measure_training(folder, args.peer_python, 1 if args.quick else 2,
                                             args.quick, CASES)
        cluster = None
        if "dask" in args.sections:  # issue 19: --dask local:2 beside one process
            from bench.dask_bench import dask_figures, dask_markdown

            print("dask", flush=True)
            cluster = dask_markdown(dask_figures(folder, 256 if args.quick else 1024,
                                                 2 if args.quick else 5))
    env_lines += peer_versions(versions)
    goals = issue_goals(measured["rows"], measured["e2e"], measured["e2e_one"],
                        dict(measured["start"]), fit, missing_reasons(args.sections, ort))
    text = report(env_lines, goals, measured["rows"], measured["e2e"], measured["e2e_one"],
                  measured["start"], measured["big"], fit, notes, time.perf_counter() - began)
    if cluster:
        text += "\n" + cluster
    if output:
        Path(output).write_text(text)
    if output and not args.output and not args.quick:  # a full run: the README's too
        missing = update_readme(REPO / "README.md", {
            "goals": [f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}:", "",
                      *goals_markdown(goals)],
            "throughput": throughput_lines(measured["rows"]),
            "processes": processes_lines(measured["start"], measured["e2e"],
                                         measured["e2e_one"]),
            "training": training_markdown(fit)})
        if missing:
            print(f"note: README.md has no block for {', '.join(missing)}; not rewritten",
                  flush=True)
    print()
    print(text)


if __name__ == "__main__":
    main()
