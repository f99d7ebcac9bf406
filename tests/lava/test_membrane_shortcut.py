"""The membrane-shortcut residual (MS-ResNet, Spikingformer, Spike-driven Transformer) on Lava's
fixed_pt models equals spikec's bit-exact simulator, spike for spike: a neuron fed by the sum of
several synapse ops (currents added before the neuron) is one compartment whose a_in receives
every synapse process, delay-balanced."""
from __future__ import annotations

import numpy as np
import pytest

from spikec.backends.lava import build_plan, samples
from spikec.backends.lava.runtime import network
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.pipeline import compile_graph
from spikec.sim import Simulator

pytestmark = pytest.mark.lava


def ms_resnet_like(seed: int = 0, T: int = 3, ch: int = 4, current_head: bool = False) -> Graph:
    """stem conv (raw pixels) -> x; x = x + conv(lif(x)) twice (the second through a 1x1 conv of
    different shape); head on lif(x) (or, ``current_head``, on the sum of currents itself, as
    Spikingformer's): the last neuron sums three synapse ops of three depths."""
    rng = np.random.default_rng(seed)

    def conv(name, src, cin, k, pad, scale=0.5):
        return O.Conv2d(name, (src,), weight=rng.normal(size=(ch, cin, k, k)) * scale,
                        bias=rng.normal(size=ch) * 0.2, padding=(pad, pad))

    ops = [O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
           conv("stem", "x", 1, 3, 1, 1.5),
           O.LIF("l1", ("stem",)), conv("c1", "l1", ch, 3, 1),
           O.Add("x1", ("stem", "c1")),
           O.LIF("l2", ("x1",)), conv("c2", "l2", ch, 1, 0, 0.8),
           O.Add("x2", ("x1", "c2")),
           O.LIF("l3", ("x2",))]
    if current_head:  # Spikingformer: head(mean over tokens of the currents)
        ops += [O.Reshape("tokens", ("x2",), shape=(ch, 64)),
                O.Linear("head", ("tokens",), weight=rng.normal(size=(5, ch)), bias=np.zeros(5),
                         axis=0),
                O.Mean("mean", ("head",), axes=(1,)), O.TimeMean("tm", ("mean",))]
    else:
        ops += [O.Reshape("flat", ("l3",), shape=(ch * 64,)),
                O.Linear("head", ("flat",), weight=rng.normal(size=(5, ch * 64)), bias=np.zeros(5)),
                O.TimeMean("tm", ("head",))]
    ops.append(O.Output("y", ("tm",)))
    return Graph(ops, timesteps=T)


def _check(graph, data, **kw):
    plan, arrays, _ = build_plan(graph, **kw)
    res = network.run(plan, arrays, {"x": data})
    names = [p["value"] for p in plan["probes"]]
    sim = Simulator(graph).run(data, record=names)
    checked = 0
    for p in plan["probes"]:
        got = res["values"][p["value"]]
        if p["kind"] == "readout":
            op = graph.op(p["value"])
            got, want = op.scale * got.astype(np.float64) + op.offset, sim.values[p["value"]]
        else:
            want = np.moveaxis(sim.values[p["value"]].astype(np.int64), 0, 1)
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{p['value']}: {len(bad)} mismatches, first at {bad[0].tolist()}"
        checked += got.size
    return plan, sim, checked


@pytest.mark.parametrize("conv", ["lava", "sparse"])
def test_membrane_shortcut_matches_lava(conv):
    data = samples.images(4)
    res = compile_graph(ms_resnet_like(), "loihi2", calib=data)
    fixed = res.fixed
    l3 = fixed.op("l3")
    assert isinstance(l3, F.CubaLIF) and len(l3.inputs) == 3
    assert res.notes["layers"]["l3"]["op"] == "membrane_sum"
    plan, sim, checked = _check(fixed, data, ssa="host", conv=conv)
    assert checked > 0
    spikes = sim.values["l3"]
    assert 0 < spikes.mean() < 1  # the summed neuron fires, but not everywhere
    # synapse processes of all three terms (three depths) end in l3's a_in
    into_l3 = {c["src"][0] for c in plan["connections"]
               if c["dst"][0].startswith("l3") and c["dst"][1] == "a_in"}
    terms = {src.split("_")[1] for src in into_l3 if src.startswith("l3_syn")}
    assert terms >= {"syn", "syn1", "syn2"}, into_l3


def test_head_on_summed_currents_matches_lava():
    """Spikingformer's head reads the residual currents: the head composed with each synapse, one
    read-out with three synapse inputs of three depths."""
    data = samples.images(4)
    res = compile_graph(ms_resnet_like(current_head=True, T=2), "loihi2", calib=data)
    ro = res.fixed.op("tm")
    assert isinstance(ro, F.Readout) and len(ro.inputs) == 3
    _check(res.fixed, data, ssa="host", conv="lava")
