"""Passes of one prepared simulator over a fixed set of samples, on forked worker processes.

``spikec validate`` runs the simulator over the same samples several times (the pass whose values
it compares, then the timed passes) and keeps every probed value. On the pool of
``spikec.sim.threads`` the threads of one process share one GIL, and a batch of the shipped V2
makes about 3,000 Python calls: two threads each ran at half speed (2 x 8 samples: 0.9 ms per
sample on two threads against 0.9-1.1 on one), where two processes each kept their
one-process speed (7.1-7.8 ms per batch of 8, alone or side by side: 0.46 ms per sample).

``ForkedPasses`` forks ``workers`` processes after the simulator is prepared (each inherits it,
copy-on-write, with its compiled loops and its weights) and gives each a fixed share of the
chunks. A pass (``run``) sends each worker one message; the worker runs its chunks, keeps the
results of its first pass, and answers with its CPU seconds. ``store`` then has every worker
write those results straight into shared memory (``shared_empty``: anonymous shared mappings
made before the fork), in the comparison's layout, outside the timed passes (as the thread pool's
results are laid out after its clock stops). Nothing is pickled but the messages. A worker that fails sends its exception, which the pass raises; a worker that
dies is reported with its exit code. Where ``fork`` is not available (or
``SPIKEC_SIM_PROCESSES=0``), ``available()`` is False and validate keeps the thread pool.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import time

import numpy as np

from spikec.errors import SpikecError

ENV_VAR = "SPIKEC_SIM_PROCESSES"


def available() -> bool:
    """Whether worker processes can be forked here (and are not turned off)."""
    return os.environ.get(ENV_VAR, "1") != "0" and "fork" in mp.get_all_start_methods()


def shared_empty(shape, dtype) -> np.ndarray:
    """An array in an anonymous shared mapping: what a forked child writes into it, its parent
    reads (zeros until written)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buf = mmap.mmap(-1, max(1, count * dtype.itemsize))
    a = np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)
    a[...] = 0          # touched here, once: the workers' writes find their pages mapped
    return a


def sample_range(data, s: int, e: int):
    """Samples ``s:e`` of ``data`` (an array, or a dict of arrays by input name)."""
    return data[s:e] if not isinstance(data, dict) else {k: v[s:e] for k, v in data.items()}


class ForkedPasses:
    """Worker processes that run ``sim.run(data[s:e], **run)`` for their chunks, and ``store(result,
    s)`` for their first pass's results when asked.

    Parameters
    ----------
    sim : a prepared ``Simulator`` (each worker inherits it).
    data : the samples (an array, or a dict of arrays by input name).
    chunks : ``(start, end)`` ranges of samples; worker w takes ``chunks[w::workers]``.
    store : ``store(result, start)`` writes a result's values into shared arrays.
    workers : processes to fork.
    warm_up : passes over its first chunk each worker makes before it reports ready.
    **run : passed to ``Simulator.run``.
    """

    def __init__(self, sim, data, chunks, store, workers: int, warm_up: int = 0, **run):
        ctx = mp.get_context("fork")
        self._conns, self._procs = [], []
        try:
            for w in range(workers):
                mine = chunks[w::workers]
                if not mine:
                    break
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, sim, data, mine, store, warm_up,
                                                        run), daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            self._collect()
        except BaseException:
            self.close()
            raise

    def run(self) -> tuple[float, float]:
        """One pass over every chunk: ``(wall seconds, CPU seconds of all workers)``."""
        t0 = time.perf_counter()
        for conn in self._conns:
            conn.send("run")
        cpu = self._collect()
        return time.perf_counter() - t0, cpu

    def store(self) -> None:
        """Every worker stores the results of its first pass (``run`` at least once before)."""
        for conn in self._conns:
            conn.send("store")
        self._collect()

    def _collect(self) -> float:
        """Every worker's answer: the sum of their CPU seconds; raises a worker's failure."""
        cpu, failure = 0.0, None
        for w, conn in enumerate(self._conns):
            try:
                status, value = conn.recv()
            except (EOFError, OSError):
                self._procs[w].join(timeout=5)
                status, value = "died", self._procs[w].exitcode
            if status == "ok":
                cpu += value
            elif failure is None:
                failure = (w, status, value)
        if failure is not None:
            w, status, value = failure
            if status == "error" and isinstance(value, BaseException):
                raise value
            raise SpikecError(f"simulator worker process {w} {status}"
                              + (f" (exit code {value})" if status == "died" else f": {value}"))
        return cpu

    def close(self) -> None:
        """Stop the workers (they also stop when this process exits)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> "ForkedPasses":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(conn, sim, data, chunks, store, warm_up: int, run: dict) -> None:
    """A worker: warm up, report ready, then one pass over its chunks per message."""
    from spikec.sim.threads import single_threaded_kernels

    try:
        with single_threaded_kernels():
            s0, e0 = chunks[0]
            try:
                for _ in range(warm_up):
                    sim.run(sample_range(data, s0, e0), **run)
            except Exception as exc:
                conn.send(("error", _picklable(exc)))
                return
            conn.send(("ok", 0.0))
            kept = None                       # the first pass's results
            while (message := conn.recv()) is not None:
                c0 = time.process_time()
                try:
                    if message == "store":
                        for (s, _), res in zip(chunks, kept or ()):
                            store(res, s)
                    else:
                        got = [sim.run(sample_range(data, s, e), **run) for s, e in chunks]
                        kept = got if kept is None else kept
                        del got
                except Exception as exc:     # reported to the parent, which raises it
                    conn.send(("error", _picklable(exc)))
                    continue
                conn.send(("ok", time.process_time() - c0))
    except (EOFError, OSError, KeyboardInterrupt):
        pass                                # the parent is gone or stopping: just exit
    finally:
        conn.close()


def _picklable(exc: Exception):
    """``exc`` if it pickles (to be raised again in the parent), else its one-line text."""
    import pickle

    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return f"{type(exc).__name__}: {exc}"
