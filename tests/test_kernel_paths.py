"""The kernels' other paths, each checked against the same references: the im2col + BLAS
convolution, the depthwise convolution's direct loop and the BLAS recurrent product that CPUs
without AVX-512 take, and plain numpy matmuls (plain loops in the recurrent kernels) when BLAS
is not called from the kernels' threads (SEQCLI_NUMBA_BLAS=0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("env", [
    {"NUMBA_CPU_NAME": "generic"},
    {"SEQCLI_NUMBA_BLAS": "0"},
], ids=["no-avx512", "numpy-matmul"])
def test_convolution_dense_and_recurrent_paths(env, tmp_path):
    full = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), **env)
    if "NUMBA_CPU_NAME" in env:  # not the host's features, which the kernel modules set here
        full.pop("NUMBA_CPU_FEATURES", None)
    probe = subprocess.run(
        [sys.executable, "-c", "from seqcli.kernels import cpu, dense; "
         "print(cpu.wide_vectors(), dense._blas() is not None)"],
        env=full, capture_output=True, text=True, timeout=600)
    wide, blas = probe.stdout.split()
    if "NUMBA_CPU_NAME" in env:
        assert wide == "False"
    else:
        assert blas == "False"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "test_kernels.py"), "-k", "conv or dense"],
        env=full, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "test_recurrent_kernels.py"), "-k", "forward and not activations"],
        env=full, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]


_WIDTH_PROBE = (
    "import os, numpy as np\n"
    "import seqcli.kernels.dense\n"
    "from llvmlite import binding\n"
    "from numba import njit\n"
    "@njit(fastmath=True)\n"
    "def axpy(a, x, y):\n"
    "    for i in range(x.size):\n"
    "        y[i] += a * x[i]\n"
    "x = np.arange(256, dtype=np.float32)\n"
    "axpy(np.float32(2), x, x)\n"
    "assert x[3] == 9\n"
    "asm = next(iter(axpy.inspect_asm().values()))\n"
    "host = binding.get_host_cpu_features().flatten().split(',')\n"
    "print('+avx512f' in host, '%zmm' in asm,"
    " os.environ.get('NUMBA_CPU_FEATURES', 'unset').rsplit(',', 1)[-1])\n")


@pytest.mark.parametrize("env", [{}, {"NUMBA_CPU_NAME": "generic"}], ids=["host", "generic"])
def test_kernels_use_the_cpus_full_vector_width(env, tmp_path):
    """On an AVX-512 CPU numba's loops use 16-float vectors (zmm registers), also where LLVM
    tunes the CPU for 8-float ones (Intel's): seqcli's kernel modules turn that tuning off
    before numba compiles. Without AVX-512, or where the environment names numba's target itself, it
    leaves numba's configuration as it is."""
    full = {key: value for key, value in os.environ.items()
            if key not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    done = subprocess.run([sys.executable, "-c", _WIDTH_PROBE], capture_output=True, text=True,
                          timeout=600, env=dict(full, NUMBA_CACHE_DIR=str(tmp_path), **env))
    assert done.returncode == 0, done.stderr[-2000:]
    avx512, zmm, features = done.stdout.split()
    if env:
        assert (zmm, features) == ("False", "unset")
    elif avx512 == "True":
        assert (zmm, features) == ("True", "-prefer-256-bit")
    else:
        assert (zmm, features) == ("False", "unset")


def test_full_width_is_asked_for_only_on_avx512(monkeypatch):
    """What `full_width_vectors` sets, for a CPU with and without AVX-512 and where the user
    named numba's target: the host's own features, with LLVM's half-width tuning off."""
    from llvmlite import binding
    from numba.core import config

    from seqcli.kernels import cpu

    monkeypatch.setattr(config, "CPU_FEATURES", config.CPU_FEATURES)  # restored afterwards
    for host, wanted in [("+avx2,+fma,+avx512f,+avx512bw", "+avx2,+fma,+avx512f,+avx512bw,"
                                                           "-prefer-256-bit"),
                         ("+avx2,+fma,-avx512f", None)]:
        monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
        monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
        monkeypatch.setattr(binding, "get_host_cpu_features",
                            lambda host=host: type("F", (), {"flatten": lambda self: host})())
        cpu.full_width_vectors()
        assert os.environ.get("NUMBA_CPU_FEATURES") == wanted
        if wanted:
            assert config.CPU_FEATURES == wanted  # numba was imported first: told too
    def unreadable():
        raise RuntimeError("failed to get host cpu features")

    monkeypatch.setattr(binding, "get_host_cpu_features", unreadable)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    cpu.full_width_vectors()
    assert "NUMBA_CPU_FEATURES" not in os.environ
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+sse2")
    cpu.full_width_vectors()
    assert os.environ["NUMBA_CPU_FEATURES"] == "+sse2"
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    monkeypatch.setenv("NUMBA_CPU_NAME", "skylake-avx512")
    cpu.full_width_vectors()
    assert "NUMBA_CPU_FEATURES" not in os.environ


_NOTICE_PROBE = (
    "import sys, numpy as np\n"
    "from seqcli.runtime.compiled import notify_compiling\n"
    "heard = []\n"
    "notify_compiling(lambda: heard.append('numba' in sys.modules))\n"
    "before = 'numba' in sys.modules\n"
    "from seqcli.kernels.activations import bias_activation_inplace\n"
    "y = np.ones((4, 3), np.float32)\n"
    "bias_activation_inplace(y, np.ones(3, np.float32), 1)\n"
    "bias_activation_inplace(y, np.ones(3, np.float32), 1)\n"
    "assert y[0, 0] == 3\n"
    "print(before, heard)\n")


def test_the_compile_notice_is_asked_for_before_numba_is_imported(tmp_path):
    """The command line asks for its notice of a compile before anything imports numba (a
    small model never does): numba hears of it once the first kernel module is imported, and
    it is given once, when a kernel compiles (an empty cache), never for a cached one."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", _NOTICE_PROBE], capture_output=True,
                           text=True, timeout=600, env=env) for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr[-2000:]
    assert runs[0].stdout.split(maxsplit=1) == ["False", "[True]\n"]  # compiled: heard once
    assert runs[1].stdout.split(maxsplit=1) == ["False", "[]\n"]  # from the cache: nothing


def test_cached_kernels_load_without_numba_compiler_refresh(tmp_path):
    """With a warm cache, running a model loads its kernels with only numba's runtime linked in:
    numba's linear-algebra and array-math implementations (imported by its compiler refresh,
    0.1-0.2 s) stay unloaded, the runtime itself comes from its cached object code, and the
    outputs equal those of kernels compiled afresh. A damaged runtime copy is compiled again.
    (The batch is fed through `predict_batches`, which takes the kernels: `model(x)` this
    small would run in numpy.)"""
    script = (
        "import sys, numpy as np\n"
        "from seqcli.runtime.model import load\n"
        "from seqcli.kernels import numba_startup\n"
        "model = load(sys.argv[1]); model.build()\n"
        "x = np.linspace(-1, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)\n"
        "print(repr(next(model.predict_batches(iter([x]))).tolist()), 'numba.np.linalg' in sys.modules,"
        " 'numba.np.arraymath' in sys.modules, numba_startup.runtime_from_cache(),"
        " 'numpy.ma' in sys.modules)\n")
    model = str(HERE.parent / "bench" / "models" / "small_convnet.yaml")

    def run(cache_dir):
        done = subprocess.run([sys.executable, "-c", script, model], capture_output=True,
                              text=True, timeout=600,
                              env=dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir)))
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.rsplit(" ", 4)

    compiled = run(tmp_path)  # compiles every kernel: numba's full compiler
    assert compiled[1:4] == ["True", "True", "False"]
    runtimes = list(tmp_path.rglob("seqcli-nrt-*.o"))
    assert len(runtimes) == 1 and runtimes[0].stat().st_size > 1000
    loaded = run(tmp_path)  # the same kernels from the cache, and the runtime too
    assert loaded[1:] == ["False", "False", "True", "False\n"]  # nor numpy.ma imported
    assert loaded[0] == compiled[0]
    intact = runtimes[0].read_bytes()
    runtimes[0].write_bytes(intact[:100])  # truncated: compiled again, and cached again
    again = run(tmp_path)
    assert again[1:4] == ["False", "False", "False"] and again[0] == compiled[0]
    assert runtimes[0].read_bytes() == intact
    assert run(tmp_path)[1:4] == ["False", "False", "True"]


_PATCHES_PROBE = (
    "import sys, numpy as np\n"
    "if sys.argv[2] == 'missing':\n"  # as a numba whose private API differs from 0.68's
    "    import numba.core.caching, numba.core.typing.typeof\n"
    "    numba.core.caching.Cache = type('Cache', (), {})\n"
    "    del numba.core.typing.typeof.typeof_impl.dispatch\n"
    "import inspect\n"
    "from numba.core.caching import FunctionCache\n"
    "from numba.core.typing.typeof import typeof_impl\n"
    "from seqcli.kernels import numba_startup\n"
    "from seqcli.runtime.model import load\n"
    "model = load(sys.argv[1]); model.build()\n"
    "x = np.linspace(-1, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)\n"
    "print(repr(next(model.predict_batches(iter([x]))).tolist()), inspect.unwrap(FunctionCache.load_overload).__module__,"
    " typeof_impl.registry[np.ndarray].__module__, numba_startup.runtime_from_cache())\n")


def test_kernels_give_the_same_outputs_without_the_numba_startup_patches(tmp_path):
    """With numba's own start-up (`SEQCLI_NUMBA_PATCHES=0`, or a numba that lacks the private
    attributes the patches touch: each patch is then skipped), a model compiles, loads from
    the cache and gives the outputs it gives with them. (seqcli's tolerance of a damaged
    cache wraps whichever loading runs: the probe looks through it.)"""
    model = str(HERE.parent / "bench" / "models" / "small_convnet.yaml")

    def run(mode, **env):
        done = subprocess.run([sys.executable, "-c", _PATCHES_PROBE, model, mode],
                              capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, **env))
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    numba_own = ["numba.core.caching", "numba.core.typing.typeof", "False"]
    patched = run("default")  # seqcli's kernel cache
    assert patched[-3:-1] == ["seqcli.kernels.numba_startup"] * 2
    fresh = {"NUMBA_CACHE_DIR": str(tmp_path)}
    for _ in range(2):  # compiled, then loaded from the cache
        plain = run("default", SEQCLI_NUMBA_PATCHES="0", **fresh)
        assert plain[-3:] == numba_own and plain[:-3] == patched[:-3]
    missing = run("missing", **fresh)
    assert missing[-3:] == numba_own and missing[:-3] == patched[:-3]
    again = run("default", **fresh)  # what numba's own start-up cached, loaded by seqcli's
    assert again[-1] == "False" and again[:-3] == patched[:-3]


def test_stale_cached_kernels_are_removed_when_the_sources_change(tmp_path, monkeypatch):
    """The warm-up's guard against numba's per-file cache keys: cached kernels stay while the
    kernel sources are those recorded, and all go once they differ (or nothing was recorded)."""
    from seqcli.kernels import numba_startup
    from seqcli.runtime import compiled

    monkeypatch.setattr(numba_startup, "cache_folder", lambda: str(tmp_path))

    def cached(*names):
        for name in names:
            (tmp_path / name).write_bytes(b"kernel")
        return sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".nbi", ".nbc"))

    assert cached("conv.k-1.py311.nbi", "conv.k-1.py311.1.nbc") != []
    assert compiled.clear_stale_kernels()  # nothing recorded: they may be stale
    assert cached() == []
    compiled.record_kernel_sources()
    assert cached("conv.k-1.py311.nbi", "dense.d-2.py311.1.nbc") != []
    assert not compiled.clear_stale_kernels()  # the recorded sources: kept
    assert cached() == ["conv.k-1.py311.nbi", "dense.d-2.py311.1.nbc"]
    monkeypatch.setattr("numba.__version__", "0.0.0")  # as if a source had changed
    assert compiled.clear_stale_kernels()
    assert cached() == []
    assert not compiled.clear_stale_kernels()  # nothing left to remove


def test_every_cached_kernel_loads_without_numba_compiler_refresh():
    """The warm-up runs every kernel, forward and backward: from the cache (a second run), none
    of them needs numba's compiler set up."""
    script = ("import sys\n"
              "from seqcli.warmup import warm_up\n"
              "warm_up()\n"
              "print('numba.np.linalg' in sys.modules, 'numba.np.arraymath' in sys.modules)\n")
    for _ in range(2):  # the first run compiles what the cache may lack
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]



