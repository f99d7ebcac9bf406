"""The membrane-shortcut residual (currents summed before a neuron) through the quantizer, the
simulator and the exporters, on a float IR graph (MS-ResNet-like; the Lava comparison is
tests/lava/test_membrane_shortcut.py, the traced models tests/test_spikingjelly.py)."""
from __future__ import annotations

import numpy as np
import pytest

from spikec import interp
from spikec.backends.lava.samples import images, ms_resnet_like
from spikec.errors import UnsupportedOpError
from spikec.ir import fixed as F
from spikec.pipeline import compile_graph
from spikec.sim import Simulator
from spikec.target import fixedpoint as fx
from spikec.target import load_profile


@pytest.fixture(scope="module")
def compiled():
    data = images(6)
    return compile_graph(ms_resnet_like(T=3), "loihi2", calib=data), data


def test_summed_synapses_share_the_neurons_scale(compiled):
    res, _ = compiled
    l3 = res.fixed.op("l3")
    syns = [res.fixed.op(i) for i in l3.inputs]
    assert all(isinstance(s, F.ConvSynapse) for s in syns) and len(syns) == 3
    # one K (so one vth) per channel; each term its own exponent at that K: the raw-pixel stem
    # (small weights) a smaller one than the spike-fed convs
    assert np.all(syns[0].weight_exp < syns[1].weight_exp)
    notes = res.notes["layers"]["l3"]
    assert notes["op"] == "membrane_sum" and set(notes["terms"].values()) == {"stem", "c1", "c2"}
    # the stem feeds l1 too: each neuron has its own copy at its own scale
    assert res.fixed.op("l1").inputs != (l3.inputs[0],)
    assert not any(op.OPCODE == "add" for op in res.fixed.ops)


def test_cuba_lif_sums_its_inputs(compiled):
    """The simulator's neuron sees a_in = sum of its synapse ops (checked against the chip's
    per-step arithmetic fed with the recorded synapse outputs)."""
    res, data = compiled
    l3 = res.fixed.op("l3")
    run = Simulator(res.fixed).run(data, record=list(l3.inputs) + ["l3"])
    a_in = sum(run.values[i].astype(np.int64) for i in l3.inputs)
    fmt = load_profile("loihi2").formats
    u = v = np.zeros(a_in.shape[1:], np.int64)
    for t in range(a_in.shape[0]):
        u, v, s = fx.lif_step(u, v, a_in[t], l3.du, l3.dv, l3.vth, l3.bias_mant, l3.bias_exp, fmt)
        assert np.array_equal(s, run.values["l3"][t].astype(bool))
    assert 0 < run.values["l3"].mean() < 1


def test_state_close_to_the_float_stage(compiled):
    """l2 and l3 sum the stem's raw-pixel synapse (weights ~1/255 of the others once the pixel
    scale is folded) with spike-fed ones: at one exponent per channel the stem's term kept few
    mantissa bits (0.92 state agreement); each term's own exponent at the shared K gives 0.99."""
    res, data = compiled
    names = ["l1", "l2", "l3"]
    flt = interp.run(res.folded, data, dtype=np.float64, record=names).values
    bits = Simulator(res.fixed).run(data, record=names).values
    agree = {n: np.mean(flt[n].astype(bool) == bits[n].astype(bool)) for n in names}
    assert min(agree.values()) > 0.98, agree
    l2 = res.fixed.op("l2")
    stem, c1 = (res.fixed.op(i) for i in l2.inputs)
    assert np.all(stem.weight_exp < c1.weight_exp)   # the small-weight term: a smaller exponent


def test_head_on_summed_currents_is_one_readout():
    data = images(6)
    g = ms_resnet_like(T=2, current_head=True)
    res = compile_graph(g, "loihi2", calib=data)
    ro = res.fixed.op("tm")
    assert isinstance(ro, F.Readout) and len(ro.inputs) == 3
    flt = interp.run(res.folded, data, dtype=np.float64).logits
    bits = Simulator(res.fixed).run(data).outputs["y"]
    assert np.corrcoef(flt.ravel(), bits.ravel())[0, 1] > 0.95


def test_exporters_and_estimator(compiled):
    pytest.importorskip("nir")
    from spikec.backends.nir.quantized import to_nir_quantized
    from spikec.estimate.network import extract_network

    res, _ = compiled
    nir_graph, _ = to_nir_quantized(res.fixed)
    edges = [e for e in _edges(nir_graph) if e[1].split(".")[-1] == "l3"]
    assert len(edges) == 3, edges
    net = extract_network(res.fixed)  # every term on the neuron's cores (test_estimate_multi)
    assert [len(net.layer(n).parts) for n in ("l2", "l3")] == [2, 3]
    g = compile_graph(ms_resnet_like(T=2, current_head=True), "loihi2").fixed
    with pytest.raises(UnsupportedOpError, match=r"'tm' \(readout\) sums 3 synapse ops"):
        to_nir_quantized(g)


def _edges(graph, prefix=""):
    out = [(prefix + a, prefix + b) for a, b in graph.edges]
    for name, node in graph.nodes.items():
        if hasattr(node, "nodes") and hasattr(node, "edges"):
            out += _edges(node, prefix + name + ".")
    return out
