"""The membrane-shortcut residual (MS-ResNet, Spikingformer, Spike-driven Transformer) on Lava's
fixed_pt models equals spikec's bit-exact simulator, spike for spike: a neuron fed by the sum of
several synapse ops (currents added before the neuron) is one compartment whose a_in receives
every synapse process, delay-balanced."""
from __future__ import annotations

import pytest
from lava_probes import run_and_compare

from spikec.backends.lava import samples
from spikec.backends.lava.samples import ms_resnet_like
from spikec.ir import fixed as F
from spikec.pipeline import compile_graph

pytestmark = pytest.mark.lava


_check = run_and_compare


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
