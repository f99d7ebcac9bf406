"""Run the cycle-level timing model (``spikec.estimate.timing``) over a data set and summarize it
(``spikec estimate OUT --data SET --timing cycle``; the JSON is ``report.json``'s
``estimate.timing``, documented in docs/estimator.md §4.1).

The bit-exact simulator runs batch by batch, recording every sending unit's output; each batch's
per-sample, per-step events go through the timing model at once and only the per-sample results
are kept, so memory stays bounded by the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.estimate.costs import CostModel
from spikec.estimate.mapping import Mapping
from spikec.estimate.latency import unit_depths
from spikec.estimate.timing import NS, PERCENTILES, PJ, core_events, schedule, update_costs
from spikec.estimate.timing_noc import NocParams
from spikec.estimate.timing_wiring import CPU_SENDER, HOST_SENDER, build_wiring

HISTOGRAM_BINS = 30


@dataclass
class TimingRun:
    """Per-sample results of a timing run over ``N`` samples and ``S`` chip steps.

    ``step_ns``, ``energy_pj`` [N, S]; ``critical`` [N, S] (node ids, see ``StepTimes``);
    ``traffic_bound`` [N, S]; ``busy_ns`` [S, cores] (mean over samples); ``link_bound``
    [N, S]; ``depth``: pipeline depth; ``sim`` the merged ``SimResult`` (outputs and counts)."""

    step_ns: np.ndarray
    energy_pj: np.ndarray
    critical: np.ndarray
    traffic_bound: np.ndarray
    busy_ns: np.ndarray
    link_bound: np.ndarray
    depth: int
    sync_ns: float
    sim: object


def _recorded(graph, mapping: Mapping) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Values to record: every sending unit, and the operands of SSA products on the CPUs."""
    names = [lm.layer.name for lm in mapping.layers] + [u.name for u in mapping.network.host]
    operands = {}
    for u in mapping.network.host:
        if u.kind == "spike_matmul":
            op = graph.op(u.name)
            operands[u.name] = (op.inputs[0], op.inputs[1])
            names += list(op.inputs)
    names += list(_neuron_inputs(graph, mapping).values())
    return sorted(set(names)), operands


def _neuron_inputs(graph, mapping: Mapping) -> dict[str, str]:
    """Layer -> the value its neurons integrate (the input of a ``cuba_lif`` / ``readout`` op,
    in the neurons' shape): where it is nonzero the compartment update is active."""
    from spikec.ir.fixed import CubaLIF, Readout

    out = {}
    for lm in mapping.layers:
        op = graph.op(lm.layer.name)
        if isinstance(op, (CubaLIF, Readout)) and lm.tiling.fanin_split == 1 and \
                int(np.prod(graph.spec(op.inputs[0]).shape)) == lm.layer.neurons:
            out[lm.layer.name] = op.inputs[0]  # (a readout summing axes reads more elements)
    return out


def _nonzero(graph, mapping: Mapping, values: dict) -> dict[str, np.ndarray]:
    """Recorded values -> bool [T, B, elements]: the elements of each sending unit that send."""
    sizes = {lm.layer.name: lm.layer.neurons for lm in mapping.layers
             if lm.layer.kind != "readout"}  # a readout's value is its scores: it sends nothing
    sizes.update({u.name: u.elements for u in mapping.network.host})
    out = {}
    for name, n in sizes.items():
        v = values.get(name)
        if v is None:
            continue
        T, B = v.shape[:2]
        if v[0, 0].size != n:  # a graded input's zero pad ring is no event source
            p = int(getattr(graph.op(name), "pad", 0) or 0)
            v = v[..., p:v.shape[-2] - p, p:v.shape[-1] - p]
        out[name] = v.reshape(T, B, -1) != 0
    return out


def _ssa_ops(values: dict, operands: dict) -> dict[str, np.ndarray]:
    """Per SSA product on the CPUs: nonzero-operand MACs [T, B] (``spikec.sim.events.ssa_ops``
    per sample)."""
    out = {}
    for name, (a, b) in operands.items():
        va, vb = values[a], values[b]
        T, B = va.shape[:2]
        na = np.count_nonzero(va, axis=-2)
        nb = np.count_nonzero(vb, axis=-1)
        out[name] = (na.astype(np.int64) * nb).reshape(T, B, -1).sum(axis=2).astype(np.float32)
    return out


