"""The kernels' thread pool (seqcli/kernels/threads.py) and the single-row Dense product that
shares a kernel's columns out on it: every item run once, the caller waiting for exactly the
workers that joined (spinning, or asleep when that takes long), errors and miscounted loops
reported, and the same numbers on 1, 2 and 3 threads as the float64 reference."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from numba import njit

from seqcli.activations import activation_code
from seqcli.kernels import dense as k_dense
from seqcli.kernels import threads as k_threads
from seqcli.kernels.threads import _load_acquire, _next_item, _parallel, set_threads, thread_count

try:
    from tests import naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive

WAIT_ROUNDS = 1 << 33  # a bound on the test kernels' own waits: far longer than any test


@pytest.fixture
def threads():
    """Set the pool's thread count for a test (restored after it)."""
    before = thread_count()
    yield set_threads
    set_threads(before)


@njit(nogil=True)
def _count_items(counter, out, items):
    # out[t] += 1 for every item t
    t = _next_item(counter)
    while t < items:
        out[t] += 1
        t = _next_item(counter)


@njit(nogil=True)
def _second_thread_writes_late(counter, out, spin, fail):
    # item 0 waits until another thread holds item 1; item 1 spins `spin` rounds, then writes
    # out[1] = 1 (or raises, with `fail`)
    t = _next_item(counter)
    while t < 2:
        if t == 0:
            n = 0
            while _load_acquire(counter, 0) < 2 and n < WAIT_ROUNDS:
                n += 1
            out[0] = 1.0
        else:
            total = 0.0
            for i in range(spin):
                total += math.sqrt(i + 1.0)
            if fail:
                raise ValueError("item 1 failed")
            out[1] = 1.0 + 0.0 * total  # the sum kept: the spin is not optimised away
        t = _next_item(counter)


@njit(nogil=True)
def _stops_one_short(counter, out, items):
    # a loop that ends before the count it was given
    t = _next_item(counter)
    while t < items - 1:
        out[t] = 1.0
        t = _next_item(counter)


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("items", [0, 1, 2, 7, 1000])
def test_every_item_runs_once(threads, count, items):
    threads(count)
    out = np.zeros(max(items, 1), dtype=np.int64)
    _parallel(_count_items, items, 1e12, out, items)
    assert out[:items].tolist() == [1] * items


def test_small_work_stays_on_the_calling_thread(threads, monkeypatch):
    threads(2)
    seen = []
    monkeypatch.setattr(k_threads._POOL, "run",
                        lambda kernel, items, args, workers: seen.append(workers))
    _parallel(_count_items, 64, k_threads._WORK_PER_THREAD - 1, np.zeros(64, np.int64), 64)
    _parallel(_count_items, 64, 4.0 * k_threads._WORK_PER_THREAD, np.zeros(64, np.int64), 64)
    _parallel(_count_items, 1, 4.0 * k_threads._WORK_PER_THREAD, np.zeros(1, np.int64), 1)
    assert seen == [1, 2, 1]


@pytest.mark.parametrize("exit_spin", ["spinning", "sleeping"])
def test_the_caller_waits_for_a_worker_that_joined(threads, monkeypatch, exit_spin):
    """Item 1 is a worker's (item 0 waits for that) and finishes long after item 0: the
    caller returns only once it is written, whether it spins for the worker to leave or, past
    its spin, sleeps."""
    threads(2)
    if exit_spin == "sleeping":
        monkeypatch.setattr(k_threads._POOL, "exit_rounds", 0)
    for spin in (0, 10_000, 3_000_000):
        out = np.zeros(2)
        _parallel(_second_thread_writes_late, 2, 1e12, out, spin, False)
        assert out.tolist() == [1.0, 1.0]


def test_a_workers_error_reaches_the_caller(threads):
    threads(2)
    out = np.zeros(2)
    with pytest.raises(ValueError, match="item 1 failed"):
        _parallel(_second_thread_writes_late, 2, 1e12, out, 1000, True)
    out = np.zeros(2)  # the pool goes on
    _parallel(_second_thread_writes_late, 2, 1e12, out, 1000, False)
    assert out.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("count", [1, 2])
def test_a_loop_that_ends_short_of_its_items_is_refused(threads, count):
    threads(count)
    with pytest.raises(RuntimeError, match="_stops_one_short took 4 item numbers for the 5"):
        _parallel(_stops_one_short, 5, 1e12, np.zeros(5), 5)


def test_a_worker_asleep_after_its_spin_still_joins(threads):
    """Past its spin a worker sleeps on its queue: the next job wakes it."""
    threads(2)
    out = np.zeros(2)
    _parallel(_second_thread_writes_late, 2, 1e12, out, 0, False)
    time.sleep(20 * k_threads._IDLE_SPIN_US * 1e-6)
    out = np.zeros(2)
    _parallel(_second_thread_writes_late, 2, 1e12, out, 0, False)
    assert out.tolist() == [1.0, 1.0]


