"""`predict` and `extract` on a Dask cluster: one task per chunk of rows reads its rows on a
worker (the input's own picklable reader: workers see the files, or the Zarr URL), runs the
model, counts NaN and Inf, and either writes its outputs in place (a `.npy` or Zarr output
staged beside OUT, `seqcli.io.stores`) or hands them back to the client, which writes them in
order as a run in one process does.

Distributed's scheduler places the tasks and runs again those of a worker that dies (a chunk
rewrites the same rows, so the output is the same); the first error stops the run.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from seqcli.dask.package import pack, run_rows, unpack, use_threads
from seqcli.errors import SeqcliError
from seqcli.io.arrays import NonFiniteCounter
from seqcli.io.chunked import row_reader

OUTPUTS = "<outputs>"
_LARGE_GRAPH = "distributed.admin.large-graph-warning-threshold"


@dataclass(frozen=True)
class ChunkOptions:
    """What every chunk's task is told, besides its rows."""

    source: str
    """The input's name, for messages."""
    paths: list[str] | None
    """Layers to extract; None: the model's output."""
    batch_size: int
    threads: int
    """Kernel threads of a task."""
    strict: bool
    """Refuse rows holding NaN or Inf."""


def score_chunk(package: dict, reader, start: int, stop: int, options: ChunkOptions,
                sink=None) -> dict:
    """Rows `start:stop` through the model, on a worker: {"rows", "input" and "output" (NaN,
    Inf, rows holding one), "arrays": the outputs by name, or None once `sink` (a region of a
    staged output, with the name of each output's array in it) has them}."""
    use_threads(options.threads)
    model = unpack(package)
    rows = reader.read(start, stop)
    if not model.takes_ids:  # float32 first, as in one process: what overflows counts as Inf
        with np.errstate(over="ignore"):
            rows = np.asarray(rows, np.float32)
    inputs = _counted(NonFiniteCounter(options.source, strict=options.strict), rows, start)
    outputs = run_rows(model, rows, start, paths=options.paths, batch_size=options.batch_size)
    del rows
    counted = NonFiniteCounter(OUTPUTS)
    if options.paths is None:
        _counted(counted, outputs["output"], start)
    if sink is not None:
        region, names = sink
        for name, array in outputs.items():
            region.write(names[name], start, array)
        outputs = None
    return {"rows": stop - start, "input": _counts(inputs), "output": _counts(counted),
            "arrays": outputs}


def _counted(counter: NonFiniteCounter, rows: np.ndarray, start: int) -> NonFiniteCounter:
    """`counter` once it has seen `rows`, rows `start:` of the whole (for --strict's message)."""
    counter.rows = start
    for _ in counter.check(iter([rows])):
        pass
    return counter


def _counts(counter: NonFiniteCounter) -> tuple[int, int, int]:
    return counter.nan, counter.inf, counter.bad_rows


def _add(counter: NonFiniteCounter, counts: tuple[int, int, int], rows: int) -> None:
    """Add a chunk's `counts` of `rows` rows to the run's `counter`."""
    nan, inf, bad_rows = counts
    counter.nan, counter.inf = counter.nan + nan, counter.inf + inf
    counter.bad_rows += bad_rows
    counter.rows += rows


