"""Throughput, latency and FLOP/s of a model on this machine (`seqcli bench`), beside two rates
measured in the same process on the same number of threads: the CPU's float32 FMA peak (a
jitted loop of independent multiply-adds, no memory traffic) and a plain float32 GEMM."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from seqcli.kernels.numba_startup import numba_ready
from seqcli.runtime.model import Sequential


@dataclass
class LayerTiming:
    """One layer run alone on the batch, steady state."""

    path: str
    type: str
    output_shape: list
    macs: int
    """Multiply-accumulates per sample."""
    ms: float
    """Median time for the batch, milliseconds."""
    gflops: float
    """2 x MACs x batch / time."""
    gemm_share: float
    """gflops / the machine's GEMM rate."""
    peak_share: float
    """gflops / the machine's measured FMA peak."""
    time_share: float
    """This layer's part of the summed layer times."""


@dataclass
class BenchResult:
    """What `run_benchmark` measured; `to_dict()` is `seqcli bench --json`'s document."""

    model: str
    name: str
    input_shape: list
    batch_size: int
    threads: int
    blas: str
    macs_per_sample: int
    load_s: float
    """Reading the model file and its weights (or initialising them)."""
    first_run_s: float
    """The first batch: loading kernels from numba's cache, or compiling them."""
    compiled: int
    """Kernels numba compiled during the first batch (0: all came from its cache)."""
    runs: int
    images_per_s: float
    latency_ms: dict
    """p50, p90, p99 and mean time per batch."""
    gflops: float
    gemm_gflops: float
    """float32 numpy GEMM (1024^3) on the same threads, same process."""
    gemm_share: float
    peak_gflops: float
    """The float32 FMA peak of the same threads, measured (`fma_peak`)."""
    peak_share: float
    layers: list[LayerTiming] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary."""
        return asdict(self)


def gemm_rate(threads: int, size: int = 1024, seconds: float = 0.3) -> float:
    """GFLOP/s of numpy's float32 `a @ b` (size^3) with BLAS on `threads` threads; best run."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    best = math.inf
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=out)
        end = time.perf_counter() + seconds
        runs = 0
        while runs < 3 or time.perf_counter() < end:
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
            runs += 1
    return 2.0 * size**3 / best / 1e9


FMA_CHAINS = 256
"""Independent float32 accumulators of the peak loop: 16 of AVX-512's 32 vector registers, more
chains than the FMA units' latency times their count, so that none waits for a result (a CPU
with 16 vector registers of 8 lanes spills some, and reads below its peak)."""


@njit(fastmath=True, cache=True, nogil=True)
def _fma_loop(rounds):
    """`rounds` passes of acc = acc * 0.999 + 0.001 over FMA_CHAINS accumulators (2 FLOP each)."""
    acc = np.zeros(FMA_CHAINS, np.float32)
    for _ in range(rounds):
        for chain in range(FMA_CHAINS):
            acc[chain] = acc[chain] * np.float32(0.999) + np.float32(0.001)
    return acc[0]


def fma_peak(threads: int, seconds: float = 0.3, run_seconds: float = 0.005) -> float:
    """The float32 FMA peak of `threads` threads, GFLOP/s: the best rate of the jitted loop
    (the compiler keeps its accumulators in vector registers: one FMA per 16 lanes on AVX-512)
    run on that many threads at once, up to the CPUs this process may run on, over repeated
    runs of about `run_seconds` (`seconds` in all; the best, since other processes can only
    slow a run down). Measured together, not one thread's rate times the threads: CPUs that
    share a core's FMA units (hyperthreads, a virtual machine's CPUs on one core) count once."""
    import threading

    numba_ready()  # numba set up as for the kernels (their vector width, their cache)
    _fma_loop(1)  # compiled, or loaded from numba's cache
    start = time.perf_counter()
    _fma_loop(1000)
    rounds = max(1000, int(1000 * run_seconds / max(time.perf_counter() - start, 1e-9)))
    together = max(1, min(threads, _usable_cpus()))
    best = math.inf
    end = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < end:
        helpers = [threading.Thread(target=_fma_loop, args=(rounds,))
                   for _ in range(together - 1)]
        start = time.perf_counter()
        for helper in helpers:
            helper.start()
        _fma_loop(rounds)
        for helper in helpers:
            helper.join()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return 2.0 * FMA_CHAINS * rounds * together / best / 1e9


