"""``placement.json``: the bundle's network as the estimator's mapper places it on chips and cores.

Lava 0.10 on a CPU runs the whole network in one process, so the Lava processes of
``network.json`` stay one group per IR layer whatever the target. What a multi-chip deployment
(and a user sizing one) needs besides is *where* each neuron and synapse goes: the mapper of
``spikec estimate`` (``spikec.estimate.mapping.map_network``) computes it for the target profile,
and this module writes it down, so that the bundle and ``spikec estimate --profile P`` report the
same chips, cores and inter-chip traffic.

Layout (schema ``spikec-placement`` 1, docs/lava-backend.md)::

    {"format", "format_version", "profile", "ssa", "fits", "reason",
     "chips", "chips_available", "cores", "cores_per_chip", "chip_mesh", "tile_mesh",
     "cores_per_tile",
     "layers":  [{name, kind, synapse_ops, lava_processes, first_core, cores, tile, grid,
                  fanin_split, combine_cores, chips, neurons, synapses, synaptic_memory_bits}],
     "host":    [{name, kind, where, elements}],
     "chip_list": [{chip, position, cores, neurons, synapses, synaptic_memory_bits,
                    core_list: [{core, local, tile, x, y, layer, role, neurons: slice, ...}]}],
     "inter_chip": [{source, source_chip, destination, destination_chip, axons, chip_hops,
                     partial_sums}],
     "totals": {...}}

Chip ``-1`` in ``inter_chip`` is the host / embedded CPUs, which the estimator places at chip 0's
mesh position (``Placement.host_position``).
"""
from __future__ import annotations

import json

import numpy as np

from spikec.errors import CapacityError, UnsupportedOpError
from spikec.estimate.mapping import HOST, Mapping, map_network
from spikec.estimate.netmodel import HOST_INPUT_KINDS
from spikec.estimate.network import extract_network
from spikec.estimate.partition import tile_ranges

PLACEMENT_FILE = "placement.json"
PLACEMENT_FORMAT = "spikec-placement"
PLACEMENT_FORMAT_VERSION = 1
#: Lava process types that hold synapses (their connection's destination names the layer).
SYNAPSE_PROCESSES = ("conv", "dense", "sparse", "delay_dense", "delay_sparse")


def wants_placement(profile) -> bool:
    """Whether a bundle for ``profile`` gets ``placement.json``: a system of several chips (a
    one-chip bundle is placed by Lava itself, and the mapper's time is not spent on it)."""
    return profile is not None and (profile.system.chips or 1) > 1


def placement(graph, profile, ssa: str, plan: dict | None = None) -> dict:
    """The placement of a fixed-point ``graph`` on ``profile`` with SSA lowered as ``ssa``.

    Parameters
    ----------
    graph : Graph
        The quantized graph the bundle lowers.
    profile : HardwareProfile
        The compile's target profile (its ``system`` gives the chips available).
    ssa : str
        The bundle's SSA lowering (``host`` or ``decompose``), as ``spikec estimate --ssa``.
    plan : dict, optional
        The bundle's plan (``network.json``): each layer then lists its Lava processes.

    Returns
    -------
    dict
        JSON-able (layout in the module docstring). A network the mapper cannot place (a layer
        larger than any core) gives ``fits: false``, ``reason`` and no chips.
    """
    head = {"format": PLACEMENT_FORMAT, "format_version": PLACEMENT_FORMAT_VERSION,
            "profile": profile.name, "ssa": ssa}
    try:
        m = map_network(extract_network(graph, ssa), profile)
    except (CapacityError, UnsupportedOpError) as e:
        return {**head, "fits": False, "reason": str(e), "chips": None, "cores": None}
    pl = m.placement
    layers = [_layer(lm, pl, _processes(plan, lm.layer.name)) for lm in m.layers]
    chips = _chips(m)
    links = _inter_chip(m)
    return {**head, "fits": m.fits, "reason": m.reason or None,
            "chips": pl.chips_used, "chips_available": m.chips_available,
            "cores": m.total_cores, "cores_per_chip": m.cores_per_chip,
            "chip_mesh": list(pl.chip_mesh), "tile_mesh": list(pl.tile_mesh),
            "cores_per_tile": pl.cores_per_tile,
            "layers": layers,
            "host": [{"name": u.name, "kind": u.kind, "elements": u.elements,
                      "where": "host" if u.kind in HOST_INPUT_KINDS else "embedded_cpu"}
                     for u in m.network.host],
            "chip_list": chips, "inter_chip": links,
            "totals": {"neurons": sum(c["neurons"] for c in chips),
                       "synapses": sum(c["synapses"] for c in chips),
                       "synaptic_memory_bits": sum(c["synaptic_memory_bits"] for c in chips),
                       "inter_chip_axons": sum(x["axons"] for x in links),
                       "inter_chip_axon_hops": sum(x["chip_hops"] for x in links)}}


