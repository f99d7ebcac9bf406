"""Cycle-level timing from the network's actual events: per sample, per chip step, per core.

Where ``latency.py`` costs one inference from event counts averaged over samples and steps, this
module replays what the bit-exact simulator computed, sample by sample and step by step, on the
mapped network (``timing_wiring``), and schedules each chip step as SANA-FE's "detailed" model
does (docs/estimator.md §4.1):

* **Chip steps.** A unit at pipeline depth ``d`` (one step per layer on cores, as the Lava
  bundle delays them) works at chip step ``s`` on its input step ``s - d``; an inference of ``T``
  steps spans ``T + depth`` chip steps, all of which count in its latency.
* **Senders.** Each core updates its compartments one after the other (active: with input in
  the previous step; the figures of ``update_costs``), fires its spikes (``spike_generate``) and
  sends one message per spike and destination core (``message_out``): its *generation* time
  ``G``. The host sends its graded input (``message_out`` each), the embedded CPUs compute the
  SSA products (``embedded_cpu_op``, spread over the chips' CPUs) and send them.
* **Receivers.** Each message costs its destination ``message_in`` plus its synaptic ops
  (``synaptic_op`` / ``synaptic_op_conv``), processed in arrival order: the *receive* time
  ``R``. Messages leave their sender spread over ``G`` and fly ``hops x hop latency`` (+ chip
  hops) along an X-then-Y route.
* **A core finishes** at ``max(G, first arrival + R, last arrival + R / messages)``: it is
  compute-bound when its own work dominates, traffic-bound when it waits for the last message.
  A link carries its messages one after the other: the step lasts at least the busiest link's
  load times its hop latency.
* **The step** ends at the barrier: the slowest node or link, plus the barrier sync for the
  tiles in use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.estimate.costs import CostModel
from spikec.estimate.energy import is_conv
from spikec.estimate.mapping import Mapping
from spikec.estimate.timing_wiring import CPU_SENDER, HOST_SENDER, Wiring

NS, PJ = 1e-9, 1e-12
PERCENTILES = (50, 95, 99)


def update_costs(profile, costs: CostModel) -> dict[str, float]:
    """Latency (ns) and energy (pJ) of an active and an idle compartment update.

    The profile's own model has both figures. A SANA-FE-style alternative charges ``neuron_access``
    on every update and ``neuron_update`` only on a neuron that had input (SANA-FE's soma skips
    the update of an idle neuron whose potential is zero)."""
    if costs.name == "profile":
        return {"t_active": costs.t("neuron_update_active"),
                "t_idle": costs.t("neuron_update_inactive"),
                "e_active": costs.e("neuron_update_active"),
                "e_idle": costs.e("neuron_update_inactive")}
    figs = {k: f.value for k, f in profile.figures.items()}

    def g(sec, key):
        return float(figs.get(f"alternatives.{costs.name}.{sec}.{key}") or 0.0)

    return {"t_active": g("latency", "neuron_access") + g("latency", "neuron_update"),
            "t_idle": g("latency", "neuron_access"),
            "e_active": g("energy", "neuron_access") + g("energy", "neuron_update"),
            "e_idle": g("energy", "neuron_access")}


@dataclass
class CoreEvents:
    """Events of ``B`` samples over ``S`` chip steps.

    ``messages`` [B, S, pairs]; ``synaptic_ops``, ``spikes``, ``active_updates`` [B, S, cores];
    ``cpu_ops`` [B, S] (SSA products on the embedded CPUs); ``first_fire``, ``last_fire``
    [B, S, cores]: where in its compartment order a core's first and last firing neuron sit
    (fraction of the core's compartments up to and including it; a core updates its
    compartments in order, so this sets when its first and last message leave)."""

    messages: np.ndarray
    synaptic_ops: np.ndarray
    spikes: np.ndarray
    active_updates: np.ndarray
    cpu_ops: np.ndarray
    first_fire: np.ndarray
    last_fire: np.ndarray


def core_events(wiring: Wiring, mapping: Mapping, nonzero: dict[str, np.ndarray],
                depths: dict[str, int], steps: int, cpu_ops: dict[str, np.ndarray] | None = None,
                active: np.ndarray | None = None,
                inputs: dict[str, np.ndarray] | None = None) -> CoreEvents:
    """Per-core events from every sending unit's nonzero outputs.

    Parameters
    ----------
    nonzero : unit name -> [T, B, elements], nonzero (or True) where the element sends an event.
    depths : unit name -> chip-step delay (``latency.unit_depths``).
    steps : chip steps ``S`` (at least ``T + max depth``).
    cpu_ops : host unit name -> [T, B] SSA multiply-accumulates.
    active : optional [B, S, cores] active compartment updates; default: the compartments of
        a layer in ``inputs`` whose input is nonzero, else a core's compartments with input in
        the previous step estimated as ``n (1 - exp(-syn / n))`` (synaptic ops spread at random
        over its ``n`` compartments).
    inputs : layer name -> [T, B, neurons], nonzero where a neuron's input current is.
    """
    T, B = next(iter(nonzero.values())).shape[:2]
    C, P = wiring.cores, wiring.pairs
    msgs = np.zeros((B, steps, P), np.float32)
    syn = np.zeros((B, steps, C), np.float32)
    spikes = np.zeros((B, steps, C), np.float32)
    first = np.ones((B, steps, C), np.float32)
    last = np.zeros((B, steps, C), np.float32)
    layers = {lm.layer.name: lm for lm in mapping.layers}
    for name, x in nonzero.items():
        sm = wiring.senders.get(name)
        if sm is None:
            continue
        d = depths.get(name, 0)
        y = (x.reshape(T * B, -1).astype(np.float32, copy=False) @ sm.matrix
             ).reshape(T, B, -1).transpose(1, 0, 2)
        n_p, n_s = sm.pair_ids.size, sm.syn_cores.size
        window = slice(d, d + T)
        msgs[:, window, sm.pair_ids] += y[..., :n_p]
        syn[:, window, sm.syn_cores] += y[..., n_p:n_p + n_s]
        spikes[:, window, sm.src_cores] += y[..., n_p + n_s:]
        if name in layers:
            _fire_order(layers[name], x, first[:, window], last[:, window])
    cpu = np.zeros((B, steps), np.float32)
    for name, ops in (cpu_ops or {}).items():
        d = depths.get(name, 0)
        cpu[:, d:d + T] += ops.T
    if active is None:
        n = compartments(mapping)
        lam = np.zeros_like(syn)
        lam[:, 1:] = syn[:, :-1] / np.maximum(n, 1)
        active = n * -np.expm1(-lam)
        for name, x in (inputs or {}).items():  # exact where the neurons' input is known
            lm, d = layers[name], depths.get(name, 0)
            onehot = wiring.senders[name].matrix[:, -lm.cores:]
            y = x.reshape(T * B, -1).astype(np.float32, copy=False) @ onehot
            active[:, d:d + T, lm.core_ids] = y.reshape(T, B, -1).transpose(1, 0, 2)
            active[:, :d, lm.core_ids] = 0.0
            active[:, d + T:, lm.core_ids] = 0.0
    return CoreEvents(msgs, syn, spikes, active.astype(np.float32), cpu, first, last)


def _fire_order(lm, x: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
    """Fill ``first``/``last`` [B, T, cores] (views) with the position of each core's first and
    last firing element of ``x`` [T, B, elements] in the core's compartment order (elements in
    index order, the order the mapper lists them)."""
    T, B = x.shape[:2]
    order = np.argsort(lm.element_core, kind="stable")
    on = x.reshape(T, B, -1)[:, :, order] != 0
    bounds = np.searchsorted(lm.element_core[order], lm.core_ids)
    ends = np.append(bounds[1:], order.size)
    for k, (a, b) in enumerate(zip(bounds, ends)):
        if a == b:
            continue
        seg = on[:, :, a:b]
        any_on = seg.any(axis=2)
        scale = 1.0 / lm.neurons[k]
        lo = np.where(any_on, (seg.argmax(axis=2) + 1) * scale, 1.0)
        hi = np.where(any_on, (b - a - seg[:, :, ::-1].argmax(axis=2)) * scale, 0.0)
        core = lm.core_ids[k]
        first[:, :, core] = np.minimum(first[:, :, core], lo.T)
        last[:, :, core] = np.maximum(last[:, :, core], hi.T)


def compartments(mapping: Mapping) -> np.ndarray:
    """Compartments per global core (partial sums and combining compartments included)."""
    return np.concatenate([lm.neurons for lm in mapping.layers]).astype(np.float32)


def _per_core(mapping: Mapping, costs: CostModel, kind: str) -> np.ndarray:
    """Per global core: the latency (``kind='t'``) or energy (``'e'``) of one synaptic op."""
    get = costs.t if kind == "t" else costs.e
    return np.concatenate([np.full(lm.cores, get("synaptic_op_conv" if is_conv(lm) else
                                                 "synaptic_op")) for lm in mapping.layers])


@dataclass
class StepTimes:
    """The schedule of ``B`` samples over ``S`` chip steps.

    ``step_ns`` [B, S]; ``energy_pj`` [B, S]; ``critical`` [B, S] (node of the step's slowest
    finish: a global core, ``cores + HOST_SENDER`` or ``cores + CPU_SENDER``; -1 a link);
    ``traffic_bound`` [B, S] (the critical node waited for messages or a link); ``busy_ns``
    [B, S, cores] (each core's generation + receive work); ``link_ns`` [B, S]; ``sync_ns``."""

    step_ns: np.ndarray
    energy_pj: np.ndarray
    critical: np.ndarray
    traffic_bound: np.ndarray
    busy_ns: np.ndarray
    link_ns: np.ndarray
    sync_ns: float


def schedule(ev: CoreEvents, wiring: Wiring, mapping: Mapping, costs: CostModel,
             upd: dict[str, float]) -> StepTimes:
    """Time and energy of every chip step of every sample (the module docstring's model)."""
    C, P = wiring.cores, wiring.pairs
    B, S = ev.cpu_ops.shape
    nodes = C + 2
    m = ev.messages.reshape(B * S, P)
    src_onehot = np.zeros((P, nodes), np.float32)
    src_onehot[np.arange(P), wiring.pair_src] = 1
    dst_onehot = np.zeros((P, nodes), np.float32)
    dst_onehot[np.arange(P), wiring.pair_dst] = 1
    out_m, in_m = m @ src_onehot, m @ dst_onehot
    n = compartments(mapping)
    active = ev.active_updates.reshape(B * S, C)
    syn = ev.synaptic_ops.reshape(B * S, C)
    spikes = ev.spikes.reshape(B * S, C)
    cpu = ev.cpu_ops.reshape(B * S)
    cpus = max(1, mapping.placement.chips_used * (mapping.embedded_cpus or 1))
    t_out, t_spike = costs.t("message_out"), costs.t("spike_generate")
    soma = np.zeros((B * S, nodes), np.float32)
    soma[:, :C] = active * upd["t_active"] + (n - active) * upd["t_idle"]
    emit = out_m * t_out
    emit[:, :C] += spikes * t_spike
    gen = soma + emit
    cpu_ns = cpu * costs.t("embedded_cpu_op") / cpus
    gen[:, C + CPU_SENDER] += cpu_ns
    # when a sender's first and last message leave (the CPUs compute, then send)
    lo = np.ones((B * S, nodes), np.float32)
    hi = np.ones((B * S, nodes), np.float32)
    lo[:, :C] = ev.first_fire.reshape(B * S, C)
    hi[:, :C] = ev.last_fire.reshape(B * S, C)
    start = np.zeros((B * S, nodes), np.float32)
    start[:, C + CPU_SENDER] = cpu_ns
    send_first = start + lo * soma + np.where(out_m > 0, t_out, 0.0)
    send_first[:, :C] += t_spike
    send_last = start + hi * soma + emit
    recv = in_m * costs.t("message_in")
    recv[:, :C] += syn * _per_core(mapping, costs, "t")
    flight = (wiring.hops_ew * costs.t("hop_east_west") + wiring.hops_ns *
              costs.t("hop_north_south") + wiring.chip_hops * costs.t("chip_hop"))
    sent = m > 0
    first = np.where(sent, send_first[:, wiring.pair_src] + flight, np.inf)
    last = np.where(sent, send_last[:, wiring.pair_src] + flight, -np.inf)
    first_in = np.full((B * S, nodes), np.inf)
    last_in = np.full((B * S, nodes), -np.inf)
    for p_dst in np.unique(wiring.pair_dst):
        cols = np.nonzero(wiring.pair_dst == p_dst)[0]
        first_in[:, p_dst] = first[:, cols].min(axis=1)
        last_in[:, p_dst] = last[:, cols].max(axis=1)
    got = in_m > 0
    compute = np.maximum(gen, np.where(got, first_in + recv, 0.0))
    wait = np.where(got, last_in + recv / np.maximum(in_m, 1), 0.0)
    finish = np.maximum(compute, wait)
    link_t = np.where(wiring.link_dir == 0, costs.t("hop_east_west"), costs.t("hop_north_south"))
    link_ns = (m @ wiring.pair_links * link_t).max(axis=1) if wiring.pair_links.shape[1] \
        else np.zeros(B * S)
    crit = finish.argmax(axis=1)
    worst = finish[np.arange(B * S), crit]
    traffic = wait[np.arange(B * S), crit] > compute[np.arange(B * S), crit]
    by_link = link_ns > worst
    crit = np.where(by_link, -1, crit)
    sync = costs.sync_ns(wiring.tiles)
    step = np.maximum(worst, link_ns) + sync
    energy = _energy(ev, wiring, mapping, costs, upd, m, n, active, syn, spikes, cpu)
    busy = gen[:, :C] + recv[:, :C]
    return StepTimes(step.reshape(B, S), energy.reshape(B, S), crit.reshape(B, S),
                     (traffic | by_link).reshape(B, S), busy.reshape(B, S, C),
                     link_ns.reshape(B, S), sync)


def _energy(ev, wiring, mapping, costs, upd, m, n, active, syn, spikes, cpu) -> np.ndarray:
    per_msg = (costs.e("message_out") + costs.e("message_in")
               + wiring.hops_ew * costs.e("hop_east_west")
               + wiring.hops_ns * costs.e("hop_north_south")
               + wiring.chip_hops * costs.e("chip_hop"))
    e = m @ per_msg.astype(np.float32)
    e = e + syn @ _per_core(mapping, costs, "e").astype(np.float32)
    e += active.sum(axis=1) * upd["e_active"] + (n.sum() - active.sum(axis=1)) * upd["e_idle"]
    e += spikes.sum(axis=1) * costs.e("spike_generate")
    e += cpu * costs.e("embedded_cpu_op") + (costs.sync_energy_pj or 0.0)
    return e


__all__ = ["CoreEvents", "StepTimes", "core_events", "schedule", "update_costs",
           "HOST_SENDER", "CPU_SENDER", "PERCENTILES", "NS", "PJ"]
