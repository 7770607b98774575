"""The threads the kernels' parallel loops run on: seqcli's own pool, not numba's prange.

The kernels' parallel loops hand out their items (rows, tiles) through an atomic counter to
whichever threads come: the calling thread and the pool's workers that join in time. The
caller waits only for workers that joined, never for one the OS has not scheduled yet (on
a busy machine numba's fork-join prange waits a whole time slice for it, at every layer).

A thread that sleeps (on a queue, or for the GIL) takes 10-50 us to wake, longer than a small
layer runs; so while jobs follow each other no thread sleeps, and none waits for the GIL:
- a worker that finishes a job spins a while (`_IDLE_SPIN_US`) watching for the next, and
  once one is posted, until its caller is inside the kernel (the job's counter has moved),
  where the GIL is free: the worker takes it without waiting;
- the caller, handed no more items, closes the job (`_caller_leaves`, still inside the
  kernel, without the GIL) and spins until the workers that joined have left it and are back
  spinning, done with the GIL; only past `_EXIT_SPIN_US` (a worker descheduled in the middle
  of an item) does it return and sleep until they are.
"""

from __future__ import annotations

import itertools
import platform
import queue
import threading
import time

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.extending import intrinsic

# A job's counter (int64): the next item to hand out; how many items there are; how many
# threads have left the job (were handed a number past the last item); its state (generation,
# closed, workers that joined: `_JOINED_BITS`); how many joined workers are done with it; how
# long its caller spins for them (rounds); and 1 once they were seen done. The caller's kernel
# gets all of it, the workers' kernels `_WORKER_VIEW` fields: so `_next_item` tells them apart.
_NEXT, _ITEMS, _EXITS, _STATE, _SETTLED, _ROUNDS, _DONE = range(7)
_COUNTER_SIZE = 7
_WORKER_VIEW = 6
_JOINED_BITS = 20
_CLOSED = 1 << _JOINED_BITS
_GENERATION = _JOINED_BITS + 1  # the shift of the generation in the state
# Callers whose counters the workers can watch (one row each of the pool's table); a caller
# beyond them uses counters of its own, unwatched.
_WATCHED_CALLERS = 64
# A worker's mailbox (int64): how many jobs were posted to it, and the table row of the latest
# one's counter (-1: none).
_POSTED, _ROW = 0, 1

# How long a worker spins for its next job before it sleeps; how long a caller spins for the
# workers that joined its job to be done with it before it sleeps (microseconds).
_IDLE_SPIN_US = 300.0
_EXIT_SPIN_US = 500.0


class _Job:
    """One parallel kernel call, as the workers run it: with the counter's worker view and
    the generation a worker must find the counter in to join; the first error raised."""

    __slots__ = ("kernel", "counter", "generation", "args", "error")

    def __init__(self, kernel, counter: np.ndarray, generation: int, args: tuple):
        self.kernel, self.counter, self.generation = kernel, counter, generation
        self.args, self.error = args, None

    def help(self) -> bool:
        """Run the kernel on a worker, unless the job closed before the worker came; True
        when the worker joined."""
        if not _join(self.counter, self.generation):
            return False
        try:
            self.kernel(*self.args)
        except BaseException as error:  # handed to the caller
            self.error = self.error or error
        return True


class _Worker:
    """A pool thread: its queue of jobs, and the mailbox it watches while it spins."""

    def __init__(self, pool: _Pool, number: int):
        self.pool = pool
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.mailbox = np.zeros(2, dtype=np.int64)
        self.mailbox[_ROW] = -1
        threading.Thread(target=self._work, daemon=True,
                         name=f"seqcli-kernels-{number}").start()

    def post(self, job: _Job, row: int) -> None:
        """Hand `job`, whose counter is row `row` of the pool's table (or -1), to this worker."""
        self.jobs.put(job)
        self.mailbox[_ROW] = row
        self.mailbox[_POSTED] += 1

    def _work(self) -> None:
        taken = 0
        idle = np.zeros(_WORKER_VIEW, dtype=np.int64)  # settled on when no job was joined
        done = idle
        while True:
            _await_post(self.mailbox, taken, self.pool.counters, done, self.pool.idle_rounds)
            job = self.jobs.get()
            taken += 1
            done = job.counter if job.help() else idle


class _Caller:
    """A calling thread's job counter (reused: nothing touches it once its job is done), its
    workers' view, its row of the pool's table (-1 past the table's rows), and the number of
    its latest job."""

    __slots__ = ("counter", "view", "row", "generation")

    def __init__(self, counter: np.ndarray, row: int):
        self.counter, self.view, self.row = counter, counter[:_WORKER_VIEW], row
        self.generation = 0


