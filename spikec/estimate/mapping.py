"""Map a network onto the cores of one or more chips: exact per-core resources and placement.

``map_network`` partitions every core layer (``spikec.estimate.partition``), counts each core's
neurons, synapses, synaptic memory, input axons and output axons exactly (borders, strides,
padding, reshapes and transposes included), cuts finer the layers whose cores exceed their output
axons, and places cores on the mesh (``Placement``): in layer order, chip after chip, tiles in
snake order within a chip, so that consecutive layers sit next to each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from spikec.errors import CapacityError
from spikec.estimate.network import ConvGeometry, DenseGeometry, Layer, Network
from spikec.estimate.partition import (LIMITS, LIMIT_FIELDS, CoreLimits, Tiling, conv_valid_taps,
                                       part_region, receptive_field, search_tiling,
                                       shares_weights, synapse_bits, tile_ranges)

#: Pseudo core id of the host / embedded CPUs (graded input, SSA on the host).
HOST = -1


@dataclass
class LinkStats:
    """Core-to-core connections from one source (core layer or host unit) to one core layer,
    summarized on the placement: every (source element, destination core) pair is one message per
    event of that element.

    Attributes
    ----------
    pairs : float
        Number of (source element, destination core) pairs.
    hops_ew, hops_ns, chip_hops : float
        Those pairs' mesh hops summed (same tile: none).
    out_by_src : ndarray
        Pairs per source core (local index; one entry for a host unit).
    in_by_dst : ndarray
        Pairs per destination core (local index).
    paths : set of (int, int, int)
        Distinct (east-west, north-south, chip) hops of the connected core pairs.
    by_chip : dict of int -> ndarray
        Pairs per destination chip, indexed by source chip + 1 (index 0: the host / embedded
        CPUs); what crosses chips, for the bundle's placement (``backends/lava/partition.py``).
    """

    pairs: float
    hops_ew: float
    hops_ns: float
    chip_hops: float
    out_by_src: np.ndarray
    in_by_dst: np.ndarray
    paths: set
    by_chip: dict = field(default_factory=dict)


class _Links:
    """Collects (source cores, destination core, counts) as the evaluation finds them: output
    axons always, and ``LinkStats`` once a placement is known."""

    def __init__(self, placement: "Placement | None"):
        self.pl = placement
        self.stats: dict[tuple[str, str], LinkStats] = {}
        self.out_axons: dict[str, np.ndarray] = {}

    def add(self, key, src: "LayerMapping | None", src_local: np.ndarray, dst: "LayerMapping",
            dst_local: int, vals: np.ndarray) -> None:
        if src is not None:
            out = self.out_axons.setdefault(src.layer.name, np.zeros(src.cores))
            np.add.at(out, src_local, vals)
        if self.pl is None:
            return
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = LinkStats(0.0, 0.0, 0.0, 0.0,
                                             np.zeros(src.cores if src is not None else 1),
                                             np.zeros(dst.cores), set())
        pl = self.pl
        d = dst.first_core + dst_local
        if src is not None:
            g = src.first_core + src_local
            sx, sy, scx, scy = pl.x[g], pl.y[g], pl.chip_x[g], pl.chip_y[g]
            same = pl.tile[g] == pl.tile[d]
        else:
            hx, hy = pl.host_position()
            sx, sy = np.full(1, hx), np.full(1, hy)
            scx, scy, same = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, bool)
        ew = np.abs(sx - pl.x[d]) * ~same
        ns = np.abs(sy - pl.y[d]) * ~same
        ch = np.abs(scx - pl.chip_x[d]) + np.abs(scy - pl.chip_y[d])
        st.pairs += float(vals.sum())
        st.hops_ew += float((vals * ew).sum())
        st.hops_ns += float((vals * ns).sum())
        st.chip_hops += float((vals * ch).sum())
        if src is not None:
            np.add.at(st.out_by_src, src_local, vals)
        else:
            st.out_by_src[0] += float(vals.sum())
        st.in_by_dst[dst_local] += float(vals.sum())
        st.paths.update(zip(ew.tolist(), ns.tolist(), ch.tolist()))
        src_chip = pl.chip[g] + 1 if src is not None else np.zeros(1, np.int64)
        per_chip = np.bincount(src_chip, weights=vals, minlength=pl.chips_used + 1)
        dst_chip = int(pl.chip[d])
        st.by_chip[dst_chip] = st.by_chip.get(dst_chip, 0.0) + per_chip


@dataclass
class LayerMapping:
    """One layer on its cores. Per-core arrays have ``tiling.cores`` entries: the partial-sum
    (or only) cores first, then the combining cores of a split fan-in."""

    layer: Layer
    tiling: Tiling
    first_core: int
    neurons: np.ndarray
    synapses: np.ndarray
    memory_bits: np.ndarray
    input_axons: np.ndarray
    output_axons: np.ndarray
    element_core: np.ndarray  # flat neuron index -> global id of the core that sends its spikes
    #: synapses of each input stream (``layer.terms`` order) over the layer's cores
    stream_synapses: list[int] = field(default_factory=list)

    @property
    def cores(self) -> int:
        return self.tiling.cores

    @property
    def core_ids(self) -> np.ndarray:
        return np.arange(self.first_core, self.first_core + self.cores)

    def usage(self, limit: str) -> np.ndarray:
        return {"neurons": self.neurons, "synaptic_memory": self.memory_bits,
                "input_axons": self.input_axons, "output_axons": self.output_axons}[limit]

    def utilization(self, limits: CoreLimits) -> dict[str, float]:
        """Per limit: used / (cores x limit) over the layer's cores (None: limit unknown)."""
        out = {}
        for k in LIMITS:
            cap = limits.value(k)
            out[k] = None if not cap else float(self.usage(k).sum()) / (self.cores * cap)
        return out

    def binding(self, limits: CoreLimits) -> tuple[str, float]:
        """The limit the layer's fullest core is closest to, and the layer's mean use of it."""
        peak = {k: float(self.usage(k).max()) / limits.value(k) for k in LIMITS
                if limits.value(k)}
        name = max(peak, key=lambda k: (peak[k], -LIMITS.index(k)))
        return name, self.utilization(limits)[name]