def test_a_worker_joins_only_the_open_job_it_was_given():
    """The counter is reused job after job: a worker joins a job only while it is open and
    holds that job's generation; closing returns the state with the workers that joined."""
    counter = np.zeros(k_threads._COUNTER_SIZE, dtype=np.int64)
    view = counter[:k_threads._WORKER_VIEW]
    counter[k_threads._STATE] = 7 << k_threads._GENERATION
    assert not k_threads._join(view, 6)  # an earlier job's worker, come late
    assert k_threads._join(view, 7) and k_threads._join(view, 7)
    state = k_threads._close(counter)
    assert state & (k_threads._CLOSED - 1) == 2 and state & k_threads._CLOSED
    assert not k_threads._join(view, 7)
    assert k_threads._close(counter) == state  # closing twice changes nothing


def test_the_caller_sleeps_for_workers_its_spin_did_not_see_done():
    """Past its spin (or when its kernel raised), the caller closes the job and sleeps until
    every worker that joined is done with it."""
    counter = np.zeros(k_threads._COUNTER_SIZE, dtype=np.int64)
    counter[k_threads._STATE] = (3 << k_threads._GENERATION) + 1  # one worker in, still open

    def worker_done():
        time.sleep(0.02)
        counter[k_threads._SETTLED] = 1

    helper = threading.Thread(target=worker_done)
    helper.start()
    start = time.perf_counter()
    assert k_threads._leave(counter) == 1
    assert time.perf_counter() - start >= 0.015 and counter[k_threads._STATE] & k_threads._CLOSED
    helper.join()


def test_callers_on_several_threads_share_the_pool(threads):
    threads(3)
    results, errors = {}, []

    def call(number):
        try:
            for _ in range(50):
                out = np.zeros(300, dtype=np.int64)
                _parallel(_count_items, 300, 1e12, out, 300)
                assert out.tolist() == [1] * 300
            results[number] = True
        except BaseException as error:  # reported below
            errors.append(error)

    callers = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert not errors and len(results) == 4


# ----------------------------------------------------------------------------- one row


# (input features, units), beyond the small size: units in one tile a thread, in tiles and a
# short last one, fewer than a tile a thread
ROW_CASES = [(4100, 1024), (2100, 2001), (70000, 65), (33000, 130), (4200, 1000)]


def _row_args(k, units, with_bias, salt):
    rng = np.random.default_rng([18, salt])
    x = rng.standard_normal((1, k)).astype(np.float32)
    kernel = (rng.standard_normal((k, units)) / math.sqrt(k)).astype(np.float32)
    bias = (rng.standard_normal(units) * 0.5).astype(np.float32) if with_bias else None
    return x, kernel, bias


def _reference(x, kernel, bias, name):
    """act(x @ kernel + bias) in float64: the products summed with math.fsum (exact), the
    activation as tests/naive.py computes it."""
    sums = np.array([[math.fsum(x[0].astype(np.float64) * kernel[:, j].astype(np.float64))
                      for j in range(kernel.shape[1])]])
    if bias is not None:
        sums += bias
    return naive.naive_activation(sums, name), sums


@pytest.mark.parametrize("case", range(len(ROW_CASES)))
def test_one_row_on_each_thread_count(threads, case):
    """The float64 reference on 1, 2 and 3 threads: column tiles of a product of a matrix and
    a vector, shared out."""
    k, units = ROW_CASES[case]
    assert k * units > k_dense._SMALL_MACS
    name = ("linear", "relu", "sigmoid", "gelu", "relu6")[case]
    x, kernel, bias = _row_args(k, units, case % 2 == 0, case)
    ref, linear = _reference(x, kernel, bias, name)
    scale = max(1.0, float(np.abs(linear).max()))
    for count in (1, 2, 3):
        threads(count)
        got = k_dense.dense_forward(x, kernel, bias, activation_code(name))
        assert got.dtype == np.float32 and got.shape == (1, units), count
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale, err_msg=str(count))


def test_one_row_takes_the_matrix_vector_product(threads, monkeypatch):
    """A single row beyond the small size is a matrix-vector product on any thread count;
    not for softmax (whole rows), a small kernel or more rows."""
    calls = []
    real = k_dense._row_forward
    monkeypatch.setattr(k_dense, "_row_forward", lambda *a: calls.append(a[1].shape) or real(*a))
    x, kernel, bias = _row_args(4100, 1024, True, 9)
    for count in (1, 2):
        threads(count)
        k_dense.dense_forward(x, kernel, bias, activation_code("relu"))
        k_dense.dense_forward(x, kernel, bias, activation_code("softmax"))
        k_dense.dense_forward(np.repeat(x, 2, axis=0), kernel, bias, activation_code("relu"))
        k_dense.dense_forward(x[:, :784], kernel[:784, :512], bias[:512],
                              activation_code("relu"))
    assert calls == [(1, 4100), (1, 4100)]


def test_one_row_softmax_and_no_bias_beside_more_rows(threads):
    threads(2)
    x, kernel, _ = _row_args(4100, 1024, False, 11)
    for name in ("softmax", "linear"):
        one = k_dense.dense_forward(x, kernel, None, activation_code(name))
        three = k_dense.dense_forward(np.repeat(x, 3, axis=0), kernel, None,
                                      activation_code(name))
        np.testing.assert_allclose(one[0], three[1], rtol=1e-5, atol=1e-6)
