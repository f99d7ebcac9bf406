"""The estimator on neurons fed by several synapse ops (membrane-shortcut residuals: MS-ResNet,
Spikingformer) and on spike-driven attention (``and`` / ``reduce_sum``): every term's synapses on
the neuron's cores, counted against the fixed graph, and ``spikec estimate`` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spikec.backends.lava.samples import attention_float, images, ms_resnet_like
from spikec.cli import main
from spikec.estimate import extract_network, map_network
from spikec.estimate.events import assumed_counts, counts_from_sim
from spikec.estimate.mapping import _evaluate_layer, _Links
from spikec.estimate.partition import CoreLimits, worst_tile
from spikec.ir import save
from spikec.ir.fixed import ConvSynapse, DenseSynapse
from spikec.pipeline import compile_graph
from spikec.sim import Simulator
from spikec.target.profile import load_profile


@pytest.fixture(scope="module")
def msr():
    return compile_graph(ms_resnet_like(T=3), "loihi2", calib=images(6)).fixed


@pytest.fixture(scope="module")
def msr_head():
    """The current head (Spikingformer's): a read-out summing three convs over space."""
    return compile_graph(ms_resnet_like(T=3, current_head=True), "loihi2",
                         calib=images(6)).fixed


def brute_synapses(op, graph) -> int:
    """Connections of a synapse op counted one by one: (output element, input element, weight)
    triples whose tap falls inside the input (summed over a read-out's positions as well)."""
    if isinstance(op, DenseSynapse):
        n_out, n_in = op.weight.shape
        return graph.spec(op.name).size // n_out * n_out * n_in
    assert isinstance(op, ConvSynapse)
    cout, cin_g, kh, kw = op.weight.shape
    _, h_in, w_in = graph.spec(op.inputs[0]).shape
    _, ho, wo = graph.spec(op.name).shape
    n = 0
    for i in range(ho):
        for j in range(wo):
            for u in range(kh):
                for v in range(kw):
                    y = i * op.stride[0] - op.padding[0] + u * op.dilation[0]
                    x = j * op.stride[1] - op.padding[1] + v * op.dilation[1]
                    n += 0 <= y < h_in and 0 <= x < w_in
    return n * cout * cin_g


def synapse_behind(graph, value: str) -> str:
    """The synapse op whose output ``value`` is (through reshapes and transposes)."""
    op = graph.op(value)
    while op.OPCODE in ("reshape", "transpose"):
        op = graph.op(op.inputs[0])
    return op.name


@pytest.mark.parametrize("profile", ["loihi2", "loihi"])
@pytest.mark.parametrize("which", ["msr", "msr_head"])
def test_layer_totals_are_the_sum_of_its_terms(which, profile, request):
    graph = request.getfixturevalue(which)
    net = extract_network(graph)
    m = map_network(net, load_profile(profile))
    multi = [lm for lm in m.layers if lm.layer.parts]
    assert {lm.layer.name for lm in multi} == {op.name for op in graph.ops if op.OPCODE in
                                               ("cuba_lif", "readout") and len(op.inputs) > 1}
    for lm in multi:
        layer = lm.layer
        op = graph.op(layer.name)
        assert layer.neurons == graph.spec(op.name).size == int(lm.neurons.sum())
        assert layer.synapse_ops == [p.synapse for p in layer.parts] and len(layer.parts) == \
            len(op.inputs)
        brute = [brute_synapses(graph.op(p.synapse), graph) for p in layer.parts]
        assert lm.stream_synapses == brute
        assert int(lm.synapses.sum()) == sum(brute)
        # every part on the layer's own cores, under its tiling: memory and axons add up
        limits = CoreLimits.from_profile(load_profile(profile))
        alone = [_evaluate_layer(p, lm.tiling, lm.first_core, limits, {}, _Links(None))
                 for p in layer.parts]
        for field in ("synapses", "memory_bits", "input_axons"):
            assert np.array_equal(getattr(lm, field), sum(getattr(a, field) for a in alone)), \
                field
        # the search bound covers what the cores hold
        bound = worst_tile(layer, lm.tiling.tile, limits, lm.tiling.fanin_split)
        assert lm.memory_bits.max() <= bound["synaptic_memory"]
        assert lm.input_axons.max() <= bound["input_axons"]


def test_events_and_energy_count_every_term(msr):
    net = extract_network(msr)
    m = map_network(net, load_profile("loihi2"))
    lm = m.layer("l3")
    T = net.timesteps
    c = assumed_counts(m, rate=0.25)
    u = c.get("l3")
    # x (the host's pixels) sends every step; l1, l2 fire at the assumed rate
    per = {"x": float(T), "l1": 0.25 * T, "l2": 0.25 * T}
    want = {p.name: lm.stream_synapses[i] * per[p.terms[0].source]
            for i, p in enumerate(lm.layer.parts)}
    assert u.synaptic_by_part == pytest.approx(want)
    assert u.synaptic_events == pytest.approx(sum(want.values()))
    # measured: each synapse op's own count from the simulator
    run = Simulator(msr).run(images(4))
    cs = counts_from_sim(run, m, "sim")
    ops = {p.name: p.synapse for p in lm.layer.parts}
    assert cs.get("l3").synaptic_by_part == pytest.approx(
        {k: run.stats[v].per_sample("synaptic_events") for k, v in ops.items()})
    from spikec.estimate.energy import paper_energy

    # the stem term reads pixels: MACs; the spike-fed terms: synaptic ops
    e = paper_energy(m, cs)
    stems = [p for lm2 in m.layers for p in lm2.layer.inputs if p.first_layer]
    assert {p.terms[0].source for p in stems} == {"x"} and len(stems) == 3  # l1, l2, l3
    sops = sum(cs.get(lm2.layer.name).synaptic_by_part.get(p.name, 0.0)
               for lm2 in m.layers for p in lm2.layer.parts if not p.first_layer)
    assert e["sops_synapses"] >= sops > 0


def _estimate(path, profile, capsys, *extra) -> dict:
    assert main(["estimate", str(path), "--profile", profile, "--json", "--no-save",
                 *extra]) in (0, None)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("profile", ["loihi2", "loihi"])
def test_spikec_estimate_on_membrane_shortcut_and_attention(msr, msr_head, profile, tmp_path,
                                                           capsys):
    attn = compile_graph(attention_float("sdsa"), "loihi2", calib=images(6)).fixed
    for name, graph in (("msr", msr), ("msr_head", msr_head), ("sdsa", attn)):
        save(graph, tmp_path / f"{name}.spkc")
        j = _estimate(tmp_path / f"{name}.spkc", profile, capsys)
        assert j["fits"] and j["cores"] >= 1 and j["chips"] >= 1
        assert j["energy_per_inference_j"]["profile"] > 0 and j["latency_per_inference_s"] > 0
        layers = {e["name"]: e for e in j["layers"]}
        if name == "msr":
            assert layers["l3"]["synapse_ops"] == list(graph.op("l3").inputs)
        if name == "sdsa":
            assert "and" in {e["kind"] for e in j["layers"]}


def test_cycle_timing_on_a_membrane_shortcut(msr, tmp_path, capsys):
    from spikec.data import Dataset, save_npz

    save(msr, tmp_path / "m.spkc")
    data = save_npz(Dataset(images(4), np.zeros(4, np.int64), "tiny", 3), tmp_path / "d.npz")
    j = _estimate(tmp_path / "m.spkc", "loihi2", capsys, "--data", str(data), "--timing",
                  "cycle")
    t = j["timing"]
    assert t["samples"] == 4
    assert t["energy_per_sample_j"]["mean"] == pytest.approx(
        j["energy_per_inference_j"]["profile"], rel=0.05)


@pytest.mark.parametrize("profile", ["loihi2", "loihi"])
def test_spikec_estimate_on_registry_spikingformer(profile, tmp_path, capsys):
    """The registry's Spikingformer (a LIF and the read-out summing several synapse ops)."""
    torch = pytest.importorskip("torch")
    from spikec import models
    from spikec.frontends.torch import input_op, trace

    torch.manual_seed(0)
    m = models.create("spikingformer_cifar_4_384", embed_dim=32, depth=1, num_heads=2, T=2,
                      img_size=16, num_classes=5)
    raw = (np.random.default_rng(0).random((4, 3, 16, 16)) * 255).astype(np.uint8)
    graph = trace(m.eval(), input_op((3, 16, 16), {}), timesteps=2)
    fixed = compile_graph(graph, "loihi2", calib=raw).fixed
    save(fixed, tmp_path / "sf.spkc")
    j = _estimate(tmp_path / "sf.spkc", profile, capsys)
    assert j["fits"] and j["energy_per_inference_j"]["profile"] > 0
    multi = {e["name"]: e for e in j["layers"] if len(e["synapse_ops"]) > 1}
    summed = {op.name: [synapse_behind(fixed, v) for v in op.inputs] for op in fixed.ops
              if len(op.inputs) > 1 and op.OPCODE in ("cuba_lif", "readout")}
    assert summed and {k: v["synapse_ops"] for k, v in multi.items()} == summed
    for name in summed:
        want = sum(brute_synapses(fixed.op(s), fixed) for s in summed[name])
        assert multi[name]["synapses"] == want
    # the LIF's dense token term is laid out otherwise than its conv term: input axons per core
    # against the distinct sources its neurons read, connection by connection
    mapping = map_network(extract_network(fixed), load_profile(profile))
    lm = mapping.layer("block.0.mlp.mlp1_lif")
    assert not all(lm.layer.aligned(p) for p in lm.layer.parts) and lm.tiling.fanin_split == 1
    reads = brute_reads(fixed, lm.layer.name)
    for core in range(lm.cores):
        held = np.nonzero(lm.element_core == lm.first_core + core)[0]
        assert lm.input_axons[core] == len(set().union(*(reads[n] for n in held)))


def brute_reads(graph, name: str) -> list[set]:
    """Per neuron of ``name``: the (source op, element) pairs its synapses read."""
    from spikec.estimate.network import _producers, _source_index

    prod = _producers(graph)
    op = graph.op(name)
    out = [set() for _ in range(graph.spec(name).size)]
    for v in op.inputs:
        syn_name, idx = _source_index(v, prod, graph)
        syn = graph.op(syn_name)
        src, src_idx = _source_index(syn.inputs[0], prod, graph)
        src_idx = src_idx.ravel()
        in_shape = graph.spec(syn.inputs[0]).shape
        syn_shape = graph.spec(syn_name).shape
        for n, e in enumerate(idx.ravel()):
            co = list(np.unravel_index(e, syn_shape))
            if isinstance(syn, ConvSynapse):
                o, i, j = co
                _, cin_g, kh, kw = syn.weight.shape
                g0 = o // (syn.weight.shape[0] // syn.groups) * cin_g
                for c in range(g0, g0 + cin_g):
                    for u in range(kh):
                        for w in range(kw):
                            y = i * syn.stride[0] - syn.padding[0] + u * syn.dilation[0]
                            x = j * syn.stride[1] - syn.padding[1] + w * syn.dilation[1]
                            if 0 <= y < in_shape[1] and 0 <= x < in_shape[2]:
                                flat = np.ravel_multi_index((c, y, x), in_shape)
                                out[n].add((src, int(src_idx[flat])))
            else:
                a = syn.axis % len(syn_shape)
                for k in range(syn.weight.shape[1]):
                    co[a] = k
                    out[n].add((src, int(src_idx[np.ravel_multi_index(co, in_shape)])))
    return out