@dataclass
class Placement:
    """Where every core sits. Arrays over global core ids.

    ``chip``: chip index; ``x``, ``y``: tile coordinates on the system's global tile grid (a chip
    at chip-mesh position ``(cx, cy)`` covers ``x in [cx*tx, (cx+1)*tx)``); ``tile``: global tile
    id (cores of one tile exchange spikes without a hop); ``chip_x``, ``chip_y``: chip-mesh
    position.
    """

    chip: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tile: np.ndarray
    chip_x: np.ndarray
    chip_y: np.ndarray
    chips_used: int
    tile_mesh: tuple[int, int]
    cores_per_tile: int
    chip_mesh: tuple[int, int]

    def host_position(self) -> tuple[int, int]:
        """The host / embedded CPUs: west of tile (0, 0) of chip 0."""
        return (-1, 0)


@dataclass
class Mapping:
    """A network mapped onto cores and chips.

    ``conn[(src, dst)]``: ``LinkStats`` of the connections from ``src`` (a core layer or host
    unit) to core layer ``dst``; ``internal[name]``: the same for a split fan-in's partial sums
    (sent every step).
    """

    network: Network
    limits: CoreLimits
    layers: list[LayerMapping]
    conn: dict[tuple[str, str], np.ndarray]
    internal: dict[str, np.ndarray]
    placement: Placement
    cores_per_chip: int
    chips_available: int
    chips_needed: int
    fits: bool
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    embedded_cpus: int | None = None

    @property
    def total_cores(self) -> int:
        return sum(lm.cores for lm in self.layers)

    def layer(self, name: str) -> LayerMapping:
        for lm in self.layers:
            if lm.layer.name == name:
                return lm
        raise KeyError(name)


# ----------------------------------------------------------------------------- exact evaluation