def test_arrays_are_typed_as_numba_types_them():
    """seqcli's array typing (which skips numba's masked-array check while numpy.ma is not
    imported) gives numba's own types: every layout, dtype, rank and read-only flag; and
    numba's own refusals."""
    script = (
        "import sys, numpy as np\n"
        "from numba.core.typing.typeof import Purpose, _typeof_ndarray, typeof_impl\n"
        "from seqcli.kernels import numba_startup\n"
        "numba_startup.numba_ready()\n"
        "assert typeof_impl.dispatch(np.ndarray) is not _typeof_ndarray\n"
        "base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)\n"
        "frozen = base.copy(); frozen.flags.writeable = False\n"
        "values = [base, base[:, ::2], np.asfortranarray(base), base.astype(np.float64),\n"
        "          base.astype(np.int8), base.astype(bool), np.ones((), np.float32), frozen,\n"
        "          np.zeros((0, 5), np.complex64), base[..., 0].T]\n"
        "ours = [typeof_impl(value, Purpose.argument) for value in values]\n"
        "print('numpy.ma' in sys.modules)\n"  # numba's own typing, next, imports it
        "assert ours == [_typeof_ndarray(value, Purpose.argument) for value in values]\n"
        "try:\n"
        "    typeof_impl(np.zeros(2, 'V4'), Purpose.argument)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "NumbaValueError"]
