"""The token-mean fold (``spikec.passes.fold_mean_of_currents``): a LIF reading the mean of a
membrane-shortcut stream (the Spike-driven Transformer's ``head_lif``) is fed by one synapse per
term instead; pointwise terms through a token count, the others by their exact dense map.
On an IR graph shaped like a tiny SDT (tests/sdt_graph.py; the Lava comparison is
tests/lava/test_sdt_head.py, the registry's model tests/test_sdt_compile.py)."""
from __future__ import annotations

import numpy as np
import pytest

from sdt_graph import images, sdt_like
from spikec import interp
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.memory import ENV_LIMIT, MemoryBudgetError
from spikec.passes import eliminate_dead_ops, fold_mean_of_currents
from spikec.passes.tokenmean import _dense_map
from spikec.pipeline import compile_graph
from spikec.sim import Simulator


@pytest.fixture(scope="module")
def graphs():
    g = sdt_like()
    return g, eliminate_dead_ops(fold_mean_of_currents(g)), images(16)


def test_head_neuron_reads_one_synapse_per_term(graphs):
    _, f, _ = graphs
    names = {op.name: op for op in f.ops}
    assert "tokens" not in names and not any(isinstance(op, O.Mean) for op in f.ops)
    linears = [op for op in f.ops if op.name.startswith("mean.") and isinstance(op, O.Linear)]
    # fc2 and proj are 1x1: a token count then W / N; rpe and c1 (3x3, padded): dense maps
    assert {op.name for op in linears} == {"mean.fc2", "mean.proj", "mean.rpe", "mean.c1"}
    counted = {op.name for op in f.ops if isinstance(op, O.ReduceSum)} - {"kv_sum"}
    assert counted == {"mean.fc2.count", "mean.proj.count"}
    assert names["mean.fc2"].weight.shape == (8, 16)
    assert names["mean.rpe"].weight.shape == (8, 8 * 4 * 4)
    assert isinstance(names["mean"], O.Add) and names["head_lif"].inputs == ("mean",)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fold_is_exact_on_dyadic_weights(graphs, dtype):
    """Weights on a 1/8 grid, N = 16 and binary inputs: every sum is exact, so the fold (which
    only re-associates them) gives the same head current bit for bit, hence the same spikes."""
    g, f, x = graphs
    a = interp.run(g, x, dtype=dtype, record=["mean", "head_lif"])
    b = interp.run(f, x, dtype=dtype, record=["mean", "head_lif"])
    assert np.array_equal(a.values["mean"], b.values["mean"])
    assert np.array_equal(a.logits, b.logits)
    assert 0 < a.values["head_lif"].mean() < 1


