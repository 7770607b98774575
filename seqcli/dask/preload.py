"""What the fork server of a local cluster (`seqcli.forkserver`) imports besides Dask, once for
all the workers it forks: numba set up (its runtime and the thread pool's spin loops loaded
from the cache), threadpoolctl, and the layers and kernels of the commonest models (Dense,
Conv2D, pooling). A worker's first chunk then starts without them: some 0.1 s sooner for two
workers of the guide's convnet here. What else a model uses comes with its first chunk.

The fork server forks no worker before this is imported, so more is not better: importing every
layer and kernel here made a `local:2` run slower than importing none. Nothing here starts a
thread, so the workers fork from a single-threaded process. Whatever goes wrong here is left for
the worker to meet, where it is reported.
"""

from __future__ import annotations


def _preload() -> None:
    from seqcli.kernels.numba_startup import numba_ready

    numba_ready()
    import threadpoolctl  # noqa: F401 - a worker's set_threads uses it

    import seqcli.layers.conv
    import seqcli.layers.core
    import seqcli.layers.pooling
    import seqcli.runtime.compiled  # noqa: F401
    from seqcli.kernels import (  # noqa: F401
        activations,
        conv,
        conv_direct,
        dense,
        pooling,
        threads,
        winograd,
    )

    threads.load_spin_loops()


try:
    _preload()
except Exception:  # noqa: BLE001 - the worker imports the same and reports it
    pass
