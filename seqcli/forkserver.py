"""The fork server a local Dask cluster (`--dask local`, `local:N`) forks its workers from,
started in the background as the command line begins, before the rest of seqcli is imported:
it imports Dask's distributed, seqcli's runtime, numba and the commonest kernels once for all
the workers while this process reads the model and its input. Only the standard library is
imported here.
"""

from __future__ import annotations

import os
import threading

LOCAL = "local"
FORK_SERVER_PRELOAD = ["distributed", "seqcli.dask.package", "seqcli.dask.preload"]
"""What the fork server imports once, and every worker it forks then has (seqcli.dask.preload:
numba, and the commonest layers and kernels)."""
_STARTED: list[bool] = []


def local_workers(spec: str) -> int | None:
    """N for `local:N` (N >= 1), the number of cores for `local`, else None."""
    if spec == LOCAL:
        return os.cpu_count() or 1
    name, _, count = spec.partition(":")
    if name == LOCAL and count.isdigit() and int(count) >= 1:
        return int(count)
    return None


def start_method_name() -> str:
    """How a local cluster starts its worker processes: forked from a fork server where the
    system has one (which imports Dask and seqcli once for all of them: two workers start in
    1 s instead of 2, and stop in 0.03 s instead of 0.8), unless
    `DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD` says otherwise. Never forked from this
    process itself: its threads may hold locks that a child would wait on forever."""
    import multiprocessing

    chosen = os.environ.get("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD")
    if chosen is None and "forkserver" in multiprocessing.get_all_start_methods():
        chosen = "forkserver"
    return chosen or "spawn"


def start_fork_server(spec: str) -> None:
    """For a local cluster, start the fork server its workers will come from now, in the
    background (once per process)."""
    if _STARTED or local_workers(spec) is None or start_method_name() != "forkserver":
        return
    _STARTED.append(True)
    threading.Thread(target=_fork_server, name="seqcli-fork-server", daemon=True).start()


def start_early(argv: list[str]) -> None:
    """`start_fork_server` for a command line of predict or extract that asks for a local
    cluster (`--dask local`, `--dask=local:2`), before anything else is read."""
    if argv[:1] not in (["predict"], ["extract"]):
        return
    for index, word in enumerate(argv):
        if word == "--":
            return
        if word == "--dask" and index + 1 < len(argv):
            start_fork_server(argv[index + 1])
        elif word.startswith("--dask="):
            start_fork_server(word.partition("=")[2])


def _fork_server() -> None:
    import multiprocessing
    from multiprocessing import forkserver

    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload(FORK_SERVER_PRELOAD)
        forkserver.ensure_running()
    except Exception:  # the cluster starts it itself, and reports what goes wrong
        pass
