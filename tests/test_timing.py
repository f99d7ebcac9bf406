"""The cycle-level timing simulator (spikec.estimate.timing*): wiring against the mapper, events
against the simulator's own counts, the schedule on hand-made events, the CLI, and the per-step
agreement with SANA-FE."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from spikec.cli import main
from spikec.estimate import extract_network, map_network
from spikec.estimate.costs import cost_model
from spikec.estimate.events import counts_from_sim
from spikec.estimate.latency import unit_depths
from spikec.estimate.timing import (CoreEvents, compartments, core_events, schedule,
                                    update_costs)
from spikec.estimate.timing_run import run_timing, timing_json
from spikec.estimate.timing_wiring import HOST_SENDER, build_wiring, tile_synapses
from spikec.estimate.network import ConvGeometry
from spikec.ir import Graph, save
from spikec.ir import ops as O
from spikec.ir.fixed import ConvSynapse, CubaLIF, DenseSynapse, GradedInput, Readout
from spikec.target.profile import load_profile


def _lif(name, inp, shape, vth=3):
    z = np.zeros(shape, np.int64)
    return CubaLIF(name, (inp,), du=4095, dv=2048, vth=np.full(shape, vth, np.int64),
                   bias_mant=z, bias_exp=z.copy())


def conv_net(T=4) -> Graph:
    """graded 1x8x8 input -> 3x3 conv (4 ch, pad 1) -> LIF -> dense 8 -> LIF -> readout 3."""
    rng = np.random.default_rng(0)
    ops = [GradedInput("x", (), shape=(1, 8, 8)),
           ConvSynapse("c1", ("x",), weight=rng.integers(-2, 4, (4, 1, 3, 3)).astype(np.int64),
                       weight_exp=np.zeros(4, np.int64), padding=(1, 1)),
           _lif("l1", "c1", (4, 8, 8), vth=40),
           O.Reshape("r1", ("l1",), shape=(256,)),
           DenseSynapse("d2", ("r1",), weight=rng.integers(-1, 3, (8, 256)).astype(np.int64),
                        weight_exp=np.zeros(8, np.int64), axis=0),
           _lif("l2", "d2", (8,), vth=2),
           DenseSynapse("d3", ("l2",), weight=np.ones((3, 8), np.int64),
                        weight_exp=np.zeros(3, np.int64), axis=0),
           Readout("ro", ("d3",), scale=1.0, offset=np.zeros(3), sum_axes=()),
           O.Output("out", ("ro",))]
    return Graph(ops, timesteps=T, domain="fixed")


def images(n=6):
    return np.random.default_rng(1).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


@pytest.fixture(scope="module")
def small():
    prof = load_profile("loihi").with_overrides({"neurons_per_core": 48})
    graph = conv_net()
    return graph, prof, map_network(extract_network(graph), prof)


def test_tile_synapses_count_every_tap():
    g = ConvGeometry(out=(4, 6, 6), inp=(2, 8, 8), kernel=(3, 3), stride=(1, 1), padding=(0, 0),
                     dilation=(1, 1), groups=1, weights_per_channel=18)
    full = tile_synapses(g, (0, 4, 0, 6, 0, 6))
    assert full.sum() == 4 * 6 * 6 * 2 * 9
    halves = tile_synapses(g, (0, 4, 0, 3, 0, 6)) + tile_synapses(g, (0, 4, 3, 6, 0, 6))
    assert np.array_equal(halves, full)
    assert full[0, 0, 0] == 4 and full[0, 4, 4] == 4 * 9


def test_wiring_matches_the_mapper(small):
    graph, prof, m = small
    w = build_wiring(m)
    assert m.total_cores > 4
    for lm in m.layers:  # synapses per core: exact, as the mapper counts them
        syn = np.zeros(w.cores)
        for sm in w.senders.values():
            n_p = sm.pair_ids.size
            for k, core in enumerate(sm.syn_cores):
                syn[core] += sm.matrix[:, n_p + k].sum()
        assert np.allclose(syn[lm.core_ids], lm.synapses), lm.layer.name
    pairs = sum(float(sm.matrix[:, :sm.pair_ids.size].sum()) for sm in w.senders.values())
    assert pairs == pytest.approx(sum(st.pairs for st in m.conn.values()))
    host = w.pair_src == w.cores + HOST_SENDER
    assert host.any() and (w.hops_ew[host] >= 1).all()  # the host sits west of tile 0


def test_events_match_the_simulators_counts(small):
    graph, prof, m = small
    costs = cost_model(prof, "profile")
    run = run_timing(graph, m, images(), prof, costs, batch_size=4)
    counts = counts_from_sim(run.sim, m, "test")
    w = build_wiring(m)
    from spikec.estimate.timing_run import _nonzero, _recorded
    from spikec.sim import Simulator

    res = Simulator(graph).run(images(), record=_recorded(graph, m)[0])
    assert "c1" in res.values  # the neurons' input is recorded (active updates)
    depths = unit_depths(m)
    assert (depths["x"], depths["l1"], depths["l2"], depths["ro"]) == (0, 1, 2, 3)
    ev = core_events(w, m, _nonzero(graph, m, res.values), depths, 4 + 3)
    per_sample_syn = ev.synaptic_ops.sum(axis=(1, 2)).mean()
    assert per_sample_syn == pytest.approx(sum(counts.get(lm.layer.name).synaptic_events
                                               for lm in m.layers))
    assert ev.spikes.sum(axis=(1, 2)).mean() == pytest.approx(counts.get("l1").spikes
                                                              + counts.get("l2").spikes)
    # the first layer works at chip step 1 on input step 0, l2 at step 2: nothing earlier
    l2 = m.layer("l2")
    assert ev.spikes[:, :2, l2.core_ids].sum() == 0
    assert run.step_ns.shape == (6, 4 + 3) and (run.step_ns > 0).all()
    # active updates: exactly the neuron-steps with a nonzero input current, at the layer's steps
    exact = core_events(w, m, _nonzero(graph, m, res.values), depths, 4 + 3,
                        inputs={"l1": res.values["c1"] != 0})
    l1 = m.layer("l1")
    on = exact.active_updates[:, :, l1.core_ids]
    assert on.sum() == np.count_nonzero(res.values["c1"]) and on[:, 0].sum() == 0
    assert on[:, 1].sum() == np.count_nonzero(res.values["c1"][0])


def _events(B, S, C, P):
    z = np.zeros((B, S, C), np.float32)
    return CoreEvents(np.zeros((B, S, P), np.float32), z.copy(), z.copy(), z.copy(),
                      np.zeros((B, S), np.float32), np.ones((B, S, C), np.float32), z.copy())


def test_schedule_by_hand(small):
    graph, prof, m = small
    costs = cost_model(prof, "sanafe")
    upd = update_costs(prof, costs)
    w = build_wiring(m)
    n = compartments(m)
    p = int(np.nonzero((w.pair_src < w.cores) & (w.hops_ew + w.hops_ns > 0))[0][0])
    src, dst = int(w.pair_src[p]), int(w.pair_dst[p])
    ev = _events(1, 2, w.cores, w.pairs)
    ev.messages[0, 1, p] = 100          # a burst of 100 messages at step 1
    ev.spikes[0, 1, src] = 100
    ev.synaptic_ops[0, 1, dst] = 400
    ev.last_fire[0, 1, src] = 1.0
    st = schedule(ev, w, m, costs, upd)
    idle = n * upd["t_idle"]
    assert st.step_ns[0, 0] == pytest.approx(idle.max() + st.sync_ns)
    gen = idle[src] + 100 * (costs.t("spike_generate") + costs.t("message_out"))
    flight = w.hops_ew[p] * costs.t("hop_east_west") + w.hops_ns[p] * costs.t("hop_north_south")
    recv = 100 * costs.t("message_in") + 400 * costs.t("synaptic_op_conv"
                                                      if dst < m.layer("l1").cores
                                                      else "synaptic_op")
    # the receiver waits for the last message and works it off after it arrives
    expect = max(idle.max(), gen, gen + flight + recv / 100,
                 idle[src] + costs.t("spike_generate") + costs.t("message_out") + flight + recv)
    assert st.step_ns[0, 1] == pytest.approx(expect + st.sync_ns, rel=1e-5)
    assert st.critical[0, 1] == dst
    # energy: the same events times the same figures
    e = 100 * (costs.e("message_out") + costs.e("message_in") + costs.e("spike_generate")) \
        + w.hops_ew[p] * 100 * costs.e("hop_east_west") + w.hops_ns[p] * 100 * \
        costs.e("hop_north_south") + n.sum() * upd["e_idle"]
    syn_e = st.energy_pj[0, 1] - e
    assert syn_e / 400 in (pytest.approx(costs.e("synaptic_op")),
                           pytest.approx(costs.e("synaptic_op_conv")))


def test_link_serialises_a_burst(small):
    graph, prof, m = small
    costs = cost_model(prof, "profile")
    w = build_wiring(m)
    p = int(np.nonzero(w.pair_links.sum(axis=1) > 0)[0][0])
    ev = _events(1, 1, w.cores, w.pairs)
    ev.messages[0, 0, p] = 1e6  # far more than the cores' work: the link is the bottleneck
    st = schedule(ev, w, m, costs, update_costs(prof, costs))
    assert st.link_ns[0, 0] >= 1e6 * min(costs.t("hop_east_west"), costs.t("hop_north_south"))
    assert st.step_ns[0, 0] >= st.link_ns[0, 0]


def test_timing_json_and_cli(tmp_path, small, capsys):
    graph, prof, m = small
    costs = cost_model(prof, "profile")
    run = run_timing(graph, m, images(), prof, costs)
    j = timing_json(run, m, costs)
    assert set(j["latency_per_sample_s"]) == {"p50", "p95", "p99", "max", "mean"}
    lat = j["latency_per_sample_s"]
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert len(j["latency_per_step_s"]["p99"]) == j["chip_steps"] == len(j["critical"])
    assert {c["cause"] for c in j["critical"]} <= {"compute", "traffic"}
    assert sum(j["latency_histogram"]["counts"]) == 6

    from spikec.data import Dataset, save_npz

    out = tmp_path / "OUT"
    out.mkdir()
    save(graph, out / "compiled.spkc")
    data = save_npz(Dataset(images(), np.zeros(6, np.int64), "tiny", 3), tmp_path / "d.npz")
    assert main(["estimate", str(out), "--profile", "loihi", "--data", str(data),
                 "--timing", "cycle", "--json"]) in (0, None)
    est = json.loads(capsys.readouterr().out)
    t = est["timing"]
    assert t["samples"] == 6 and t["chip_steps"] == 4 + est["pipeline_depth"]
    assert t["energy_per_sample_j"]["mean"] == pytest.approx(
        est["energy_per_inference_j"]["profile"], rel=0.05)
    saved = json.loads((out / "report.json").read_text())
    assert saved["estimate"]["timing"]["latency_per_sample_s"] == t["latency_per_sample_s"]
    assert t["noc_model"] == "fluid"
    assert main(["estimate", str(out), "--profile", "loihi", "--data", str(data), "--no-save",
                 "--timing", "cycle-buffered", "--json"]) in (0, None)
    b = json.loads(capsys.readouterr().out)["timing"]
    assert b["noc_model"] == "buffered" and b["energy_per_sample_j"] == t["energy_per_sample_j"]
    assert b["latency_per_sample_s"]["mean"] != t["latency_per_sample_s"]["mean"]
    with pytest.raises(SystemExit) as e:  # needs --data
        main(["estimate", str(out), "--timing", "cycle"])
    assert e.value.code == 2 and "--timing cycle needs --data" in capsys.readouterr().err


def test_sanafe_per_step_agreement(capsys):
    """spikec's cycle-level timing of SANA-FE's own spikes, step by step, with SANA-FE's figures
    (bench/sanafe_crosscheck.py; measured 1.5% / 4.2% worst step, 0.2% / 0.6% mean, 0.06%
    energy for the random / burst inputs against the detailed model)."""
    pytest.importorskip("sanafe", reason="optional extra: pip install 'spikec[sanafe]'")
    path = Path(__file__).resolve().parent.parent / "bench" / "sanafe_crosscheck.py"
    spec = importlib.util.spec_from_file_location("sanafe_crosscheck", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--steps", "16", "--models", "detailed", "--examples", "", "--json"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    steps = {r["name"]: r for r in rows if "sanafe_timing_model" in r}
    assert set(steps) == {"random", "burst"}
    for r in steps.values():
        assert r["updated_neurons"]["spikec"] == r["updated_neurons"]["sanafe"]
        assert r["per_step_latency_max_rel_error"] < 0.08, r["name"]
        assert r["mean_latency_rel_error"] < 0.02, r["name"]
        assert r["energy_per_step_max_rel_error"] < 0.01, r["name"]


@pytest.mark.slow
def test_sanafe_cycle_model_agreement_per_step(capsys):
    """The buffered NoC model with SANA-FE's drain order against SANA-FE's Booksim-based cycle
    model (bench/sanafe_crosscheck.py; 6 steps: the random train's first step, where receiving
    waits for the compartment updates, and the burst's three burst steps)."""
    pytest.importorskip("sanafe", reason="optional extra: pip install 'spikec[sanafe]'")
    path = Path(__file__).resolve().parent.parent / "bench" / "sanafe_crosscheck.py"
    spec = importlib.util.spec_from_file_location("sanafe_crosscheck", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--steps", "6", "--models", "cycle", "--json"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    steps = {r["name"]: r for r in rows if "sanafe_timing_model" in r}
    assert set(steps) == {"random", "burst", "sanafe_example", "sanafe_tutorial"}
    for r in steps.values():
        assert r["per_step_latency_max_rel_error"] < 0.10, r["name"]
        assert r["mean_latency_rel_error"] < 0.05, r["name"]
        assert r["energy_per_step_max_rel_error"] < 0.01, r["name"]
    assert steps["sanafe_example"]["spikes_equal"] and steps["sanafe_tutorial"]["spikes_equal"]


def test_report_has_the_timing_plots(tmp_path, small):
    from spikec.htmlreport import render

    graph, prof, m = small
    costs = cost_model(prof, "profile")
    j = timing_json(run_timing(graph, m, images(), prof, costs), m, costs)
    page = render({"model": "m", "layers": [], "estimate": None})
    assert "Cycle-level timing" not in page
    page = render({"model": "m", "layers": [],
                   "estimate": {"timing": json.loads(json.dumps(j))}})
    assert "Cycle-level timing" in page and page.count("<svg") == 2
    assert page.count("<rect") >= m.total_cores * j["chip_steps"]


def _trace_with_timing(out: Path, graph, x, step_s=None, energy_j=None) -> Path:
    """A trace in the documented format (the simulator's values as the 'chip's'), with optional
    per-step timing arrays."""
    from spikec import __version__
    from spikec.backends.lava.runtime.npzio import save_npz
    from spikec.sim import Simulator

    plan = json.loads((out / "lava" / "network.json").read_text())
    manifest = json.loads((out / "lava" / "manifest.json").read_text())
    res = Simulator(graph).run(x, record=[p["value"] for p in plan["probes"]])
    arrays, layers = {}, []
    for p in plan["probes"]:
        v = res.values[p["value"]]
        if p["kind"] == "readout":
            op = graph.op(p["value"])
            arrays["readout/" + p["value"]] = np.rint((v - op.offset) / op.scale).astype(np.int32)
        else:
            arrays["spikes/" + p["value"]] = np.moveaxis(v, 0, 1).astype(
                np.uint8 if p["kind"] == "spike" else np.int32)
        layers.append({"name": p["value"], "kind": p["kind"], "shape": p["shape"]})
    arrays[f"inputs/{plan['inputs'][0]['value']}"] = x
    if step_s is not None:
        arrays["timing/step_s"] = step_s
    if energy_j is not None:
        arrays["timing/energy_j"] = energy_j
    meta = {"format": "spikec-trace", "format_version": 1, "spikec_version": __version__,
            "bundle_hash": manifest["bundle_hash"], "samples": len(x), "layers": layers,
            "timesteps": plan["timesteps"], "seconds": {"wall": 1.0, "run": 0.5}}
    arrays["meta"] = np.array(json.dumps(meta))
    path = out / "trace.npz"
    save_npz(path, arrays)
    return path


def test_validate_trace_compares_measured_timing(tmp_path, capsys):
    from spikec.backends.lava import samples, write_bundle
    from spikec.backends.lava.validate import validate_trace
    from spikec.ir import dumps

    graph = samples.spikformer_like(residual="add")
    out = tmp_path / "out"
    out.mkdir()
    (out / "compiled.spkc").write_bytes(dumps(graph))
    write_bundle(graph, out, ssa="host", conv="lava")
    x = samples.images(3)
    plan = json.loads((out / "lava" / "network.json").read_text())
    prof = load_profile(graph.meta.get("target") or "loihi2")
    m = map_network(extract_network(graph, "host"), prof)
    costs = cost_model(prof, "profile")
    known = run_timing(graph, m, {plan["inputs"][0]["value"]: x}, prof, costs,
                       depth=plan["depth"])
    # a 'chip' 25% slower than predicted on every step, and twice as slow on one
    step_s = known.step_ns * 1e-9 * 1.25
    step_s[0, 1] *= 1.6
    energy_j = known.energy_pj * 1e-12
    assert validate_trace(out, _trace_with_timing(out, graph, x))["timing"] is None
    res = validate_trace(out, _trace_with_timing(out, graph, x, step_s, energy_j))
    t = res["timing"]
    assert res["mismatches"] == 0 and t["chip_steps"] == plan["timesteps"] + plan["depth"]
    e = t["latency"]["step_rel_error"]
    assert e["compared"] == step_s.size
    assert e["abs_p50"] == pytest.approx(0.2) and e["abs_max"] == pytest.approx(0.5)
    assert t["latency"]["per_step"]["rel_error_mean"][0] == pytest.approx(-0.2)
    assert t["energy"]["step_rel_error"]["abs_max"] == pytest.approx(0.0, abs=1e-6)
    # the CLI prints the comparison; a wrongly shaped array is a one-line error
    main(["validate", str(out), "--against", "trace", str(out / "trace.npz")])
    assert "latency per step, predicted vs measured" in capsys.readouterr().out
    bad = _trace_with_timing(out, graph, x, step_s[:, :-1])
    with pytest.raises(SystemExit) as err:
        main(["validate", str(out), "--against", "trace", str(bad)])
    assert err.value.code == 2 and "timing/step_s" in capsys.readouterr().err


def test_buffered_noc_model_times_every_step_message_by_message(small):
    """``run_timing(noc=...)`` (``--timing cycle-buffered``): the same events through the
    buffered NoC model; energy unchanged, latency at least the fluid schedule's less the clock
    rounding (it adds router latency, buffers and back-pressure), every chip step timed."""
    from spikec.estimate.timing_noc import NocParams

    graph, prof, m = small
    costs = cost_model(prof, "sanafe")
    fluid = run_timing(graph, m, images(), prof, costs)
    buffered = run_timing(graph, m, images(), prof, costs, noc=NocParams())
    assert np.array_equal(fluid.energy_pj, buffered.energy_pj)
    ratio = buffered.step_ns / fluid.step_ns
    assert ratio.min() > 0.97 and ratio.max() < 1.5
    assert (buffered.step_ns > buffered.sync_ns).all()
