"""Event counts per inference, the input of the energy and latency models.

Counts come from the bit-exact simulator (``spikec simulate`` / ``--data``), from a compiled
``OUT/report.json``, or, when no data is given, from an assumed uniform firing rate (labelled as
such in every result). All counts are *per inference* (averaged over the samples) and summed over
the ``T`` time steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikec.estimate.mapping import Mapping


@dataclass
class UnitEvents:
    """Events of one core layer or host unit per inference.

    Attributes
    ----------
    spikes : float
        Output events: spikes of a neuron layer, graded messages of a relay, nonzero values the
        host sends (graded input pixels, SSA products).
    synaptic_events : float
        Synaptic operations at the layer's synapses (an input event times its fan-out).
    neuron_updates : float or None
        Compartment updates (default: neurons x T).
    active_updates : float or None
        Updates in steps where the neuron had input (default: estimated, see ``active_fraction``).
    ssa_ops : float
        Integer multiply-accumulates of a ``spike_matmul`` on nonzero operand pairs (its host
        unit, or its relay layer under the ``decompose`` lowering).
    synaptic_by_part : dict
        A layer fed by several synapse ops (``Layer.parts``): ``synaptic_events`` per op.
    """

    spikes: float = 0.0
    synaptic_events: float = 0.0
    neuron_updates: float | None = None
    active_updates: float | None = None
    ssa_ops: float = 0.0
    synaptic_by_part: dict[str, float] = field(default_factory=dict)


@dataclass
class EventCounts:
    """Per-inference events of every unit (keyed by core layer or host unit name)."""

    timesteps: int
    units: dict[str, UnitEvents]
    source: str
    samples: int = 0
    assumed_rate: float | None = None
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> UnitEvents:
        return self.units.get(name) or UnitEvents()


def check_rate(rate, what: str = "--rate") -> float:
    """``rate`` as a float in [0, 1] (spikes per neuron per step), else a one-line error."""
    from spikec.errors import InvalidValueError

    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise InvalidValueError(f"{what} {rate}: a firing rate is spikes per neuron per step, a number "
                         "in [0, 1]")
    return float(rate)


def assumed_counts(mapping: Mapping, rate: float = 0.1) -> EventCounts:
    """Counts for a uniform firing ``rate`` (spikes per neuron per step) in every layer; the
    host sends every input pixel and every SSA product each step (an upper bound), and so does
    the relay of a decomposed product (``ssa_sum``), whose term neurons fire at ``rate``.

    Raises ``InvalidValueError`` unless ``0 <= rate <= 1`` (a neuron spikes at most once a step)."""
    check_rate(rate)
    net = mapping.network
    T = net.timesteps
    units: dict[str, UnitEvents] = {}
    per_element: dict[str, float] = {}
    for unit in net.host:
        per_element[unit.name] = rate * T if unit.kind == "host_layer" else float(T)
        units[unit.name] = UnitEvents(spikes=unit.elements * per_element[unit.name])
    for lm in mapping.layers:
        layer = lm.layer
        per_element[layer.name] = float(T) if layer.kind == "ssa_sum" else rate * T
        by_stream = [stream_events(lm, i, per_element.get(t.source, rate * T))
                     for i, t in enumerate(layer.terms)]
        units[layer.name] = UnitEvents(spikes=layer.neurons * per_element[layer.name],
                                       synaptic_events=sum(by_stream),
                                       synaptic_by_part=_by_part(layer, by_stream))
    for p in net.products:
        units[p.name].ssa_ops = p.dense_ops * T * rate
    return EventCounts(timesteps=T, units=units, source=f"assumed firing rate {rate:g}",
                       assumed_rate=rate)


def stream_events(lm, index: int, events_per_element: float) -> float:
    """Synaptic events of input stream ``index`` (``Term``) of a layer: the stream's synapses
    times the events each source element sends (every source element of a stream has the same
    fan-out)."""
    return float(lm.stream_synapses[index]) * events_per_element


def _by_part(layer, by_stream: list[float]) -> dict[str, float]:
    """Per synapse op of a layer with ``parts``: the synaptic events of its streams."""
    out, i = {}, 0
    for part in layer.parts:
        out[part.name] = float(sum(by_stream[i:i + len(part.terms)]))
        i += len(part.terms)
    return out


def counts_from_report(report: dict, mapping: Mapping) -> EventCounts | None:
    """Counts recorded in a compiled ``report.json`` (``layers`` with ``spikes`` and
    ``synaptic_events`` per op), or None when it has none (compiled without ``--data``).

    Counts are per inference when ``event_counts`` is ``"per_sample"`` (spikec's reports), else
    they are divided by ``accuracy.samples``."""
    entries = report.get("layers") or []
    if not any(e.get("spikes") is not None for e in entries):
        return None
    samples = int((report.get("data") or {}).get("samples") or
                  (report.get("accuracy") or {}).get("samples") or 0)
    scale = 1.0 if report.get("event_counts") == "per_sample" or not samples else 1.0 / samples
    T = int(report.get("timesteps") or mapping.network.timesteps)
    src = "report.json" + (f" ({samples} samples of {report['data'].get('spec')})"
                           if isinstance(report.get("data"), dict) else "")
    counts = counts_from_entries(entries, mapping, T, src, samples, scale)
    if report.get("input_planes"):  # a bitplane compile: what the planes sent
        from spikec.estimate.input_encoding import apply_plane_summary

        apply_plane_summary(counts, mapping, report["input_planes"])
    return counts


def counts_from_sim(result, mapping: Mapping, source: str) -> EventCounts:
    """Counts of a ``spikec.sim.SimResult`` (``stats``: op name -> ``LayerStats``)."""
    entries = [{"name": name, "op": st.op, **{c: st.per_sample(c) for c in st.counts}}
               for name, st in result.stats.items()]
    return counts_from_entries(entries, mapping, mapping.network.timesteps, source,
                               int(result.samples), 1.0)


def counts_from_entries(entries: list[dict], mapping: Mapping, T: int, source: str,
                        samples: int, scale: float = 1.0) -> EventCounts:
    """Counts from per-op entries (``name`` + counters, spikec.sim.events' definitions).

    A core layer takes ``spikes`` from its neuron op and ``synaptic_events`` from its synapse op;
    a relay of integer values (``add``, a ``spike_matmul`` on the CPU or as relay neurons) sends
    its ``values_out``; other host units' messages and the outputs of the remaining relays
    (max-pool, iand, and adds or products in reports without ``values_out``) are the
    ``input_events`` of the synapse op that reads them."""
    by = {e["name"]: e for e in entries if "name" in e}

    def val(e, key):
        return float(e.get(key) or 0.0) * scale if e is not None else 0.0

    units: dict[str, UnitEvents] = {}
    measured: set[str] = set()
    for lm in mapping.layers:
        layer = lm.layer
        if layer.product is not None:  # decomposed SSA: see _fill_synaptic_events
            units[layer.name] = UnitEvents()
            continue
        e_n = by.get(layer.name)
        parts = {p.name: val(by.get(p.synapse), "synaptic_events") for p in layer.parts}
        e_s = by.get(layer.synapse) if layer.synapse else None
        u = UnitEvents(spikes=val(e_n, "spikes"), synaptic_by_part=parts,
                       synaptic_events=sum(parts.values()) if parts else
                       val(e_s, "synaptic_events"))
        if e_n is not None and e_n.get("neuron_updates") is not None:
            u.neuron_updates = val(e_n, "neuron_updates")
        if e_n is not None and e_n.get("spikes") is not None and layer.kind in ("lif",):
            measured.add(layer.name)
        units[layer.name] = u
    for unit in mapping.network.host:
        units[unit.name] = UnitEvents()
        e = by.get(unit.name)  # a first layer on the host (input encoding host): its LIF's spikes
        if unit.kind == "host_layer" and e is not None and e.get("spikes") is not None:
            units[unit.name].spikes = val(e, "spikes")
            measured.add(unit.name)
    for p in mapping.network.products:
        units[p.name].ssa_ops = val(by.get(p.name), "ssa_ops")
    notes = []
    # Relays of integer values (residual adds, SSA products on the CPU or as relays) send one
    # graded message per nonzero value: the simulator's values_out where the report has it.
    relays = [lm.layer.name for lm in mapping.layers
              if lm.layer.kind in ("add", "reduce_sum", "ssa_sum")]
    for name in relays + [u.name for u in mapping.network.host]:
        e = by.get(name)
        if e is not None and e.get("op") in ("add", "reduce_sum", "spike_matmul") and \
                e.get("values_out") is not None:
            units[name].spikes = val(e, "values_out")
            measured.add(name)
    # Senders the simulator does not count: take what their single-input readers received.
    for part in (p for lm in mapping.layers for p in lm.layer.inputs):
        e_s = by.get(part.synapse) if part.synapse else None
        if len(part.terms) == 1 and e_s is not None and e_s.get("input_events") is not None:
            src = part.terms[0].source
            if src not in measured and src in units:
                units[src].spikes = val(e_s, "input_events")
                measured.add(src)
    read_by_cores = {t.source for lm in mapping.layers for t in lm.layer.terms}
    senders = [(u.name, u.elements) for u in mapping.network.host] + \
        [(lm.layer.name, lm.layer.neurons) for lm in mapping.layers if lm.layer.kind == "ssa_sum"]
    for name, elements in senders:
        if name not in read_by_cores:
            units[name].spikes = 0.0  # an SSA product feeding the next stays on the CPU
        elif name not in measured:
            units[name].spikes = float(elements * T)
            notes.append(f"{name}: values sent per inference not counted; assumed every "
                         f"element every step ({elements * T:,})")
    _fill_synaptic_events(mapping, units)
    return EventCounts(timesteps=T, units=units, source=source, samples=samples, notes=notes)


def _fill_synaptic_events(mapping: Mapping, units: dict[str, UnitEvents]) -> None:
    """Synaptic events of layers without a synapse op (relays, identity inputs, decomposed SSA):
    their synapses times the sender's events per element. A decomposed product's term neurons
    fire once per nonzero term (the simulator's ``ssa_ops``), a gate once per event of its
    gating stream (it sends ``A`` even where the count is 0)."""
    elements = {lm.layer.name: lm.layer.neurons for lm in mapping.layers}
    elements.update({u.name: u.elements for u in mapping.network.host})

    def per_element(source: str) -> float:
        return units.get(source, UnitEvents()).spikes / max(1, elements.get(source, 1))

    for lm in mapping.layers:
        layer, u = lm.layer, units[lm.layer.name]
        if layer.synapse is not None:
            continue
        u.synaptic_events = sum(stream_events(lm, i, per_element(t.source))
                                for i, t in enumerate(layer.terms))
        if layer.kind == "ssa_term":
            p = mapping.network.product(layer.product)
            u.spikes = units[p.name].ssa_ops if p.gate is None else \
                stream_events(lm, p.gate, per_element(layer.terms[p.gate].source))


def active_fraction(synaptic_events: float, neurons: int, fan_in_events_per_step: float) -> float:
    """Fraction of a layer's neuron updates with input, when the simulator does not count it:
    with ``lam`` synaptic events per neuron per step spread at random, ``1 - exp(-lam)``."""
    if neurons <= 0:
        return 0.0
    lam = fan_in_events_per_step / neurons
    return float(1.0 - np.exp(-lam))
