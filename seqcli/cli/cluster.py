"""`--dask SPEC` of predict and extract: the option, and their rows run on the cluster it
names (`seqcli.dask`). A `.npy` or `.zarr` OUT is written by the workers in place, chunk by
chunk, into a store staged beside it; any other output (stdout, .npz, text) gets the chunks'
outputs back in order and is written here, as a run in one process writes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from seqcli.cli.app import start_up_done
from seqcli.errors import UsageError
from seqcli.io.formats import OutputFormat, extension


def _checked_spec(ctx: typer.Context, value: str | None) -> str | None:
    """`--dask`'s value, checked; for a local cluster, its fork server is started at once."""
    if value is None or ctx.resilient_parsing:  # absent, or shell completion
        return value
    from seqcli.dask.cluster import check_spec
    from seqcli.forkserver import start_fork_server

    start_fork_server(check_spec(value))  # once: `seqcli.__main__` may have started it
    return value


DaskOpt = Annotated[str | None, typer.Option(
    "--dask", metavar="SPEC", callback=_checked_spec, show_default=False,
    help="Run the batches on a Dask cluster: local (a worker process per core), local:N, or "
    "a scheduler's address, tcp://HOST:PORT. INPUT: .npy, .zarr, a glob of .npy shards or "
    "images, which the workers read.")]


def check_cluster_input(paths: list[str]) -> None:
    """Refuse (exit 2), before any work, an INPUT that workers cannot read: stdin."""
    if "-" in paths:
        raise UsageError("--dask reads INPUT on the workers: name a file (.npy, .zarr or a glob "
                         "of .npy shards), not stdin")


def in_place(output: str, chosen: OutputFormat | None) -> bool:
    """True when the workers write OUT themselves: a named `.npy` or `.zarr`."""
    return chosen in (OutputFormat.npy, OutputFormat.zarr) and extension(output) is not None


@contextmanager
def _cluster_run(spec: str, runner, data, *, paths: list[str] | None, batch_size: int,
                 threads: int | None, strict: bool, progress, inputs, outputs):
    """(the run of `data`'s rows on the cluster `spec`, the layout of a Zarr output)."""
    from seqcli.dask.cluster import connected, worker_threads
    from seqcli.dask.scoring import ChunkOptions, ClusterRun
    from seqcli.io.chunked import output_layout

    with connected(spec, quiet_logs=os.environ.get("SEQCLI_DEBUG") != "1") as client:
        start_up_done()  # Dask's own objects come and go from here on: the collector runs
        layout = output_layout(data, batch_size, worker_threads(client))
        options = ChunkOptions(data.source, paths, batch_size, threads or 1, strict)
        run = ClusterRun(client, runner.model, data, chunk_rows=layout.chunk_rows,
                         options=options, progress=progress, inputs=inputs, outputs=outputs)
        progress.chunks = len(run.ranges)
        try:
            yield run, layout
        finally:
            run.cancel()


def write_in_place(spec: str, runner, data, output: str, chosen: OutputFormat,
                   shapes: dict[str, tuple], **settings) -> None:
    """Run every chunk on the cluster, the workers writing `shapes` ({name: sample shape}) to
    `output`, staged beside it and put in its place once every chunk is written."""
    from seqcli.io.stores import ROOT, staged_npy, staged_zarr, store_arrays

    rows = data.shape[0]
    with _cluster_run(spec, runner, data, **settings) as (run, layout):
        if chosen == OutputFormat.zarr:
            names = store_arrays(shapes)
            staged = staged_zarr(output, {names[name]: shape for name, shape in shapes.items()},
                                 rows, layout)
        else:
            ((name, shape),) = shapes.items()
            names, staged = {name: ROOT}, staged_npy(output, shape, rows)
        with staged as region:
            run.write(region, names)


def results_in_order(spec: str, runner, data, **settings) -> Iterator[dict]:
    """Each chunk's outputs ({name: rows}) in order, computed on the cluster a few chunks
    ahead."""
    from seqcli.dask.cluster import worker_threads

    with _cluster_run(spec, runner, data, **settings) as (run, _):
        yield from run.results(window=2 * worker_threads(run.client))