@pytest.mark.parametrize("conv", [
    dict(k=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(k=3, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=2),
    dict(k=2, stride=(1, 2), padding=(0, 1), dilation=(2, 1), groups=1),
    dict(k=1, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=4),
])
def test_dense_map_is_the_mean_of_the_conv(conv):
    """``sum M x + b`` equals the interpreter's mean over the conv's output grid (any stride,
    padding, dilation, groups), on random spikes."""
    rng = np.random.default_rng(1)
    k, groups = conv.pop("k"), conv["groups"]
    op = O.Conv2d("c", ("x",), weight=rng.normal(size=(4, 4 // groups, k, k)),
                  bias=rng.normal(size=4), **conv)
    x = (rng.random((5, 4, 7, 6)) < 0.4).astype(np.float64)
    y = interp.KERNELS.lookup(op)(op, x)                   # [5, 4, H_out, W_out]
    m = _dense_map(op, x.shape[1:], y.shape[1:], "mean")
    got = np.einsum("oc,bc->bo", m.reshape(4, -1), x.reshape(5, -1)) + op.bias
    np.testing.assert_allclose(got, y.mean(axis=(2, 3)), rtol=1e-12, atol=1e-12)


def test_bit_exact_stage_and_estimator(graphs):
    g, _, x = graphs
    res = compile_graph(g, "loihi2", calib=x)
    notes = res.notes["layers"]["head_lif"]
    assert notes["op"] == "membrane_sum" and len(notes["terms"]) == 4
    head = res.fixed.op("head_lif")
    assert isinstance(head, F.CubaLIF) and len(head.inputs) == 4
    lifs = [op.name for op in res.folded.ops if isinstance(op, O.LIF)]
    fl = interp.run(res.folded, x, dtype=np.float64, record=lifs)
    sim = Simulator(res.fixed).run(x, record=lifs)
    agree = {n: float(np.mean(fl.values[n] == sim.values[n])) for n in lifs}
    print({n: round(a, 4) for n, a in agree.items()})
    # dyadic weights quantize exactly; only the raw-pixel stem's rounding moves a few spikes
    assert min(agree.values()) >= 0.98 and agree["head_lif"] >= 0.98
    from spikec.estimate.network import extract_network
    net = extract_network(res.fixed)
    assert len(net.layer("head_lif").parts) == 4


def test_exports_of_the_folded_graph():
    """The fold's ops (token counts, dense synapses, adds before the neuron) export: NIR
    (folded and quantized; read back by spikec's NIR frontend) and ONNX (run in onnxruntime)."""
    pytest.importorskip("nir")
    pytest.importorskip("onnxruntime")
    from spikec.backends import onnx as bonnx
    from spikec.backends.nir import to_nir
    from spikec.backends.nir.quantized import to_nir_quantized
    from spikec.frontends import LoadOptions
    from spikec.frontends.nir import from_nir

    x = images(8)
    res = compile_graph(sdt_like(attention=False), "loihi2", calib=x)
    kinds = {type(op) for op in res.folded.ops}
    assert O.ReduceSum in kinds and O.Mean not in kinds
    want = interp.run(res.folded, x, dtype=np.float64).logits
    back = from_nir(to_nir(res.folded)[0], LoadOptions(timesteps=res.folded.timesteps))
    np.testing.assert_allclose(interp.run(back, x, dtype=np.float64).logits, want, atol=1e-5)
    to_nir_quantized(res.fixed)
    model, _ = bonnx.to_onnx(res.folded)
    got = bonnx.run_steps(model.SerializeToString(), x)["last"]["y"]   # the time mean so far
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_left_alone_when_it_does_not_apply():
    rng = np.random.default_rng(0)
    base = [O.Input("x", (), shape=(2, 4, 4), pixel_scale=1 / 255),
            O.Conv2d("c", ("x",), weight=rng.normal(size=(3, 2, 1, 1)), bias=np.zeros(3)),
            O.LIF("s", ("c",)),
            O.Conv2d("d", ("s",), weight=rng.normal(size=(3, 3, 1, 1)), bias=np.zeros(3))]
    tail = [O.LIF("h", ("m",)), O.Linear("head", ("h",), weight=np.ones((2, 3)), axis=-1),
            O.TimeMean("tm", ("head",)), O.Output("y", ("tm",))]
    # a mean read by a linear (Spikingformer's head): the read-out's business, not this fold
    ro = Graph(base + [O.Mean("m", ("d",), axes=(1, 2)),
                       O.Linear("head", ("m",), weight=np.ones((2, 3)), axis=-1),
                       O.TimeMean("tm", ("head",)), O.Output("y", ("tm",))], timesteps=2)
    assert fold_mean_of_currents(ro) is ro
    # a term that reads real values (the raw input): the quantizer's refusal stays
    raw = Graph(base + [O.Add("a", ("c", "d")), O.Mean("m", ("a",), axes=(1, 2))] + tail,
                timesteps=2)
    assert fold_mean_of_currents(raw) is raw
    # a mean that keeps two axes
    two = Graph(base + [O.Mean("m", ("d",), axes=(1,)), O.LIF("h", ("m",)),
                        O.Reshape("f", ("h",), shape=(12,)),
                        O.Linear("head", ("f",), weight=np.ones((2, 12)), axis=-1),
                        O.TimeMean("tm", ("head",)), O.Output("y", ("tm",))], timesteps=2)
    assert fold_mean_of_currents(two) is two


def test_dense_map_refused_past_the_memory_budget(graphs, monkeypatch):
    monkeypatch.setenv(ENV_LIMIT, "1K")
    with pytest.raises(MemoryBudgetError, match=r"token mean 'mean' into a dense synapse on the "
                                                 r"input of '(rpe|c1)' \(8 x \d+ weights\) needs"):
        fold_mean_of_currents(graphs[0])
