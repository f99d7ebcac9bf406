"""One estimate: map a fixed-point graph, then energy and latency from event counts.

``estimate(graph, profile, counts=...)`` returns an ``Estimate`` whose ``to_json()`` is what
``spikec estimate --json`` prints and what ``report.json`` stores under ``estimate`` (schema
``spikec.estimate/1``, documented in docs/estimator.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.estimate.costs import CostModel, Traffic, cost_model, traffic
from spikec.estimate.energy import paper_energy, profile_energy
from spikec.estimate.events import EventCounts, assumed_counts, check_rate
from spikec.estimate.latency import pipeline_depth, step_latency
from spikec.estimate.mapping import Mapping, map_network
from spikec.estimate.network import HOST_INPUT_KINDS, Network, extract_network
from spikec.ir.graph import Graph

SCHEMA = "spikec.estimate/1"
DEFAULT_RATE = 0.1


@dataclass
class Estimate:
    profile: object
    mapping: Mapping
    counts: EventCounts
    costs: CostModel
    traffic: Traffic
    paper: dict
    energy: dict
    latency: dict
    depth: int
    depth_source: str = "mapping"

    @property
    def fits(self) -> bool:
        return self.mapping.fits

    def to_json(self) -> dict:
        m, c = self.mapping, self.counts
        T = c.timesteps
        layers = []
        for lm in m.layers:
            binding, util = lm.binding(m.limits)
            ev = c.get(lm.layer.name)
            chips = sorted({int(x) for x in m.placement.chip[lm.core_ids]})
            layers.append({
                "name": lm.layer.name, "kind": lm.layer.kind, "synapse": lm.layer.synapse,
                "synapse_ops": lm.layer.synapse_ops,
                "cores": lm.cores, "neurons": lm.layer.neurons,
                "compartments": int(lm.neurons.sum()),
                "synapses": int(lm.synapses.sum()),
                "synaptic_memory_bytes": int(np.ceil(lm.memory_bits.sum() / 8)),
                "input_axons": int(lm.input_axons.sum()),
                "output_axons": int(lm.output_axons.sum()),
                "binding_limit": binding, "utilization": util,
                "utilization_by_limit": lm.utilization(m.limits),
                "tile": list(lm.tiling.tile), "fanin_split": lm.tiling.fanin_split,
                "chips": chips, "first_layer": lm.layer.first_layer,
                "spikes": ev.spikes, "synaptic_events": ev.synaptic_events,
                "firing_rate": ev.spikes / max(1, lm.layer.neurons * T),
                "energy_j": self.energy["per_layer_j"].get(lm.layer.name, 0.0),
            })
        host = [{"name": u.name, "kind": u.kind, "elements": u.elements,
                 "where": "host" if u.kind in HOST_INPUT_KINDS else "embedded_cpu",
                 "events_sent": c.get(u.name).spikes, "ssa_ops": c.get(u.name).ssa_ops,
                 "dense_ops_per_step": u.dense_ops, "host_macs_per_step": u.host_macs}
                for u in m.network.host]
        chips = []
        pl = m.placement
        allm = np.concatenate([lm.memory_bits for lm in m.layers]) if m.layers else np.zeros(0)
        alln = np.concatenate([lm.neurons for lm in m.layers]) if m.layers else np.zeros(0)
        alls = np.concatenate([lm.synapses for lm in m.layers]) if m.layers else np.zeros(0)
        for chip in range(pl.chips_used):
            sel = pl.chip == chip
            chips.append({"chip": chip, "cores": int(sel.sum()),
                          "core_utilization": float(sel.sum()) / m.cores_per_chip,
                          "neurons": int(alln[sel].sum()), "synapses": int(alls[sel].sum()),
                          "synaptic_memory_bytes": int(np.ceil(allm[sel].sum() / 8))})
        steps = T + self.depth
        tr = self.traffic
        return {
            "schema": SCHEMA,
            "profile": self.profile.name, "profile_path": str(self.profile.path),
            "fits": m.fits, "reason": m.reason or None, "ssa": m.network.ssa,
            "chips": pl.chips_used, "chips_available": m.chips_available,
            "cores": m.total_cores, "cores_per_chip": m.cores_per_chip,
            "timesteps": T, "pipeline_depth": self.depth, "pipeline_depth_source": self.depth_source,
            "steps_per_inference": steps,
            "events": {"source": c.source, "samples": c.samples, "assumed_rate": c.assumed_rate},
            "layers": layers, "host": host, "per_chip": chips,
            "totals": {"neurons": sum(lm.layer.neurons for lm in m.layers),
                       "synapses": int(alls.sum()),
                       "synaptic_memory_bytes": int(np.ceil(allm.sum() / 8)),
                       "spikes": sum(c.get(lm.layer.name).spikes for lm in m.layers),
                       "synaptic_events": sum(c.get(lm.layer.name).synaptic_events
                                              for lm in m.layers),
                       "messages": tr.messages, "mesh_hops": tr.hops_ew + tr.hops_ns,
                       "chip_hops": tr.chip_hops, "host_messages_in": tr.host_in,
                       "host_messages_out": tr.host_out},
            "energy_per_inference_j": {"paper_45nm": self.paper["energy_j"],
                                       "profile": self.energy["energy_j"]},
            "energy": {"paper_45nm": self.paper, "profile": {
                k: v for k, v in self.energy.items() if k != "per_layer_j"}},
            "latency_per_step_s": self.latency["latency_per_step_s"],
            "latency_per_inference_s": None if self.latency["latency_per_step_s"] is None
            else self.latency["latency_per_step_s"] * steps,
            "latency": {k: v for k, v in self.latency.items() if k != "core_busy_s"},
            "limits": {"neurons_per_core": m.limits.neurons,
                       "synaptic_memory_bits_per_core": m.limits.memory_bits,
                       "input_axons_per_core": m.limits.input_axons,
                       "output_axons_per_core": m.limits.output_axons,
                       "weight_bits": m.limits.weight_bits,
                       "synapse_index_bits": m.limits.index_bits,
                       "conv_weight_sharing": m.limits.conv_sharing},
            "notes": list(m.notes) + list(c.notes),
        }


def estimate(graph_or_network: Graph | Network, profile, counts: EventCounts | None = None,
             chips: int | None = None, cost: str = "profile",
             rate: float = DEFAULT_RATE, ssa: str = "host", depth: int | None = None) -> Estimate:
    """Map ``graph_or_network`` onto ``profile`` and estimate energy and latency.

    Parameters
    ----------
    ssa : str
        Lowering of the SSA products of a graph (``"host"``: embedded CPUs, ``"decompose"``:
        term neurons and relays on cores); a ``Network`` keeps the lowering it was extracted
        with.
    counts : EventCounts or callable, optional
        Measured events per inference (or a function of the ``Mapping`` returning them);
        default: ``assumed_counts`` at ``rate``.
    chips : int, optional
        Chips available (``--chips``); default the profile's system.
    cost : str
        ``"profile"`` or the name of an ``[alternatives]`` cost model of the profile.
    depth : int, optional
        Steps of pipeline delay, when a backend has built the network (the Lava bundle's
        ``pipeline_depth``: it also counts the gather relays some split layers need); default
        ``pipeline_depth(mapping)``, one step per layer on cores.
    """
    check_rate(rate)
    net = graph_or_network if isinstance(graph_or_network, Network) \
        else extract_network(graph_or_network, ssa)
    mapping = map_network(net, profile, chips)
    if callable(counts):
        counts = counts(mapping)
    if counts is None:
        counts = assumed_counts(mapping, rate)
    costs = cost_model(profile, cost)
    tr = traffic(mapping, counts)
    source = "mapping" if depth is None else "backend"
    depth = pipeline_depth(mapping) if depth is None else int(depth)
    steps = counts.timesteps + depth
    paper = paper_energy(mapping, counts)
    energy = profile_energy(mapping, counts, costs, tr, steps)
    latency = step_latency(mapping, counts, costs, tr, steps)
    return Estimate(profile, mapping, counts, costs, tr, paper, energy, latency, depth, source)
