"""Lava's probed values beside the simulator's, for the Lava tests: one comparison for all."""
from __future__ import annotations

import numpy as np


def probe_pairs(graph, plan: dict, lava_values: dict, sim_values: dict):
    """``(value, lava, sim)`` for every probe of a bundle run: neuron probes as ``[B, T, ...]``
    integers, read-outs converted back to the simulator's real values."""
    for p in plan["probes"]:
        got = lava_values[p["value"]]
        if p["kind"] == "readout":
            op = graph.op(p["value"])
            got, want = op.scale * got.astype(np.float64) + op.offset, sim_values[p["value"]]
        else:
            want = np.moveaxis(sim_values[p["value"]].astype(np.int64), 0, 1)
        yield p["value"], got, want


def assert_probes_equal(graph, plan: dict, lava_values: dict, sim_values: dict) -> tuple[int, int]:
    """Every probe equal, value for value; returns (values compared, nonzero values)."""
    checked = nonzero = 0
    for name, got, want in probe_pairs(graph, plan, lava_values, sim_values):
        assert got.shape == want.shape, name
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{name}: {len(bad)} mismatches, first at {bad[0].tolist()}"
        checked += got.size
        nonzero += int(np.count_nonzero(want))
    return checked, nonzero


def run_and_compare(graph, data, **kw):
    """Build ``graph``'s bundle (``build_plan(**kw)``), run it on Lava with ``data`` as input
    ``x`` and compare every probe with the simulator's: ``(plan, simulation, values compared)``."""
    from spikec.backends.lava import build_plan
    from spikec.backends.lava.runtime import network
    from spikec.sim import Simulator

    plan, arrays, _ = build_plan(graph, **kw)
    res = network.run(plan, arrays, {"x": data})
    sim = Simulator(graph).run(data, record=[p["value"] for p in plan["probes"]])
    checked, _ = assert_probes_equal(graph, plan, res["values"], sim.values)
    return plan, sim, checked
