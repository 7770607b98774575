"""What seqcli changes in numba's start-up, before its first kernel runs (`numba_ready`), and
how it meets a damaged or unwritable kernel cache (`_tolerant_cache`, `_last_resort_locator`).

Each change relies on numba's private API, as numba 0.68 has it (pyproject.toml allows no
later numba). Each is skipped when what it touches is missing, and `SEQCLI_NUMBA_PATCHES=0`
skips those that speed start-up up: numba then starts as it always does, only slower; the
kernels are the same. The cache stays an optimisation either way: a kernel whose cached copy
cannot be read is compiled, one that cannot be saved runs uncached, and the run goes on with
one warning (`SeqcliWarning`) per process."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import sys
import warnings

import numpy as np
from numba import __version__ as numba_version
from numba import config, types

from seqcli.errors import SeqcliWarning
from seqcli.kernels.cpu import full_width_vectors
from seqcli.kernels.notices import listen

full_width_vectors()  # before any kernel compiles or loads: every one that runs in numba
# imports this module
listen()  # the notice of a compile, when one was asked for before numba was imported

_NUMBA_READY: list = []  # [True] once prepared
_RUNTIME_FROM_CACHE: list = []  # [True] once numba's runtime came from seqcli's cached copy
_CACHE_WARNED: list = []  # [True] once a cache problem was reported
_DIGEST_MARK = b"seqcli-sha256:"
"""Ends a cached kernel's data file, followed by the SHA-256 of what precedes it."""
_RUNTIME_LAYOUT = "sha256, object code size, object code, bitcode"
"""How `_cache_runtime` lays the runtime's cached copy out; part of the key in its name, so
that a copy laid out otherwise is never read as one."""


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
    is not imported (`_typeof_array`): asking numpy for it imports it (6 ms). Whichever
    start-up runs, a damaged or unwritable cache costs a compile, never the run
    (`_tolerant_cache`)."""
    if _NUMBA_READY:
        return
    _NUMBA_READY.append(True)
    if os.environ.get("SEQCLI_NUMBA_PATCHES", "1") != "0":
        _cache_loading()
        _typeof_array()
    _tolerant_cache()


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
        folder = getattr(cache, "_cache_path", None)
        if folder is None or not _seqcli_kernel(cache):
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


def _seqcli_kernel(cache) -> bool:
    """True when numba's `cache` is a seqcli kernel's."""
    return getattr(getattr(cache, "_py_func", None), "__module__", "").startswith("seqcli.")


def _tolerant_cache() -> None:
    """A seqcli kernel whose cached copy cannot be read (truncated, damaged, unreadable) is
    compiled, and the copy replaced when it is saved; one that cannot be saved (a read-only or
    full disk, a cache path that is a file) runs uncached. Either way one warning says so
    (`_cache_trouble`). Cached data files carry a digest (`_checked_cache_file`), so a damaged
    copy never reaches LLVM, which it can crash."""
    try:
        from numba.core.caching import Cache, IndexDataCacheFile

        load, save = Cache.load_overload, Cache.save_overload
        checked = _checked_cache_file(IndexDataCacheFile)
    except (ImportError, AttributeError):  # another numba: its own caching, unchanged
        return

    def tolerant(method, trouble):
        """numba's cache `method` (load or save) that, for a seqcli kernel, reads and writes
        checked files and turns any failure into `trouble(folder, error)` and None."""

        def wrapper(cache, *args):
            if not _seqcli_kernel(cache):
                return method(cache, *args)
            try:
                if type(cache._cache_file) is IndexDataCacheFile:
                    cache._cache_file.__class__ = checked
                return method(cache, *args)
            except MemoryError:
                raise
            except Exception as error:  # a damaged entry is compiled; an unwritable one
                trouble(cache._cache_path, error)  # runs uncached
                return None

        wrapper.__wrapped__ = method
        return wrapper

    load_overload = tolerant(load, lambda folder, error: _damaged(_entry(folder, error)))
    save_overload = tolerant(save, _cache_unwritable)
    Cache.load_overload, Cache.save_overload = load_overload, save_overload


def _checked_cache_file(base):
    """A subclass of numba's IndexDataCacheFile (`base`, one kernel's index and data files)
    whose data files end in `_DIGEST_MARK` and the SHA-256 of their contents (numba's own
    loading reads them too: unpickling stops at the pickle's end), and whose damaged index
    reads as an empty one (the next save replaces it)."""
    base._load_index, base._dump, base._open_for_write, base._data_path  # noqa: B018
    trailer = len(_DIGEST_MARK) + 32

    class CheckedCacheFile(base):
        def _load_index(self):
            try:
                _regular_or_missing(self._index_path)
                overloads = super()._load_index()
                if not isinstance(overloads, dict):
                    raise TypeError(f"a {type(overloads).__name__}, not a mapping")
                return overloads
            except MemoryError:
                raise
            except Exception as error:  # a damaged index: none
                _damaged(_entry(self._index_path, error))
                return {}

        def _load_data(self, name):
            path = self._data_path(name)
            _regular_or_missing(path)
            with open(path, "rb") as file:
                data = file.read()
            checked = data[-trailer:-32] == _DIGEST_MARK
            if checked and hashlib.sha256(data[:-trailer]).digest() != data[-32:]:
                raise _DamagedEntryError(f"{path} (its contents do not match their SHA-256)")
            try:
                found = pickle.loads(data[:-trailer] if checked else data)
            except MemoryError:
                raise
            except Exception as error:  # any damage, named with its file
                raise _DamagedEntryError(f"{path} ({_reason(error)})") from error
            return found if checked else None  # saved by numba itself: compiled again

        def _save_data(self, name, data):
            data = self._dump(data)
            with self._open_for_write(self._data_path(name)) as file:
                file.write(data + _DIGEST_MARK + hashlib.sha256(data).digest())

    return CheckedCacheFile


def _last_resort_locator() -> None:
    """Where numba finds no writable cache folder for a seqcli kernel (NUMBA_CACHE_DIR, the
    kernels' __pycache__ and the user's cache folder all read-only, files, or on a full disk),
    it refuses to define the kernel; seqcli's kernels then use their __pycache__ as it is:
    what is cached there loads, and what cannot be saved runs uncached (`_tolerant_cache`).
    numba picks a kernel's cache folder when the kernel is defined: this runs when this module
    is imported, which every kernel module does first."""
    try:
        from numba.core.caching import CacheImpl, InTreeCacheLocator

        locators = CacheImpl._locator_classes
    except (ImportError, AttributeError):  # another numba: its own locators, unchanged
        return

    class ReadOnlyLocator(InTreeCacheLocator):
        @classmethod
        def from_function(cls, py_func, py_file):
            if not (getattr(py_func, "__module__", "").startswith("seqcli.")
                    and os.path.exists(py_file)):
                return None
            return cls(py_func, py_file)

    if not any(locator.__name__ == ReadOnlyLocator.__name__ for locator in locators):
        locators.append(ReadOnlyLocator)


class _DamagedEntryError(Exception):
    """A cached kernel's file that cannot be used: `path (reason)`."""


def _regular_or_missing(path) -> None:
    """Raise _DamagedEntryError where `path` is there but no regular file (a FIFO would block)."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise _DamagedEntryError(f"{path} (not a regular file)")


def _entry(path, error: BaseException) -> str:
    """`path (reason)` of a cached file that `error` made unusable."""
    return str(error) if isinstance(error, _DamagedEntryError) else f"{path} ({_reason(error)})"


def _damaged(entry: str) -> None:
    """Warn (`_cache_trouble`) that a cached kernel's file, `entry` (`path (reason)`), cannot
    be used."""
    _cache_trouble(f"damaged kernel cache entry {entry}: compiled again, and replaced where "
                   "the cache can be written")


def _cache_trouble(message: str) -> None:
    """Warn, once per process, that numba's kernel cache failed: `message`."""
    if not _CACHE_WARNED:
        _CACHE_WARNED.append(True)
        warnings.warn(message, SeqcliWarning, stacklevel=2)


def _cache_unwritable(folder, error: BaseException) -> None:
    """Warn (`_cache_trouble`) that compiled code cannot be saved in `folder`."""
    _cache_trouble(f"cannot save compiled kernels in {folder} ({_reason(error)}): they are "
                   "compiled again on each run (NUMBA_CACHE_DIR chooses another folder)")


def _reason(error: BaseException) -> str:
    """A short reason for a cache failure: the system's words for an OSError (or the one
    behind `error`), else the exception's type and message, cut at 100 characters."""
    cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 100 else text[:97] + "..."


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
    every start. Without a usable cached copy they are compiled and then cached; with anything
    unexpected (another numba's internals), numba sets its runtime up itself."""
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
            key = hashlib.sha256(repr((_RUNTIME_LAYOUT, numba_version, llvmlite.__version__,
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
    """The runtime library from its cached copy, or None: missing, or damaged (said once)."""
    try:
        _regular_or_missing(path)
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except (OSError, _DamagedEntryError) as error:
        _damaged(_entry(path, error))
        return None
    digest, body = data[:32], data[32:]
    size = int.from_bytes(body[:8], "little")
    if hashlib.sha256(body).digest() != digest or len(body) < 8 + size:
        _damaged(f"{path} (its contents do not match their SHA-256)")
        return None
    try:
        return codegen.unserialize_library(("nrt", "object", (body[8:8 + size],
                                                              body[8 + size:])))
    except (ValueError, RuntimeError) as error:
        _damaged(f"{path} ({_reason(error)})")
        return None


def _cache_runtime(library, path) -> None:
    """Write the runtime's object code and bitcode (numba's own cache format for a library),
    after the SHA-256 of both and the object code's size."""
    from seqcli.errors import OutputError
    from seqcli.io.atomic import atomic_output

    _, _, (object_code, bitcode) = library.serialize_using_object_code()
    body = len(object_code).to_bytes(8, "little") + object_code + bitcode
    try:
        if os.path.lexists(path) and not path.is_file():  # a FIFO would be written into
            path.unlink()
        with atomic_output(path) as out:
            out.write(hashlib.sha256(body).digest() + body)
    except (OSError, OutputError) as error:  # a read-only or full disk: compiled each run
        _cache_unwritable(path.parent, error)


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


_last_resort_locator()
