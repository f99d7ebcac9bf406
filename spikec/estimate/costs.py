"""Per-event costs (from a hardware profile) and the traffic of a placed network.

``CostModel`` gathers what the energy and latency models charge for each event, in pJ and ns, as
the profile states them (``[energy]``, ``[latency]``), or as a second-opinion model in the
profile's ``[alternatives.NAME]`` (``sanafe``: SANA-FE's calibrated Loihi figures). A figure the
profile does not know is ``None``: it costs nothing and is listed in ``unknown``.

``traffic`` turns the mapper's core-to-core connection counts and the per-layer spike counts into
messages per core and mesh hops, assuming that every neuron of a layer fires at the layer's mean
rate (spike counts are per layer, not per neuron).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikec.errors import ProfileError
from spikec.estimate.events import EventCounts
from spikec.estimate.mapping import Mapping

#: CostModel energy/latency keys.
COST_KEYS = ("synaptic_op", "synaptic_op_conv", "neuron_update_active", "neuron_update_inactive",
             "spike_generate", "message_out", "message_in", "hop_east_west", "hop_north_south",
             "chip_hop", "embedded_cpu_op")


@dataclass(frozen=True)
class CostModel:
    """What each event costs: ``energy_pj[key]`` and ``latency_ns[key]`` for ``COST_KEYS``, and
    the barrier sync latency as ``sync_table`` ((tiles, ns), ...) interpolated linearly.

    ``message_out`` is charged per message (one per spike and destination core; Davies et al.'s
    "spike within tile"), ``spike_generate`` per spike fired, ``message_in`` per message received.
    """

    name: str
    energy_pj: dict
    latency_ns: dict
    sync_table: tuple
    sync_energy_pj: float | None = None
    unknown: tuple = ()
    sources: dict = field(default_factory=dict)

    def e(self, key: str) -> float:
        v = self.energy_pj.get(key)
        return 0.0 if v is None else float(v)

    def t(self, key: str) -> float:
        v = self.latency_ns.get(key)
        return 0.0 if v is None else float(v)

    def sync_ns(self, tiles: int) -> float:
        pts = sorted(self.sync_table)
        if not pts:
            return 0.0
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return float(np.interp(tiles, xs, ys))


def _opt(costs, name):
    return getattr(costs, name, None)


def cost_model(profile, which: str = "profile") -> CostModel:
    """The cost model ``which`` of ``profile``: ``"profile"`` (its ``[energy]``/``[latency]``)
    or the name of one of its ``[alternatives]`` (e.g. ``"sanafe"``)."""
    if which == "profile":
        en, la = profile.energy, profile.latency
        energy = {"synaptic_op": en.synaptic_op, "synaptic_op_conv": en.synaptic_op,
                  "neuron_update_active": en.neuron_update_active,
                  "neuron_update_inactive": en.neuron_update_inactive,
                  "spike_generate": 0.0, "message_out": en.spike_out, "message_in": 0.0,
                  "hop_east_west": en.hop_east_west, "hop_north_south": en.hop_north_south,
                  "chip_hop": _opt(en, "chip_hop"), "embedded_cpu_op": _opt(en, "embedded_cpu_op")}
        latency = {"synaptic_op": la.synaptic_op, "synaptic_op_conv": la.synaptic_op,
                   "neuron_update_active": la.neuron_update_active,
                   "neuron_update_inactive": la.neuron_update_inactive,
                   "spike_generate": 0.0, "message_out": la.spike_out, "message_in": 0.0,
                   "hop_east_west": la.hop_east_west, "hop_north_south": la.hop_north_south,
                   "chip_hop": _opt(la, "chip_hop"), "embedded_cpu_op": _opt(la, "embedded_cpu_op")}
        tiles = _tiles_per_chip(profile)
        table = tuple((t, v) for t, v in ((1, la.barrier_sync_one_tile),
                                          (tiles, la.barrier_sync_all_tiles)) if v is not None)
        unknown = tuple(f"{sec}.{k}" for sec, d in (("energy", energy), ("latency", latency))
                        for k, v in d.items() if v is None)
        return CostModel("profile", energy, latency, table, en.barrier_sync_all_tiles, unknown)
    if which not in profile.alternatives:
        known = ", ".join(["profile", *profile.alternatives]) or "profile"
        raise ProfileError(f"{profile.path}: no cost model {which!r} (known: {known})")
    return _alternative(profile, which)


def _tiles_per_chip(profile) -> int:
    m = profile.capacity.tile_mesh
    if m is not None:
        return m[0] * m[1]
    return -(-profile.capacity.cores_per_chip // (profile.capacity.cores_per_tile or 1))


def _alternative(profile, name: str) -> CostModel:
    """A SANA-FE-style alternative: separate dense/conv synapse costs, neuron access + update
    charged on every update, spike out per fired neuron, message out/in per message."""
    figs = {k: f.value for k, f in profile.figures.items()
            if k.startswith(f"alternatives.{name}.")}

    def g(sec, key, default=None):
        return figs.get(f"alternatives.{name}.{sec}.{key}", default)

    energy, latency = {}, {}
    for sec, out in (("energy", energy), ("latency", latency)):
        dense = g(sec, "synaptic_op_dense", g(sec, "synaptic_op"))
        out["synaptic_op"] = dense
        out["synaptic_op_conv"] = g(sec, "synaptic_op_conv", dense)
        upd = g(sec, "neuron_update")
        acc = g(sec, "neuron_access", 0.0)
        out["neuron_update_active"] = None if upd is None else upd + acc
        out["neuron_update_inactive"] = None if upd is None else upd + acc
        out["spike_generate"] = g(sec, "spike_out")
        out["message_out"] = g(sec, "message_out")
        out["message_in"] = g(sec, "message_in", 0.0)
        out["hop_east_west"] = g(sec, "hop_east_west")
        out["hop_north_south"] = g(sec, "hop_north_south")
        out["chip_hop"] = g(sec, "chip_hop")
        out["embedded_cpu_op"] = g(sec, "embedded_cpu_op")
    words = {"one": 1, "two": 2, "four": 4, "all": _tiles_per_chip(profile)}
    prefix = f"alternatives.{name}.latency.barrier_sync_"
    table = []
    for k, v in figs.items():
        if not k.startswith(prefix) or v is None:
            continue
        word = k[len(prefix):].split("_")[0]  # one_tile, two_tiles, 29_tiles, all_tiles
        tiles = words.get(word) or (int(word) if word.isdigit() else None)
        if tiles is not None:
            table.append((tiles, v))
    unknown = tuple(f"alternatives.{name}.{sec}.{k}" for sec, d in (("energy", energy),
                                                                    ("latency", latency))
                    for k, v in d.items() if v is None)
    return CostModel(name, energy, latency, tuple(sorted(table)), None, unknown)


# ----------------------------------------------------------------------------- traffic

@dataclass
class Traffic:
    """Messages of one inference on the placed network.

    ``out_msgs``, ``in_msgs``: per global core; ``hops_ew``, ``hops_ns``, ``chip_hops``: message
    hops summed; ``host_in``/``host_out``: messages to / from the host or embedded CPUs;
    ``paths``: distinct (east-west hops, north-south hops, chip hops) of the pairs that exchange
    messages (the longest sets the network's share of a step)."""

    messages: float
    out_msgs: np.ndarray
    in_msgs: np.ndarray
    hops_ew: float
    hops_ns: float
    chip_hops: float
    host_in: float
    host_out: float
    paths: set


def element_rates(mapping: Mapping, counts: EventCounts) -> dict[str, float]:
    """Events per element per inference sent by each core layer and host unit."""
    rates = {}
    for lm in mapping.layers:
        rates[lm.layer.name] = counts.get(lm.layer.name).spikes / max(1, lm.layer.neurons)
    for unit in mapping.network.host:
        rates[unit.name] = counts.get(unit.name).spikes / max(1, unit.elements)
    return rates


def traffic(mapping: Mapping, counts: EventCounts) -> Traffic:
    pl = mapping.placement
    n = pl.chip.size
    out_msgs = np.zeros(n)
    in_msgs = np.zeros(n)
    hx, hy = pl.host_position()
    rates = element_rates(mapping, counts)
    layer_of = {lm.layer.name: lm for lm in mapping.layers}
    tot = {"m": 0.0, "ew": 0.0, "ns": 0.0, "chip": 0.0, "hin": 0.0, "hout": 0.0}
    paths: set = set()

    def account(src_ids, dst_ids, msgs):
        """Messages ``msgs`` from global core ``src_ids`` to ``dst_ids`` (parallel arrays;
        -1 = the host / embedded CPUs)."""
        keep = msgs > 0
        src_ids, dst_ids, msgs = src_ids[keep], dst_ids[keep], msgs[keep]
        if not msgs.size:
            return
        s_ok, d_ok = src_ids >= 0, dst_ids >= 0
        si, di = np.maximum(src_ids, 0), np.maximum(dst_ids, 0)
        sx, sy = np.where(s_ok, pl.x[si], hx), np.where(s_ok, pl.y[si], hy)
        dx_, dy_ = np.where(d_ok, pl.x[di], hx), np.where(d_ok, pl.y[di], hy)
        scx, scy = np.where(s_ok, pl.chip_x[si], 0), np.where(s_ok, pl.chip_y[si], 0)
        dcx, dcy = np.where(d_ok, pl.chip_x[di], 0), np.where(d_ok, pl.chip_y[di], 0)
        same_tile = s_ok & d_ok & (pl.tile[si] == pl.tile[di])
        ew = np.abs(sx - dx_) * ~same_tile
        ns = np.abs(sy - dy_) * ~same_tile
        ch = np.abs(scx - dcx) + np.abs(scy - dcy)
        tot["m"] += msgs.sum()
        tot["ew"] += (msgs * ew).sum()
        tot["ns"] += (msgs * ns).sum()
        tot["chip"] += (msgs * ch).sum()
        trip = np.stack([ew, ns, ch], axis=1)
        paths.update(map(tuple, np.unique(trip, axis=0).tolist()))
        np.add.at(out_msgs, si[s_ok], msgs[s_ok])
        np.add.at(in_msgs, di[d_ok], msgs[d_ok])
        tot["hout"] += msgs[~s_ok].sum()
        tot["hin"] += msgs[~d_ok].sum()

    def account_stats(src: str, dst: str, st, rate: float):
        if rate <= 0 or st.pairs <= 0:
            return
        tot["m"] += rate * st.pairs
        tot["ew"] += rate * st.hops_ew
        tot["ns"] += rate * st.hops_ns
        tot["chip"] += rate * st.chip_hops
        paths.update(st.paths)
        d = layer_of[dst]
        in_msgs[d.first_core:d.first_core + d.cores] += rate * st.in_by_dst
        if src in layer_of:
            s_ = layer_of[src]
            out_msgs[s_.first_core:s_.first_core + s_.cores] += rate * st.out_by_src
        else:
            tot["hout"] += rate * st.pairs

    for (src, dst), st in mapping.conn.items():
        account_stats(src, dst, st, rates.get(src, 0.0))
    T = mapping.network.timesteps
    for name, st in mapping.internal.items():
        account_stats(name, name, st, float(T))
    for unit in mapping.network.host:
        for src, _size in unit.inputs:
            if src not in layer_of:
                continue  # an SSA product feeding the next one stays on the CPU
            lm = layer_of[src]
            share = _emitting_share(lm)
            spikes = counts.get(src).spikes
            account(lm.core_ids, np.full(lm.cores, -1), share * spikes)
    return Traffic(tot["m"], out_msgs, in_msgs, tot["ew"], tot["ns"], tot["chip"], tot["hin"],
                   tot["hout"], paths)


def _emitting_share(lm) -> np.ndarray:
    """Fraction of a layer's spikes sent by each of its cores (by neuron count)."""
    share = np.bincount(lm.element_core - lm.first_core, minlength=lm.cores).astype(float)
    return share / max(1.0, share.sum())
