"""The Dask cluster a command runs on, from `--dask SPEC`: `local` (a `distributed.LocalCluster`
of one single-threaded worker process per core), `local:N` (N such workers), or the address of
a running scheduler (`tcp://host:8786`). The spec is checked without importing Dask; a
scheduler that cannot be reached within `CONNECT_TIMEOUT` seconds is an error (exit 1), as is a
worker of another seqcli version.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from seqcli import __version__
from seqcli.errors import SeqcliError, UsageError
from seqcli.forkserver import LOCAL, local_workers, start_method_name

CONNECT_TIMEOUT = 5.0
"""Seconds to reach a scheduler, and then to see its first worker."""
_ADDRESS = re.compile(r"^(?:(?P<scheme>[a-z][a-z0-9+]*)://)?(?P<host>\[[0-9a-fA-F:]+\]|[^\s:/]+)"
                      r":(?P<port>\d{1,5})/?$")


def check_spec(spec: str) -> str:
    """`spec` when it is `local`, `local:N` or a scheduler address (`tcp://host:port`,
    `host:port`); a UsageError (exit 2) otherwise."""
    if spec == LOCAL or local_workers(spec) is not None:
        return spec
    match = _ADDRESS.match(spec)
    if match and 0 < int(match["port"]) < 65536:
        return spec
    raise UsageError(f"--dask takes local, local:N (N worker processes) or a scheduler address "
                     f"such as tcp://host:8786. Received: {spec!r}")


def worker_version() -> str:
    """The seqcli version of the process this runs in (a worker)."""
    from seqcli import __version__ as version  # read now: it is what this process runs

    return version


@contextmanager
def connected(spec: str, quiet_logs: bool = True) -> Iterator[object]:
    """A `distributed.Client` of the cluster `spec` names, closed (with the local cluster it
    started, if any) when the block ends. Dask's own log lines are kept off stderr unless
    `quiet_logs` is False."""
    from seqcli.dask import require_dask

    require_dask(arrays=False)
    import distributed

    level = logging.CRITICAL if quiet_logs else logging.WARNING
    logging.getLogger("distributed").setLevel(level)
    workers = local_workers(spec)
    cluster = None
    try:
        if workers is not None:
            with _start_method():
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address="127.0.0.1:0", silence_logs=level)
            client = distributed.Client(cluster, set_as_default=False)
        else:
            client = _reach(distributed, spec)
        try:
            check_versions(client)
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _start_method():
    """Dask's setting of `start_method_name` (a context manager)."""
    import dask

    return dask.config.set({"distributed.worker.multiprocessing-method": start_method_name()})


def _reach(distributed, address: str):
    """A client of the scheduler at `address` that has a worker, within the timeouts."""
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except Exception as error:  # OSError, TimeoutError, a garbled reply from a non-scheduler
        raise SeqcliError(f"cannot reach the Dask scheduler at {address} within "
                          f"{CONNECT_TIMEOUT:g} s ({_one_line(error)}); check the address, or "
                          f"start one there with `dask scheduler` and workers with `dask "
                          f"worker {address}`") from None
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except Exception:
        client.close()
        raise SeqcliError(f"the Dask scheduler at {address} has no worker; start some with "
                          f"`dask worker {address}`") from None
    return client


def check_versions(client) -> None:
    """Refuse (exit 1) a cluster with a worker that runs another seqcli version, naming both
    (or none at all: one that cannot run seqcli's tasks)."""
    from seqcli.dask.package import version_refusal

    try:
        versions = client.run(worker_version)
    except Exception as error:  # a worker without seqcli, or without this module
        raise SeqcliError(f"a Dask worker cannot run seqcli's tasks ({_one_line(error)}); "
                          f"install seqcli {__version__} on every worker (pip install "
                          f"'seqcli[dask]=={__version__}')") from None
    for worker, version in sorted(versions.items()):
        if version != __version__:
            raise SeqcliError(version_refusal(worker, version))


def worker_threads(client) -> int:
    """Threads of all the cluster's workers together (tasks it runs at once)."""
    return max(1, sum(client.nthreads().values()))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
