"""The threads the kernels' parallel loops run on: seqcli's own pool, not numba's prange.

The kernels' parallel loops hand out their items (rows, tiles) through an atomic counter to
whichever threads come: the calling thread and the pool's workers that wake up in time. The
caller waits only for workers that took part, never for one the OS has not scheduled yet (on
a busy machine numba's fork-join prange waits a whole time slice for it, at every layer)."""

from __future__ import annotations

import queue
import threading

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.extending import intrinsic


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


def set_threads(threads: int) -> None:
    """Use `threads` threads for the kernels, this one included (`seqcli --threads`)."""
    _POOL.threads = max(1, int(threads))


def thread_count() -> int:
    """How many threads the kernels use, this one included."""
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