def placement_bytes(doc: dict) -> bytes:
    """``doc`` as deterministic JSON (sorted keys), a flat object (a core, a connection) on one
    line."""
    def flat(v) -> bool:
        return not any(isinstance(x, dict) or (isinstance(x, list) and x and
                                               isinstance(x[0], dict)) for x in v.values())

    def dump(v, pad: str) -> str:
        if isinstance(v, dict) and v and not flat(v):
            items = [f"{pad} {json.dumps(k)}: {dump(v[k], pad + ' ')}" for k in sorted(v)]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list) and v and isinstance(v[0], dict):
            return "[\n" + ",\n".join(pad + " " + dump(x, pad + " ") for x in v) + "\n" + pad + "]"
        return json.dumps(v, sort_keys=True)

    return (dump(doc, "") + "\n").encode()


def _processes(plan: dict | None, layer: str) -> list[str]:
    """Names of the Lava processes of ``layer``: its neurons (``ir`` names the layer) and the
    synapse processes that feed them."""
    if plan is None:
        return []
    neurons = {p["name"] for p in plan["processes"] if p.get("ir") == layer}
    if not neurons:  # relays, read-outs: one process named after the layer
        base = layer.replace(".", "_")
        neurons = {p["name"] for p in plan["processes"]
                   if p["name"] == base and p["type"] not in SYNAPSE_PROCESSES}
    kinds = {p["name"]: p["type"] for p in plan["processes"]}
    synapses = {c["src"][0] for c in plan["connections"]
                if c["dst"][0] in neurons and kinds.get(c["src"][0]) in SYNAPSE_PROCESSES}
    return sorted(neurons | synapses)


def _layer(lm, pl, processes: list[str]) -> dict:
    t = lm.tiling
    return {"name": lm.layer.name, "kind": lm.layer.kind, "synapse_ops": lm.layer.synapse_ops,
            "lava_processes": processes, "first_core": lm.first_core, "cores": lm.cores,
            "tile": list(t.tile), "grid": list(t.grid), "fanin_split": t.fanin_split,
            "combine_cores": t.combine_cores,
            "chips": sorted({int(c) for c in pl.chip[lm.core_ids]}),
            "neurons": lm.layer.neurons, "synapses": int(lm.synapses.sum()),
            "synaptic_memory_bits": int(lm.memory_bits.sum())}


