"""Latency per time step: a cycle-level model of a time-stepped, barrier-synchronized mesh.

Assumptions (docs/estimator.md explains them):

1. Each core works through its step serially: every message it receives (``message_in``), every
   synaptic op (``synaptic_op``), every compartment update (active or inactive), every spike it
   fires (``spike_generate``) and every message it sends (``message_out``) costs the profile's
   latency, one after the other. A layer's events are spread over its cores in proportion to
   their synapses (synaptic ops, messages in) or neurons (updates, spikes).
2. Cores run in parallel; the step lasts as long as the busiest core (or the embedded CPUs'
   share of the SSA work, whichever is longer), plus the flight time of the longest message
   path (hops x per-hop latency; no link contention), plus the barrier sync, interpolated over
   the tiles in use.
3. Events are averaged over the ``T`` steps of an inference. An inference runs ``T + depth``
   steps, ``depth`` being the synaptic stages of the longest path (each adds a step of delay on
   Loihi), so ``latency_per_inference = (T + depth) x latency_per_step``.
"""
from __future__ import annotations

import numpy as np

from spikec.errors import CapacityError

from spikec.estimate.costs import CostModel, Traffic
from spikec.estimate.energy import is_conv, neuron_updates
from spikec.estimate.events import EventCounts
from spikec.estimate.mapping import Mapping
from spikec.estimate.network import HOST_INPUT_KINDS

NS = 1e-9


def unit_depths(mapping: Mapping) -> dict[str, int]:
    """Chip-step delay of every core layer and host unit: a layer on cores adds one step (the
    Lava bundle's rule), a product on the CPU answers within the step its operands arrive (the
    ``host`` lowering: delay 0), the host input is 0."""
    net = mapping.network
    depth: dict[str, int] = {u.name: 0 for u in net.host if u.kind in HOST_INPUT_KINDS}
    order = {op.name: i for i, op in enumerate(net.graph.ops)}
    # (graph position, then layer order: a decomposed product's terms before its relay)
    stages = [(order[lm.layer.product or lm.layer.name], i, lm.layer.name,
               [t.source for t in lm.layer.terms]) for i, lm in enumerate(mapping.layers)]
    stages += [(order[u.name], 0, u.name, [s for s, _ in u.inputs]) for u in net.host
               if u.kind == "spike_matmul"]
    host = {u.name for u in net.host}
    for _, _, name, srcs in sorted(stages):
        depth[name] = int(name not in host) + max((depth.get(s, 0) for s in srcs), default=0)
    return depth


def pipeline_depth(mapping: Mapping) -> int:
    """Steps of delay on the longest input-to-readout path: one per layer on cores (the Lava
    bundle's ``pipeline_depth``, so an inference of T steps ends after T + depth steps)."""
    return max(unit_depths(mapping).values(), default=0)


def core_times(mapping: Mapping, counts: EventCounts, costs: CostModel, tr: Traffic,
               steps: int) -> np.ndarray:
    """Nanoseconds each core works per time step (averaged over the ``T`` steps with data)."""
    T = counts.timesteps
    n = tr.out_msgs.size
    busy = np.zeros(n)
    upd = neuron_updates(mapping, counts, steps)
    for lm in mapping.layers:
        ev = counts.get(lm.layer.name)
        ids = lm.core_ids
        syn_share = lm.synapses / max(1, lm.synapses.sum())
        neu_share = lm.neurons / max(1, lm.neurons.sum())
        emit = np.bincount(lm.element_core - lm.first_core, minlength=lm.cores).astype(float)
        emit /= max(1.0, emit.sum())
        events = ev.synaptic_events
        if lm.tiling.fanin_split > 1:
            events += lm.layer.neurons * lm.tiling.fanin_split * T
        t_syn = costs.t("synaptic_op_conv" if is_conv(lm) else "synaptic_op")
        active, inactive = upd[lm.layer.name]
        busy[ids] += syn_share * events * t_syn / T
        busy[ids] += neu_share * (active * costs.t("neuron_update_active")
                                  + inactive * costs.t("neuron_update_inactive")) / steps
        busy[ids] += emit * ev.spikes * costs.t("spike_generate") / T
    busy += tr.in_msgs * costs.t("message_in") / T
    busy += tr.out_msgs * costs.t("message_out") / T
    return busy


def step_latency(mapping: Mapping, counts: EventCounts, costs: CostModel, tr: Traffic,
                 steps: int) -> dict:
    """Latency per time step (seconds) and its parts."""
    T = counts.timesteps
    busy = core_times(mapping, counts, costs, tr, steps)
    core_ns = float(busy.max()) if busy.size else 0.0
    busiest = int(busy.argmax()) if busy.size else -1
    host_ops = sum(counts.get(u.name).ssa_ops for u in mapping.network.host)
    ssa_units = [u.name for u in mapping.network.host if getattr(u, "dense_ops", 0)]
    if mapping.embedded_cpus == 0 and ssa_units:
        raise CapacityError(f"the profile has no embedded CPUs (capacity.embedded_cpus = 0), but "
                            f"the host SSA lowering runs {ssa_units[0]!r} on them: use --ssa "
                            "decompose or a profile with embedded CPUs")
    cpus = max(1, mapping.placement.chips_used * (mapping.embedded_cpus or 1))
    cpu_ns = host_ops / T * costs.t("embedded_cpu_op") / cpus
    path_ns = max((ew * costs.t("hop_east_west") + ns * costs.t("hop_north_south")
                   + ch * costs.t("chip_hop") for ew, ns, ch in tr.paths), default=0.0)
    tiles = int(np.unique(mapping.placement.tile).size)
    sync = costs.sync_ns(tiles)
    total = max(core_ns, cpu_ns) + path_ns + sync
    busiest_layer = next((lm.layer.name for lm in mapping.layers
                          if lm.first_core <= busiest < lm.first_core + lm.cores), None)
    known = any(v for v in costs.latency_ns.values()) or costs.sync_table
    return {"latency_per_step_s": total * NS if known else None,
            "parts_s": {"busiest_core": core_ns * NS, "embedded_cpu": cpu_ns * NS,
                        "network": path_ns * NS, "barrier_sync": sync * NS},
            "busiest_core": busiest, "busiest_layer": busiest_layer, "tiles_in_use": tiles,
            "core_busy_s": (busy * NS).tolist()}