class _Pool:
    """Worker threads that join kernel calls (`run`); started on first use, daemons."""

    def __init__(self):
        self.threads = max(1, int(config.NUMBA_NUM_THREADS))
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.idle_rounds = self.exit_rounds = 0
        self.counters = np.zeros((_WATCHED_CALLERS, 8), dtype=np.int64)
        """The counters of the callers' jobs, a row each (of 64 bytes: one cache line to
        itself, most often), which spinning workers watch."""
        self.rows = itertools.count()
        self.callers = threading.local()

    def run(self, kernel, items: int, args: tuple, workers: int) -> None:
        """kernel(counter, *args) over `items` items on this thread and up to `workers - 1`
        pool threads."""
        caller = self._caller()
        helpers = min(workers, self.threads) - 1
        if helpers > 0:
            self._start(helpers)
        counter = caller.counter
        caller.generation += 1
        counter[_NEXT], counter[_ITEMS], counter[_EXITS] = 0, items, 0
        counter[_SETTLED], counter[_DONE] = 0, 0
        counter[_ROUNDS] = self.exit_rounds if helpers > 0 else 0
        counter[_STATE] = caller.generation << _GENERATION  # open: workers may join
        if helpers <= 0:
            kernel(counter, *args)
            _check_items(kernel, counter, 1)
            return
        job = _Job(kernel, caller.view, caller.generation, (caller.view, *args))
        for worker in self.workers[:helpers]:
            worker.post(job, caller.row)
        try:
            kernel(counter, *args)
        finally:
            joined = _leave(counter)
        if job.error is not None:
            raise job.error
        _check_items(kernel, counter, joined + 1)

    def _caller(self) -> _Caller:
        caller = getattr(self.callers, "caller", None)
        if caller is None:
            row = next(self.rows)
            if row < _WATCHED_CALLERS:
                caller = _Caller(self.counters[row, :_COUNTER_SIZE], row)
            else:
                caller = _Caller(np.zeros(_COUNTER_SIZE, dtype=np.int64), -1)
            self.callers.caller = caller
        return caller

    def _start(self, helpers: int) -> None:
        if len(self.workers) >= helpers:
            return
        with self.lock:
            if not self.workers:
                per_us = _spin_rounds_per_us()
                self.idle_rounds = int(per_us * _IDLE_SPIN_US)
                self.exit_rounds = int(per_us * _EXIT_SPIN_US)
            while len(self.workers) < helpers:
                self.workers.append(_Worker(self, len(self.workers) + 1))


def _leave(counter: np.ndarray) -> int:
    """After the caller's kernel: how many workers joined, once all are done with the job
    (asleep in turns, when the caller did not see them done in its spin)."""
    if counter[_DONE] != 1:  # the caller's spin ran out, or its kernel raised
        _close(counter)
        while counter[_SETTLED] < counter[_STATE] & (_CLOSED - 1):
            time.sleep(50e-6)
    return int(counter[_STATE] & (_CLOSED - 1))


def _check_items(kernel, counter: np.ndarray, threads: int) -> None:
    """Each of the `threads` that ran the kernel took numbers until one past its items: a
    kernel whose loop ends elsewhere would let the caller go on while a worker still writes."""
    if counter[_NEXT] != counter[_ITEMS] + threads:
        name = getattr(kernel, "__name__", repr(kernel))
        raise RuntimeError(f"kernel {name} took {counter[_NEXT] - threads} item numbers for "
                           f"the {counter[_ITEMS]} items it was given: its loop must run "
                           "`while item < items` on `_next_item(counter)`")


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
    float operation) is too small to share; the kernel takes items with `_next_item(counter)`
    until it is handed one past the last (`while item < items`)."""
    workers = min(items, _POOL.threads, max(1, int(work // _WORK_PER_THREAD)))
    _POOL.run(kernel, items, args, workers)


# Work (about a floating-point operation each; an element moved counts 16) below which one
# more thread costs more than it saves.
_WORK_PER_THREAD = 1 << 21


# ----------------------------------------------------------------------------- atomics


def _int64_array(array) -> bool:
    return isinstance(array, types.Array) and array.dtype == types.int64


def _element(context, builder, sig, args):
    """The address of element args[1] of the int64 array args[0]."""
    data = context.make_array(sig.args[0])(context, builder, args[0]).data
    return builder.gep(data, [context.cast(builder, args[1], sig.args[1], types.int64)])


@intrinsic
def _fetch_add(typingctx, array, index, value):
    """array[index] += value in an int64 array, atomically; returns the value before."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", _element(context, builder, sig, args), value,
                                  "seq_cst")

    return types.int64(array, index, value), codegen


