"""Mapper, energy/latency models, DSE sweeps and the estimate/profiles commands, on hand-made fixed
graphs and hand-made event counts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spikec.cli import main
from spikec.errors import CapacityError, ProfileError, UnsupportedOpError
from spikec.estimate import EventCounts, UnitEvents, estimate, extract_network, map_network
from spikec.estimate.dse import parse_sweeps, plot_sweep, run_sweep, sweep_table_rows
from spikec.estimate.energy import E_AC_45NM, E_MAC_45NM, paper_energy
from spikec.estimate.events import counts_from_entries, counts_from_sim
from spikec.estimate.partition import LIMITS, CoreLimits
from spikec.ir import Graph, save
from spikec.ir import ops as O
from spikec.ir.fixed import ConvSynapse, CubaLIF, DenseSynapse, GradedInput, Readout
from spikec.target.profile import load_profile


# ----------------------------------------------------------------------------- graphs

def _lif(name, inp, shape):
    z = np.zeros(shape, np.int64)
    return CubaLIF(name, (inp,), du=4095, dv=2048, vth=np.full(shape, 10, np.int64),
                   bias_mant=z, bias_exp=z.copy())


def _syn_dense(name, inp, n_out, n_in, axis):
    return DenseSynapse(name, (inp,), weight=np.ones((n_out, n_in), np.int64),
                        weight_exp=np.zeros(n_out, np.int64), axis=axis)


def conv_net(c=4, hw=8, d=8, classes=3, T=4) -> Graph:
    """graded input -> 3x3 conv -> LIF -> maxpool -> tokens -> dense (axis 0) -> LIF -> readout."""
    n = (hw // 2) ** 2
    ops = [GradedInput("x", (), shape=(1, hw, hw)),
           ConvSynapse("c1", ("x",), weight=np.ones((c, 1, 3, 3), np.int64),
                       weight_exp=np.zeros(c, np.int64), padding=(1, 1)),
           _lif("l1", "c1", (c, hw, hw)),
           O.MaxPool2d("p1", ("l1",), kernel=(2, 2), stride=(2, 2)),
           O.Reshape("r1", ("p1",), shape=(c, n)),
           _syn_dense("d2", "r1", d, c, 0),
           _lif("l2", "d2", (d, n)),
           O.Transpose("t2", ("l2",), perm=(1, 0)),
           _syn_dense("d3", "t2", classes, d, -1),
           Readout("ro", ("d3",), scale=1.0, offset=np.zeros(classes), sum_axes=(0,)),
           O.Output("out", ("ro",))]
    return Graph(ops, timesteps=T, domain="fixed")


def ssa_net(D=8, N=16, H=2, T=2) -> Graph:
    """Spike tokens -> q, k, v (dense) -> SSA on the host -> attention LIF (reads the count)."""
    d = D // H
    ops = [GradedInput("x", (), shape=(D, N), kind="spike"),
           _syn_dense("qs", "x", D, D, 0), _lif("q", "qs", (D, N)),
           _syn_dense("ks", "x", D, D, 0), _lif("k", "ks", (D, N)),
           _syn_dense("vs", "x", D, D, 0), _lif("v", "vs", (D, N)),
           O.Reshape("qh", ("q",), shape=(H, d, N)), O.Transpose("qt", ("qh",), perm=(0, 2, 1)),
           O.Reshape("kh", ("k",), shape=(H, d, N)),
           O.Reshape("vh", ("v",), shape=(H, d, N)), O.Transpose("vt", ("vh",), perm=(0, 2, 1)),
           O.SpikeMatmul("kv", ("kh", "vt")),        # (H, d, d) = k^T v
           O.SpikeMatmul("att", ("qt", "kv")),       # (H, N, d) = q (k^T v)
           _lif("attn", "att", (H, N, d)),
           O.Output("out", ("attn",))]
    return Graph(ops, timesteps=T, domain="fixed")


@pytest.fixture(scope="module")
def loihi():
    return load_profile("loihi")


@pytest.fixture(scope="module")
def loihi2():
    return load_profile("loihi2")


def _check_within_limits(mapping):
    for lm in mapping.layers:
        for k in LIMITS:
            cap = mapping.limits.value(k)
            if cap:
                assert lm.usage(k).max() <= cap, (lm.layer.name, k)


# ----------------------------------------------------------------------------- profiles

def test_profiles_command_lists_shipped_profiles(capsys):
    main(["profiles", "--json"])
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"loihi", "loihi2", "kapoho-point", "hala-point", "truenorth", "speck"} <= names
    main(["profiles"])
    assert "loihi2" in capsys.readouterr().out


def test_malformed_profile_names_the_field(tmp_path, capsys):
    src = (load_profile("loihi").path).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace("neurons_per_core = 1024", 'neurons_per_core = "many"'))
    with pytest.raises(ProfileError, match="capacity.neurons_per_core"):
        load_profile(str(bad))
    save(conv_net(), tmp_path / "net.spkc")
    with pytest.raises(SystemExit) as e:
        main(["estimate", str(tmp_path / "net.spkc"), "--profile", str(bad)])
    assert e.value.code == 2
    assert "capacity.neurons_per_core" in capsys.readouterr().err


def test_user_profile_file_and_mapper_fields(tmp_path, loihi):
    user = tmp_path / "mychip.toml"
    user.write_text(loihi.path.read_text().replace('name = "loihi"', 'name = "mychip"'))
    p = load_profile(str(user))
    assert p.name == "mychip"
    lim = CoreLimits.from_profile(p)
    assert (lim.neurons, lim.memory_bits, lim.input_axons, lim.output_axons) == (
        1024, 1048576, 4096, 4096)
    assert lim.weight_bits == 8 and not lim.conv_sharing and not lim.graded


# ----------------------------------------------------------------------------- network view

def test_extract_network_layers_and_exact_synapses(loihi):
    net = extract_network(conv_net())
    assert [(x.name, x.kind) for x in net.layers] == [
        ("l1", "lif"), ("p1", "maxpool"), ("l2", "lif"), ("ro", "readout")]
    assert net.layers[0].first_layer and not net.layers[2].first_layer
    m = map_network(net, loihi)
    l1 = m.layer("l1")
    # 3x3 conv, pad 1 on 8x8: valid taps per row 2,3,3,3,3,3,3,2 (sum 22) -> 4 * 22 * 22
    assert int(l1.synapses.sum()) == 4 * 22 * 22
    assert int(m.layer("ro").synapses.sum()) == 3 * 8 * 16  # readout sums all tokens
    assert int(m.layer("p1").synapses.sum()) == 4 * 16 * 4
    # expanded encoding on Loihi 1: (8 weight + 10 index) bits per synapse
    assert int(l1.memory_bits.sum()) == 4 * 22 * 22 * 18
    _check_within_limits(m)


def test_weight_sharing_stores_each_kernel_once_per_core(loihi2):
    m = map_network(extract_network(conv_net()), loihi2)
    l1 = m.layer("l1")
    assert l1.cores == 1 and int(l1.memory_bits.sum()) == 4 * 9 * 8  # kernels only


# ----------------------------------------------------------------------------- each limit binding

@pytest.mark.parametrize("name,overrides,binding", [
    ("loihi", {"neurons_per_core": 64}, "neurons"),
    ("loihi", {"synaptic_memory_bits_per_core": 30000}, "synaptic_memory"),
    ("loihi2", {"input_axons_per_core": 40}, "input_axons"),
    ("loihi", {"output_axons_per_core": 60}, "output_axons"),
])
def test_each_limit_binds_in_turn(name, overrides, binding):
    profile = load_profile(name)
    base = map_network(extract_network(conv_net(c=8, hw=16)), profile)
    prof = profile.with_overrides(overrides)
    m = map_network(extract_network(conv_net(c=8, hw=16)), prof)
    _check_within_limits(m)
    l1 = m.layer("l1")
    assert l1.cores > base.layer("l1").cores
    assert l1.binding(m.limits)[0] == binding
    assert m.fits


def test_network_that_does_not_fit_names_layer_and_chips(tmp_path, loihi, capsys):
    prof = loihi.with_overrides({"neurons_per_core": 16})
    m = map_network(extract_network(conv_net(c=16, hw=16)), prof)
    assert not m.fits and m.chips_needed > 1
    assert "--chips" in m.reason and "layer" in m.reason
    ok = map_network(extract_network(conv_net(c=16, hw=16)), prof, chips=m.chips_needed)
    assert ok.fits and ok.placement.chips_used == m.chips_needed
    # the CLI: exit 3, one line, and the JSON says fits: false
    user = tmp_path / "tiny.toml"
    user.write_text(loihi.path.read_text().replace("neurons_per_core = 1024",
                                                   "neurons_per_core = 16"))
    save(conv_net(c=16, hw=16), tmp_path / "net.spkc")
    with pytest.raises(SystemExit) as e:
        main(["estimate", str(tmp_path / "net.spkc"), "--profile", str(user), "--json"])
    assert e.value.code == 3
    out = capsys.readouterr()
    j = json.loads(out.out)
    assert j["fits"] is False and j["chips"] == m.chips_needed
    assert out.err.count("\n") == 1 and "layer" in out.err
    main(["estimate", str(tmp_path / "net.spkc"), "--profile", str(user), "--json",
          "--chips", str(m.chips_needed)])
    assert json.loads(capsys.readouterr().out)["fits"] is True


def test_fanin_too_large_without_graded_spikes_is_a_capacity_error(loihi, loihi2):
    prof = loihi.with_overrides({"input_axons_per_core": 100})
    with pytest.raises(CapacityError, match="'ro'.*input_axons_per_core"):
        map_network(extract_network(conv_net()), prof)
    # a chip with graded spikes splits the fan-in into partial sums instead
    m = map_network(extract_network(conv_net()), loihi2.with_overrides(
        {"input_axons_per_core": 100}))
    ro = m.layer("ro")
    assert ro.tiling.fanin_split > 1 and ro.tiling.combine_cores >= 1
    _check_within_limits(m)


def test_system_profile_and_placement(loihi2):
    kp = load_profile("kapoho-point")
    prof = kp.with_overrides({"neurons_per_core": 8})
    m = map_network(extract_network(conv_net(c=16, hw=16)), prof)
    assert m.fits and m.placement.chips_used > 1
    pl = m.placement
    # cores fill chip 0 before chip 1, and no two cores share a (chip, tile, slot)
    assert (np.diff(pl.chip) >= 0).all()
    assert np.bincount(pl.chip).max() <= prof.capacity.cores_per_chip


# ----------------------------------------------------------------------------- energy and latency

def _hand_counts(net_map, T):
    c = {"l1": UnitEvents(spikes=100, synaptic_events=5000),
         "p1": UnitEvents(spikes=40, synaptic_events=400),
         "l2": UnitEvents(spikes=50, synaptic_events=320),
         "ro": UnitEvents(spikes=0, synaptic_events=150),
         "x": UnitEvents(spikes=256)}
    return EventCounts(timesteps=T, units=c, source="hand")


def test_paper_formula_on_hand_counts(loihi):
    g = conv_net()
    m = map_network(extract_network(g), loihi)
    counts = _hand_counts(m, 4)
    p = paper_energy(m, counts)
    macs = 4 * 8 * 8 * 9 * 4  # first conv: out size x 9 taps x T
    assert p["first_layer_macs"] == macs
    assert p["sops_synapses"] == 320 + 150  # conv/linear layers after the first; no relays
    assert p["energy_j"] == pytest.approx(E_MAC_45NM * macs + E_AC_45NM * 470)
    est = estimate(g, loihi, counts=counts)
    j = est.to_json()
    assert j["energy_per_inference_j"]["paper_45nm"] == pytest.approx(p["energy_j"])
    syn = j["energy"]["profile"]["breakdown_j"]["synaptic"]
    assert syn == pytest.approx((5000 + 400 + 320 + 150) * 23.6e-12)
    assert j["latency_per_step_s"] > 0 and j["timesteps"] == 4
    parts = j["latency"]["parts_s"]
    assert j["latency_per_step_s"] == pytest.approx(
        max(parts["busiest_core"], parts["embedded_cpu"]) + parts["network"]
        + parts["barrier_sync"])
    # the busiest core works at least the synaptic ops of l1's core per step
    assert parts["busiest_core"] >= 5000 / 4 * 3.5e-9


def test_ssa_counted_like_spikingformer(loihi2):
    g = ssa_net(D=8, N=16, H=2, T=2)
    m = map_network(extract_network(g), loihi2)
    assert {u.name: u.kind for u in m.network.host} == {
        "x": "graded_input", "kv": "spike_matmul", "att": "spike_matmul"}
    T, n = 2, 8 * 16
    units = {"q": UnitEvents(spikes=0.5 * n * T), "k": UnitEvents(spikes=0.25 * n * T),
             "v": UnitEvents(spikes=0.125 * n * T), "attn": UnitEvents(spikes=3),
             "x": UnitEvents(spikes=100), "kv": UnitEvents(ssa_ops=10), "att": UnitEvents(
                 ssa_ops=20)}
    p = paper_energy(m, EventCounts(T, units, "hand"))
    heads, N, d = 2, 16, 4
    # T x heads x N x d^2 x (min(fr_k, fr_v) + fr_q)
    assert p["sops_ssa"] == pytest.approx(T * heads * N * d * d * (0.125 + 0.5))
    j = estimate(g, loihi2, counts=EventCounts(T, units, "hand")).to_json()
    assert [h["where"] for h in j["host"]] == ["host", "embedded_cpu", "embedded_cpu"]
    assert j["totals"]["host_messages_in"] > 0  # q, k, v spikes travel to the embedded CPUs


def test_counts_from_entries_fill_relays_from_their_readers(loihi):
    m = map_network(extract_network(conv_net()), loihi)
    entries = [{"name": "c1", "op": "conv_synapse", "synaptic_events": 900, "input_events": 64},
               {"name": "l1", "op": "cuba_lif", "spikes": 30, "neuron_updates": 1024},
               {"name": "d2", "op": "dense_synapse", "synaptic_events": 80, "input_events": 10},
               {"name": "l2", "op": "cuba_lif", "spikes": 12},
               {"name": "d3", "op": "dense_synapse", "synaptic_events": 36, "input_events": 12},
               {"name": "ro", "op": "readout", "spikes": 0}]
    c = counts_from_entries(entries, m, 4, "hand", 1)
    assert c.get("l1").synaptic_events == 900 and c.get("l1").spikes == 30
    assert c.get("p1").spikes == 10          # what d2 received from the max-pool
    assert c.get("x").spikes == 64           # what c1 received from the host
    assert c.get("p1").synaptic_events == pytest.approx(256 * 30 / 256)


def test_alternative_cost_model_sanafe(loihi):
    j = estimate(conv_net(), loihi, cost="sanafe").to_json()
    assert j["energy"]["profile"]["cost_model"] == "sanafe"
    with pytest.raises(ProfileError, match="no cost model"):
        estimate(conv_net(), loihi, cost="nope")


def test_other_kinds_of_chip_map_without_loihi_assumptions():
    for name in ("truenorth", "speck", "hala-point"):
        j = estimate(conv_net(), load_profile(name)).to_json()
        assert j["fits"] and j["cores"] >= 4
    tn = estimate(conv_net(), load_profile("truenorth")).to_json()
    assert tn["latency_per_step_s"] == pytest.approx(1e-3)  # the global 1 ms tick
    speck = estimate(conv_net(), load_profile("speck")).to_json()
    assert speck["energy_per_inference_j"]["profile"] is None  # no per-event figure published
    assert "energy.synaptic_op" in speck["energy"]["profile"]["not_counted"]


# ----------------------------------------------------------------------------- CLI and DSE

def test_estimate_json_interface(tmp_path, capsys):
    out = tmp_path / "OUT"
    out.mkdir()
    save(conv_net(), out / "compiled.spkc")
    (out / "report.json").write_text(json.dumps({"timesteps": 4, "layers": []}))
    main(["estimate", str(out), "--profile", "loihi2", "--json"])
    j = json.loads(capsys.readouterr().out)
    for key in ("profile", "fits", "chips", "cores", "layers", "energy_per_inference_j",
                "latency_per_step_s", "timesteps"):
        assert key in j
    assert set(j["energy_per_inference_j"]) >= {"paper_45nm", "profile"}
    assert {"name", "cores", "neurons", "synapses", "synaptic_memory_bytes"} <= set(j["layers"][0])
    saved = json.loads((out / "report.json").read_text())
    assert saved["estimate"]["cores"] == j["cores"]
    main(["estimate", str(out), "--profile", "loihi2"])
    text = capsys.readouterr().out
    assert "binding limit" in text and "energy per inference" in text


def test_dse_sweep_table_and_plot(tmp_path, loihi, capsys):
    grid = parse_sweeps(["neurons_per_core=64,1024", "weight_bits=4,8"])
    assert grid == [("neurons_per_core", [64, 1024]), ("weight_bits", [4, 8])]
    net = extract_network(conv_net(c=8, hw=16))
    rows = run_sweep(net, loihi, grid)
    assert [r["point"] for r in rows] == [
        {"neurons_per_core": 64, "weight_bits": 4}, {"neurons_per_core": 64, "weight_bits": 8},
        {"neurons_per_core": 1024, "weight_bits": 4}, {"neurons_per_core": 1024, "weight_bits": 8}]
    assert rows[0]["cores"] > rows[2]["cores"]
    assert all(r["fits"] and r["energy_profile_j"] > 0 for r in rows)
    assert [("formats changed" in r.get("note", "")) for r in rows] == [True, False, True, False]
    assert rows[0]["cores"] <= rows[1]["cores"]  # 4-bit weights need less synaptic memory
    headers, cells = sweep_table_rows(rows)
    assert headers[:2] == ["neurons_per_core", "weight_bits"] and len(cells) == 4
    plot_sweep(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ProfileError, match="nonsense"):
        run_sweep(net, loihi, [("nonsense", [1])])
    save(conv_net(), tmp_path / "n.spkc")
    main(["estimate", str(tmp_path / "n.spkc"), "--profile", "loihi", "--sweep",
          "neurons_per_core=64,128", "--plot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert "neurons_per_core" in out and (tmp_path / "p.png").exists()


# ----------------------------------------------------------------------------- SSA lowerings

@pytest.fixture(scope="module")
def tiny_v2():
    """A random-weight spikformer_v2_tiny (16x16 input, T = 2) compiled for loihi2."""
    torch = pytest.importorskip("torch")
    from spikec import models
    from spikec.frontends.torch import input_op, trace
    from spikec.pipeline import compile_graph

    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny", T=2, img_size=16)
    return compile_graph(trace(model, input_op((1, 16, 16), {}), timesteps=2), "loihi2").fixed


def _ssa_layers(j):
    return [e for e in j["layers"] if e["kind"] in ("ssa_term", "ssa_sum")]


def test_decompose_puts_ssa_on_cores_with_the_lava_backends_sizes(tiny_v2, loihi2):
    from spikec.backends.lava import ssa_costs

    prof = loihi2.with_overrides({"energy.embedded_cpu_op": 10.0,
                                  "latency.embedded_cpu_op": 5.0})
    host = estimate(tiny_v2, prof, ssa="host")
    dec = estimate(tiny_v2, prof, ssa="decompose")
    h, d = host.to_json(), dec.to_json()
    assert (h["ssa"], d["ssa"]) == ("host", "decompose")
    assert d["cores"] > h["cores"] and d["totals"]["neurons"] > h["totals"]["neurons"]
    assert d["pipeline_depth"] > h["pipeline_depth"]
    # steps of delay: a layer on cores adds one, the CPU product none; the Lava bundle may add
    # gather relays for split layers, so the mapping's depth is a lower bound and the bundle's,
    # when given, is used as it is
    from spikec.backends.lava import bundle_files
    for j, ssa in ((h, "host"), (d, "decompose")):
        lava_depth = bundle_files(tiny_v2, ssa=ssa)[1]["pipeline_depth"]
        assert j["pipeline_depth_source"] == "mapping"
        assert lava_depth - 2 <= j["pipeline_depth"] <= lava_depth, ssa
        given = estimate(tiny_v2, prof, ssa=ssa, depth=lava_depth).to_json()
        assert (given["pipeline_depth"], given["pipeline_depth_source"]) == (lava_depth, "backend")
        assert given["steps_per_inference"] == 2 + lava_depth
    _check_within_limits(dec.mapping)
    # the products leave the embedded CPUs: no CPU energy or time, no q/k/v traffic to them
    assert h["energy"]["profile"]["breakdown_j"]["embedded_cpu"] > 0
    assert d["energy"]["profile"]["breakdown_j"]["embedded_cpu"] == 0
    assert d["latency"]["parts_s"]["embedded_cpu"] == 0
    assert [u["kind"] for u in d["host"]] == ["graded_input"]
    assert d["totals"]["host_messages_in"] == 0 < h["totals"]["host_messages_in"]
    # per product: the term and relay layers hold what the Lava backend builds
    products = [op for op in tiny_v2.ops if op.OPCODE == "spike_matmul"]
    assert len(products) == 4
    by_name = {e["name"]: e for e in _ssa_layers(d)}
    assert len(by_name) == 2 * len(products)
    for op in products:
        a, b = (tiny_v2.spec(v) for v in op.inputs)
        kinds = ["spike" if s.kind.value == "spike" else "count" for s in (a, b)]
        want = ssa_costs(a.shape, b.shape, *kinds)["decompose"]
        terms, relay = by_name[f"{op.name}.terms"], by_name[op.name]
        assert (terms["kind"], relay["kind"]) == ("ssa_term", "ssa_sum")
        assert terms["neurons"] == want["term_neurons"]
        assert terms["neurons"] + relay["neurons"] == want["neurons"]
        assert terms["synapses"] + relay["synapses"] == want["synapses"]


def test_decompose_axons_count_each_fanned_out_operand_once(loihi2):
    m = map_network(extract_network(ssa_net(D=8, N=16, H=2, T=2), "decompose"), loihi2)
    assert [(lm.layer.name, lm.layer.kind) for lm in m.layers] == [
        ("q", "lif"), ("k", "lif"), ("v", "lif"), ("kv.terms", "ssa_term"), ("kv", "ssa_sum"),
        ("att.terms", "ssa_term"), ("att", "ssa_sum"), ("attn", "lif")]
    # kv = k^T v: 2 heads x 4 x 16 x 4 = 512 coincidence terms on one core, each of k's and v's
    # 128 spikes arriving on one axon though it feeds 4 term neurons
    kv_terms = m.layer("kv.terms")
    assert int(kv_terms.synapses.sum()) == 2 * 512 and int(kv_terms.input_axons.sum()) == 128 + 128
    assert int(m.layer("kv").input_axons.sum()) == 512  # every term once
    # att = q kv (spike x count): gates read q (128) and kv (32); the relay reads its 512 terms
    # and q again for the correction
    assert int(m.layer("att.terms").input_axons.sum()) == 128 + 32
    assert int(m.layer("att").input_axons.sum()) == 512 + 128
    assert int(m.layer("att").synapses.sum()) == 2 * 4 * 128
    # q reaches two cores (the gates and the relay's correction), one output axon each
    assert int(m.layer("q").output_axons.sum()) == 2 * 128
    _check_within_limits(m)


def test_decompose_counts_by_hand(loihi2):
    m = map_network(extract_network(ssa_net(D=8, N=16, H=2, T=2), "decompose"), loihi2)
    entries = [{"name": "q", "spikes": 40}, {"name": "k", "spikes": 30},
               {"name": "v", "spikes": 20}, {"name": "attn", "spikes": 5},
               {"name": "kv", "op": "spike_matmul", "ssa_ops": 50},
               {"name": "att", "op": "spike_matmul", "ssa_ops": 60}]
    c = counts_from_entries(entries, m, 2, "hand", 1)
    # kv = k^T v (2 x 4 x 16 x 4): coincidences fire once per nonzero term; k's spikes reach
    # 4 terms each, v's 4
    assert c.get("kv.terms").spikes == 50
    assert c.get("kv.terms").synaptic_events == 4 * 30 + 4 * 20
    assert c.get("kv").synaptic_events == 50 and c.get("kv").ssa_ops == 50
    # relays' values are not counted by the simulator here: every element every step
    assert c.get("kv").spikes == 32 * 2 and c.get("att").spikes == 128 * 2
    assert {n.split(":")[0] for n in c.notes if "not counted" in n} == {"x", "kv", "att"}
    # att = q kv (2 x 16 x 4 x 4): a gate fires for each q spike at its 4 terms, even where kv
    # is 0 (so more than the 60 nonzero terms); kv's 2 values per element reach 16 gates each
    assert c.get("att.terms").spikes == 4 * 40
    assert c.get("att.terms").synaptic_events == 4 * 40 + 16 * 2 * 32
    assert c.get("att").synaptic_events == 4 * 40 + 4 * 40  # terms + correction from q


def test_decompose_events_from_the_simulator_and_the_assumed_rate(tiny_v2, loihi2):
    from spikec.sim import simulate

    images = np.random.default_rng(0).integers(0, 256, (3, 1, 16, 16)).astype(np.uint8)
    res = simulate(tiny_v2, images)
    net = extract_network(tiny_v2, "decompose")
    m = map_network(net, loihi2)
    c = counts_from_sim(res, m, "sim")
    for p in net.products:
        terms, relay = c.get(p.terms_layer), c.get(p.name)
        ssa_ops = res.stats[p.name].per_sample("ssa_ops")
        assert relay.ssa_ops == ssa_ops
        if p.gate is None:  # a coincidence fires once per nonzero term
            assert p.term_neuron == "coincidence LIF" and terms.spikes == ssa_ops
            correction = 0.0
        else:  # a gate fires for every spike of its gating operand, times its fan-out
            rows, cols = p.dims[1], p.dims[3]
            fan_out = cols if p.gate == 0 else rows
            correction = fan_out * res.stats[p.sources[p.gate]].per_sample("spikes")
            assert terms.spikes == pytest.approx(correction) and terms.spikes >= ssa_ops
        assert relay.synaptic_events == pytest.approx(terms.spikes + correction)
        # a relay sends one graded message per nonzero value the simulator saw it emit
        assert relay.spikes == pytest.approx(res.stats[p.name].per_sample("values_out"))
    assert not [n for n in c.notes if "not counted" in n]
    # the same from report entries of an older compile without values_out: assumed, with a note
    old = [{"name": n, "op": st.op, **{k: st.per_sample(k) for k in st.counts if k != "values_out"}}
           for n, st in res.stats.items()]
    c_old = counts_from_entries(old, m, tiny_v2.timesteps, "old report", 3)
    assert any("not counted" in n for n in c_old.notes)
    # the papers' formula does not depend on the lowering
    host_map = map_network(extract_network(tiny_v2, "host"), loihi2)
    assert paper_energy(m, c)["energy_j"] == pytest.approx(
        paper_energy(host_map, counts_from_sim(res, host_map, "sim"))["energy_j"])
    # no counts: term neurons fire at the assumed rate (the host's assumed SSA work), relays send
    # every element every step (as the host does)
    j = estimate(tiny_v2, loihi2, ssa="decompose", rate=0.25).to_json()
    jh = estimate(tiny_v2, loihi2, ssa="host", rate=0.25).to_json()
    host_ops = {u["name"]: u["ssa_ops"] for u in jh["host"]}
    for e in _ssa_layers(j):
        if e["kind"] == "ssa_term":
            assert e["spikes"] == pytest.approx(host_ops[e["name"][:-len(".terms")]])
        else:
            assert e["spikes"] == e["neurons"] * 2


def test_decompose_that_does_not_fit_names_the_ssa_layer(tmp_path, tiny_v2, loihi2, capsys):
    host_cores = map_network(extract_network(tiny_v2, "host"), loihi2).total_cores
    user = tmp_path / "small.toml"
    src = loihi2.path.read_text()
    assert "cores_per_chip = { value = 128," in src
    user.write_text(src.replace("cores_per_chip = { value = 128,",
                                f"cores_per_chip = {{ value = {host_cores},"))
    save(tiny_v2, tmp_path / "v2.spkc")
    main(["estimate", str(tmp_path / "v2.spkc"), "--profile", str(user), "--ssa", "host",
          "--json"])
    assert json.loads(capsys.readouterr().out)["fits"] is True
    with pytest.raises(SystemExit) as e:
        main(["estimate", str(tmp_path / "v2.spkc"), "--profile", str(user), "--ssa",
              "decompose", "--json"])
    assert e.value.code == 3
    out = capsys.readouterr()
    j = json.loads(out.out)
    assert j["fits"] is False and j["ssa"] == "decompose"
    ssa_names = {x["name"] for x in _ssa_layers(j)}
    named = out.err.split("layer '")[1].split("'")[0]
    assert named in ssa_names and "runs out of cores" in out.err


def test_ssa_lowering_defaults_to_the_lava_bundles_and_sweeps_keep_it(tmp_path, capsys):
    out = tmp_path / "OUT"
    out.mkdir()
    save(ssa_net(), out / "compiled.spkc")
    (out / "report.json").write_text(json.dumps({"timesteps": 2, "layers": [],
                                                 "lava": {"ssa": "decompose"}}))
    main(["estimate", str(out), "--profile", "loihi2", "--json", "--no-save"])
    assert json.loads(capsys.readouterr().out)["ssa"] == "decompose"
    main(["estimate", str(out), "--profile", "loihi2", "--json", "--no-save", "--ssa", "host"])
    assert json.loads(capsys.readouterr().out)["ssa"] == "host"
    main(["estimate", str(out), "--profile", "loihi2", "--no-save"])
    assert "SSA: decompose" in capsys.readouterr().out
    main(["estimate", str(out), "--profile", "loihi2", "--json", "--sweep",
          "neurons_per_core=256,8192", "--plot", str(tmp_path / "s.png")])
    sweep = json.loads(capsys.readouterr().out)
    assert sweep["ssa"] == "decompose" and all(r["fits"] for r in sweep["sweep"])
    host = run_sweep(extract_network(ssa_net(), "host"), load_profile("loihi2"),
                     [("neurons_per_core", [256, 8192])])
    assert all(d["cores"] > h["cores"] for d, h in zip(sweep["sweep"], host))
    with pytest.raises(UnsupportedOpError, match="unknown SSA lowering"):
        extract_network(ssa_net(), "cpu")


# ----------------------------------------------------------------------------- SANA-FE

@pytest.mark.slow
def test_sanafe_crosscheck_within_25_percent(capsys):
    """The same mapped conv SNN and spikes through SANA-FE's Loihi model (pip sanafe)."""
    pytest.importorskip("sanafe", reason="optional extra: pip install 'spikec[sanafe]'")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "sanafe_crosscheck.py"
    spec = importlib.util.spec_from_file_location("sanafe_crosscheck", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--steps", "16", "--networks", "", "--json"]) == 0  # per step: test_timing
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in (json.loads(ln) for ln in out.splitlines()
                                   if ln.startswith("{"))}
    same = rows["spikec (SANA-FE figures)"]
    assert abs(same["energy_ratio"] - 1) < 0.25 and abs(same["latency_ratio"] - 1) < 0.25


