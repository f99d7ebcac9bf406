"""The mapper's view of the compiled input encoding (``graph.meta["input_encoding"]``;
docs/compiler.md, "Input encodings"), applied by ``network.extract_network``.

``bitplane``: the ``graded_input`` unit becomes ``INPUT_PLANES`` ``bitplane_input`` units
(``INPUT.plane0`` ..), binary senders, and every layer that read it reads each plane through its
own copy of its synapses (one ``Term`` per plane). ``host``: the first synapse and LIF leave the
cores as a ``host_layer`` unit named like the LIF (``host_macs`` per step); its readers keep
reading it by name, now a host sender.

With data (``spikec estimate --data``), ``measure_bitplanes`` replaces what the simulator cannot
count for bit planes (it runs the graded arithmetic, which is equal): each plane's messages are
the 1-bits it carries over the samples, and the first layer's synaptic events are each such bit
times the fan-out of its pixel (exact at borders, as ``spikec.sim.events`` counts them).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.estimate.network import INPUT_PLANES, ConvGeometry, HostUnit, Term


def apply_input_encoding(x, encoding: str) -> None:
    """Rewrite the graded input units of the extraction ``x`` (``network._Extraction``) for the
    compiled input encoding (see the module docstring)."""
    if encoding == "graded":
        return
    if encoding not in ("bitplane", "host"):
        raise UnsupportedOpError(f"unknown input encoding {encoding!r} in the graph's meta")
    for unit in [u for u in x.host if u.kind == "graded_input"]:
        at = x.host.index(unit)
        readers = [lay for lay in x.layers if any(t.source == unit.name for t in lay.terms)]
        if encoding == "bitplane":
            planes = [HostUnit(f"{unit.name}.plane{k}", "bitplane_input", unit.shape)
                      for k in range(INPUT_PLANES)]
            x.host[at:at + 1] = planes
            for lay in readers:
                lay.terms = _plane_terms(lay.terms, unit.name, planes)
            continue
        moved = []
        for lay in readers:
            if len(lay.terms) != 1 or lay.kind != "lif":
                raise UnsupportedOpError(f"layer {lay.name!r}: the host input encoding runs the "
                                         "first synapse and LIF on the host; this layer reads "
                                         "more than the input")
            geo = lay.geometry
            per_neuron = geo.weights_per_channel if isinstance(geo, ConvGeometry) else geo.fan_in
            moved.append(HostUnit(lay.name, "host_layer", lay.shape,
                                  host_macs=lay.neurons * int(per_neuron)))
            x.layers.remove(lay)
        x.host[at:at + 1] = moved


def _plane_terms(terms: list[Term], source: str, planes: list[HostUnit]) -> list[Term]:
    out = []
    for t in terms:
        if t.source != source:
            out.append(t)
            continue
        out += [dataclasses.replace(t, source=p.name, graded=False) for p in planes]
    return out


#: Samples per chunk when counting bit planes (bounds the unpacked planes' memory).
_CHUNK = 256


def plane_events(graph, images) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-plane events of the raw inputs of a bitplane-encoded ``graph`` over ``images``.

    Returns
    -------
    messages : dict
        Raw input name -> int64 ``[payload_bits]``: the 1-bits plane ``k`` sends, summed over
        the samples and steps.
    synaptic : dict
        Synapse op name (a synapse reading the raw input) -> int64 ``[payload_bits]``: its
        synaptic events per plane (every 1-bit times its pixel's fan-out in that op).
    """
    from spikec.ir import fixed as F
    from spikec.sim import events as ev

    T = graph.timesteps
    specs = graph.specs
    messages, synaptic = {}, {}
    for inp in (op for op in graph.ops if isinstance(op, F.GradedInput) and op.kind == "count"):
        bits = int(inp.payload_bits)
        readers = _synapses_reading(graph, inp.name)
        fans = {}
        for op in readers:
            if isinstance(op, F.ConvSynapse):
                fans[op.name] = ev.conv_fanout(specs[inp.name].shape, specs[op.name].shape,
                                               op.weight.shape[2:], op.stride, op.padding,
                                               op.dilation, op.groups)
            else:
                fans[op.name] = int(op.weight.shape[0])
        msg = np.zeros(bits, np.int64)
        syn = {op.name: np.zeros(bits, np.int64) for op in readers}
        x_all = np.asarray(images[inp.name] if isinstance(images, dict) else images)
        for s in range(0, len(x_all), _CHUNK):
            x = x_all[s:s + _CHUNK].astype(np.int64)
            # [steps, B, ...]: a repeated image is counted once and weighed by T
            x = x[None] if inp.encoding == "repeat" else np.moveaxis(x, 1, 0)
            weight = T if inp.encoding == "repeat" else 1
            if inp.pad:
                p = int(inp.pad)
                x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
            for k in range(bits):
                plane = (x >> k) & 1
                msg[k] += weight * int(np.count_nonzero(plane))
                for name, fan in fans.items():
                    n = ev.conv_synaptic_events(plane, fan) if isinstance(fan, np.ndarray) \
                        else ev.nonzero_per_step(plane) * fan
                    syn[name][k] += weight * int(np.sum(n))
        messages[inp.name] = msg
        synaptic.update(syn)
    return messages, synaptic