def run_timing(graph, mapping: Mapping, images, profile, costs: CostModel,
               depth: int | None = None, batch_size: int = 64, progress=None,
               noc=None) -> TimingRun:
    """Simulate ``images`` (raw samples [N, ...], or a dict of them by input name) bit-exactly
    and time every sample's chip steps.

    ``depth``: the Lava bundle's pipeline depth when known (chip steps ``T + depth``); the
    per-unit delays come from the mapping (``unit_depths``). ``noc``: a ``timing_noc.NocParams``
    to time each step with the buffered NoC model, message by message (slow: about a
    microsecond per message); energy, critical cores and busy times stay the default's."""
    from spikec.sim import Simulator

    sim = Simulator(graph)
    wiring = build_wiring(mapping)
    depths = unit_depths(mapping)
    D = max(max(depths.values(), default=0), depth or 0)
    S = graph.timesteps + D
    names, operands = _recorded(graph, mapping)
    neuron_in = _neuron_inputs(graph, mapping)
    upd = update_costs(profile, costs)
    parts: dict[str, list] = {k: [] for k in ("step", "energy", "crit", "traffic", "link")}
    busy = np.zeros((S, wiring.cores))
    total = None
    sync = 0.0
    n = len(next(iter(images.values()))) if isinstance(images, dict) else len(images)
    for s in range(0, n, batch_size):
        batch = {k: v[s:s + batch_size] for k, v in images.items()} \
            if isinstance(images, dict) else images[s:s + batch_size]
        res = sim.run(batch, record=names)
        inputs = {name: res.values[v].reshape(res.values[v].shape[0], res.values[v].shape[1],
                                              -1) != 0 for name, v in neuron_in.items()}
        nonzero = _nonzero(graph, mapping, res.values)
        ev = core_events(wiring, mapping, nonzero, depths, S, _ssa_ops(res.values, operands),
                         inputs=inputs)
        st = schedule(ev, wiring, mapping, costs, upd)
        if noc is not None:
            st.step_ns = _buffered_steps(wiring, mapping, costs, upd, noc, nonzero, inputs,
                                         depths, ev.cpu_ops, st.sync_ns)
        parts["step"].append(st.step_ns)
        parts["energy"].append(st.energy_pj)
        parts["crit"].append(st.critical)
        parts["traffic"].append(st.traffic_bound)
        parts["link"].append(st.link_ns)
        busy += st.busy_ns.sum(axis=0)
        sync = st.sync_ns
        res.values = {}
        if total is None:
            total = res
        else:
            total.merge(res)
        if progress:
            progress(res.samples)
    cat = {k: np.concatenate(v) if v else np.zeros((0, S)) for k, v in parts.items()}
    n = max(1, cat["step"].shape[0])
    return TimingRun(cat["step"], cat["energy"], cat["crit"].astype(np.int64),
                     cat["traffic"].astype(bool), busy / n, cat["link"], D, sync, total)


def _buffered_steps(wiring, mapping, costs, upd, noc, nonzero, inputs, depths, cpu_ops,
                    sync_ns) -> np.ndarray:
    """[B, S] step latency (ns) of the buffered NoC model (``timing_noc``): per sample and chip
    step, the units' firing elements at their input step (``s - depth``) and, where recorded,
    the neurons with input (updated; others idle)."""
    from spikec.estimate.timing_noc import MessageQueues

    mq = MessageQueues(wiring, mapping, costs, upd, noc)
    B, S = cpu_ops.shape
    cpus = max(1, mapping.placement.chips_used * (mapping.embedded_cpus or 1))
    t_cpu = costs.t("embedded_cpu_op") / cpus
    out = np.zeros((B, S))
    for b in range(B):
        for s in range(S):
            fired, updated = {}, {}
            for name, x in nonzero.items():
                t = s - depths.get(name, 0)
                if 0 <= t < x.shape[0]:
                    fired[name] = x[t, b].reshape(-1) != 0
                    if name in inputs:
                        updated[name] = inputs[name][t, b]
            res = mq.step(fired, updated, float(cpu_ops[b, s]) * t_cpu)
            out[b, s] = res.total * noc.clock_ns + sync_ns
    return out


def _percentiles(x: np.ndarray, axis=None) -> dict:
    out = {f"p{q}": np.percentile(x, q, axis=axis).tolist() for q in PERCENTILES}
    out["max"] = np.max(x, axis=axis).tolist()
    out["mean"] = np.mean(x, axis=axis).tolist()
    return out


def _node_name(mapping: Mapping, node: int) -> tuple[str, str]:
    """(layer or unit name, kind of node) of a critical node id."""
    cores = mapping.total_cores
    if node < 0:
        return "mesh link", "link"
    if node == cores + HOST_SENDER:
        return "host", "host"
    if node == cores + CPU_SENDER:
        return "embedded CPUs", "cpu"
    lm = next(lm for lm in mapping.layers if lm.first_core <= node < lm.first_core + lm.cores)
    return lm.layer.name, "core"