def _evaluate_layer(layer: Layer, tiling: Tiling, first: int, limits: CoreLimits,
                    sources: dict[str, LayerMapping], links: _Links) -> LayerMapping:
    g = layer.geometry
    f = tiling.fanin_split
    parts = tiling.tiles * f
    n_cores = tiling.cores
    neurons = np.zeros(n_cores, np.int64)
    synapses = np.zeros(n_cores, np.int64)
    memory = np.zeros(n_cores, np.int64)
    axons = np.zeros(n_cores, np.int64)
    element_core = np.empty(layer.neurons, np.int64)
    sb = synapse_bits(layer, limits)
    lm = LayerMapping(layer, tiling, first, neurons, synapses, memory, axons,
                      np.zeros(n_cores, np.int64), element_core)
    per_part = [_synapses_per_position(p) for p in layer.inputs]
    part_synapses = [0] * len(per_part)
    for ti, r in enumerate(tile_ranges(tiling, g.out)):
        c0, c1, h0, h1, w0, w1 = r
        n = (c1 - c0) * (h1 - h0) * (w1 - w0)
        cores = slice(ti * f, ti * f + f)
        syn = mem = ax = 0
        for k, (part, counts) in enumerate(zip(layer.inputs, per_part)):
            rp, pos = part_region(layer, part, r)
            s_, m_, a_ = _part_tile(part, rp, pos, counts, limits, f, sources, links, lm, ti,
                                    layer.name)
            syn, mem, ax = syn + s_, mem + m_, ax + a_
            part_synapses[k] += s_
        neurons[cores] = n
        synapses[cores] = -(-syn // f)
        memory[cores] = -(-mem // f)
        axons[cores] = -(-ax // f)
        ids = layer.neuron_of_canonical[c0:c1, h0:h1, w0:w1].ravel()
        element_core[ids] = first + ti
    lm.stream_synapses = [total // len(part.terms) for part, total in
                          zip(layer.inputs, part_synapses) for _ in part.terms]
    if f > 1:
        order = layer.neuron_of_canonical.ravel()
        tile_of = element_core.copy()  # neuron -> its tile (first + ti)
        per = tiling.combine_per_core
        for j in range(tiling.combine_cores):
            ids = order[j * per:(j + 1) * per]
            core = parts + j
            neurons[core] = ids.size
            synapses[core] = ids.size * f
            memory[core] = ids.size * f * sb
            axons[core] = ids.size * f
            tiles = np.bincount(tile_of[ids] - first, minlength=tiling.tiles)
            nz = np.nonzero(tiles)[0]
            src = (nz[:, None] * f + np.arange(f)[None, :]).ravel()
            links.add((layer.name, layer.name), lm, src, lm, core,
                      np.repeat(tiles[nz].astype(float), f))
            element_core[ids] = first + core
    return lm


def _synapses_per_position(part: Layer) -> np.ndarray:
    """Synapses of each neuron of ``part`` (per stream), in its canonical layout."""
    g = part.geometry
    if isinstance(g, DenseGeometry):
        return np.full(g.out, g.fan_in, np.int64)
    taps_h = conv_valid_taps(g.out[1], g.inp[1], g.kernel[0], g.stride[0], g.padding[0],
                             g.dilation[0])
    taps_w = conv_valid_taps(g.out[2], g.inp[2], g.kernel[1], g.stride[1], g.padding[1],
                             g.dilation[1])
    per = g.cin_per_group * taps_h[:, None] * taps_w[None, :]
    return np.broadcast_to(per[None], g.out)


def _part_tile(part: Layer, r, pos, counts: np.ndarray, limits: CoreLimits, f: int,
               sources: dict[str, LayerMapping], links: _Links, lm: LayerMapping, ti: int,
               dst: str) -> tuple[int, int, int]:
    """Synapses, synaptic memory (bits) and input axons that ``part`` puts on tile ``ti``
    (region ``r`` of its canonical layout, or its flat positions ``pos`` where the part is laid
    out otherwise than the tiles: a dense part's axons then counted on those positions, a conv
    part's over their bounding box ``r``), and its links from each stream's source to the
    tile's cores."""
    g = part.geometry
    c0, c1, h0, h1, w0, w1 = r
    if pos is None:
        syn = int(counts[c0:c1, h0:h1, w0:w1].sum())
        channels = c1 - c0
    else:
        syn = int(counts.ravel()[pos].sum())
        channels = np.unique(pos // (g.out[1] * g.out[2])).size
    per_channel = g.weights_per_channel if isinstance(g, ConvGeometry) else g.weights_per_feature
    terms = len(part.terms)
    syn *= terms
    mem = channels * per_channel * limits.weight_bits * terms if shares_weights(part, limits) \
        else syn * synapse_bits(part, limits)
    chans, rows, cols = receptive_field(part, r)
    if pos is not None and isinstance(g, DenseGeometry):  # exactly the positions it holds
        rows = np.unique(pos % g.positions)
    ax = 0
    for t in part.terms:
        sl = t.index[np.ix_(chans, rows, cols)].ravel()
        sl = np.unique(sl[sl >= 0]) if t.shared or pos is not None else sl[sl >= 0]
        ax += sl.size
        src = sources.get(t.source)
        if src is not None:
            hist = np.bincount(src.element_core[sl] - src.first_core)
            nz = np.nonzero(hist)[0]
            vals = hist[nz] / f
        else:
            nz, vals = np.zeros(1, np.int64), np.array([sl.size / f])
        for core in range(ti * f, ti * f + f):
            links.add((t.source, dst), src, nz, lm, core, vals)
    return syn, mem, ax


def _evaluate(network: Network, tilings: dict[str, Tiling], limits: CoreLimits,
              placement: "Placement | None" = None):
    """Every layer's per-core resources (and, with a placement, its ``LinkStats``)."""
    done: dict[str, LayerMapping] = {}
    links = _Links(placement)
    first = 0
    for layer in network.layers:
        lm = _evaluate_layer(layer, tilings[layer.name], first, limits, done, links)
        done[layer.name] = lm
        first += lm.cores
    for name, out in links.out_axons.items():
        done[name].output_axons += np.ceil(out - 1e-9).astype(np.int64)
    for unit in network.host:  # every neuron an embedded CPU reads has an axon to it
        for src, _ in unit.inputs:
            if src in done:
                lm = done[src]
                lm.output_axons += np.bincount(lm.element_core - lm.first_core,
                                               minlength=lm.cores)
    conn = {k: v for k, v in links.stats.items() if k[0] != k[1]}
    internal = {k[0]: v for k, v in links.stats.items() if k[0] == k[1]}
    return list(done.values()), conn, internal


# ----------------------------------------------------------------------------- placement

def _snake(i: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    y = i // width
    x = np.where(y % 2 == 0, i % width, width - 1 - i % width)
    return x, y


def near_square(n: int) -> tuple[int, int]:
    x = math.ceil(math.sqrt(n))
    return x, math.ceil(n / x)


def place(layers: list[LayerMapping], profile, chip_mesh: tuple[int, int] | None = None
          ) -> Placement:
    """Cores in layer order, a chip filled before the next (respecting the chip's published
    neuron and synapse totals), tiles in snake order on each chip's mesh."""
    cap = profile.capacity
    per_chip = cap.cores_per_chip
    cpt = cap.cores_per_tile or 1
    tmesh = cap.tile_mesh or near_square(-(-per_chip // cpt))
    neurons = np.concatenate([lm.neurons for lm in layers]) if layers else np.zeros(0, np.int64)
    synapses = np.concatenate([lm.synapses for lm in layers]) if layers else np.zeros(0, np.int64)
    n = neurons.size
    chip = np.zeros(n, np.int64)
    local = np.zeros(n, np.int64)
    c, used, nsum, ssum = 0, 0, 0, 0
    for i in range(n):
        full = used >= per_chip or (
            cap.max_neurons_per_chip is not None and nsum + neurons[i] > cap.max_neurons_per_chip
            and used > 0) or (
            cap.max_synapses_per_chip is not None and ssum + synapses[i] > cap.max_synapses_per_chip
            and used > 0)
        if full:
            c, used, nsum, ssum = c + 1, 0, 0, 0
        chip[i], local[i] = c, used
        used, nsum, ssum = used + 1, nsum + neurons[i], ssum + synapses[i]
    chips_used = int(chip.max()) + 1 if n else 0
    if chip_mesh is None or chip_mesh[0] * chip_mesh[1] < chips_used:
        chip_mesh = near_square(max(chips_used, 1))
    cx, cy = _snake(chip, chip_mesh[0])
    tile_local = local // cpt
    tx, ty = _snake(tile_local, tmesh[0])
    tiles_per_chip = tmesh[0] * tmesh[1]
    return Placement(chip=chip, x=cx * tmesh[0] + tx, y=cy * tmesh[1] + ty,
                     tile=chip * tiles_per_chip + tile_local, chip_x=cx, chip_y=cy,
                     chips_used=chips_used, tile_mesh=tuple(tmesh), cores_per_tile=cpt,
                     chip_mesh=tuple(chip_mesh))


# ----------------------------------------------------------------------------- the mapper

def map_network(network: Network, profile, chips: int | None = None) -> Mapping:
    """Partition, evaluate and place ``network`` on ``profile``'s chips.

    Parameters
    ----------
    chips : int, optional
        Chips available (``--chips N``); default the profile's ``system.chips``.

    Returns
    -------
    Mapping
        ``fits`` is False (with ``reason``) when the network needs more chips than available.

    Raises
    ------
    CapacityError
        When a layer cannot be mapped on any number of cores (one neuron exceeds a core).
    """
    limits = CoreLimits.from_profile(profile)
    tilings = {layer.name: search_tiling(layer, limits) for layer in network.layers}
    for _ in range(64):
        layers, conn, internal = _evaluate(network, tilings, limits)
        if limits.output_axons is None:
            break
        over = [lm for lm in layers if lm.output_axons.size
                and lm.output_axons.max() > limits.output_axons]
        if not over:
            break
        for lm in over:
            tiling, name = lm.tiling, lm.layer.name
            parts = tiling.tiles * tiling.fanin_split
            cap = limits.output_axons
            part_worst = int(lm.output_axons[:parts].max())
            comb_worst = int(lm.output_axons[parts:].max()) if lm.cores > parts else 0
            if comb_worst > cap:  # the combining cores send the spikes: hold fewer neurons
                per = tiling.combine_per_core
                target = min(per - 1, per * cap // comb_worst)
                if target < 1:
                    raise CapacityError(
                        f"layer {name!r}: one neuron's spikes reach {comb_worst:,} destination "
                        f"cores, more than {LIMIT_FIELDS['output_axons']} = {cap:,}")
                tiling = replace(tiling, combine_per_core=target,
                                 combine_cores=-(-lm.layer.neurons // target))
            if part_worst > cap:
                per_tile = int(lm.neurons[:parts].max())
                if per_tile <= 1:
                    raise CapacityError(
                        f"layer {name!r}: one neuron's spikes reach {part_worst:,} destination "
                        f"cores, more than {LIMIT_FIELDS['output_axons']} = {cap:,}")
                target = min(per_tile - 1, per_tile * cap // part_worst)
                tiling = search_tiling(lm.layer, limits, max_neurons=max(1, target))
            tilings[name] = tiling
    else:  # pragma: no cover - the loop shrinks tiles strictly
        raise CapacityError("output-axon refinement did not converge")

    available = chips if chips is not None else profile.system.chips
    mesh = profile.system.chip_mesh if chips is None else None
    placement = place(layers, profile, mesh)
    layers, conn, internal = _evaluate(network, tilings, limits, placement)
    needed = placement.chips_used
    total = sum(lm.cores for lm in layers)
    fits, reason = needed <= available, ""
    if not fits:
        first_out = int(np.nonzero(placement.chip >= available)[0][0])
        where = next(lm for lm in layers if lm.first_core + lm.cores > first_out)
        per_chip = profile.capacity.cores_per_chip
        if available == 1:
            reason = (f"layer {where.layer.name!r}: the chip runs out of cores "
                      f"(capacity.cores_per_chip = {per_chip}); the network needs {total:,} cores "
                      f"on {needed} chips: pass --chips {needed} or a system profile")
        else:
            reason = (f"layer {where.layer.name!r}: the {available} chips run out of cores "
                      f"({per_chip} per chip); the network needs {total:,} cores on {needed} chips "
                      f"(--chips {needed})")
    notes = []
    for lm in layers:
        if lm.tiling.fanin_split > 1:
            notes.append(f"layer {lm.layer.name}: fan-in split over {lm.tiling.fanin_split} "
                         f"partial-sum cores per tile, combined as graded spikes on "
                         f"{lm.tiling.combine_cores} cores")
    return Mapping(network=network, limits=limits, layers=layers, conn=conn, internal=internal,
                   placement=placement, cores_per_chip=profile.capacity.cores_per_chip,
                   chips_available=available, chips_needed=needed, fits=fits, reason=reason,
                   notes=notes, embedded_cpus=profile.capacity.embedded_cpus)
