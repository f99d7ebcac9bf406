"""Soft reset (``v -= v_subtract`` on a spike, spikingjelly's ``v_reset=None``) on Lava: spikec's
``SoftLIFReset`` process, Lava's bit-accurate LIFReset model with only the reset replaced, equals
the bit-exact simulator on every probe, with neurons that fire (and so reset) several times."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from lava_probes import run_and_compare

from spikec.backends.lava import build_plan, samples
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.pipeline import compile_graph

pytestmark = pytest.mark.lava


def _soft_fixed(graph: Graph, extra: int) -> Graph:
    """Every cuba_lif with a soft reset of 3/4 of ``vth << 6`` plus ``extra`` (off the 64 grid):
    a neuron keeps much of its voltage after a spike, unlike after a hard reset."""
    ops = [dataclasses.replace(op, v_subtract=((op.vth.astype(np.int32) << 6) * 3 // 4) + extra)
           if isinstance(op, F.CubaLIF) else op for op in graph.ops]
    return Graph(ops, timesteps=graph.timesteps, meta=dict(graph.meta), domain="fixed")


_check = run_and_compare


def _resets(graph, sim) -> tuple[int, int]:
    """(spikes of the soft-reset neurons: each one a reset, neurons that fired at least twice)."""
    lifs = [op.name for op in graph.ops if isinstance(op, F.CubaLIF) and op.v_subtract is not None]
    spikes = sum(int(sim.values[n].sum()) for n in lifs)
    again = sum(int((sim.values[n].sum(0) >= 2).sum()) for n in lifs)
    return spikes, again


def test_hand_made_soft_network_matches_lava():
    g = _soft_fixed(samples.spikformer_like(T=6), extra=5)
    data = samples.images(3)
    plan, sim, checked = _check(g, data, ssa="host", conv="lava")
    soft = [p for p in plan["processes"] if p.get("reset") == "soft"]
    assert soft and all(p["type"] == "lif" for p in soft)
    spikes, again = _resets(g, sim)
    print(f"hand-made: {checked} probed values equal, {spikes} soft resets, {again} neurons "
          "fired twice or more")
    assert checked > 0 and spikes > 100 and again > 20


@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_compiled_soft_reset_network_matches_lava(neuron):
    """The membrane-shortcut sample with every LIF made soft (and for ``if`` an IF neuron:
    ``tau = inf``, no input decay, so ``dv = 0``), compiled by the quantizer."""
    g = samples.ms_resnet_like(T=4)
    kind = {} if neuron == "lif" else {"tau": math.inf, "decay_input": False}
    g = Graph([dataclasses.replace(op, v_reset=None, **kind) if isinstance(op, O.LIF) else op
               for op in g.ops], timesteps=g.timesteps, meta=dict(g.meta), domain=g.domain)
    data = samples.images(4)
    res = compile_graph(g, "loihi2", calib=data)
    assert all(op.v_subtract is not None for op in res.fixed.ops if isinstance(op, F.CubaLIF))
    plan, sim, checked = _check(res.fixed, data, ssa="host", conv="lava")
    spikes, again = _resets(res.fixed, sim)
    if neuron == "if":
        assert all(op.dv == 0 for op in res.fixed.ops if isinstance(op, F.CubaLIF))
    print(f"compiled {neuron}: {checked} probed values equal, {spikes} soft resets, {again} "
          "neurons fired twice or more")
    assert checked > 0 and spikes > 50 and again > 10


def test_netx_refuses_a_soft_reset_chain():
    from spikec.backends.lava.netx import netx_bytes

    data, why = netx_bytes(_soft_fixed(samples.chain(), extra=0))
    assert data is None and "l1: soft reset" in why


def test_hard_reset_plan_has_no_soft_fields():
    plan, _, _ = build_plan(samples.chain(), ssa="host", conv="lava")
    lifs = [p for p in plan["processes"] if p["type"] == "lif"]
    assert lifs and not any("reset" in p or "v_subtract" in p for p in lifs)
