"""Activation kernels (codes from `seqcli.activations`), the bias+activation epilogue every
kernel fuses, and what all kernels share: the threads their parallel loops run on.

Numba caches each jitted function by its own file only: a kernel keeps its cached copy of a
helper from another kernel file (here, conv.py, normalization.py) after that file changes.
`make install` (and so `make test`) rebuilds every cached kernel once any kernel source
changed (`python -m seqcli.warmup`); elsewhere, run that after editing a shared helper."""

from __future__ import annotations

import importlib.util
import math
import queue
import sys
import threading

import numpy as np
from llvmlite import ir
from numba import __version__ as numba_version
from numba import config, njit, types
from numba.extending import intrinsic

from seqcli.activations import ACTIVATION_CODES, ACTIVATIONS

# Integer codes as module constants: numba freezes them into the compiled code.
_LINEAR = ACTIVATION_CODES["linear"]
_RELU = ACTIVATION_CODES["relu"]
_RELU6 = ACTIVATION_CODES["relu6"]
_SIGMOID = ACTIVATION_CODES["sigmoid"]
_HARD_SIGMOID = ACTIVATION_CODES["hard_sigmoid"]
_TANH = ACTIVATION_CODES["tanh"]
_SOFTMAX = ACTIVATION_CODES["softmax"]
_LOG_SOFTMAX = ACTIVATION_CODES["log_softmax"]
_ELU = ACTIVATION_CODES["elu"]
_SELU = ACTIVATION_CODES["selu"]
_GELU = ACTIVATION_CODES["gelu"]
_SILU = ACTIVATION_CODES["silu"]
_HARD_SILU = ACTIVATION_CODES["hard_silu"]
_SOFTPLUS = ACTIVATION_CODES["softplus"]
_SOFTSIGN = ACTIVATION_CODES["softsign"]
_LEAKY_RELU = ACTIVATION_CODES["leaky_relu"]
_EXPONENTIAL = ACTIVATION_CODES["exponential"]
_MISH = ACTIVATION_CODES["mish"]
_N_CODES = len(ACTIVATIONS)

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_LEAKY_SLOPE = 0.2  # Keras 3 default negative_slope
_INV_SQRT2 = 0.7071067811865476

# A zero-length bias: "no bias" for `bias_activation_inplace`.
_NO_BIAS = np.zeros(0, dtype=np.float32)


# ----------------------------------------------------------------------------- shared helpers


def _as_f32(x, name: str, ndim: int | None = None) -> np.ndarray:
    """`x` as a C-contiguous float32 array (no copy if already one); ValueError on wrong rank."""
    a = np.asarray(x, dtype=np.float32, order="C")  # as np.ascontiguousarray, but keeps 0-d
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _check_code(code) -> int:
    """`code` as a Python int, ValueError unless it is a known activation code."""
    c = int(code)
    if c != code or not 0 <= c < _N_CODES:
        raise ValueError(f"unknown activation code {code!r} (expected 0..{_N_CODES - 1})")
    return c


def _bias_or_empty(bias, units: int) -> np.ndarray:
    """`bias` as a float32 (units,) array, or the zero-length "no bias" array if `bias` is None."""
    if bias is None:
        return _NO_BIAS
    b = _as_f32(bias, "bias", 1)
    if b.shape[0] != units:
        raise ValueError(f"bias must have shape ({units},), got {b.shape}")
    return b


_NUMBA_READY: list = []  # [True] once prepared


