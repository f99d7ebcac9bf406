"""Validate's simulator passes on forked worker processes (``spikec.sim.forked``): the values
equal one process's, whatever the worker count; failures and dead workers are reported."""
from __future__ import annotations

import os

import numpy as np
import pytest

from spikec.backends.lava import build_plan, samples
from spikec.backends.lava import validate as V
from spikec.errors import SpikecError
from spikec.sim import Simulator
from spikec.sim import forked

pytestmark = pytest.mark.skipif(not forked.available(), reason="no fork start method here")


@pytest.fixture(scope="module")
def residual():
    graph = samples.spikformer_like(residual="add")
    return graph, build_plan(graph)[0], samples.images(7)


def test_shared_arrays_see_what_a_forked_child_writes():
    a = forked.shared_empty((3, 4), np.int16)
    assert a.dtype == np.int16 and a.shape == (3, 4) and not a.any()
    pid = os.fork()
    if pid == 0:                      # the child writes, then leaves without cleanup
        a[1] = 7
        os._exit(0)
    os.waitpid(pid, 0)
    assert a[1].tolist() == [7] * 4 and not a[0].any() and not a[2].any()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_processes_give_the_values_of_one_simulator(residual, workers, monkeypatch):
    """``_simulate`` on 1-3 worker processes (chunks of 2 samples, unevenly shared) equals one
    simulator's run, probe for probe; each timed pass rewrites the same values."""
    graph, plan, x = residual
    monkeypatch.setenv("SPIKEC_SIM_THREADS", str(workers))
    monkeypatch.setattr(V, "_CHUNK", 2)
    monkeypatch.setattr(V, "TIMED_SECONDS", 0.0)
    got, timing = V._simulate(graph, plan, {graph.inputs[0].name: x})
    assert timing["parallel"] == ("processes" if workers > 1 else "threads")
    assert timing["threads"] == workers and len(timing["passes"]) == 1
    want = Simulator(graph).run(x, record=[p["value"] for p in plan["probes"]])
    for p in plan["probes"]:
        v = want.values[p["value"]]
        v = v if p["kind"] == "readout" else np.moveaxis(v, 0, 1)
        assert np.array_equal(got[p["value"]], v), p["value"]


def test_processes_equal_threads_over_many_passes(residual, monkeypatch):
    graph, plan, x = residual
    monkeypatch.setenv("SPIKEC_SIM_THREADS", "2")
    monkeypatch.setattr(V, "MAX_PASSES", 4)
    monkeypatch.setattr(V, "TIMED_SECONDS", 10.0)
    procs, t_procs = V._simulate(graph, plan, {graph.inputs[0].name: x})
    monkeypatch.setenv(forked.ENV_VAR, "0")
    threads, t_threads = V._simulate(graph, plan, {graph.inputs[0].name: x})
    assert (t_procs["parallel"], t_threads["parallel"]) == ("processes", "threads")
    assert len(t_procs["passes"]) == len(t_threads["passes"]) == 4
    assert t_procs["cpu"] > 0
    for name, v in threads.items():
        assert np.array_equal(procs[name], v), name


def _passes(graph, x, store, workers=2):
    sim = Simulator(graph)
    sim.prepare()
    return forked.ForkedPasses(sim, x, [(0, 3), (3, 5), (5, 7)], store, workers,
                               record=[], events=False)


def test_a_worker_failure_is_raised_in_the_parent(residual):
    graph, _, x = residual

    def store(res, start):
        if start == 3:
            raise ValueError(f"cannot store the chunk at {start}")

    with _passes(graph, x, store) as pool:
        pool.run()
        with pytest.raises(ValueError, match="cannot store the chunk at 3"):
            pool.store()
        with pytest.raises(ValueError):           # the workers live on and answer again
            pool.store()


def test_a_dead_worker_is_reported_with_its_exit_code(residual):
    graph, _, x = residual

    def store(res, start):
        if start == 5:
            os._exit(3)

    with _passes(graph, x, store) as pool:
        pool.run()
        with pytest.raises(SpikecError, match=r"worker process 0 died \(exit code 3\)"):
            pool.store()


def test_a_warm_up_failure_is_raised_when_the_workers_start(residual):
    graph, _, x = residual
    sim = Simulator(graph)
    with pytest.raises(Exception, match="input"):
        forked.ForkedPasses(sim, x[:, :, :3], [(0, 3), (3, 5)], lambda r, s: None, 2,
                            warm_up=1, record=[])