def timing_json(run: TimingRun, mapping: Mapping, costs: CostModel) -> dict:
    """The ``timing`` section of ``spikec estimate --timing cycle --json`` (docs §8)."""
    step_s = run.step_ns * NS
    sample_s = step_s.sum(axis=1)
    energy_j = run.energy_pj * PJ
    critical = []
    for s in range(step_s.shape[1]):
        crit = run.critical[:, s]
        if not crit.size:
            break
        vals, cnt = np.unique(crit, return_counts=True)
        node = int(vals[cnt.argmax()])
        mine = crit == node
        name, kind = _node_name(mapping, node)
        critical.append({"step": s, "core": node if kind == "core" else None, "node": kind,
                         "layer": name,
                         "cause": "traffic" if run.traffic_bound[mine, s].mean() > 0.5
                         else "compute",
                         "samples": float(mine.mean())})
    counts, edges = np.histogram(sample_s, bins=HISTOGRAM_BINS) if sample_s.size else ([], [])
    return {
        "model": "cycle", "cost_model": costs.name, "samples": int(step_s.shape[0]),
        "chip_steps": int(step_s.shape[1]), "pipeline_depth": run.depth,
        "barrier_sync_s": run.sync_ns * NS,
        "latency_per_sample_s": _percentiles(sample_s),
        "latency_per_step_s": _percentiles(step_s, axis=0),
        "energy_per_sample_j": _percentiles(energy_j.sum(axis=1)),
        "energy_per_step_j": {"mean": energy_j.mean(axis=0).tolist(),
                              "max": energy_j.max(axis=0).tolist()},
        "critical": critical,
        "link_bound_fraction": float((run.critical < 0).mean()) if run.critical.size else 0.0,
        "core_busy_s": (run.busy_ns * NS).tolist(),
        "latency_histogram": {"edges_s": list(map(float, edges)),
                              "counts": list(map(int, counts))},
    }


def timing_table(t: dict) -> str:
    """A short terminal summary of a ``timing_json``."""
    from spikec.table import format_table

    ls, es = t["latency_per_sample_s"], t["energy_per_sample_j"]
    rows = [["latency per sample (s)", *(f"{ls[k]:.4g}" for k in ("p50", "p95", "p99", "max"))],
            ["energy per sample (J)", *(f"{es[k]:.4g}" for k in ("p50", "p95", "p99", "max"))]]
    per = t["latency_per_step_s"]
    worst = int(np.argmax(per["max"])) if per["max"] else 0
    lines = [f"cycle-level timing: {t['samples']} samples x {t['chip_steps']} chip steps "
             f"(T + pipeline depth {t['pipeline_depth']}), cost model {t['cost_model']}",
             format_table(["", "p50", "p95", "p99", "max"], rows)]
    if t["critical"]:
        c = t["critical"][worst]
        lines.append(f"slowest step {worst}: p99 {per['p99'][worst]:.4g} s, max "
                     f"{per['max'][worst]:.4g} s; critical: {c['layer']}"
                     f"{'' if c['core'] is None else ' core ' + str(c['core'])} ({c['cause']})")
    return "\n".join(lines)


def simulate_timing(graph, mapping: Mapping, profile, cost: str, data_spec,
                    limit: int | None, depth: int | None = None, progress=None,
                    noc_model: str = "fluid"):
    """``spikec estimate --data SET --timing cycle``: one bit-exact run of ``SET`` gives the
    event counts (as ``simulate_counts``), the accuracy and the ``timing`` JSON section.
    ``progress(total, label)``: a context manager giving an object with ``update(n)`` (or None).
    ``noc_model``: ``fluid`` (the default schedule) or ``buffered`` (``timing_noc``)."""
    from contextlib import nullcontext

    from spikec.estimate.costs import cost_model
    from spikec.estimate.driver import evaluation_data
    from spikec.estimate.events import counts_from_sim
    from spikec.estimate.input_encoding import measure_bitplanes

    ds = evaluation_data(graph, data_spec, limit)
    costs = cost_model(profile, cost)
    bar_cm = progress(len(ds), f"simulating and timing {ds.name}") if progress else nullcontext()
    with bar_cm as bar:
        run = run_timing(graph, mapping, ds.images, profile, costs, depth,
                         progress=None if bar is None else bar.update,
                         noc=NocParams() if noc_model == "buffered" else None)
    res = run.sim
    acc = float(np.mean(np.argmax(res.logits, axis=-1) == ds.labels)) if len(ds) else None
    counts = counts_from_sim(res, mapping, f"bit-exact simulation of {len(ds)} samples of "
                                           f"{ds.name}")
    measure_bitplanes(counts, mapping, graph, ds.images)   # the planes' own 1-bits
    j = timing_json(run, mapping, costs)
    j["noc_model"] = noc_model
    return counts, acc, j

