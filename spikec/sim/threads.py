"""Batches simulated on several threads of one process, in order.

A batch's simulation is numpy and torch kernels that release the GIL (ufunc loops, copies, the
int8 GEMM), so two batches on two threads run on two cores; the Python between the kernels
(about a twentieth of the time on the shipped V2) is what they share. Each thread owns a
``Simulator.clone()`` of one prepared simulator: the weights are prepared once and shared (read
only), the neuron state is per thread. Every batch is computed exactly as on one thread, so the
results are identical whatever the thread count; only their order of completion varies, and
``SimulatorPool.map`` returns them in batch order.

While the pool runs, each thread's kernels run on one thread (torch and the BLAS): the pool's
threads are the parallelism, and nested thread teams on the same cores would only wait on each
other.

``SPIKEC_SIM_THREADS`` sets the thread count (default: the cores this process may use, at most
``MAX_THREADS``); a pool never runs more threads than there are batches, nor more batches at once
than the memory budget allows (``spikec.memory``).
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

from spikec.errors import DataError
from spikec.sim import intgemm as ig
from spikec.sim import linalg as la
from spikec.sim.engine import SimResult, Simulator

ENV_VAR = "SPIKEC_SIM_THREADS"
#: Beyond this the batches' Python (one GIL) and the shared caches gain little; measured 1.6x on
#: 2 cores for the shipped V2.
MAX_THREADS = 8


def default_threads() -> int:
    """``$SPIKEC_SIM_THREADS``, else the cores this process may run on (at most ``MAX_THREADS``)."""
    text = os.environ.get(ENV_VAR)
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise DataError(f"{ENV_VAR}={text!r}: expected a positive integer (simulator threads)")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def threads_for(graph, batch: int, batches: int, threads: int | None = None) -> int:
    """The threads to simulate ``batches`` batches of ``batch`` samples with: ``threads`` (or
    ``default_threads()``), no more than the batches, and no more batches in flight than the
    memory budget holds (one is always allowed: its own check, ``require_simulation_memory``,
    speaks for it)."""
    from spikec.memory import memory_budget, simulation_bytes

    n = max(1, min(threads or default_threads(), batches))
    budget = memory_budget()
    if budget is not None and n > 1:
        n = max(1, min(n, int(budget // max(simulation_bytes(graph, batch), 1))))
    return n


class SimulatorPool:
    """``threads`` simulators of one graph (weights prepared once, shared).

    Parameters
    ----------
    graph : a fixed-point graph.
    threads : how many batches run at once (default: ``default_threads()``).
    **kwargs : passed to ``Simulator`` (``formats``, ``strict``, ...).
    """

    def __init__(self, graph, threads: int | None = None, **kwargs):
        first = Simulator(graph, **kwargs)
        first.prepare()
        self.threads = max(1, threads or default_threads())
        self.simulators = [first] + [first.clone() for _ in range(self.threads - 1)]
        self._executor: ThreadPoolExecutor | None = None

    def _pool_threads(self) -> ThreadPoolExecutor:
        """The pool's threads, made on first use and kept (so that a warm-up pass warms the
        threads, and their allocator arenas, that later batches run on); each thread takes one
        simulator for good."""
        if self._executor is None:
            free: queue.SimpleQueue = queue.SimpleQueue()
            for sim in self.simulators:
                free.put(sim)
            mine = threading.local()

            def start() -> None:
                mine.sim = free.get()
                _one_torch_thread()

            self._executor = ThreadPoolExecutor(self.threads, initializer=start)
            self._run_here = lambda batch, kw: mine.sim.run(batch, **kw)
            weakref.finalize(self, self._executor.shutdown, wait=False)
        return self._executor

    def map(self, batches: Iterable, **run_kwargs) -> Iterator[SimResult]:
        """``Simulator.run(batch, **run_kwargs)`` of every batch, yielded in batch order (at
        most ``2 x threads`` batches are taken from ``batches`` ahead of the one yielded)."""
        if self.threads == 1:
            for b in batches:
                yield self.simulators[0].run(b, **run_kwargs)
            return
        ex = self._pool_threads()
        with single_threaded_kernels():
            pending: list = []
            for b in batches:
                pending.append(ex.submit(self._run_here, b, run_kwargs))
                if len(pending) >= 2 * self.threads:
                    yield pending.pop(0).result()
            for f in pending:
                yield f.result()

    def close(self) -> None:
        """Stop the pool's threads (they also stop when the pool is collected)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> "SimulatorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _one_torch_thread() -> int | None:
    """Set torch's thread count to 1 where the accelerator is loaded; returns the count before
    (None: no torch). torch's count is per OpenMP thread: each pool thread sets its own (a new
    thread starts with the default, every core)."""
    torch = ig._torch or None         # None: not probed, False: unavailable
    if torch is None:
        return None
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    return saved


@contextlib.contextmanager
def single_threaded_kernels():
    """torch's int8 GEMM (in the calling thread; the pool's threads: ``_one_torch_thread``) and
    the BLAS on one thread each while the pool's threads run."""
    saved = _one_torch_thread()
    try:
        with la.blas_threads(1):
            yield
    finally:
        if saved is not None:
            ig._torch.set_num_threads(saved)
