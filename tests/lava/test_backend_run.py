"""The Lava bundle on Lava's own fixed_pt CPU models equals spikec's bit-exact simulator, spike for
spike: every probed layer, both SSA lowerings, Lava Conv and unrolled Sparse synapses, binary and
graded inputs, split layers, residual ADD and IAND, every kind pair of spike_matmul."""
from __future__ import annotations

import numpy as np
import pytest
from lava_probes import assert_probes_equal

from spikec.backends.lava import build_plan, samples
from spikec.backends.lava.runtime import network
from spikec.sim import Simulator

pytestmark = pytest.mark.lava


def _check(graph, inputs, **kw):
    plan, arrays, facts = build_plan(graph, **kw)
    res = network.run(plan, arrays, inputs)
    names = [p["value"] for p in plan["probes"]]
    data = next(iter(inputs.values()))
    sim = Simulator(graph).run(data, record=names)
    assert_probes_equal(graph, plan, res["values"], sim.values)
    return plan, res, facts


@pytest.mark.parametrize("ssa", ["host", "decompose"])
def test_spikformer_like_add(ssa):
    plan, res, facts = _check(samples.spikformer_like(residual="add"),
                              {"x": samples.images(3)}, ssa=ssa)
    assert res["steps"] == 3 * 3 + plan["depth"]
    kinds = {p["type"] for p in plan["processes"]}
    assert {"conv", "sparse", "lif", "graded_relay", "readout"} <= kinds
    if ssa == "host":
        assert set(res["host_traffic"]) == {"kv", "qkv"}
        assert res["host_traffic"]["kv"]["messages_in"] > 0
    else:
        assert "spike_matmul" not in kinds and "gate" in kinds


def test_spikformer_like_iand_sparse_convs():
    plan, _, _ = _check(samples.spikformer_like(residual="iand", T=2), {"x": samples.images(2)},
                        ssa="host", conv="sparse")
    assert not [p for p in plan["processes"] if p["type"] == "conv"]


def test_spikformer_like_and_join():
    g = samples.spikformer_like(residual="and", T=2)
    plan, _, _ = _check(g, {"x": samples.images(2)}, ssa="host")
    assert any(p["type"] == "lif" and p.get("ir") == "join" for p in plan["processes"])
    v = Simulator(g).run(samples.images(2), record=["join", "mp", "l2"]).values
    assert v["join"].any() and (v["join"] != (v["mp"] | v["l2"])).any()   # an AND, not an OR


@pytest.mark.parametrize("ssa", ["host", "decompose"])
def test_matmul_every_kind_pair(ssa):
    plan, _, _ = _check(samples.matmul_zoo(T=3), {"x": samples.sequences(2, 3)}, ssa=ssa)
    if ssa == "decompose":
        assert {"prod", "gate"} <= {p["type"] for p in plan["processes"]}


def test_chain_with_dense_and_lava_conv():
    plan, _, _ = _check(samples.chain(T=2), {"x": samples.images(2)})
    assert {p["type"] for p in plan["processes"]} >= {"conv", "dense"}


def test_conv_zoo_weight_shared_convs_match_simulator():
    """Every weight-shared Conv path (negative and mixed exponents, a gathered split input,
    a delay line, stride/padding/dilation, token-wise dense on (C, N) and (N, C)) and the
    unrolled fallback (a grouped conv into a split layer), spike for spike."""
    plan, _, _ = _check(samples.conv_zoo(T=3), {"x": samples.images(3, (2, 9, 9))})
    procs = {p["name"]: p for p in plan["processes"]}
    convs = [p for p in procs.values() if p["type"] == "conv"]
    assert {p["weight_exp"] for p in convs if p["name"].startswith("l1_syn")} == {0, -1, -2, 1}
    assert [p for p in convs if p["name"].startswith("l2_syn")][0]["weight_exp"] == -2
    assert "l1_gather2" in procs and "l2_delay5" in procs
    assert {tuple(p["input_shape"]) for p in convs if p["name"].startswith(("l5", "readout"))} \
        == {(1, 35, 4), (35, 1, 4)}
    assert [p for p in procs.values() if p["type"] == "sparse" and p["name"].startswith("l3_syn")]
    assert any("w_rows" in p for p in procs.values() if p["type"] == "sparse")


@pytest.mark.parametrize("kernel,stride,padding,groups", [
    ((1, 1), (1, 1), (0, 0), 1), ((3, 2), (2, 1), (1, 0), 2), ((1, 1), (2, 2), (0, 0), 1)])
def test_conv_model_is_lavas_fixed_pt_conv_plus_exponent(kernel, stride, padding, groups):
    """PyConvModelExp's arithmetic: Lava's own conv (lava.proc.conv.utils.conv_scipy, exact in
    float64 here) and 24-bit wrap for exponent 0; the exponent shifts the exact sum."""
    from lava.proc.conv import utils

    from spikec.backends.lava.runtime import procs

    rng = np.random.default_rng(sum(kernel) + groups)
    s_in = rng.integers(0, 200, (7, 6, 4)) * (rng.random((7, 6, 4)) < 0.5)
    w = rng.integers(-255, 256, (6, *kernel, 4 // groups))
    args = (kernel, stride, padding, (1, 1), groups)
    got = procs.conv_exact(s_in, w, *args)
    want = np.rint(utils.conv_scipy(s_in.astype(float), w.astype(float), *args)).astype(np.int64)
    assert np.array_equal(got, want)
    assert np.array_equal(procs.shift_wrap(got, 0), utils.signed_clamp(want, bits=24))
    for e in (-3, -1, 2):
        shifted = np.floor(want * 2.0 ** e).astype(np.int64)
        assert np.array_equal(procs.shift_wrap(got, e), utils.signed_clamp(shifted, bits=24))

@pytest.mark.parametrize("kind", ["sdsa", "qk", "qk_channel"])
def test_spiking_attention_compiled_from_float(kind):
    """The Spike-driven Transformer's SDSA and QKFormer's Q-K attention, compiled from a float
    graph: each token/channel sum became its LIF's unit-weight dense synapse, the masks are
    (broadcasting) ``and`` relays; Lava equals the simulator on every probed value."""
    from spikec.pipeline import compile_graph

    x = samples.images(4)
    fixed = compile_graph(samples.attention_float(kind, T=2), "loihi2", calib=x).fixed
    assert "reduce_sum" not in {op.OPCODE for op in fixed.ops}
    plan, res, _ = _check(fixed, {"x": x}, ssa="host")
    mask = "kv_s" if kind == "sdsa" else "a_s"
    assert res["values"][mask].any() and res["values"]["attn"].any()
    probed = {p["value"] for p in plan["probes"]}
    assert {mask, "attn", "proj_s"} <= probed


def test_reduce_sum_relays():
    g = samples.reduce_sum_zoo(T=3)
    plan, res, _ = _check(g, {"x": samples.sequences(3, 3)})
    assert {"sum_n", "sum_grid", "sum_c"} <= {p["value"] for p in plan["probes"]}
    assert res["values"]["sum_grid"].max() > 1          # a count, carried as a graded payload