def _numba_ready() -> None:
    """Call before the first numba kernel runs. Two start-up costs that seqcli's kernels do not
    need are avoided:

    - Loading a kernel from numba's cache first "refreshes" numba's compiler: it imports and
      registers every implementation numba has (0.1-0.2 s), none of which a compiled kernel
      uses; it needs only numba's runtime (NRT) linked in. seqcli's kernels are loaded with just
      that; compiling one (a cache miss) still refreshes everything first, as numba does.
    - That refresh loads numba's array-math registry, which imports scipy.linalg (0.1-0.3 s)
      only to choose BLAS for np.correlate/np.convolve inside jitted code; seqcli never uses
      them, so where scipy is installed that registry is loaded with the probe answered "no"
      before a compile (np.dot and the rest of numba's linear algebra still import scipy when
      they are compiled).

    The runtime itself comes from object code cached beside the kernels (`_runtime_ready`), and
    typing an array argument skips numba's check against numpy's masked arrays while numpy.ma
    is not imported (`_typeof_array`): asking numpy for it imports it (6 ms)."""
    if _NUMBA_READY:
        return
    _NUMBA_READY.append(True)
    try:
        from numba.core.caching import Cache
        from numba.core.runtime import rtsys

        full_load = Cache.load_overload
        Cache._guard_against_spurious_io_errors  # noqa: B018 - both used below
        Cache._load_overload  # noqa: B018
    except (ImportError, AttributeError):  # another numba: its own loading, unchanged
        return

    def load_overload(cache, sig, target_context):
        if not getattr(cache._py_func, "__module__", "").startswith("seqcli."):
            return full_load(cache, sig, target_context)
        if not rtsys._init:
            _runtime_ready(target_context, cache._cache_path)
        with cache._guard_against_spurious_io_errors():
            found = cache._load_overload(sig, target_context)
            if found is not None:
                return found
        _array_math_without_scipy()  # numba compiles it next
        return None

    Cache.load_overload = load_overload
    _typeof_array()


def _typeof_array() -> None:
    """numba types an ndarray argument as before, minus its masked-array refusal while numpy.ma
    is not imported (no masked array can exist then); anything else goes to numba's own."""
    try:
        from numba.core.typing.typeof import typeof_impl
        from numba.np import numpy_support
    except ImportError:
        return
    numba_typeof = typeof_impl.dispatch(np.ndarray)

    def typeof_array(value, context):
        if type(value) is not np.ndarray or "numpy.ma" in sys.modules:
            return numba_typeof(value, context)
        try:
            dtype = numpy_support.from_dtype(value.dtype)
            layout = numpy_support.map_layout(value)
        except Exception:  # numba's own refusal, message and all
            return numba_typeof(value, context)
        return types.Array(dtype, value.ndim, layout, readonly=not value.flags.writeable)

    typeof_impl.register(np.ndarray)(typeof_array)


_RUNTIME_FROM_CACHE: list = []  # [True] once numba's runtime came from seqcli's cached copy


def _runtime_ready(context, folder: str) -> None:
    """Set numba's runtime (NRT) up as `rtsys.initialize` does, but with its functions taken
    from object code cached in `folder` (next to seqcli's kernels) rather than compiled: that
    compile is LLVM's optimiser and code generator's first run in the process, some 15 ms of
    every start. Without a cached copy they are compiled and then cached; with anything
    unexpected (another numba, an unreadable file), numba sets its runtime up itself."""
    import hashlib
    from pathlib import Path

    import llvmlite
    from llvmlite import binding as ll
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import _nrt_python, nrtdynmod, rtsys

    codegen = context.codegen()
    key = hashlib.sha256(repr((numba_version, llvmlite.__version__,
                               codegen.magic_tuple())).encode()).hexdigest()[:16]
    path = Path(folder) / f"seqcli-nrt-{key}.o"
    with global_compiler_lock:
        if rtsys._init:
            return
        try:
            for name, address in _nrt_python.c_helpers.items():
                ll.add_symbol(name if name.startswith("_") else "NRT_" + name, address)
            if config.NRT_STATS:
                _nrt_python.memsys_enable_stats()
            library = _cached_runtime(codegen, path)
            if library is None:
                module, library = nrtdynmod.create_nrt_module(context)
                library.add_ir_module(module)
                library.enable_object_caching()
                library.finalize()
                _cache_runtime(library, path)
            else:
                _RUNTIME_FROM_CACHE.append(True)
            rtsys._library, rtsys._init = library, True
        except Exception:  # another numba's internals: its own set-up
            rtsys.initialize(context)