def _synapses_reading(graph, value: str) -> list:
    """The synapse ops reading ``value``, directly or through reshapes and transposes (which
    keep the number of 1-bits; a conv reads the input itself)."""
    from spikec.ir import fixed as F
    from spikec.ir import ops as O

    out, todo = [], [value]
    while todo:
        for op in graph.consumers(todo.pop()):
            if isinstance(op, (O.Reshape, O.Transpose)):
                todo.append(op.name)
            elif isinstance(op, (F.ConvSynapse, F.DenseSynapse)):
                out.append(op)
    return out


def plane_summary(graph, images) -> dict | None:
    """``plane_events`` of ``images`` as JSON (``report.json["input_planes"]`` of a bitplane
    compile with ``--data``): ``samples``, ``messages`` {input: [per plane]} and
    ``synaptic_events`` {synapse op: [per plane]}, summed over the samples; None unless the
    graph is bitplane-encoded."""
    if graph.meta.get("input_encoding", "graded") != "bitplane":
        return None
    n = len(images[next(iter(images))]) if isinstance(images, dict) else len(images)
    messages, synaptic = plane_events(graph, images)
    return {"samples": int(n),
            "messages": {k: [int(x) for x in v] for k, v in messages.items()},
            "synaptic_events": {k: [int(x) for x in v] for k, v in synaptic.items()}}


def measure_bitplanes(counts, mapping, graph, images) -> None:
    """Put the measured bit-plane events of ``images`` into ``counts`` (``EventCounts`` of the
    same samples, from the simulator): see ``apply_plane_summary``."""
    summary = plane_summary(graph, images)
    if summary is not None:
        apply_plane_summary(counts, mapping, summary)


def apply_plane_summary(counts, mapping, summary: dict) -> None:
    """Each plane unit's messages and the synaptic events of the synapses reading the raw
    input (the simulator counts those for graded pixels) from ``summary`` (``plane_summary``),
    per inference."""
    n = max(1, int(summary["samples"]))
    synaptic = {k: float(sum(v)) / n for k, v in summary["synaptic_events"].items()}
    planes = set()
    for name, msg in summary["messages"].items():
        for k, m in enumerate(msg):
            unit = f"{name}.plane{k}"
            if unit in counts.units:
                planes.add(unit)
                counts.units[unit].spikes = float(m) / n
    for lm in mapping.layers:
        layer = lm.layer
        u = counts.units[layer.name]
        if layer.parts:
            for part in layer.parts:
                if part.synapse in synaptic:
                    u.synaptic_by_part[part.name] = synaptic[part.synapse]
            u.synaptic_events = float(sum(u.synaptic_by_part.values()))
        elif layer.synapse in synaptic:
            u.synaptic_events = synaptic[layer.synapse]
    counts.notes = [t for t in counts.notes if t.split(":")[0] not in planes]
    per_plane = ", ".join(f"{float(m) / n:,.0f}" for msg in summary["messages"].values()
                          for m in msg)
    counts.notes.append(f"bit-plane input: 1-bits sent per inference, plane 0..7: {per_plane} "
                        f"(measured on {n} samples)")