class ClusterRun:
    """One command's rows on a cluster: the model sent once, then a task per chunk."""

    def __init__(self, client, model, data, *, chunk_rows: int, options: ChunkOptions,
                 progress, inputs: NonFiniteCounter, outputs: NonFiniteCounter):
        import dask
        from dask.utils import parse_bytes

        self.client, self.options, self.progress = client, options, progress
        self.inputs, self.outputs = inputs, outputs
        self.reader = row_reader(data)
        rows = data.shape[0]
        self.ranges = [(start, min(start + chunk_rows, rows))
                       for start in range(0, rows, chunk_rows)]
        package = pack(model)
        self.token = f"{package['key'][:16]}-{os.urandom(4).hex()}"
        node = dask.delayed(package, pure=True, traverse=False,
                            name=f"seqcli-model-{package['key']}")
        # the model travels in the graph, once and on purpose (a worker that dies has it
        # computed again elsewhere): Dask's warning of a large graph allows for its size
        with dask.config.set({_LARGE_GRAPH: len(package["model"]) + parse_bytes(
                dask.config.get(_LARGE_GRAPH))}):
            (self.package,) = client.compute([node])
        self.futures: list | deque = []
        """What is sent and not yet read: cancelled when the run stops."""
        self.stopped = False

    def _key(self, index: int) -> str:
        return f"seqcli-chunk-{self.token}-{index}"

    def _done(self, result: dict) -> None:
        """Count a finished chunk."""
        _add(self.inputs, result["input"], result["rows"])
        _add(self.outputs, result["output"], result["rows"])
        self.progress.advance(result["rows"], chunks=1)

    def write(self, region, names: dict[str, str]) -> None:
        """Run every chunk, each writing its outputs to `region` (`names`: output -> array)."""
        from distributed import as_completed

        count = len(self.ranges)
        self.futures = self.client.map(
            score_chunk, [self.package] * count, [self.reader] * count,
            [start for start, _ in self.ranges], [stop for _, stop in self.ranges],
            [self.options] * count, [(region, names)] * count,
            key=[self._key(index) for index in range(count)], pure=False)
        try:
            with _worker_errors():
                for _, result in as_completed(self.futures, loop=self.client.loop,
                                              with_results=True):  # not the default client's
                    self._done(result)
        except BaseException:
            self.cancel()  # before the staged store is removed
            raise

    def results(self, window: int) -> Iterator[dict[str, np.ndarray]]:
        """Each chunk's outputs in order, at most `window` chunks ahead of the one read (a
        chunk read is let go of: the workers keep no more than the window)."""
        self.futures = pending = deque()
        ranges = iter(enumerate(self.ranges))

        def submit() -> None:
            """Send the next chunk, if any is left."""
            index, (start, stop) = next(ranges, (None, (0, 0)))
            if index is not None:
                pending.append(self.client.submit(score_chunk, self.package, self.reader,
                                                  start, stop, self.options,
                                                  key=self._key(index), pure=False))

        for _ in range(window):
            submit()
        with _worker_errors():
            while pending:
                result = pending[0].result()
                pending.popleft()
                submit()
                self._done(result)
                yield result["arrays"]

    def cancel(self) -> None:
        """Stop the chunks still waiting, let go of the model, and wait (`SETTLE_SECONDS` at
        most) for those still running to end: a chunk that wrote after its run was given up
        would put files back into a staged store as it is removed."""
        if self.stopped:
            return
        self.stopped = True
        finished = all(future.status == "finished" for future in self.futures)
        self.client.cancel([*self.futures, self.package])
        if finished:
            return  # nothing can still be running
        prefix = f"seqcli-chunk-{self.token}-"
        deadline = time.monotonic() + SETTLE_SECONDS
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:  # twice: a freed chunk may start
            running = self.client.run(_running, prefix, on_error="ignore")
            quiet = 0 if any(running.values()) else quiet + 1
            time.sleep(0.02)


SETTLE_SECONDS = 60.0
"""How long a stopped run waits for its running chunks to end before it removes its store."""


def _running(prefix: str, dask_worker=None) -> int:
    """How many tasks whose keys start with `prefix` the worker this runs on is running."""
    return sum(1 for key in dask_worker.active_keys if str(key).startswith(prefix))


@contextmanager
def _worker_errors() -> Iterator[None]:
    """A chunk's failure as a seqcli error: the worker's own SeqcliError as it was raised; a
    chunk that killed worker after worker, an error of its own (exit 1)."""
    try:
        yield
    except SeqcliError:
        raise
    except Exception as error:
        from distributed import KilledWorker

        if isinstance(error, KilledWorker):
            raise SeqcliError("a chunk of rows stopped the workers that ran it, one after "
                              "another (out of memory?); give the workers more memory, or "
                              "make the chunks smaller") from None
        raise
