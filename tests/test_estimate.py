"""Mapper, energy/latency models, DSE sweeps and the estimate/profiles commands, on hand-made fixed
graphs and hand-made event counts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spikec.cli import main
from spikec.errors import CapacityError, ProfileError
from spikec.estimate import EventCounts, UnitEvents, estimate, extract_network, map_network
from spikec.estimate.dse import parse_sweeps, plot_sweep, run_sweep, sweep_table_rows
from spikec.estimate.energy import E_AC_45NM, E_MAC_45NM, paper_energy
from spikec.estimate.events import counts_from_entries
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
    assert mod.main(["--steps", "16", "--json"]) == 0
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in (json.loads(ln) for ln in out.splitlines()
                                   if ln.startswith("{"))}
    same = rows["spikec (SANA-FE figures)"]
    assert abs(same["energy_ratio"] - 1) < 0.25 and abs(same["latency_ratio"] - 1) < 0.25
