"""The mapper's view of the compiled input encoding (``graph.meta["input_encoding"]``;
docs/compiler.md, "Input encodings"), applied by ``network.extract_network``.

``bitplane``: the ``graded_input`` unit becomes ``INPUT_PLANES`` ``bitplane_input`` units
(``INPUT.plane0`` ..), binary senders, and every layer that read it reads each plane through its
own copy of its synapses (one ``Term`` per plane). ``host``: the first synapse and LIF leave the
cores as a ``host_layer`` unit named like the LIF (``host_macs`` per step); its readers keep
reading it by name, now a host sender.
"""
from __future__ import annotations

import dataclasses

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
