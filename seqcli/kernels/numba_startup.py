"""What seqcli changes in numba's start-up, before its first kernel runs (`numba_ready`).

Each change relies on numba's private API, as numba 0.68 has it (pyproject.toml allows no
later numba). Each is skipped when what it touches is missing, and `SEQCLI_NUMBA_PATCHES=0`
skips them all: numba then starts as it always does, only slower; the kernels are the same."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
from numba import __version__ as numba_version
from numba import config, types

_NUMBA_READY: list = []  # [True] once prepared
_RUNTIME_FROM_CACHE: list = []  # [True] once numba's runtime came from seqcli's cached copy


def numba_ready() -> None:
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
    if os.environ.get("SEQCLI_NUMBA_PATCHES", "1") == "0":
        return
    _cache_loading()
    _typeof_array()


def runtime_from_cache() -> bool:
    """True once numba's runtime was set up from seqcli's cached object code."""
    return bool(_RUNTIME_FROM_CACHE)


def cache_folder() -> str | None:
    """The folder where numba caches seqcli's kernels (one for all: numba places a cache by its
    source file's folder), or None where numba cannot cache them."""
    try:
        from numba.core.caching import FunctionCache

        cache = FunctionCache(cache_folder)  # as a kernel's: numba's locator for this folder
        return getattr(cache, "cache_path", None) or cache._cache_path
    except (ImportError, AttributeError, RuntimeError):
        return None


def _cache_loading() -> None:
    """seqcli's kernels load from numba's cache without the compiler refresh (`numba_ready`);
    other functions, and a cache miss, go through numba's own loading."""
    try:
        from numba.core.caching import Cache
        from numba.core.runtime import rtsys

        full_load = Cache.load_overload
        Cache._guard_against_spurious_io_errors  # noqa: B018 - both used below
        Cache._load_overload  # noqa: B018
        rtsys._init  # noqa: B018
    except (ImportError, AttributeError):  # another numba: its own loading, unchanged
        return

    def load_overload(cache, sig, target_context):
        function = getattr(cache, "_py_func", None)
        folder = getattr(cache, "_cache_path", None)
        if folder is None or not getattr(function, "__module__", "").startswith("seqcli."):
            return full_load(cache, sig, target_context)
        if not rtsys._init:
            _runtime_ready(target_context, folder)
        with cache._guard_against_spurious_io_errors():
            found = cache._load_overload(sig, target_context)
            if found is not None:
                return found
        _array_math_without_scipy()  # numba compiles it next
        return None

    Cache.load_overload = load_overload


def _typeof_array() -> None:
    """numba types an ndarray argument as before, minus its masked-array refusal while numpy.ma
    is not imported (no masked array can exist then); anything else goes to numba's own."""
    try:
        from numba.core.typing.typeof import typeof_impl
        from numba.np import numpy_support

        numba_typeof = typeof_impl.dispatch(np.ndarray)
        from_dtype, map_layout = numpy_support.from_dtype, numpy_support.map_layout
    except (ImportError, AttributeError):  # another numba: its own typing, unchanged
        return

    def typeof_array(value, context):
        if type(value) is not np.ndarray or "numpy.ma" in sys.modules:
            return numba_typeof(value, context)
        try:
            dtype = from_dtype(value.dtype)
            layout = map_layout(value)
        except Exception:  # numba's own refusal, message and all
            return numba_typeof(value, context)
        return types.Array(dtype, value.ndim, layout, readonly=not value.flags.writeable)

    typeof_impl.register(np.ndarray)(typeof_array)


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
    from numba.core.runtime import rtsys

    with global_compiler_lock:
        if rtsys._init:
            return
        try:
            from numba.core.runtime import _nrt_python, nrtdynmod

            codegen = context.codegen()
            key = hashlib.sha256(repr((numba_version, llvmlite.__version__,
                                       codegen.magic_tuple())).encode()).hexdigest()[:16]
            path = Path(folder) / f"seqcli-nrt-{key}.o"
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
    """Load numba's array-math registry with scipy.linalg hidden (see `numba_ready`)."""
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
