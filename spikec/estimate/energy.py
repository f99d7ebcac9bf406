"""Energy per inference: the Spikformer papers' 45 nm formula and the profile's event model.

Paper formula (Spikformer V1/V2; reference §1)::

    E = 4.6 pJ x MACs(first layer, real-valued input) + 0.9 pJ x SOPs

with MACs = the first synapse layer's dense multiply-accumulates per step x T (the image is
presented at every step), and SOPs = synaptic operations of every conv/linear layer (measured
event-driven by the simulator: an input event times its fan-out, the exact version of the papers'
``firing rate x T x FLOPs``) plus, per ``spike_matmul``, Spikingformer's count
``T x dense MACs x rate``, with ``rate = min(fr_a, fr_b)`` when both factors are spikes (k^T v)
and the binary factor's rate otherwise (q (k^T v)).

Profile model: synaptic ops, neuron updates (active / inactive), spikes and messages, mesh hops
and chip-to-chip hops from the placement, barrier syncs, and embedded-CPU work, each times the
profile's figure (``CostModel``).
"""
from __future__ import annotations

from spikec.estimate.costs import CostModel, Traffic
from spikec.estimate.events import EventCounts, active_fraction
from spikec.estimate.mapping import Mapping
from spikec.estimate.network import ConvGeometry

#: 45 nm energy per operation used by the Spikformer papers (Horowitz 2014), in joules.
E_MAC_45NM = 4.6e-12
E_AC_45NM = 0.9e-12
PJ = 1e-12


def paper_energy(mapping: Mapping, counts: EventCounts) -> dict:
    """The papers' 45 nm energy per inference, with its terms (joules, operation counts)."""
    net = mapping.network
    g = net.graph
    T = counts.timesteps
    first_macs = 0.0
    sops_synapses = 0.0
    for lm in mapping.layers:
        layer = lm.layer
        if layer.synapse is None and layer.kind != "readout":
            continue  # relays, OR-pools, identity inputs, decomposed SSA: not counted as synapses
        ev = counts.get(layer.name)
        for part in layer.inputs:  # a membrane shortcut: each synapse op on its own
            if part.first_layer:
                op = g.op(part.synapse)
                first_macs += op.dense_ops([g.spec(i) for i in op.inputs], g.spec(op.name)) * T
            elif part is layer:
                sops_synapses += ev.synaptic_events
            else:
                sops_synapses += ev.synaptic_by_part.get(part.name, 0.0)
    first_macs += sum(u.host_macs for u in net.host) * T  # a first layer run on the host
    rates = {lm.layer.name: counts.get(lm.layer.name).spikes / max(1, lm.layer.neurons * T)
             for lm in mapping.layers}
    binary = {lm.layer.name for lm in mapping.layers if lm.layer.kind in ("lif", "maxpool",
                                                                          "iand", "and")}
    sops_ssa = 0.0
    for p in net.products:  # the same count under either SSA lowering
        fr = [rates[s] for s in p.sources if s in binary]
        if len(fr) == 2:
            rate = min(fr)
        elif fr:
            rate = fr[0]
        else:
            sops_ssa += counts.get(p.name).ssa_ops
            continue
        sops_ssa += p.dense_ops * T * rate
    sops = sops_synapses + sops_ssa
    return {"energy_j": E_MAC_45NM * first_macs + E_AC_45NM * sops,
            "first_layer_macs": first_macs, "sops": sops, "sops_synapses": sops_synapses,
            "sops_ssa": sops_ssa, "e_mac_pj": E_MAC_45NM / PJ, "e_ac_pj": E_AC_45NM / PJ}


def neuron_updates(mapping: Mapping, counts: EventCounts, steps: int) -> dict[str, tuple]:
    """Per layer: (active updates, inactive updates) per inference over ``steps`` steps.

    Every compartment is updated every step (Loihi is time-stepped). Active: steps with input,
    from the simulator when it counts them, else ``1 - exp(-events per neuron per step)`` of the
    ``T`` steps with data; the pipeline-fill steps are inactive."""
    T = counts.timesteps
    out = {}
    for lm in mapping.layers:
        ev = counts.get(lm.layer.name)
        n = int(lm.neurons.sum())  # partial-sum and combining compartments included
        total = n * steps
        if ev.active_updates is not None:
            active = ev.active_updates
        else:
            per_step = ev.synaptic_events / T if T else 0.0
            active = n * T * active_fraction(ev.synaptic_events, n, per_step)
        active = min(active, total)
        out[lm.layer.name] = (active, total - active)
    return out


def is_conv(lm) -> bool:
    return isinstance(lm.layer.geometry, ConvGeometry)


def profile_energy(mapping: Mapping, counts: EventCounts, costs: CostModel, tr: Traffic,
                   steps: int) -> dict:
    """Energy per inference from the profile's per-event figures, by category (joules)."""
    syn = 0.0
    upd = neuron_updates(mapping, counts, steps)
    neuron = 0.0
    spikes = 0.0
    per_layer = {}
    T = counts.timesteps
    for lm in mapping.layers:
        ev = counts.get(lm.layer.name)
        events = ev.synaptic_events
        if lm.tiling.fanin_split > 1:
            events += lm.layer.neurons * lm.tiling.fanin_split * T  # partial sums combined
        e_syn = events * costs.e("synaptic_op_conv" if is_conv(lm) else "synaptic_op")
        for part in lm.layer.parts:  # each synapse op at its own kind's cost
            e = ev.synaptic_by_part.get(part.name, 0.0)
            conv = isinstance(part.geometry, ConvGeometry)
            e_syn += e * (costs.e("synaptic_op_conv" if conv else "synaptic_op")
                          - costs.e("synaptic_op_conv" if is_conv(lm) else "synaptic_op"))
        a, i = upd[lm.layer.name]
        e_upd = a * costs.e("neuron_update_active") + i * costs.e("neuron_update_inactive")
        e_spk = ev.spikes * costs.e("spike_generate")
        syn += e_syn
        neuron += e_upd
        spikes += e_spk
        per_layer[lm.layer.name] = (e_syn + e_upd + e_spk) * PJ
    messages = tr.messages * costs.e("message_out") + tr.messages * costs.e("message_in")
    hops = tr.hops_ew * costs.e("hop_east_west") + tr.hops_ns * costs.e("hop_north_south")
    chip = tr.chip_hops * costs.e("chip_hop")
    host_ops = sum(counts.get(u.name).ssa_ops for u in mapping.network.host)
    host = host_ops * costs.e("embedded_cpu_op")
    sync = steps * (costs.sync_energy_pj or 0.0)
    parts = {"synaptic": syn, "neuron_update": neuron, "spikes": spikes, "messages": messages,
             "mesh_hops": hops, "chip_hops": chip, "embedded_cpu": host, "barrier_sync": sync}
    parts = {k: v * PJ for k, v in parts.items()}
    known = any(v for v in costs.energy_pj.values()) or costs.sync_energy_pj
    return {"energy_j": sum(parts.values()) if known else None,  # no figure at all (Speck)
            "breakdown_j": parts, "per_layer_j": per_layer,
            "cost_model": costs.name, "not_counted": list(costs.unknown)}