@intrinsic
def _compare_exchange(typingctx, array, index, expected, value):
    """array[index] = value if it holds `expected`, atomically; True if it did."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, sig, args):
        expected = context.cast(builder, args[2], sig.args[2], types.int64)
        value = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(_element(context, builder, sig, args), expected, value,
                               "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(array, index, expected, value), codegen


@intrinsic
def _load_acquire(typingctx, array, index):
    """array[index] of an int64 array, read atomically (another thread's latest value)."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element(context, builder, sig, args), "acquire", 8)

    return types.int64(array, index), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _relax(typingctx):
    """The CPU's spin-wait hint (x86 `pause`): a spinning thread leaves the core's other
    hardware thread and the memory bus alone."""

    def codegen(context, builder, sig, args):
        if _X86:
            pause = builder.module.declare_intrinsic("llvm.x86.sse2.pause",
                                                     fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(pause, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True)
def _next_item(counter):
    # counter[0] += 1, atomically; returns the value before: threads take items in turn. A
    # thread handed a number past the last item (counter[1]) leaves the job; the caller (the
    # whole counter) then closes it and waits for the workers that joined
    item = _fetch_add(counter, _NEXT, 1)
    if item >= counter[_ITEMS]:
        _fetch_add(counter, _EXITS, 1)
        if len(counter) == _COUNTER_SIZE:
            _caller_leaves(counter)
    return item


@njit(cache=True)
def _close(counter):
    # let no more workers join the job of `counter`; returns its state
    while True:
        state = _load_acquire(counter, _STATE)
        if state & _CLOSED or _compare_exchange(counter, _STATE, state, state | _CLOSED):
            return state | _CLOSED


@njit(cache=True)
def _caller_leaves(counter):
    # close the job, then spin until the workers that joined have left it and are done with
    # it (back spinning, the GIL let go), at most counter[_ROUNDS] rounds; _DONE = 1 if so
    joined = _close(counter) & (_CLOSED - 1)
    rounds = counter[_ROUNDS]
    while joined and rounds > 0:
        if _load_acquire(counter, _EXITS) > joined and _load_acquire(counter, _SETTLED) >= joined:
            joined = 0
        else:
            _relax()
            rounds -= 1
    if joined == 0:
        counter[_DONE] = 1


@njit(cache=True, nogil=True)
def _join(counter, generation):
    # count this worker in, unless the job of `counter` closed or is another one's (the
    # counter reused); True if it joined
    while True:
        state = _load_acquire(counter, _STATE)
        if state >> _GENERATION != generation or state & _CLOSED:
            return False
        if _compare_exchange(counter, _STATE, state, state + 1):
            return True


@njit(cache=True, nogil=True)
def _await_post(mailbox, taken, counters, done, rounds):
    # count this worker done with the job of `done` (the GIL let go), then spin until a job
    # beyond the `taken` first is posted and its caller is inside the kernel (its counter, a
    # row of `counters`, has moved), at most `rounds` rounds
    _fetch_add(done, _SETTLED, 1)
    for _ in range(rounds):
        if _load_acquire(mailbox, _POSTED) != taken:
            row = _load_acquire(mailbox, _ROW)
            if row < 0 or _load_acquire(counters[row], _NEXT) > 0:
                return
        _relax()


def load_spin_loops() -> tuple:
    """Load the pool's spin loops (and numba's runtime) from the cache now, without starting
    a thread (a process that forks workers which will use the pool calls it first); returns
    the arrays the loops ran on, for `_spin_rounds_per_us` to time them."""
    from seqcli.kernels.numba_startup import numba_ready

    numba_ready()
    mailbox = np.zeros(2, dtype=np.int64)
    counters = np.zeros((1, 8), dtype=np.int64)
    done = np.zeros(_WORKER_VIEW, dtype=np.int64)
    _join(done, -1)
    _await_post(mailbox, 0, counters, done, 1000)
    return mailbox, counters, done


def _spin_rounds_per_us() -> float:
    """How many rounds of the spin loops take a microsecond on this machine (the worker's
    spin loaded or compiled here, on the caller's thread)."""
    mailbox, counters, done = load_spin_loops()
    rounds = 20000
    start = time.perf_counter()
    _await_post(mailbox, 0, counters, done, rounds)
    return rounds / max((time.perf_counter() - start) * 1e6, 1.0)
