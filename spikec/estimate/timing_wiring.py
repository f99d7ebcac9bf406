"""The static wiring the timing simulator needs, from a ``Mapping``: per sending unit, a matrix
that turns the unit's nonzero outputs of one step into messages per core pair, synaptic ops per
destination core and spikes per sending core; and the mesh route of every core pair.

Senders are the core layers (their spikes or graded messages, sent by the core
``LayerMapping.element_core`` names) and the host units (the host's graded input, an SSA product
on the embedded CPUs). Every (source element, destination core) pair with a synapse is one
message per event of that element (one input axon); its synaptic ops are the synapses the
element has on that core, counted exactly per tile (borders, strides, groups), and split evenly
over the partial-sum cores of a split fan-in (as the mapper splits them).

Routes are dimension-order: east-west first, then north-south, on the system's global tile grid
(the host and the embedded CPUs one hop west of tile (0, 0)); cores of one tile exchange messages
without a hop; a step across chips adds a chip hop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.estimate.mapping import Mapping
from spikec.estimate.network import HOST_INPUT_KINDS, ConvGeometry
from spikec.estimate.partition import part_region, tile_ranges

#: Sender ids after the global cores: the host (graded input) and the embedded CPUs.
HOST_SENDER, CPU_SENDER = 0, 1


@dataclass
class SenderMatrix:
    """What one sending unit's events of one step cause.

    ``matrix`` float32 [elements, pairs + cores + senders]: for a nonzero output vector ``x``
    [elements], ``x @ matrix`` gives messages per pair (columns ``pair_ids`` of the network's
    pair list), synaptic ops per destination core (``syn_cores``), and events per sending core
    (``src_cores``; empty for a host unit)."""

    unit: str
    matrix: np.ndarray
    pair_ids: np.ndarray
    syn_cores: np.ndarray
    src_cores: np.ndarray


@dataclass
class Wiring:
    """Pairs and routes of a mapped network.

    Nodes are the global cores, then ``cores + HOST_SENDER`` (the host) and ``cores +
    CPU_SENDER`` (the embedded CPUs). ``pair_src``, ``pair_dst``: sending and receiving node of
    each pair; ``pair_graded``: messages carry a
    payload; ``hops_ew``, ``hops_ns``, ``chip_hops``: per pair; ``pair_links`` float32
    [pairs, links]: the directed mesh links each pair's route crosses; ``link_dir``: 0 east-west,
    1 north-south per link; ``senders``: one ``SenderMatrix`` per sending unit; ``cores``: global
    cores; ``tiles``: tiles in use."""

    cores: int
    pair_src: np.ndarray
    pair_dst: np.ndarray
    pair_graded: np.ndarray
    hops_ew: np.ndarray
    hops_ns: np.ndarray
    chip_hops: np.ndarray
    pair_links: np.ndarray
    link_dir: np.ndarray
    senders: dict[str, SenderMatrix]
    tiles: int

    @property
    def pairs(self) -> int:
        return self.pair_src.size


def _axis_taps(lo: int, hi: int, size: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """Per input index: the (output index in [lo, hi), tap) pairs that read it."""
    pos = (s * np.arange(lo, hi)[:, None] + d * np.arange(k)[None, :] - p).ravel()
    pos = pos[(pos >= 0) & (pos < size)]
    return np.bincount(pos, minlength=size)


def tile_synapses(geometry, r) -> np.ndarray:
    """Synapses each canonical input element has on the tile ``r`` = (c0, c1, h0, h1, w0, w1):
    an int64 array of the canonical input shape ``geometry.inp``."""
    c0, c1, h0, h1, w0, w1 = r
    g = geometry
    if isinstance(g, ConvGeometry):
        groups = np.arange(g.inp[0]) // g.cin_per_group
        lo = np.maximum(groups * g.cout_per_group, c0)
        hi = np.minimum((groups + 1) * g.cout_per_group, c1)
        chans = np.maximum(hi - lo, 0)
        fh = _axis_taps(h0, h1, g.inp[1], g.kernel[0], g.stride[0], g.padding[0], g.dilation[0])
        fw = _axis_taps(w0, w1, g.inp[2], g.kernel[1], g.stride[1], g.padding[1], g.dilation[1])
        return chans[:, None, None] * fh[None, :, None] * fw[None, None, :]
    out = np.zeros(g.inp, np.int64)
    out[:, h0:h1, :] = c1 - c0
    return out


def _route(sx, sy, dx, dy) -> list[tuple[int, int, int]]:
    """Directed links (x, y, direction) of the X-then-Y route; direction 0..3 = E, W, N, S."""
    links = []
    x, y = sx, sy
    while x != dx:
        step = 1 if dx > x else -1
        links.append((x, y, 0 if step > 0 else 1))
        x += step
    while y != dy:
        step = 1 if dy > y else -1
        links.append((x, y, 2 if step > 0 else 3))
        y += step
    return links


def build_wiring(mapping: Mapping) -> Wiring:
    """The pairs, routes and sender matrices of ``mapping`` (see the module docstring)."""
    layers = {lm.layer.name: lm for lm in mapping.layers}
    host_kind = {u.name: u.kind for u in mapping.network.host}
    n_cores = mapping.total_cores
    pair_index: dict[tuple[int, int, bool], int] = {}
    blocks: dict[str, list] = {}  # unit -> [(dst columns kind, col ids, matrix part)]

    def sender_id(unit: str, src_core: np.ndarray) -> np.ndarray:
        if unit in layers:
            return src_core
        return np.full_like(src_core, n_cores + (HOST_SENDER if host_kind[unit] in HOST_INPUT_KINDS
                                                 else CPU_SENDER))

    sizes: dict[str, int] = {lm.layer.name: lm.layer.neurons for lm in mapping.layers}
    sizes.update({u.name: u.elements for u in mapping.network.host})
    streams = [(lm, part, term) for lm in mapping.layers for part in lm.layer.inputs
               for term in part.terms]
    for lm, part, term in streams:
        f = lm.tiling.fanin_split
        if term.source not in sizes:
            continue
        E = sizes[term.source]
        idx = term.index.ravel()
        ok = idx >= 0
        src = layers.get(term.source)
        ec = src.element_core if src is not None else np.zeros(E, np.int64)
        for ti, r in enumerate(tile_ranges(lm.tiling, lm.layer.geometry.out)):
            # a membrane shortcut's part laid out otherwise: its bounding box (approximate)
            w = tile_synapses(part.geometry, part_region(lm.layer, part, r)[0]).ravel()
            syn = np.bincount(idx[ok], weights=w[ok], minlength=E)
            reach = syn > 0
            if not reach.any():
                continue
            elems = np.nonzero(reach)[0]
            snd = sender_id(term.source, ec[elems])
            for core in lm.first_core + ti * f + np.arange(f):
                cols = []
                for s in np.unique(snd):
                    key = (int(s), int(core), bool(term.graded))
                    cols.append(pair_index.setdefault(key, len(pair_index)))
                col_of = dict(zip(np.unique(snd).tolist(), cols))
                pcols = np.array([col_of[int(s)] for s in snd])
                blocks.setdefault(term.source, []).append(
                    ("pair", elems, pcols, np.ones(elems.size)))
                blocks[term.source].append(
                    ("syn", elems, np.full(elems.size, core), syn[elems] / f))
    for unit in mapping.network.host:  # operands travel to the embedded CPUs
        for src_name, _ in unit.inputs:
            src = layers.get(src_name)
            if src is None or unit.kind != "spike_matmul":
                continue  # a product feeding the next one stays on the CPU
            elems = np.arange(src.layer.neurons)
            snd = src.element_core
            cols = np.array([pair_index.setdefault((int(s), n_cores + CPU_SENDER, False),
                                                   len(pair_index)) for s in snd])
            blocks.setdefault(src_name, []).append(("pair", elems, cols, np.ones(elems.size)))
    senders = {}
    for unit, parts in blocks.items():
        senders[unit] = _sender_matrix(unit, parts, sizes[unit], layers.get(unit))
    for lm in mapping.layers:  # layers nobody reads still fire (spike_generate)
        if lm.layer.name not in senders:
            senders[lm.layer.name] = _sender_matrix(lm.layer.name, [], lm.layer.neurons, lm)
    keys = sorted(pair_index, key=pair_index.get)
    pair_src = np.array([k[0] for k in keys], np.int64)
    pair_dst = np.array([k[1] for k in keys], np.int64)
    graded = np.array([k[2] for k in keys], bool)
    ew, ns, ch, links, link_dir = _routes(mapping, pair_src, pair_dst)
    pl = mapping.placement
    return Wiring(n_cores, pair_src, pair_dst, graded, ew, ns, ch, links, link_dir, senders,
                  int(np.unique(pl.tile).size))


def _sender_matrix(unit: str, parts: list, elements: int, lm) -> SenderMatrix:
    pair_ids = sorted({int(c) for kind, _, cols, _ in parts if kind == "pair" for c in cols})
    syn_cores = sorted({int(c) for kind, _, cols, _ in parts if kind == "syn" for c in cols})
    src_cores = lm.core_ids if lm is not None else np.zeros(0, np.int64)
    pcol = {p: i for i, p in enumerate(pair_ids)}
    scol = {c: len(pair_ids) + i for i, c in enumerate(syn_cores)}
    width = len(pair_ids) + len(syn_cores) + src_cores.size
    m = np.zeros((elements, width), np.float32)
    for kind, elems, cols, vals in parts:
        lut = pcol if kind == "pair" else scol
        np.add.at(m, (elems, np.array([lut[int(c)] for c in cols])), vals)
    if lm is not None:
        base = len(pair_ids) + len(syn_cores)
        m[np.arange(elements), base + lm.element_core - lm.first_core] = 1.0
    return SenderMatrix(unit, m, np.array(pair_ids, np.int64), np.array(syn_cores, np.int64),
                        src_cores)


def _positions(mapping: Mapping, nodes: np.ndarray):
    """Tile (x, y), tile id (-1: host) and chip position of nodes (cores, then host and CPUs)."""
    pl = mapping.placement
    n = pl.chip.size
    hx, hy = pl.host_position()
    on = nodes < n
    c = np.clip(nodes, 0, max(n - 1, 0))
    pick = (lambda a, off: np.where(on, a[c], off)) if n else (lambda a, off: np.full(nodes.shape,
                                                                                      off))
    return (pick(pl.x, hx), pick(pl.y, hy), pick(pl.tile, -1), pick(pl.chip_x, 0),
            pick(pl.chip_y, 0))


def _routes(mapping: Mapping, pair_src: np.ndarray, pair_dst: np.ndarray):
    sx, sy, st, scx, scy = _positions(mapping, pair_src)
    dx, dy, dt, dcx, dcy = _positions(mapping, pair_dst)
    same = st == dt
    ew = np.where(same, 0, np.abs(sx - dx))
    ns = np.where(same, 0, np.abs(sy - dy))
    ch = np.abs(scx - dcx) + np.abs(scy - dcy)
    link_id: dict[tuple[int, int, int], int] = {}
    rows = []
    for p in range(pair_src.size):
        route = [] if same[p] else _route(int(sx[p]), int(sy[p]), int(dx[p]), int(dy[p]))
        rows.append([link_id.setdefault(lk, len(link_id)) for lk in route])
    links = np.zeros((pair_src.size, len(link_id)), np.float32)
    for p, ids in enumerate(rows):
        links[p, ids] = 1.0
    link_dir = np.array([0 if k[2] < 2 else 1 for k in sorted(link_id, key=link_id.get)],
                        np.int64)
    return ew, ns, ch, links, link_dir
