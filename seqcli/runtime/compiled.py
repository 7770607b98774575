"""Kernel compilation: a notice when numba compiles (its cache lacks a kernel), thread
settings, and a warm-up that compiles every kernel once (run by `make install`)."""

from __future__ import annotations

_NOTICE: list = []  # [listener] once installed; its `callback` is the latest one asked for


def notify_compiling(callback) -> None:
    """Call `callback()` once, when numba next starts compiling a seqcli kernel in this process
    (a kernel its cache lacks); kernels loaded from the cache call nothing."""
    if not _NOTICE:
        from numba.core import event

        class FirstCompile(event.Listener):
            callback = None

            def on_start(self, ev):
                function = getattr(ev.data.get("dispatcher"), "py_func", None)
                if self.callback and getattr(function, "__module__", "").startswith("seqcli."):
                    call, self.callback = self.callback, None
                    call()

            def on_end(self, ev):
                pass

        _NOTICE.append(FirstCompile())
        event.register("numba:compile", _NOTICE[0])
    _NOTICE[0].callback = callback


def set_threads(threads: int | None) -> None:
    """Use `threads` for seqcli's kernels (its own pool: no numba parallel loops) and BLAS.
    They never nest: kernels that call BLAS from their threads keep it on one thread
    meanwhile."""
    if threads is None:
        return
    from threadpoolctl import threadpool_limits

    from seqcli.kernels.activations import _set_threads

    _set_threads(threads)
    threadpool_limits(threads)


def keep_freed_memory() -> None:
    """Let the C allocator keep freed memory for reuse (glibc only; elsewhere nothing).

    Every layer allocates its output, a few MB per chunk of rows. glibc hands blocks that
    large out as fresh mappings and returns them to the system on free, so each layer of each
    chunk starts on pages the kernel must fault in and zero again: 15-20% of a convnet's time
    on two threads. Blocks up to 32 MB come from the heap instead, which keeps up to 256 MB
    of free memory for the next chunk; peak memory stays what the largest batch needs."""
    if _MEMORY_KEPT:
        return
    _MEMORY_KEPT.append(True)
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)


_MEMORY_KEPT: list = []  # [True] once done


def clear_stale_kernels() -> bool:
    """Numba keys each cached kernel on its own source file only: a kernel that inlines a
    helper from another file (or an activation code) keeps a stale copy of it when that file
    changes. Unless the kernel sources, seqcli/activations.py and numba's version are those
    `record_kernel_sources` saw, remove every cached seqcli kernel; True if any was removed."""
    folder, digest = _kernel_sources()
    if folder is None:
        return False  # no cache yet (or another numba): nothing stale
    record = folder / "seqcli-kernels.sha256"
    if record.is_file() and record.read_text().strip() == digest:
        return False
    entries = [*folder.glob("*.nbi"), *folder.glob("*.nbc")]
    for entry in entries:
        entry.unlink(missing_ok=True)
    return bool(entries)


def record_kernel_sources() -> None:
    """Note beside the cache which kernel sources its kernels were compiled from."""
    from seqcli.io.atomic import atomic_output

    folder, digest = _kernel_sources()
    if folder is not None:
        with atomic_output(folder / "seqcli-kernels.sha256", binary=False) as record:
            record.write(digest + "\n")


def _kernel_sources():
    """(numba's cache folder for seqcli's kernels or None, digest of what they are built from)."""
    import hashlib
    from pathlib import Path

    import numba

    from seqcli.kernels import conv

    folder = getattr(getattr(conv._conv_direct, "_cache", None), "_cache_path", None)
    kernels = Path(conv.__file__).parent
    digest = hashlib.sha256(numba.__version__.encode())
    for source in [*sorted(kernels.glob("*.py")), kernels.parent / "activations.py"]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    exists = folder is not None and Path(folder).is_dir()
    return (Path(folder) if exists else None), digest.hexdigest()


def example_models(classes=None):
    """(layer class, example, runtime model) of every example of every registered layer type
    (or of `classes`): each a one-layer model loaded as a model file would be."""
    import json
    from pathlib import Path

    from seqcli.config.load import load_model_text
    from seqcli.layers.base import LAYER_REGISTRY
    from seqcli.runtime.model import Sequential

    for cls in classes or LAYER_REGISTRY.values():
        type_name = cls.model_fields["type"].default
        for example in cls.examples:
            document = {"input_shape": list(example.input_shape), "seed": 0,
                        "layers": [{"type": type_name, **example.settings}]}
            loaded = load_model_text(json.dumps(document), f"<{type_name} example>", Path.cwd())
            yield cls, example, Sequential.from_loaded(loaded)


def run_example(model, example, rng, train: bool = True):
    """The model's output for a random batch of the example. With `train`, then one training
    step (mean squared error, SGD) and each layer's backward pass with its input gradient too
    (the step skips it where no trainable layer comes before)."""
    import numpy as np

    x = rng.random((example.batch, *example.input_shape), dtype=np.float32)
    y = model(x)
    if train:
        _train_once(model, x, rng.random(y.shape, dtype=np.float32), rng)
        weights = model.weight_arrays
        for info in model.built_model.leaves():
            own = info.own_weights(weights)
            out, cache = info.layer.forward_train(own, x, rng)
            info.layer.backward(own, cache, np.ones_like(out), input_grad=True)
            x = out
    return y


def warm_up() -> None:
    """Compile every kernel: run every registered layer type's examples, forward and one
    training step (their examples reach every kernel code path)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for _, example, model in example_models():
        run_example(model, example, rng)


def _train_once(network, x, y, rng) -> None:
    """One training step, which compiles the backward kernels of the network's layers."""
    from seqcli.training.fit import train_step
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    train_step(network.built_model, network.weight_arrays, x, y, get_loss("mse"),
               get_optimizer("sgd"), rng)
