"""``spikec.sim.profile``: the simulator's seconds per op kind and per layer (--profile-time)."""
from __future__ import annotations

import numpy as np

from spikec.ir import ConvSynapse, CubaLIF, GradedInput, Graph, Output
from spikec.sim import Simulator
from spikec.sim.profile import TimeProfile, format_time_profile


def _graph():
    shape = (3, 6, 6)
    full = lambda v: np.full(shape, v, dtype=np.int64)  # noqa: E731
    w = np.random.default_rng(0).integers(-100, 100, (3, 2, 3, 3)).astype(np.int64)
    return Graph([GradedInput("x", (), shape=(2, 6, 6), encoding="sequence", kind="spike"),
                  ConvSynapse("c", ("x",), weight=w, weight_exp=np.zeros(3, np.int64),
                              padding=(1, 1)),
                  CubaLIF("n", ("c",), du=4095, dv=2048, vth=full(20), bias_mant=full(0),
                          bias_exp=full(0)),
                  Output("y", ("n",))], timesteps=2, domain="fixed")


def test_time_profile_sums_batches_by_kind_and_layer():
    g = _graph()
    sim = Simulator(g)
    x = np.random.default_rng(1).integers(0, 2, (4, 2, 2, 6, 6))
    prof = TimeProfile()
    runs = [sim.run(x[:2]), sim.run(x[2:])]
    for r in runs:
        prof.add(g, r)
    d = prof.to_dict(top=2)
    assert d["samples"] == 4
    total = sum(sum(r.seconds.values()) for r in runs)
    assert abs(d["total_seconds"] - total) < 1e-5
    kinds = {k["kind"]: k for k in d["kinds"]}
    assert kinds["conv_synapse"]["ops"] == 1 and kinds["cuba_lif"]["ops"] == 1
    assert abs(kinds["conv_synapse"]["seconds"]
               - sum(r.seconds["c"] for r in runs)) < 1e-5
    assert [k["seconds"] for k in d["kinds"]] == sorted((k["seconds"] for k in d["kinds"]),
                                                         reverse=True)
    assert len(d["layers"]) == 2 and d["layers"][0]["seconds"] >= d["layers"][1]["seconds"]
    text = format_time_profile(d)
    assert "conv_synapse" in text and "4 samples" in text