def _cached_runtime(codegen, path):
    """The runtime library from its cached object code, or None."""
    try:
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 + size:
            return None
        return codegen.unserialize_library(("nrt", "object", (data[8:8 + size],
                                                              data[8 + size:])))
    except (OSError, ValueError, RuntimeError):
        return None


def _cache_runtime(library, path) -> None:
    """Write the runtime's object code and bitcode (numba's own cache format for a library)."""
    from seqcli.errors import OutputError
    from seqcli.io.atomic import atomic_output

    _, _, (object_code, bitcode) = library.serialize_using_object_code()
    try:
        with atomic_output(path) as out:
            out.write(len(object_code).to_bytes(8, "little") + object_code + bitcode)
    except (OSError, OutputError):  # a read-only cache folder: compiled again next time
        pass


def _array_math_without_scipy() -> None:
    """Load numba's array-math registry with scipy.linalg hidden (see `_numba_ready`)."""
    probe = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or probe in sys.modules:
        return
    if importlib.util.find_spec("scipy") is None:
        return
    sys.modules[probe] = None  # `import` of it raises ImportError, its parents left unloaded
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules[probe]


# ----------------------------------------------------------------------------- threads
# The kernels' parallel loops hand out their items (rows, tiles) through an atomic counter to
# whichever threads come: the calling thread and the pool's workers that wake up in time. The
# caller waits only for workers that took part, never for one the OS has not scheduled yet (on
# a busy machine numba's fork-join prange waits a whole time slice for it, at every layer).


class _Job:
    """One parallel kernel call: the workers that joined it, and the first error raised."""

    __slots__ = ("kernel", "args", "done", "active", "closed", "error")

    def __init__(self, kernel, args):
        self.kernel, self.args = kernel, args
        self.done = threading.Condition(threading.Lock())
        self.active, self.closed, self.error = 0, False, None


class _Pool:
    """Worker threads that join kernel calls (`run`); started on first use, daemons."""

    def __init__(self):
        self.threads = max(1, int(config.NUMBA_NUM_THREADS))
        self.queues: list[queue.SimpleQueue] = []
        self.lock = threading.Lock()

    def run(self, kernel, args: tuple, workers: int) -> None:
        """kernel(*args) on this thread and up to `workers - 1` pool threads."""
        helpers = min(workers, self.threads) - 1
        if helpers <= 0:
            kernel(*args)
            return
        self._start(helpers)
        job = _Job(kernel, args)
        for worker in self.queues[:helpers]:
            worker.put(job)
        try:
            kernel(*args)
        finally:
            with job.done:
                job.closed = True
                while job.active:
                    job.done.wait()
        if job.error is not None:
            raise job.error

    def _start(self, helpers: int) -> None:
        with self.lock:
            while len(self.queues) < helpers:
                jobs = queue.SimpleQueue()
                threading.Thread(target=self._work, args=(jobs,), daemon=True,
                                 name=f"seqcli-kernels-{len(self.queues) + 1}").start()
                self.queues.append(jobs)

    @staticmethod
    def _work(jobs: queue.SimpleQueue) -> None:
        while True:
            job = jobs.get()
            with job.done:
                if job.closed:  # woke too late: the caller did it all
                    continue
                job.active += 1
            try:
                job.kernel(*job.args)
            except BaseException as error:  # handed to the caller
                job.error = job.error or error
            finally:
                with job.done:
                    job.active -= 1
                    job.done.notify_all()


_POOL = _Pool()


def _set_threads(threads: int) -> None:
    """Threads the kernels use, this one included (`seqcli --threads`)."""
    _POOL.threads = max(1, int(threads))


def _threads() -> int:
    """Threads the kernels use."""
    return _POOL.threads


