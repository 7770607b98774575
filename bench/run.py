"""`make bench`: seqcli beside its peers, measured side by side in one run, written as Markdown
to bench/RESULTS.md (and printed). Peers: onnxruntime on the graph `seqcli export-onnx` writes,
and plain numpy (the MLP as an `x @ W + b` chain). A peer that is not installed is skipped with
a note. The machine is shared and noisy: every figure that matters is a ratio against a peer
measured in the same run, interleaved with it (rounds of seqcli, peer, peer, ...), medians.

    make bench                 # = env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/run.py
    .venv/bin/python bench/run.py [--quick] [--output FILE] [--skip-big]
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


def end_to_end(folder: Path, ort: str | None, repeats: int) -> dict:
    """`seqcli predict` of 256 images against a Python script running onnxruntime on the same
    .npy, both whole processes, interleaved; medians."""
    data = folder / "convnet256.npy"
    rng = np.random.default_rng(0)
    np.save(data, (rng.random((256, 250, 250, 3), dtype=np.float32) * 255))
    ours = [*SEQCLI, "predict", str(CONVNET), str(data), "-o", str(folder / "ours.npy"), "-q"]
    result = {"images": 256}
    run_process(ours)  # warm the kernel cache and the page cache
    peer = None
    if ort is None:
        script = folder / "ort_predict.py"
        script.write_text(ORT_SCRIPT)
        onnx_file = folder / "guide_convnet_e2e.onnx"
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
        ("seqcli summary configs/guide_convnet.yaml", [*SEQCLI, "summary", str(CONVNET)]),
        ("seqcli predict Dense stack (8x4), warm cache",
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
    import numba
    from threadpoolctl import threadpool_info

    from seqcli.benchmark import blas_description, gemm_rate

    versions = [f"numpy {np.__version__}", f"numba {numba.__version__}"]
    if have("onnxruntime"):
        import onnxruntime

        versions.append(f"onnxruntime {onnxruntime.__version__}")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    overrides = [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if name in os.environ]
    blas_threads = max((lib.get("num_threads", 0) for lib in threadpool_info()), default=0)
    gemm = {threads: gemm_rate(threads, seconds=0.5) for threads in (1, 2)}
    lines = [
        f"- Machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        + ", ".join(versions) + ".",
        f"- numpy's BLAS: {blas_description()}, {blas_threads} threads by default; "
        + ("OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for this run (as `make bench` does)."
           if not overrides else f"{' and '.join(overrides)} set in this run "
           "(they pin OpenBLAS to an older kernel: numpy and seqcli's GEMMs slow down alike)."),
        f"- float32 numpy GEMM (1024^3), measured here: {gemm[1]:.0f} GFLOP/s on 1 thread, "
        f"{gemm[2]:.0f} GFLOP/s on 2.",
    ]
    return lines


def report(env_lines, rows, e2e, start_rows, big, notes, elapsed) -> str:
    out = ["# seqcli benchmarks", "",
           f"Written by `make bench` ({time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s). "
           "Ratios are seqcli's time over the peer's, measured side by side in this run "
           "(< 1: seqcli is faster). The machine is shared: absolute figures vary from run to "
           "run, ratios much less.", "", *env_lines, ""]
    for note in notes:
        out.append(f"- Note: {note}")
    if notes:
        out.append("")
    out += ["## Throughput (in process, steady state, median time per batch)", "",
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
    out += ["", "## The guide's convnet end to end (256 images, whole processes, median)", ""]
    if "onnxruntime_s" in e2e:
        out += ["| command | seconds | images/s | peak RSS | ratio |", "|---|---:|---:|---:|---:|",
                f"| `seqcli predict configs/guide_convnet.yaml x.npy -o y.npy` | "
                f"{e2e['seqcli_s']:.2f} | {256 / e2e['seqcli_s']:.0f} | "
                f"{e2e['seqcli_rss'] / 2**20:.0f} MB | "
                f"{e2e['seqcli_s'] / e2e['onnxruntime_s']:.2f} |",
                f"| python script: onnxruntime on the exported graph, same file, batches of 32 | "
                f"{e2e['onnxruntime_s']:.2f} | {256 / e2e['onnxruntime_s']:.0f} | "
                f"{e2e['onnxruntime_rss'] / 2**20:.0f} MB | 1.00 |", "",
                f"Largest difference between the two outputs: {e2e['agree']:.2g}."]
    else:
        out.append(f"seqcli: {e2e['seqcli_s']:.2f} s (onnxruntime peer skipped, see notes).")
    out += ["", "## Start-up (whole process, median)", "",
            "| command | seconds | × python -c pass |", "|---|---:|---:|"]
    base = start_rows[0][1]
    for name, seconds in start_rows:
        out.append(f"| {name} | {seconds:.3f} | {seconds / base:.1f} |")
    if big:
        out += ["", f"## predict over a {big['bytes'] / 2**30:.1f} GiB input", "",
                f"`seqcli predict bench/models/mlp.yaml big.npy -o out.npy --batch-size 256` on "
                f"{big['rows']:,} rows of 784 float32: {big['seconds']:.1f} s "
                f"({big['bytes'] / big['seconds'] / 2**20:.0f} MB/s, "
                f"{big['rows'] / big['seconds']:,.0f} rows/s), peak resident memory "
                f"{big['rss'] / 2**20:.0f} MB."]
    out += ["", "## Targets", ""] + targets(rows, e2e, start_rows, big)
    out += ["", "## Reproduce", "", "    make bench            # about 2 minutes; writes this "
            "file", "    .venv/bin/seqcli bench configs/guide_convnet.yaml --batch-size 32 "
            "--per-layer", ""]
    return "\n".join(out)


def targets(rows, e2e, start_rows, big) -> list[str]:
    def mark(ok):
        return "holds" if ok else "**misses**"

    lines = []
    if "onnxruntime_s" in e2e:
        ratio = e2e["seqcli_s"] / e2e["onnxruntime_s"]
        lines.append(f"- Convnet, 256 images end to end: {ratio:.2f}× onnxruntime's time "
                     f"(target ≤ 1.25×): {mark(ratio <= 1.25)}.")
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
    checks = [("seqcli summary configs/guide_convnet.yaml", 0.3),
              ("seqcli predict Dense stack (8x4), warm cache", 0.8),
              ("seqcli predict small convnet (8x28x28x1), warm cache", 0.8),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--quick", action="store_true", help="shorter timings (a smoke run)")
    parser.add_argument("--skip-big", action="store_true", help="no 4 GiB predict")
    args = parser.parse_args()
    seconds, rounds = (0.3, 1) if args.quick else (1.5, 3)
    began = time.perf_counter()
    from seqcli.runtime.compiled import keep_freed_memory

    keep_freed_memory()  # the allocator setting `seqcli predict` runs with (peers share it)
    notes = []
    ort = ort_note()
    if ort:
        notes.append(f"onnxruntime peer skipped: {ort}.")
    print("environment", flush=True)
    env_lines = environment()
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="seqcli-bench-") as name:
        folder = Path(name)
        print("throughput", flush=True)
        throughput(rows, CONVNET, [(b, t) for t in (1, 2) for b in (1, 8, 32)], folder,
                   seconds, rounds, ort)
        throughput(rows, MODELS / "mlp.yaml", [(1, 2), (64, 2), (4096, 2)], folder, seconds,
                   rounds, ort, with_numpy=True)
        throughput(rows, MODELS / "mobilenet_style.yaml", [(1, 2), (32, 2)], folder, seconds,
                   rounds, ort)
        throughput(rows, MODELS / "lstm_text.yaml", [(32, 1), (32, 2)], folder, seconds,
                   rounds, ort)
        throughput(rows, MODELS / "gru_series.yaml", [(1, 1), (32, 2)], folder, seconds,
                   rounds, ort)
        throughput(rows, MODELS / "dcgan_generator.yaml", [(1, 1), (32, 2)], folder, seconds,
                   rounds, ort)
        print("end to end", flush=True)
        e2e = end_to_end(folder, ort, 1 if args.quick else 7)
        print(f"  {e2e}", flush=True)
        print("start-up", flush=True)
        start_rows = startup(folder, 3 if args.quick else 7, 1 if args.quick else 2)
        big = None
        if not args.skip_big:
            print("big predict", flush=True)
            big = big_predict(folder, 0.25 if args.quick else 4.0)
            print(f"  {big}", flush=True)
    text = report(env_lines, rows, e2e, start_rows, big, notes, time.perf_counter() - began)
    Path(args.output).write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
