"""Cross-check spikec's energy/latency estimator against SANA-FE's calibrated Loihi model.

One convolutional SNN (16x16 spike input -> 3x3 conv, 8 ch -> 3x3 conv, 16 ch -> dense 10) is
mapped by spikec's mapper onto the ``loihi`` profile; the same network, neuron for neuron on the
same cores and tiles, runs in SANA-FE 2.2.9 (pip ``sanafe``, its shipped ``examples/loihi.yaml``)
on a seeded random input spike train. SANA-FE's spikes (per neuron, per step) become spikec's event
counts, so both tools cost the same events; differences come from the models alone.

Per step (``--networks``, ``--models``): spikec's cycle-level timing against SANA-FE's
``detailed`` model (spikec's default schedule) and its Booksim-based ``cycle`` model (spikec's
buffered NoC model, ``spikec.estimate.timing_noc``, with SANA-FE's drain order), on a random and
a burst input train; and SANA-FE's own example networks from its wheel (``--examples``), read,
simulated and timed by ``spikec.estimate.sanafe_net``. Each prints
``per_step_latency_max_rel_error``, ``mean_latency_rel_error`` and
``energy_per_step_max_rel_error``.

Usage: ``python bench/sanafe_crosscheck.py [--steps 32] [--rate 0.2] [--seed 0] [--json]``
(needs ``pip install 'spikec[sanafe]'``). Prints one JSON object per line with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import numpy as np

from spikec.estimate.costs import cost_model, traffic
from spikec.estimate.energy import profile_energy
from spikec.estimate.events import EventCounts, UnitEvents
from spikec.estimate.latency import step_latency
from spikec.estimate.mapping import map_network
from spikec.estimate.network import extract_network
from spikec.ir import Graph
from spikec.ir import ops as O
from spikec.ir.fixed import ConvSynapse, CubaLIF, DenseSynapse, GradedInput
from spikec.target.profile import load_profile

H = W = 16
C1, C2, OUT = 8, 16, 10
K = 3
THRESHOLD = 2.0   # SANA-FE LIF threshold (weights are +-1)
LEAK = 0.5        # potential decay per step (tau = 2)


def spikec_graph(w1, w2, w3, T) -> Graph:
    def lif(name, inp, shape):
        z = np.zeros(shape, np.int64)
        return CubaLIF(name, (inp,), du=4095, dv=2048, vth=np.ones(shape, np.int64),
                       bias_mant=z, bias_exp=z.copy())

    h1, h2 = H - K + 1, H - 2 * (K - 1)
    ops = [GradedInput("x", (), shape=(1, H, W), kind="spike"),
           ConvSynapse("c1", ("x",), weight=w1, weight_exp=np.zeros(C1, np.int64)),
           lif("l1", "c1", (C1, h1, h1)),
           ConvSynapse("c2", ("l1",), weight=w2, weight_exp=np.zeros(C2, np.int64)),
           lif("l2", "c2", (C2, h2, h2)),
           O.Reshape("f2", ("l2",), shape=(C2 * h2 * h2,)),
           DenseSynapse("d3", ("f2",), weight=w3, weight_exp=np.zeros(OUT, np.int64), axis=0),
           lif("l3", "d3", (OUT,)),
           O.Output("out", ("l3",))]
    return Graph(ops, timesteps=T, domain="fixed")


def conv_fanout(n_in: int, n_out: int, k: int) -> np.ndarray:
    """Per input row: output rows whose window covers it (valid conv, stride 1)."""
    i = np.arange(n_in)[:, None] - np.arange(n_out)[None, :]
    return ((i >= 0) & (i < k)).sum(axis=1)


def sanafe_run(mapping, w1, w2, w3, spikes_in, steps, timing_model="detailed"):
    """Run the network in SANA-FE; returns (result, spike counts per group, spikes per neuron
    [steps, neurons] per layer)."""
    import sanafe

    arch = sanafe.load_loihi()
    tiles_y = 4  # loihi.yaml: height 4; SANA-FE numbers tiles x = id // 4, y = id % 4
    pl = mapping.placement
    cores_per_tile = pl.cores_per_tile

    def core_of(gcore: int):
        tile_id = int(pl.x[gcore]) * tiles_y + int(pl.y[gcore])
        return arch.tiles[tile_id].cores[gcore % cores_per_tile]

    net = sanafe.Network()
    lif = {"threshold": THRESHOLD, "leak_decay": LEAK, "reset": 0.0}
    inp = net.create_neuron_group("x", H * W, log_spikes=True)
    h1, h2 = H - K + 1, H - 2 * (K - 1)
    g1 = net.create_neuron_group("l1", C1 * h1 * h1, model_attributes=lif, log_spikes=True,
                                 log_potential=True,
                                 soma_hw_name="loihi_lif",
                                 default_synapse_hw_name="loihi_conv_synapse")
    g2 = net.create_neuron_group("l2", C2 * h2 * h2, model_attributes=lif, log_spikes=True,
                                 log_potential=True,
                                 soma_hw_name="loihi_lif",
                                 default_synapse_hw_name="loihi_conv_synapse")
    g3 = net.create_neuron_group("l3", OUT, model_attributes=lif, soma_hw_name="loihi_lif",
                                 log_spikes=True, log_potential=True,
                                 default_synapse_hw_name="loihi_dense_synapse")
    # SANA-FE filters are [y][x][c_in][c_out]; spikec's are [c_out][c_in][y][x]
    inp.connect_neurons_conv2d(g1, {"weight": w1.transpose(2, 3, 1, 0).ravel().astype(float)},
                               W, H, 1, K, K, C1, 1, 1)
    g1.connect_neurons_conv2d(g2, {"weight": w2.transpose(2, 3, 1, 0).ravel().astype(float)},
                              h1, h1, C1, K, K, C2, 1, 1)
    g2.connect_neurons_dense(g3, {"weight": w3.T.ravel().astype(float)})
    for name, group in (("l1", g1), ("l2", g2), ("l3", g3)):
        ec = mapping.layer(name).element_core
        for i, neuron in enumerate(group.neurons):
            neuron.map_to_core(core_of(int(ec[i])))
    # the input sits on the next free core (the host in spikec's model is one hop west of tile 0)
    free = mapping.total_cores
    host_core = arch.cores()[free] if free < len(arch.cores()) else arch.cores()[-1]
    for i, neuron in enumerate(inp.neurons):
        # loihi.yaml gives each of a core's 1,024 input slots its own zero-cost soma unit
        neuron.set_attributes(soma_hw_name=f"loihi_inputs[{i}]",
                              model_attributes={"spikes": [bool(s) for s in spikes_in[:, i]]})
        neuron.map_to_core(host_core)
    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    # one processing thread: SANA-FE numbers messages across its threads, so their order (and
    # the detailed model's schedule) would depend on the thread timing
    res = chip.sim(steps, spike_trace=True, timing_model=timing_model, perf_trace=True,
                   potential_trace=True, processing_threads=1)
    counts: Counter = Counter()
    per_neuron = {n: np.zeros((steps, g), bool) for n, g in (("l1", C1 * h1 * h1),
                                                            ("l2", C2 * h2 * h2), ("l3", OUT))}
    for t, step in enumerate(res["spike_trace"]):
        for addr in step:
            gname = addr.group_name
            counts[gname] += 1
            if gname in per_neuron:
                per_neuron[gname][t, addr.neuron_offset] = True
    return res, counts, per_neuron


def spikec_counts(spikes_in, per_neuron, steps) -> EventCounts:
    h1, h2 = H - K + 1, H - 2 * (K - 1)
    fx = conv_fanout(H, h1, K)
    fan_in1 = C1 * np.outer(fx, fx).ravel()                   # per input pixel
    f1 = conv_fanout(h1, h2, K)
    fan_l1 = C2 * np.tile(np.outer(f1, f1).ravel(), C1)        # per l1 neuron (CHW)
    x_spk = spikes_in.sum(axis=0)
    per_neuron = {k: v.sum(axis=0) for k, v in per_neuron.items()}
    units = {
        "x": UnitEvents(spikes=float(x_spk.sum())),
        "l1": UnitEvents(spikes=float(per_neuron["l1"].sum()),
                         synaptic_events=float((x_spk * fan_in1).sum())),
        "l2": UnitEvents(spikes=float(per_neuron["l2"].sum()),
                         synaptic_events=float((per_neuron["l1"] * fan_l1).sum())),
        "l3": UnitEvents(spikes=float(per_neuron["l3"].sum()),
                         synaptic_events=float(per_neuron["l2"].sum() * OUT)),
    }
    return EventCounts(timesteps=steps, units=units, source="SANA-FE spike trace")


def updated_neurons(spikes_in, per_neuron, potentials) -> dict[str, np.ndarray]:
    """Per layer, bool [steps, neurons]: SANA-FE's soma updates the neuron (not only accesses
    it): it fires, it received a message (a presynaptic spike in the previous step; every
    weight is nonzero), or its potential was nonzero."""
    from numpy.lib.stride_tricks import sliding_window_view as windows

    steps = spikes_in.shape[0]
    h1, h2 = H - K + 1, H - 2 * (K - 1)
    v = np.asarray(potentials, dtype=float)
    sizes = {"l1": C1 * h1 * h1, "l2": C2 * h2 * h2, "l3": OUT}
    before = np.zeros((steps, sum(sizes.values())), bool)
    before[1:] = v[:-1] != 0
    x = spikes_in.reshape(steps, 1, H, W)
    l1 = per_neuron["l1"].reshape(steps, C1, h1, h1)
    got = {"l1": np.broadcast_to(windows(x, (K, K), axis=(2, 3)).any(axis=(1, 4, 5))[:, None],
                                 (steps, C1, h1, h1)).reshape(steps, -1),
           "l2": np.broadcast_to(windows(l1, (K, K), axis=(2, 3)).any(axis=(1, 4, 5))[:, None],
                                 (steps, C2, h2, h2)).reshape(steps, -1),
           "l3": np.broadcast_to(per_neuron["l2"].any(axis=1)[:, None], (steps, OUT))}
    out, start = {}, 0
    for name, n in sizes.items():
        inp = np.zeros((steps, n), bool)
        inp[1:] = got[name][:-1]
        out[name] = per_neuron[name] | inp | before[:, start:start + n]
        start += n
    return out


def spikec_trace(mapping, profile, cost, spikes_in, per_neuron, updated, noc=None):
    """spikec's cycle-level timing of SANA-FE's spikes: (latency [steps] s, energy [steps] J).
    ``noc``: a ``NocParams`` for the buffered NoC model (else the default schedule)."""
    from spikec.estimate.timing import NS, PJ, core_events, schedule, update_costs
    from spikec.estimate.timing_noc import MessageQueues
    from spikec.estimate.timing_wiring import build_wiring

    steps = spikes_in.shape[0]
    wiring = build_wiring(mapping)
    nonzero = {"x": spikes_in[:, None, :].astype(np.float32)}
    active = np.zeros((1, steps, wiring.cores), np.float32)
    for name in ("l1", "l2", "l3"):
        nonzero[name] = per_neuron[name][:, None, :].astype(np.float32)
        lm = mapping.layer(name)
        for t in range(steps):
            active[0, t] += np.bincount(lm.element_core, weights=updated[name][t],
                                        minlength=wiring.cores)
    ev = core_events(wiring, mapping, nonzero, {}, steps, active=active)
    costs = cost_model(profile, cost)
    upd = update_costs(profile, costs)
    st = schedule(ev, wiring, mapping, costs, upd)
    if noc is None:
        return st.step_ns[0] * NS, st.energy_pj[0] * PJ
    mq = MessageQueues(wiring, mapping, costs, upd, noc)
    lat = np.array([mq.step({"x": spikes_in[t], **{k: v[t] for k, v in per_neuron.items()}},
                            {k: v[t] for k, v in updated.items()}).total * noc.clock_ns
                    for t in range(steps)])
    return (lat + st.sync_ns) * NS, st.energy_pj[0] * PJ


def input_train(kind: str, steps: int, rate: float, rng) -> np.ndarray:
    """Input spikes [steps, H*W]: ``random`` at ``rate`` every step, or ``burst``: a tenth of
    that rate, and four times it on three steps (the layers fire on those steps only)."""
    if kind == "random":
        return rng.random((steps, H * W)) < rate
    p = np.full(steps, rate / 10)
    p[[1, 2, steps // 2]] = min(1.0, 4 * rate)
    return rng.random((steps, H * W)) < p[:, None]


def compare_steps(name, timing_model, mapping, profile, weights, spikes_in) -> dict:
    """One network in SANA-FE (``timing_model``) and in spikec's timing model, step by step:
    against SANA-FE's Booksim-based ``cycle`` model, spikec's buffered NoC model with
    SANA-FE's drain order (``timing_noc``); against ``detailed``, the default schedule."""
    from spikec.estimate.timing_noc import NocParams

    steps = spikes_in.shape[0]
    res, _, per_neuron = sanafe_run(mapping, *weights, spikes_in, steps, timing_model)
    updated = updated_neurons(spikes_in, per_neuron, res["potential_trace"])
    noc = NocParams(drain_serialises=True) if timing_model == "cycle" else None
    lat, energy = spikec_trace(mapping, profile, "sanafe", spikes_in, per_neuron, updated, noc)
    ref_lat = np.asarray(res["perf_trace"]["sim_time"], float)
    ref_e = np.asarray(res["perf_trace"]["total_energy"], float)
    lif_updated = sum(int(u.sum()) for u in updated.values())
    sanafe_updated = int(np.sum(res["perf_trace"]["updated"])) - int(spikes_in.sum())
    return {"name": name, "sanafe_timing_model": timing_model, "steps": steps,
            "per_step_latency_max_rel_error": float(np.max(np.abs(lat - ref_lat) / ref_lat)),
            "mean_latency_rel_error": float(abs(lat.mean() - ref_lat.mean()) / ref_lat.mean()),
            "energy_per_step_max_rel_error": float(np.max(np.abs(energy - ref_e) / ref_e)),
            "sanafe_latency_s": ref_lat.tolist(), "spikec_latency_s": lat.tolist(),
            "sanafe_energy_j": ref_e.tolist(), "spikec_energy_j": energy.tolist(),
            "updated_neurons": {"spikec": lif_updated, "sanafe": sanafe_updated},
            "spikes": {k: int(v.sum()) for k, v in per_neuron.items()}}