def _n_blocks(rows: int) -> int:
    """How many row blocks (one partial buffer each) a reduction over `rows` rows uses: one
    a thread."""
    return max(1, min(_POOL.threads, rows))


def _parallel(kernel, items: int, work: float, *args) -> None:
    """kernel(counter, *args) on up to `items` threads, fewer when `work` (about one unit per
    float operation) is too small to share; the kernel takes items with `_next_item(counter)`."""
    workers = min(items, _POOL.threads, max(1, int(work // _WORK_PER_THREAD)))
    _POOL.run(kernel, (np.zeros(1, dtype=np.int64), *args), workers)


# Work (about a floating-point operation each; an element moved counts 16) below which one
# more thread costs more than it saves: waking one takes some 10-50 us.
_WORK_PER_THREAD = 1 << 21


@intrinsic
def _next_item(typingctx, counter):
    """counter[0] += 1, atomically; returns the value before: threads take items in turn."""
    if not isinstance(counter, types.Array) or counter.dtype != types.int64:
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _softplus(v):
    # log(1 + exp(v)) = max(v, 0) + log1p(exp(-|v|)), stable for large |v|
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(cache=True)
def _act(x, code):
    """One elementwise activation of a scalar, computed in float64 (softmax codes excluded)."""
    v = np.float64(x)
    if code == _LINEAR:
        return v
    if code == _RELU:
        return 0.0 if v < 0.0 else v
    if code == _RELU6:
        return 0.0 if v < 0.0 else (6.0 if v > 6.0 else v)
    if code == _SIGMOID:
        if v >= 0.0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if code == _HARD_SIGMOID:
        t = v + 3.0
        return (0.0 if t < 0.0 else (6.0 if t > 6.0 else t)) / 6.0
    if code == _TANH:
        return math.tanh(v)
    if code == _ELU:
        return v if v > 0.0 else math.expm1(v)
    if code == _SELU:
        return _SELU_SCALE * (v if v > 0.0 else _SELU_ALPHA * math.expm1(v))
    if code == _GELU:
        # 0.5 * x * (1 + erf(x / sqrt 2)), via erfc to keep precision for negative x (as TF/JAX)
        return 0.5 * v * math.erfc(-v * _INV_SQRT2)
    if code == _SILU:
        if v >= 0.0:
            return v / (1.0 + math.exp(-v))
        e = math.exp(v)
        return v * e / (1.0 + e)
    if code == _HARD_SILU:
        t = v + 3.0
        return v * (0.0 if t < 0.0 else (6.0 if t > 6.0 else t)) / 6.0
    if code == _SOFTPLUS:
        return _softplus(v)
    if code == _SOFTSIGN:
        return v / (1.0 + abs(v))
    if code == _LEAKY_RELU:
        return _LEAKY_SLOPE * v if v < 0.0 else v
    if code == _EXPONENTIAL:
        return math.exp(v)
    if code == _MISH:
        return v * math.tanh(_softplus(v))
    return v


@njit(cache=True)
def _bias_act_inplace(y, r0, count, c0, bias, code):
    """y[r0 + i, c0 + j] = act(y[r0 + i, c0 + j] + bias[j]) for i < count, j < len(bias), y a
    C-contiguous (R, K); softmax per row. The epilogue every kernel fuses (one loop nest per
    activation, indices off a contiguous array: each vectorises)."""
    k = np.uintp(bias.shape[0])
    c = np.uintp(c0)  # unsigned column indices: no negative-index checks in the inner loops
    if code == _LINEAR:
        for i in range(r0, r0 + count):
            for j in range(k):
                y[i, c + j] += bias[j]
    elif code == _RELU:
        for i in range(r0, r0 + count):
            for j in range(k):
                v = y[i, c + j] + bias[j]
                y[i, c + j] = np.float32(0.0) if v < np.float32(0.0) else v
    elif code == _RELU6:
        for i in range(r0, r0 + count):
            for j in range(k):
                v = y[i, c + j] + bias[j]
                v = np.float32(6.0) if v > np.float32(6.0) else v
                y[i, c + j] = np.float32(0.0) if v < np.float32(0.0) else v
    elif code == _SOFTMAX or code == _LOG_SOFTMAX:
        for i in range(r0, r0 + count):
            d = y[i, c0:c0 + bias.shape[0]]
            for j in range(k):
                d[j] += bias[j]
            # softmax(x)_j = exp(x_j - max) / sum exp(x - max); log_softmax = x_j - max - log(sum)
            mx = np.float64(d[0])
            for j in range(1, k):
                if d[j] > mx:
                    mx = np.float64(d[j])
            total = 0.0
            for j in range(k):
                total += math.exp(np.float64(d[j]) - mx)
            if code == _SOFTMAX:
                for j in range(k):
                    d[j] = math.exp(np.float64(d[j]) - mx) / total
            else:
                log_total = math.log(total)
                for j in range(k):
                    d[j] = np.float64(d[j]) - mx - log_total
    else:
        for i in range(r0, r0 + count):
            for j in range(k):
                y[i, c + j] = _act(y[i, c + j] + bias[j], code)


@njit(cache=True)
def _bias_act_rows(src, s0, dst, d0, count, bias, code):
    """dst[d0 + i] = act(src[s0 + i, :K] + bias) for i < count; dst (R, K) must not overlap src
    (whose rows may be longer). In place, `_bias_act_inplace` (no copy)."""
    k = dst.shape[1]
    for i in range(count):
        for j in range(k):
            dst[d0 + i, j] = src[s0 + i, j]
    _bias_act_inplace(dst, d0, count, 0, bias, code)


# Rows per parallel task of the stand-alone epilogue: enough work to be worth a thread.
_EPILOGUE_ROWS = 64


@njit(cache=True, nogil=True)
def _bias_act_parallel(counter, y, bias, code, rows):
    # (M, K) in place, bias (K,), blocks of rows taken in turn
    m = y.shape[0]
    t = _next_item(counter)
    while t * rows < m:
        r0 = t * rows
        _bias_act_inplace(y, r0, min(rows, m - r0), 0, bias, code)
        t = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _bias_act_numpy(y, bias, code: int) -> bool:
    """act(y + bias) in place with numpy for linear, relu (the numba epilogue's float32 results)
    and softmax (in float32; float64 in numba), without loading numba for a small (M, K) array;
    False for any other activation."""
    if code not in (_LINEAR, _RELU, _SOFTMAX):
        return False
    if len(bias):
        np.add(y, bias, out=y)
    if code == _RELU:
        np.maximum(y, np.float32(0.0), out=y)
    elif code == _SOFTMAX:  # exp(x - max) / sum exp(x - max), per row
        y -= y.max(axis=1, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
    return True


def bias_activation_inplace(y, bias, code) -> None:
    """y[i, j] = act(y[i, j] + bias[j]) in place on (M, K); empty bias = none; softmax per row."""
    code = _check_code(code)
    m, k = y.shape
    if m == 0 or k == 0 or (code == _LINEAR and len(bias) == 0):
        return
    if len(bias) == 0:
        bias = np.zeros(k, dtype=y.dtype)
    _numba_ready()
    rows = max(1, min(_EPILOGUE_ROWS, (1 << 16) // k))
    _parallel(_bias_act_parallel, -(-m // rows), m * k * 16.0, y, bias, code, rows)


def activation_forward(x, code: int) -> np.ndarray:
    """act(x) for any shape; elementwise, except softmax/log_softmax over the last axis."""
    code = _check_code(code)
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if out.size == 0:
        return out
    last = out.shape[-1] if out.ndim else 1
    bias_activation_inplace(out.reshape(out.size // last, last), _NO_BIAS, code)  # (M, K) view
    return out
