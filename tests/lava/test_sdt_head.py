"""A Spike-driven-Transformer-shaped network (tests/sdt_graph.py: max-pooled spike stem, membrane
shortcuts, SDSA, MLP, ``head_lif(mean_N(x))``) on Lava's fixed_pt models equals spikec's bit-exact
simulator spike for spike, the head neuron included: after the token-mean fold it sums six
synapse ops (token counts for the 1x1 terms, dense maps for the stem's 3x3 convs) of different
pipeline depths. SDSA has one lowering (AND, token sum into the talking-heads neuron, AND):
``--ssa`` chooses how ``spike_matmul`` goes and does not apply to it."""
from __future__ import annotations

import numpy as np
import pytest
from lava_probes import assert_probes_equal

from sdt_graph import images, sdt_like
from spikec.backends.lava import build_plan
from spikec.backends.lava.runtime import network
from spikec.ir import fixed as F
from spikec.pipeline import compile_graph
from spikec.sim import Simulator

pytestmark = pytest.mark.lava


def test_sdt_head_matches_lava():
    data = images(3)
    res = compile_graph(sdt_like(T=2), "loihi2", calib=data)
    head = res.fixed.op("head_lif")
    assert isinstance(head, F.CubaLIF) and len(head.inputs) == 4
    plan, arrays, facts = build_plan(res.fixed, ssa="host", conv="lava")
    other, other_arrays, _ = build_plan(res.fixed, ssa="decompose", conv="lava")
    # nothing for --ssa to lower in SDSA: both lowerings build the same processes
    assert not facts["ssa_ops"]
    assert {k: v for k, v in plan.items() if k != "ssa"} == \
        {k: v for k, v in other.items() if k != "ssa"}
    assert all(np.array_equal(arrays[k], other_arrays[k]) for k in arrays)
    run = network.run(plan, arrays, {"x": data})
    names = [p["value"] for p in plan["probes"]]
    assert {"head_lif", "kv_s", "mean.fc2.count", "mean.proj.count"} <= set(names)
    sim = Simulator(res.fixed).run(data, record=names)
    assert_probes_equal(res.fixed, plan, run["values"], sim.values)
    assert 0 < sim.values["head_lif"].mean() < 1