def _usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def blas_description() -> str:
    """numpy's BLAS as threadpoolctl sees it: `openblas 0.3.x (SkylakeX)` (another library's,
    such as scipy's, only when numpy's is not found)."""
    from threadpoolctl import threadpool_info

    found = [library for library in threadpool_info() if library.get("user_api") == "blas"]
    if not found:
        return "unknown"
    library = min(found, key=lambda library: "numpy" not in str(library.get("filepath", "")))
    architecture = library.get("architecture")
    text = f"{library.get('internal_api')} {library.get('version') or ''}".strip()
    return f"{text} ({architecture})" if architecture else text


class _CompileCounter:
    """Counts numba compilations of seqcli kernels while installed (cache loads do not count)."""

    def __init__(self):
        from numba.core import event

        counter = self

        class Listener(event.Listener):
            def on_start(self, ev):
                function = getattr(ev.data.get("dispatcher"), "py_func", None)
                if getattr(function, "__module__", "").startswith("seqcli."):
                    counter.count += 1

            def on_end(self, ev):
                pass

        self.count = 0
        self._event = event
        self._listener = Listener()

    def __enter__(self) -> _CompileCounter:
        self._event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc_info) -> None:
        self._event.unregister("numba:compile", self._listener)


def timed_runs(run, seconds: float, min_runs: int) -> list[float]:
    """Seconds per call of `run()`, called for `seconds` and at least `min_runs` times."""
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < end:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _layer_timings(model: Sequential, x: np.ndarray, seconds: float, gemm: float,
                   peak: float):
    """Each layer timed alone on its real input (the previous layer's output)."""
    weights = model.weight_arrays
    batch = x.shape[0]
    rows = []
    for info in model.built_model.leaves():
        own = info.own_weights(weights)
        output = info.layer.forward(own, x)
        times = timed_runs(lambda info=info, own=own, x=x: info.layer.forward(own, x),
                            seconds, 3)
        median = float(np.median(times))
        macs = int(info.macs or 0)
        gflops = 2.0 * macs * batch / median / 1e9 if median > 0 else 0.0
        rows.append(LayerTiming(info.path, info.layer.type, [None, *info.output_shape], macs,
                                median * 1e3, gflops, _share(gflops, gemm),
                                _share(gflops, peak), 0.0))
        x = output
    total = sum(row.ms for row in rows) or 1.0
    for row in rows:
        row.time_share = row.ms / total
    return rows


def run_benchmark(model_path: str, *, batch_size: int = 32, threads: int | None = None,
                  input_shape: tuple | None = None, weights: str | None = None,
                  per_layer: bool = False, seconds: float = 2.0, seed: int = 0,
                  allow_outside: bool = False, base_dir: Path | None = None) -> BenchResult:
    """Run the model on random input batches: first batch (kernel load or compile) apart, then
    the steady state for `seconds`; optionally each layer alone; and a GEMM for scale. A
    model read from stdin resolves its paths against `base_dir` (default: the working
    directory)."""
    from threadpoolctl import threadpool_limits

    from seqcli.kernels.threads import set_threads, thread_count

    before = thread_count()
    limits = threadpool_limits(threads) if threads else None  # BLAS, until restored below
    try:
        if threads:
            set_threads(threads)
        return _run(model_path, batch_size, thread_count(), input_shape, weights, per_layer,
                    seconds, seed, allow_outside, base_dir)
    finally:
        set_threads(before)
        if limits is not None:
            limits.restore_original_limits()