def _cores(lm) -> list[dict]:
    """One entry per core of ``lm`` (local order): what it holds. ``neurons`` is the slice of
    the layer's canonical ``(C, H, W)`` neuron array (``[c0, c1, h0, h1, w0, w1]``), or, for a
    split fan-in's combining cores, a range of its canonical flat order (``[start, stop]``)."""
    t = lm.tiling
    f = t.fanin_split
    out = []
    for ti, r in enumerate(tile_ranges(t, lm.layer.geometry.out)):
        for k in range(f):
            out.append({"role": "neurons" if f == 1 else "partial_sum", "neurons": list(r),
                        **({"fanin_part": [k, f]} if f > 1 else {})})
    per = t.combine_per_core
    for j in range(t.combine_cores):
        out.append({"role": "combine",
                    "neurons": [j * per, min((j + 1) * per, lm.layer.neurons)]})
    for i, entry in enumerate(out):
        entry.update({"layer": lm.layer.name, "neuron_count": int(lm.neurons[i]),
                      "synapses": int(lm.synapses[i]),
                      "synaptic_memory_bits": int(lm.memory_bits[i]),
                      "input_axons": int(lm.input_axons[i]),
                      "output_axons": int(lm.output_axons[i])})
    return out


def _chips(m: Mapping) -> list[dict]:
    pl = m.placement
    chips = [{"chip": c, "position": [0, 0], "core_list": []} for c in range(pl.chips_used)]
    for lm in m.layers:
        for i, entry in enumerate(_cores(lm)):
            g = lm.first_core + i
            chip = chips[int(pl.chip[g])]
            chip["position"] = [int(pl.chip_x[g]), int(pl.chip_y[g])]
            chip["core_list"].append({"core": g, "local": len(chip["core_list"]),
                                      "tile": int(pl.tile[g]), "x": int(pl.x[g]),
                                      "y": int(pl.y[g]), **entry})
    for chip in chips:
        cores = chip["core_list"]
        chip.update({"cores": len(cores), "neurons": sum(c["neuron_count"] for c in cores),
                     "synapses": sum(c["synapses"] for c in cores),
                     "synaptic_memory_bits": sum(c["synaptic_memory_bits"] for c in cores)})
    return chips


def _chip_distance(m: Mapping, a: int, b: int) -> int:
    """Chip-mesh hops between chips ``a`` and ``b`` (``HOST``: at chip 0's position, as the
    estimator has it)."""
    pl = m.placement

    def pos(c):
        if c == HOST:
            return 0, 0
        g = int(np.argmax(pl.chip == c))
        return int(pl.chip_x[g]), int(pl.chip_y[g])

    (ax, ay), (bx, by) = pos(a), pos(b)
    return abs(ax - bx) + abs(ay - by)


def _inter_chip(m: Mapping) -> list[dict]:
    """Connections between different chips (and between the host and a chip): (source, chip)
    -> (destination, chip), with the (source element, destination core) pairs (one axon each)
    and those pairs' chip hops."""
    out = []
    links = [((s, d), st, False) for (s, d), st in m.conn.items()] + \
        [((n, n), st, True) for n, st in m.internal.items()]
    for (src, dst), st, internal in links:
        for dchip, per_src in sorted(st.by_chip.items()):
            for sidx in np.nonzero(per_src)[0]:
                schip = int(sidx) - 1
                if schip == dchip:
                    continue
                axons = float(per_src[sidx])
                out.append(_link(m, src, schip, dst, dchip, axons, internal))
    for unit in m.network.host:   # every neuron an embedded CPU reads sends to it
        for src, _ in unit.inputs:
            lm = next((x for x in m.layers if x.layer.name == src), None)
            if lm is None:
                continue
            chips = np.bincount(m.placement.chip[lm.element_core], minlength=m.placement.chips_used)
            for schip in np.nonzero(chips)[0]:
                out.append(_link(m, src, int(schip), unit.name, HOST, float(chips[schip]), False))
    out.sort(key=lambda x: (x["source_chip"], x["destination_chip"], x["source"],
                            x["destination"]))
    return out


def _link(m: Mapping, src: str, schip: int, dst: str, dchip: int, axons: float,
          internal: bool) -> dict:
    axons = int(round(axons)) if abs(axons - round(axons)) < 1e-9 else axons
    return {"source": src, "source_chip": schip, "destination": dst, "destination_chip": dchip,
            "axons": axons, "chip_hops": axons * _chip_distance(m, schip, dchip),
            "partial_sums": internal}