def test_spiking_attention_and_reduce_sum_relays_are_placed(loihi2):
    """SDSA / Q-K attention compiled from a float graph: the masks are ``and`` layers (one input
    broadcast over tokens or channels: one synapse per neuron and input), each sum is its LIF's
    dense synapse; a kept ``reduce_sum`` is a graded relay with one synapse per summed element."""
    from spikec.backends.lava import samples
    from spikec.pipeline import compile_graph

    x = samples.images(4)
    for kind, mask in (("sdsa", "kv_s"), ("qk", "a_s")):
        fixed = compile_graph(samples.attention_float(kind, T=2), "loihi2", calib=x).fixed
        m = map_network(extract_network(fixed), loihi2)
        attn = m.layer("attn")
        assert attn.layer.kind == "and" and int(attn.synapses.sum()) == 2 * 16 * 4
        summed = 16 if kind == "sdsa" else 2             # tokens, or a head's channels
        assert m.layer(mask).layer.kind == "lif"
        assert int(m.layer(mask).synapses.sum()) == summed * fixed.spec(mask).size
        _check_within_limits(m)
    m = map_network(extract_network(samples.reduce_sum_zoo()), loihi2)
    assert {m.layer(n).layer.kind for n in ("sum_n", "sum_grid", "sum_c")} == {"reduce_sum"}
    assert int(m.layer("sum_grid").synapses.sum()) == 2 * 4 * 4   # every element, once
    assert m.layer("sum_grid").layer.neurons == 2