def _run(model_path, batch_size, threads, input_shape, weights, per_layer, seconds, seed,
         allow_outside, base_dir) -> BenchResult:
    from seqcli.config.load import load_model
    from seqcli.runtime.memory import check_batch_memory

    start = time.perf_counter()
    loaded = load_model(model_path, allow_outside=allow_outside, base_dir=base_dir)
    if weights is None and loaded.weights_not_written():
        _time_initial_weights(loaded)
    model = Sequential.from_loaded(loaded, weights)
    model.build(input_shape or loaded.input_shape)
    built = model.built_model
    load_s = time.perf_counter() - start
    check_batch_memory(built, batch_size)
    rng = np.random.default_rng(seed)
    shape = (batch_size, *built.input_shape)
    if built.takes_ids:  # word ids for an Embedding
        x = rng.integers(0, built.leaves()[0].layer.input_dim, shape)
    else:
        x = rng.standard_normal(shape, dtype=np.float32)

    with _CompileCounter() as compiles:
        start = time.perf_counter()
        model(x)
        first_run_s = time.perf_counter() - start
    model(x)  # caches and thread pools settled
    times = timed_runs(lambda: model(x), seconds, 5)
    gemm = gemm_rate(threads)
    peak = fma_peak(threads, seconds=min(0.3, max(0.05, seconds / 4)))
    mean = float(np.mean(times))
    macs = int(built.macs or 0)
    gflops = 2.0 * macs * batch_size / mean / 1e9
    result = BenchResult(
        model=model_path, name=built.name, input_shape=[None, *built.input_shape],
        batch_size=batch_size, threads=threads, blas=blas_description(), macs_per_sample=macs,
        load_s=load_s, first_run_s=first_run_s, compiled=compiles.count, runs=len(times),
        images_per_s=batch_size / mean,
        latency_ms={"p50": float(np.percentile(times, 50)) * 1e3,
                    "p90": float(np.percentile(times, 90)) * 1e3,
                    "p99": float(np.percentile(times, 99)) * 1e3, "mean": mean * 1e3},
        gflops=gflops, gemm_gflops=gemm, gemm_share=_share(gflops, gemm), peak_gflops=peak,
        peak_share=_share(gflops, peak))
    if per_layer:
        result.layers = _layer_timings(model, x, max(0.05, seconds / 10), gemm, peak)
    return result


def _share(rate: float, whole: float) -> float:
    """rate / whole, 0 when the whole is unknown."""
    return rate / whole if whole else 0.0


def _time_initial_weights(loaded) -> None:
    """Time the model on its initial weights, saying so, when its weights file is not written
    yet: the speed does not depend on their values."""
    import warnings

    from seqcli.errors import SeqcliWarning

    warnings.warn(f"{loaded.weights_not_written()}; timing the model with initial weights "
                  "(its speed does not depend on their values)", SeqcliWarning, stacklevel=2)
    loaded.weights_path = None


def format_result(result: BenchResult) -> str:
    """The human-readable report of `seqcli bench`."""
    lat = result.latency_ms
    first = (f"{result.first_run_s:.2f} s, compiling {result.compiled} kernels (cached "
             "for next time)" if result.compiled else
             f"{result.first_run_s:.3f} s (kernels loaded from numba's cache)")
    lines = [
        f"model      {result.model} ({result.name}), input {_shape(result.input_shape)}, "
        f"batch {result.batch_size}, {result.threads} threads, BLAS {result.blas}",
        f"load       {result.load_s:.3f} s",
        f"first run  {first}",
        f"steady     {result.images_per_s:,.1f} images/s over {result.runs} batches; latency "
        f"per batch p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, p99 {lat['p99']:.3f} ms",
        f"compute    {2 * result.macs_per_sample / 1e6:,.1f} MFLOP/image, "
        f"{result.gflops:,.1f} GFLOP/s = {100 * result.peak_share:.0f}% of this machine's "
        f"float32 FMA peak ({result.peak_gflops:,.0f} GFLOP/s on {result.threads} threads, "
        f"measured), {100 * result.gemm_share:.0f}% of its float32 GEMM "
        f"({result.gemm_gflops:,.0f} GFLOP/s)",
    ]
    if result.layers:
        width = max(len("layer"), *(len(row.path) for row in result.layers))
        lines.append("")
        lines.append(f"{'layer':<{width}}  {'type':<22} {'MFLOP/img':>10} {'ms/batch':>9} "
                     f"{'GFLOP/s':>8} {'%peak':>6} {'%GEMM':>6} {'%time':>6}")
        for row in result.layers:
            lines.append(f"{row.path:<{width}}  {row.type:<22} {2 * row.macs / 1e6:>10.2f} "
                         f"{row.ms:>9.3f} {row.gflops:>8.1f} {100 * row.peak_share:>6.0f} "
                         f"{100 * row.gemm_share:>6.0f} {100 * row.time_share:>6.1f}")
    return "\n".join(lines) + "\n"


def _shape(shape: list) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
