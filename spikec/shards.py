"""Sample-sharded runs on local worker processes or a Dask cluster, merged exactly.

A data set of ``n`` samples is cut into shards of whole batches (:func:`plan_shards`). Each shard
is a task: a picklable module-level function called with the shard and its own arguments, returning
a picklable result. :func:`run_tasks` runs the tasks in this process (``workers=1``), in a pool of
local processes (``workers=N``) or on an existing Dask cluster (``cluster=ADDRESS``) and returns the
results in task order. The merge is the caller's: the bit-exact simulator's counts are integers, so
adding shard results in shard order gives the single-process numbers exactly.

Failure rules: every task's result is taken once, from the first attempt that returned (a result
is keyed by its task index, so a rerun can never count twice); a task whose worker died is rerun,
up to ``retries`` times, after which the run stops with one line naming the shard. An exception a
task raises (a spikec error in the data, say) is not a worker death: it stops the run at once with
that error, as it would in a single process.

Why Dask and not Ray (docs/simulator.md has the long form): the tasks are coarse (seconds each),
stateless and pure Python + numpy, which is what ``dask.distributed`` schedules with the least
machinery: a pure-Python wheel, a scheduler address users already run (``dask scheduler`` /
``dask worker``, dask-jobqueue on SLURM/PBS, dask-kubernetes), worker deaths rescheduled by the
scheduler itself. Ray brings a C++ runtime (raylet, object store, GCS) whose start-up alone costs
more than a small model's whole evaluation on two cores.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from spikec.errors import MissingEnvironmentError, SpikecError

#: Test hook: ``"INDEX:MARKER_PATH"`` makes the worker running shard INDEX exit abruptly the first
#: time (while MARKER_PATH does not exist; it is created just before the exit).
KILL_ENV = "SPIKEC_TEST_KILL_SHARD"


class ShardError(SpikecError):
    """A shard could not be completed (its worker died ``retries + 1`` times), or the cluster
    could not be reached."""


@dataclass(frozen=True)
class Shard:
    """Samples ``[start, stop)`` of a data set, the ``index``-th shard of the run."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_shards(n: int, batch_size: int, workers: int, *, batches_per_shard: int | None = None
                ) -> list[Shard]:
    """Cut ``n`` samples into shards of whole batches of ``batch_size``.

    Shard boundaries fall on the single-process run's batch boundaries, so each batch holds the
    same samples as it would in one process (the float stages then compute exactly the same).
    By default a shard is sized for about four shards per worker (progress and load balance)
    and at most 16 batches.
    """
    if n <= 0:
        return []
    batches = -(-n // batch_size)
    if batches_per_shard is None:
        batches_per_shard = max(1, min(16, batches // max(1, 4 * workers)))
    step = batches_per_shard * batch_size
    return [Shard(i, s, min(n, s + step)) for i, s in enumerate(range(0, n, step))]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)``; ``size`` is what progress counts when it is done
    (samples of a shard, 1 for a sweep point)."""

    fn: Callable[..., Any]
    args: tuple
    size: int = 1


class Runner:
    """Where tasks run: this process (``workers=1``), ``workers`` local processes, or an existing
    Dask cluster at ``cluster`` (connected when the runner is made, so a wrong address fails
    before any work starts). Use as a context manager, or call ``close``.

    Parameters
    ----------
    workers : local worker processes (1: run here, in order).
    cluster : a Dask scheduler address (``tcp://host:8786``); overrides ``workers``.
    retries : reruns allowed per task whose local worker died (a Dask scheduler applies its own
        ``distributed.scheduler.allowed-failures``, 3 by default).
    """

    def __init__(self, workers: int = 1, cluster: str | None = None, retries: int = 2):
        if workers < 1:
            raise ShardError(f"--workers must be >= 1, got {workers}")
        self.workers, self.cluster, self.retries = workers, cluster, retries
        self.client = _connect(cluster) if cluster else None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, tasks: Sequence[Task], progress: Callable[[int], None] | None = None) -> list:
        """Run ``tasks`` (``fn`` module-level: pickled by reference) and return their results in
        task order; ``progress`` is called with ``task.size`` as each task completes."""
        kill = os.environ.get(KILL_ENV)
        if self.client is not None:
            return _run_dask(self.client, tasks, progress, kill)
        if self.workers == 1 or len(tasks) <= 1:
            results = []
            for t in tasks:
                results.append(t.fn(*t.args))
                if progress:
                    progress(t.size)
            return results
        return _run_local(tasks, self.workers, self.retries, progress, kill)


def run_tasks(tasks: Sequence[Task], *, workers: int = 1, cluster: str | None = None,
              retries: int = 2, progress: Callable[[int], None] | None = None) -> list:
    """``Runner(workers, cluster, retries).run(tasks, progress)``, closing the runner after."""
    with Runner(workers, cluster, retries) as runner:
        return runner.run(tasks, progress)


def _call(fn, args, index, kill=None):
    _maybe_die(index, kill)
    return fn(*args)


def _maybe_die(index, spec) -> None:
    """The test hook (``KILL_ENV``, read by the driver and passed along, since a cluster's
    workers do not share its environment)."""
    if not spec or index is None:
        return
    target, _, marker = spec.partition(":")
    if str(index) == target and marker and not Path(marker).exists():
        Path(marker).write_text("killed\n")
        os._exit(17)


def _run_local(tasks, workers, retries, progress, kill) -> list:
    results: dict[int, Any] = {}
    attempts = {i: 0 for i in range(len(tasks))}
    ctx = multiprocessing.get_context("spawn")   # no fork of BLAS/OpenMP thread pools
    while len(results) < len(tasks):
        pending = [i for i in range(len(tasks)) if i not in results]
        for i in pending:
            attempts[i] += 1
            if attempts[i] > retries + 1:
                raise ShardError(_gave_up(i, tasks[i], retries))
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx) as pool:
            futures = {pool.submit(_call, tasks[i].fn, tasks[i].args, i, kill): i for i in pending}
            try:
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        value = fut.result()
                    except cf.process.BrokenProcessPool:
                        break   # a worker died: rerun what has no result yet in a fresh pool
                    if i not in results:
                        results[i] = value
                        if progress:
                            progress(tasks[i].size)
            finally:
                for f in futures:
                    f.cancel()
    return [results[i] for i in range(len(tasks))]


def _gave_up(i, task, retries) -> str:
    times = f" {retries + 1} times" if retries is not None else " too often"
    return (f"shard {i} ({task.size} samples) lost its worker{times}; "
            "giving up (check the workers' memory with a smaller --batch-size)")


def _connect(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise MissingEnvironmentError("--cluster needs Dask's distributed scheduler: pip install "
                                      "'spikec[cluster]'") from None
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ShardError(f"--cluster {address}: cannot reach a Dask scheduler ({e})") from None


def _run_dask(client, tasks, progress, kill) -> list:
    from distributed import as_completed
    from distributed.client import FutureCancelledError

    scattered: dict[int, Any] = {}

    def ship(a):
        if not isinstance(a, GraphFile):
            return a
        if id(a) not in scattered:   # a graph is sent to every worker once, not per task
            scattered[id(a)] = client.scatter(a.with_bytes(), broadcast=True)
        return scattered[id(a)]

    args = [tuple(ship(a) for a in t.args) for t in tasks]
    # The scheduler reruns a task whose worker died (bounded by its ``allowed-failures``).
    futures = {client.submit(_call, t.fn, a, i, kill, key=f"spikec-shard-{os.getpid()}-{i}",
                             pure=False): i for i, (t, a) in enumerate(zip(tasks, args))}
    results: dict[int, Any] = {}
    for fut in as_completed(list(futures), loop=client.loop):
        i = futures[fut]
        try:
            value = fut.result()
        except FutureCancelledError:
            raise ShardError(_gave_up(i, tasks[i], None)) from None
        except Exception as e:   # KilledWorker (its workers died too often) or the task's error
            if type(e).__name__ == "KilledWorker":
                raise ShardError(_gave_up(i, tasks[i], None)) from None
            raise
        if i not in results:
            results[i] = value
            if progress:
                progress(tasks[i].size)
    return [results[i] for i in range(len(tasks))]


# ----------------------------------------------------------------------------- graphs on workers
@dataclass(frozen=True)
class GraphFile:
    """A ``.spkc`` graph as workers get it: local workers read ``path``; a cluster's workers get
    the file's bytes, sent once per worker. ``sha256`` keys each worker's cache of loaded graphs."""

    path: str
    sha256: str
    data: bytes | None = None

    @classmethod
    def of(cls, path) -> "GraphFile":
        import hashlib

        return cls(str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest())

    @classmethod
    def in_memory(cls, graph) -> "GraphFile":
        """A graph that is not saved: its serialized bytes travel with the tasks."""
        import hashlib

        from spikec.ir import dumps

        data = dumps(graph)
        return cls("<memory>", hashlib.sha256(data).hexdigest(), data)

    def with_bytes(self) -> "GraphFile":
        if self.data is not None:
            return self
        return GraphFile(self.path, self.sha256, Path(self.path).read_bytes())


_LOADED: dict[str, Any] = {}


def load_graph(ref: GraphFile):
    """The graph ``ref`` names, loaded once per worker process (the last one is kept)."""
    graph = _LOADED.get(ref.sha256)
    if graph is None:
        from spikec.ir import load, loads

        graph = loads(ref.data, ref.path) if ref.data is not None else load(ref.path)
        _LOADED.clear()
        _LOADED[ref.sha256] = graph
    return graph
