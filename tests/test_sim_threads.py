"""The simulator on several threads (``spikec.sim.threads``): the same values as one simulator,
in batch order, whatever the thread count."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikec.errors import DataError
from spikec.sim import Simulator
from spikec.sim import threads as th

CHECKPOINT = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / \
    "spikformer_v2_fmnist.pt"


@pytest.fixture(scope="module")
def shipped():
    pytest.importorskip("torch")
    from spikec import data
    from spikec.frontends import LoadOptions, load_model
    from spikec.pipeline import CompileOptions, compile_graph

    images = data.load("fashion-mnist:test", 40).images
    graph = load_model(CHECKPOINT, LoadOptions())
    fixed = compile_graph(graph, profile="loihi2", calib=images[:8],
                          options=CompileOptions()).fixed
    return fixed, images


def test_threads_give_the_values_of_one_simulator_in_order(shipped):
    fixed, images = shipped
    batches = [images[s:s + 6] for s in range(0, len(images), 6)]      # 7 batches, the last 4
    ref = [Simulator(fixed).run(b, record="all") for b in batches]
    pool = th.SimulatorPool(fixed, threads=3)
    assert len(pool.simulators) == 3
    got = list(pool.map(batches, record="all"))
    assert [r.samples for r in got] == [len(b) for b in batches]
    for r, want in zip(got, ref):
        assert r.values.keys() == want.values.keys()
        for name, v in want.values.items():
            assert np.array_equal(r.values[name], v), name
        assert np.array_equal(r.logits, want.logits)
        assert r.totals() == want.totals()


def test_clones_share_weights_but_not_neuron_state(shipped):
    fixed, images = shipped
    first = Simulator(fixed)
    first.prepare()
    twin = first.clone()
    assert twin.synapses is first.synapses
    assert twin._layers.keys() == first._layers.keys()
    for name, layer in twin._layers.items():
        assert layer is not first._layers[name]
        assert layer.threshold is first._layers[name].threshold
    a = first.run(images[:3], record="all")
    b = twin.run(images[3:9], record="all")
    c = first.run(images[3:9], record="all")
    for name in b.values:
        assert np.array_equal(b.values[name], c.values[name]), name
    assert a.samples == 3


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(th.ENV_VAR, "3")
    assert th.default_threads() == 3
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(th.ENV_VAR, bad)
        with pytest.raises(DataError, match=th.ENV_VAR):
            th.default_threads()
    monkeypatch.delenv(th.ENV_VAR)
    assert 1 <= th.default_threads() <= th.MAX_THREADS


def test_threads_are_bounded_by_batches_and_memory(shipped, monkeypatch):
    import spikec.memory as mem

    fixed, _ = shipped
    assert th.threads_for(fixed, 16, batches=1, threads=4) == 1
    assert th.threads_for(fixed, 16, batches=10, threads=4) == 4
    one = mem.simulation_bytes(fixed, 16)
    monkeypatch.setattr(mem, "memory_budget", lambda: int(2.5 * one))
    assert th.threads_for(fixed, 16, batches=10, threads=4) == 2
    monkeypatch.setattr(mem, "memory_budget", lambda: int(0.5 * one))
    assert th.threads_for(fixed, 16, batches=10, threads=4) == 1