#: SANA-FE's own example networks, shipped in its wheel (``sanafe/examples``): the network
#: and architecture files of ``sanafe.load_example()`` (two spike-list inputs, two LIF neurons,
#: one self-inhibiting) and of its tutorial (bias-driven IF neurons).
EXAMPLES = {"example": ("example_snn.yaml", "example_chip.yaml"),
            "tutorial": ("tutorial_snn.yaml", "tutorial_arch.yaml")}


def compare_example(name: str, timing_model: str, steps: int) -> dict:
    """One of SANA-FE's shipped example networks, read by ``spikec.estimate.sanafe_net``,
    simulated and timed by spikec and run in SANA-FE, step by step."""
    import os

    import sanafe

    from spikec.estimate.sanafe_net import load_arch, load_net, time_network

    base = os.path.join(os.path.dirname(sanafe.__file__), "examples")
    net_file, arch_file = (os.path.join(base, f) for f in EXAMPLES[name])
    arch = sanafe.load_arch(arch_file)
    chip = sanafe.SpikingChip(arch)
    chip.load(sanafe.load_net(net_file, arch))
    res = chip.sim(steps, timing_model=timing_model, perf_trace=True, spike_trace=True,
                   processing_threads=1)
    sa = load_arch(arch_file)
    net = load_net(net_file, sa)
    lat, energy, fired = time_network(net, sa, steps, timing_model)
    ref_spikes = [sorted(f"{a.group_name}.{a.neuron_offset}" for a in st)
                  for st in res["spike_trace"]]
    spikes = [sorted(net.names[i] for i in np.nonzero(f)[0]) for f in fired]
    ref_lat = np.asarray(res["perf_trace"]["sim_time"], float)
    ref_e = np.asarray(res["perf_trace"]["total_energy"], float)
    return {"name": f"sanafe_{name}", "sanafe_timing_model": timing_model, "steps": steps,
            "per_step_latency_max_rel_error": float(np.max(np.abs(lat - ref_lat) / ref_lat)),
            "mean_latency_rel_error": float(abs(lat.mean() - ref_lat.mean()) / ref_lat.mean()),
            "energy_per_step_max_rel_error": float(np.max(np.abs(energy - ref_e) / ref_e)),
            "sanafe_latency_s": ref_lat.tolist(), "spikec_latency_s": lat.tolist(),
            "sanafe_energy_j": ref_e.tolist(), "spikec_energy_j": energy.tolist(),
            "spikes_equal": spikes == ref_spikes, "spikes": int(fired.sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rate", type=float, default=0.2, help="input spike probability per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--networks", default="random,burst",
                    help="per-step comparison: input trains (random, burst; '' for none)")
    ap.add_argument("--models", default="detailed,cycle",
                    help="SANA-FE timing models for the per-step comparison")
    ap.add_argument("--examples", default="example,tutorial",
                    help="SANA-FE's shipped example networks to compare ('' for none)")
    ap.add_argument("--example-steps", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        import sanafe  # noqa: F401
    except ImportError:
        print("sanafe is not installed: pip install 'spikec[sanafe]'", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    w1 = rng.choice([-1, 1, 1], size=(C1, 1, K, K)).astype(np.int64)
    w2 = rng.choice([-1, 1, 1], size=(C2, C1, K, K)).astype(np.int64)
    h2 = H - 2 * (K - 1)
    w3 = rng.choice([-1, 1, 1], size=(OUT, C2 * h2 * h2)).astype(np.int64)
    T = args.steps
    profile = load_profile("loihi")
    mapping = map_network(extract_network(spikec_graph(w1, w2, w3, T)), profile)
    trains = {kind: input_train(kind, T, args.rate, rng)
              for kind in [n for n in args.networks.split(",") if n]}
    spikes_in = trains.get("random", input_train("random", T, args.rate, rng))
    meta, rows = analytic_rows(mapping, profile, (w1, w2, w3), spikes_in, args)
    steps_rows = [compare_steps(kind, model, mapping, profile, (w1, w2, w3), train)
                  for kind, train in trains.items()
                  for model in [m for m in args.models.split(",") if m]]
    steps_rows += [compare_example(ex, model, args.example_steps)
                   for ex in [e for e in args.examples.split(",") if e]
                   for model in [m for m in args.models.split(",") if m]]
    if args.json:
        for r in [meta, *rows, *steps_rows]:
            print(json.dumps(r, sort_keys=True))
        return 0
    print(f"network: {meta['layers']} cores on {meta['tiles']} tiles, {args.steps} steps, "
          f"input rate {args.rate}")
    print(f"{'model':34s} {'energy/step':>12s} {'ratio':>6s} {'latency/step':>13s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['name']:34s} {r['energy_per_step_j']:12.4e} {r.get('energy_ratio', 1):6.3f} "
              f"{r['latency_per_step_s']:13.4e} {r.get('latency_ratio', 1):6.3f}")
    if steps_rows:
        print("\nper step, spikec's cycle-level timing vs SANA-FE (same figures, same spikes):")
        print(f"{'network':16s} {'SANA-FE model':14s} {'latency max err':>16s} {'mean err':>9s} "
              f"{'energy max err':>15s}")
    for r in steps_rows:
        print(f"{r['name']:16s} {r['sanafe_timing_model']:14s} "
              f"{100 * r['per_step_latency_max_rel_error']:15.2f}% "
              f"{100 * r['mean_latency_rel_error']:8.2f}% "
              f"{100 * r['energy_per_step_max_rel_error']:14.2f}%")
    return 0


def analytic_rows(mapping, profile, weights, spikes_in, args):
    """The analytic model (``latency.py``, ``energy.py``) against SANA-FE's totals."""
    T = args.steps
    res, spike_counts, per_neuron = sanafe_run(mapping, *weights, spikes_in, T)
    counts = spikec_counts(spikes_in, per_neuron, T)
    tr = traffic(mapping, counts)
    rows = [{"name": "sanafe", "energy_per_step_j": res["energy"]["total"] / T,
             "latency_per_step_s": res["sim_time"] / T,
             "energy_breakdown_j": {k: v / T for k, v in res["energy"].items()},
             "spikes": dict(spike_counts)}]
    for cost in ("sanafe", "profile"):
        costs = cost_model(profile, cost)
        en = profile_energy(mapping, counts, costs, tr, steps=T)
        lat = step_latency(mapping, counts, costs, tr, steps=T)
        rows.append({"name": f"spikec ({'SANA-FE' if cost == 'sanafe' else 'Davies 2018'} "
                             "figures)",
                     "energy_per_step_j": en["energy_j"] / T,
                     "latency_per_step_s": lat["latency_per_step_s"],
                     "energy_breakdown_j": {k: v / T for k, v in en["breakdown_j"].items()},
                     "latency_parts_s": lat["parts_s"]})
    ref = rows[0]
    for r in rows[1:]:
        r["energy_ratio"] = r["energy_per_step_j"] / ref["energy_per_step_j"]
        r["latency_ratio"] = r["latency_per_step_s"] / ref["latency_per_step_s"]
    meta = {"name": "setup", "cores": mapping.total_cores, "tiles": int(np.unique(
        mapping.placement.tile).size), "steps": T, "input_rate": args.rate,
        "layers": {lm.layer.name: lm.cores for lm in mapping.layers},
        "synaptic_events": {k: u.synaptic_events for k, u in counts.units.items()}}
    return meta, rows


if __name__ == "__main__":
    sys.exit(main())
