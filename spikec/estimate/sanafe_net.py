"""Read SANA-FE's YAML network and architecture descriptions and time them with spikec's
buffered NoC model (``timing_noc``), so spikec can take SANA-FE's own example networks.

SANA-FE (SLAM-Lab, pip ``sanafe``; formats documented at sana-fe.readthedocs.io) describes a
mapped spiking network as neuron *groups* (attributes per group, overridden per neuron or
neuron range ``a..b``), *edges* (``g.i -> h.j: [weight: w]``, or ``g -> h: [type: dense,
weight: [...]]`` row-major over the source neurons), and *mappings* (``g.i`` or ``g`` to
``core: tile.core``, optionally a soma unit); an architecture as tiles of cores, each core with
axon-in, synapse, dendrite, soma and axon-out units carrying ``latency_*`` / ``energy_*`` figures.

This module reads that subset (no plugins, no per-synapse hardware overrides) and simulates
the neurons as SANA-FE's default ``leaky_integrate_fire`` soma does: each step
``v = leak_decay * v`` (not on the first step), truncated to 1/64, ``+ bias + input``, a spike
where ``v > threshold`` with a hard reset (or ``reset_mode: soft``), input arriving one step
after the spike; a neuron whose soma is an ``input`` unit fires where its ``spikes`` list says.
A neuron is *updated* (not only accessed) when its potential was nonzero, it received input, or
its bias is nonzero.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

from spikec.errors import InputFileError, MissingEnvironmentError
from spikec.estimate.timing_noc import NocParams, cycles, simulate_step

_RANGE = re.compile(r"^(.*)\[(\d+)\.\.(\d+)\]$")
SanafeFormatError = InputFileError


def _yaml(path):
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml ships with the sanafe/test extras
        raise MissingEnvironmentError("reading SANA-FE YAML needs pyyaml: pip install "
                                      "'spikec[sanafe]'") from e
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise SanafeFormatError(f"{path}: {e}") from e


def _attrs(items) -> dict:
    """SANA-FE's attribute list ``[a: 1, b: 2]`` (or a mapping) -> dict, nested ``soma:`` /
    ``synapse:`` mappings flattened into the neuron's attributes."""
    out: dict = {}
    for it in ([items] if isinstance(items, dict) else items or []):
        for k, v in it.items():
            if k in ("soma", "dendrite", "synapse") and isinstance(v, dict):
                out.update(v)
            elif k == "soma" and isinstance(v, str):
                out["soma_hw_name"] = v
            else:
                out[str(k)] = v
    return out


def _expand(name: str) -> list[str]:
    m = _RANGE.match(name)
    if not m:
        return [name]
    return [f"{m.group(1)}[{i}]" for i in range(int(m.group(2)), int(m.group(3)) + 1)]


def _span(key) -> range:
    a, _, b = str(key).partition("..")
    return range(int(a), int(b or a) + 1)


@dataclass
class Core:
    """One core's units: ``{unit name: {figure: value}}`` per kind; defaults are the first."""

    tile: int
    offset: int
    axon_in: dict
    synapse: dict
    dendrite: dict
    soma: dict
    axon_out: dict


@dataclass
class SanafeArch:
    """Tiles (``xy`` [tiles, 2], ``hops`` figures per tile) and cores (global id = position in
    ``cores``: tile after tile)."""

    name: str
    xy: np.ndarray
    hop: list[dict]
    cores: list[Core]
    sync_s: dict[int, float]

    def core_id(self, tile: int, offset: int) -> int:
        for i, c in enumerate(self.cores):
            if c.tile == tile and c.offset == offset:
                return i
        raise SanafeFormatError(f"architecture {self.name}: no core {tile}.{offset}")

    def sync(self, tiles: int) -> float:
        if not self.sync_s:
            return 0.0
        pts = sorted(self.sync_s.items())
        return float(np.interp(tiles, [p[0] for p in pts], [p[1] for p in pts]))


def _units(entries) -> dict:
    out = {}
    for u in entries or []:
        for name in _expand(str(u["name"])):
            out[name] = dict(u.get("attributes") or {})
    return out


def load_arch(path) -> SanafeArch:
    """A SANA-FE architecture YAML file -> ``SanafeArch``."""
    doc = _yaml(path)
    a = (doc or {}).get("architecture")
    if not isinstance(a, dict):
        raise SanafeFormatError(f"{path}: no 'architecture' section")
    attrs = a.get("attributes") or {}
    height = int(attrs.get("height", 1))
    sync = attrs.get("latency_sync", 0.0)
    sync_s = {int(k): float(v) for k, v in sync.items()} if isinstance(sync, dict) else \
        ({1: float(sync)} if sync else {})
    xy, hop, cores = [], [], []
    for t in a.get("tile") or []:
        for _ in _expand(str(t["name"])):
            tid = len(xy)
            xy.append((tid // height, tid % height))   # SANA-FE numbers tiles column by column
            hop.append(dict(t.get("attributes") or {}))
            offset = 0
            for c in t.get("core") or []:
                for _ in _expand(str(c["name"])):
                    cores.append(Core(tid, offset, _units(c.get("axon_in")),
                                      _units(c.get("synapse")), _units(c.get("dendrite")),
                                      _units(c.get("soma")), _units(c.get("axon_out"))))
                    offset += 1
    if not cores:
        raise SanafeFormatError(f"{path}: architecture {a.get('name')} has no cores")
    return SanafeArch(str(a.get("name", "")), np.array(xy, np.int64), hop, cores, sync_s)


@dataclass
class SanafeNet:
    """Neurons (``names`` 'group.i', ``attrs``, ``core`` global core id), synapses as arrays
    ``pre``, ``post``, ``weight`` (in file order), ``order``: neuron ids in the order they were
    mapped (a core updates its neurons in this order)."""

    name: str
    names: list[str]
    attrs: list[dict]
    core: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    weight: np.ndarray
    order: list = field(default_factory=list)


def load_net(path, arch: SanafeArch) -> SanafeNet:
    """A SANA-FE network YAML file (``network`` and ``mappings`` sections) -> ``SanafeNet``."""
    doc = _yaml(path) or {}
    net = doc.get("network")
    if not isinstance(net, dict):
        raise SanafeFormatError(f"{path}: no 'network' section")
    names, attrs, index, groups = [], [], {}, {}
    for g in net.get("groups") or []:
        gname, gattr = str(g["name"]), _attrs(g.get("attributes"))
        groups[gname] = []
        for entry in g.get("neurons") or []:
            for key, val in entry.items():
                for i in _span(key):
                    index[f"{gname}.{i}"] = len(names)
                    groups[gname].append(len(names))
                    names.append(f"{gname}.{i}")
                    attrs.append({**gattr, **_attrs(val)})
    pre, post, w = [], [], []

    def ids(ref: str) -> list[int]:
        if ref in groups:
            return groups[ref]
        if ref not in index:
            raise SanafeFormatError(f"{path}: edge names unknown neuron or group {ref!r}")
        return [index[ref]]

    for e in net.get("edges") or []:
        for key, val in e.items():
            src, _, dst = (s.strip() for s in str(key).partition("->"))
            a = _attrs(val)
            s_ids, d_ids = ids(src), ids(dst)
            if a.get("type") == "dense":
                wt = np.asarray(a.get("weight", 1.0), float).reshape(len(s_ids), len(d_ids))
                for i, s in enumerate(s_ids):
                    for j, d in enumerate(d_ids):
                        pre.append(s), post.append(d), w.append(float(wt[i, j]))
            elif len(s_ids) == 1 and len(d_ids) == 1:
                pre.append(s_ids[0]), post.append(d_ids[0]), w.append(float(a.get("weight", 1.0)))
            else:
                raise SanafeFormatError(f"{path}: edge {key!r}: only neuron-to-neuron and "
                                        "dense group edges are supported")
    core = np.full(len(names), -1, np.int64)
    order: list[int] = []
    for m in doc.get("mappings") or []:
        for key, val in m.items():
            a = _attrs(val)
            tile, _, off = str(a.get("core", "")).partition(".")
            if not off:
                raise SanafeFormatError(f"{path}: mapping {key!r} needs core: tile.core")
            for n in ids(str(key)):
                if core[n] < 0:
                    order.append(n)
                core[n] = arch.core_id(int(tile), int(off))
                if "soma_hw_name" in a:
                    attrs[n]["soma_hw_name"] = a["soma_hw_name"]
    if (core < 0).any():
        raise SanafeFormatError(f"{path}: neuron {names[int(np.argmax(core < 0))]} is not mapped")
    return SanafeNet(str(net.get("name", "")), names, attrs, core, np.array(pre, np.int64),
                     np.array(post, np.int64), np.array(w, float), order)


def _soma(arch: SanafeArch, net: SanafeNet, n: int) -> dict:
    units = arch.cores[net.core[n]].soma
    name = net.attrs[n].get("soma_hw_name")
    if name is None:
        return next(iter(units.values()))
    if name not in units:
        raise SanafeFormatError(f"neuron {net.names[n]}: core has no soma unit {name!r}")
    return units[name]


def simulate(net: SanafeNet, arch: SanafeArch, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The network's spikes and soma updates: (fired, updated), bool [steps, neurons]."""
    N = len(net.names)
    soma = [_soma(arch, net, n) for n in range(N)]
    is_input = np.array([s.get("model") == "input" for s in soma])
    a = net.attrs
    f = lambda k, d: np.array([float(x.get(k, d)) for x in a])  # noqa: E731
    thr, reset, leak, bias = f("threshold", 0.0), f("reset", 0.0), f("leak_decay", 1.0), \
        f("bias", 0.0)
    input_decay = f("input_decay", 0.0)
    soft = np.array([x.get("reset_mode") == "soft" for x in a])
    trains = [list(x.get("spikes") or []) for x in a]
    v = np.zeros(N)
    current = np.zeros(N)
    u = np.zeros(N)
    got = np.zeros(N, bool)
    fired = np.zeros((steps, N), bool)
    updated = np.zeros((steps, N), bool)
    for t in range(steps):
        updated[t] = ~is_input & ((v != 0) | got | (bias != 0))
        if t:
            v = v * leak
            u = u * input_decay
        u = u + current
        v = np.trunc(v * 64.0) / 64.0 + bias + u
        spk = ~is_input & (v > thr)
        v = np.where(spk, np.where(soft, v - thr, reset), v)
        spk |= np.array([t < len(tr) and bool(tr[t]) for tr in trains]) & is_input
        v[is_input] = 0.0
        fired[t] = spk
        current = np.bincount(net.post, weights=net.weight * spk[net.pre], minlength=N)
        got = np.bincount(net.post, weights=spk[net.pre].astype(float), minlength=N) > 0
    return fired, updated


def _first(units: dict, name=None) -> dict:
    if name is not None and name in units:
        return units[name]
    return next(iter(units.values())) if units else {}


def _fig(unit: dict, key: str) -> float:
    return float(unit.get(key, 0.0) or 0.0)


class NetTiming:
    """Per-step message queues and energy of a ``SanafeNet`` on its ``SanafeArch``, from its
    spikes and soma updates, in SANA-FE's terms: a core updates its neurons in mapping order
    (``latency_access_neuron``, ``+ latency_update_neuron`` when updated, ``+ latency_spike_out``
    when it fires), a firing neuron sends one message per destination core
    (``latency_message_out``), costing that core ``latency_message_in`` plus
    ``latency_process_spike`` (and the dendrite's ``latency_update``) per synapse there."""

    def __init__(self, net: SanafeNet, arch: SanafeArch):
        self.net, self.arch = net, arch
        N = len(net.names)
        soma = [_soma(arch, net, n) for n in range(N)]
        self.t_soma = np.array([[_fig(u, "latency_access_neuron"), _fig(u, "latency_update_neuron"),
                                 _fig(u, "latency_spike_out")] for u in soma]) * 1e9
        self.e_soma = np.array([[_fig(u, "energy_access_neuron"), _fig(u, "energy_update_neuron"),
                                 _fig(u, "energy_spike_out")] for u in soma])
        self.fanout: list[list[tuple[int, float, float]]] = [[] for _ in range(N)]
        per: dict = {}
        for s, d in zip(net.pre.tolist(), net.post.tolist()):
            c = arch.cores[net.core[d]]
            syn = _first(c.synapse, net.attrs[d].get("synapse_hw_name"))
            den = _first(c.dendrite)
            key = (s, int(net.core[d]))
            t, e = per.get(key, (0.0, 0.0))
            per[key] = (t + _fig(syn, "latency_process_spike") + _fig(den, "latency_update"),
                        e + _fig(syn, "energy_process_spike") + _fig(den, "energy_update"))
        for (s, dc), (t, e) in per.items():  # destinations in first-synapse order
            ain, aout = _first(arch.cores[dc].axon_in), _first(arch.cores[net.core[s]].axon_out)
            src_tile, dst_tile = arch.cores[net.core[s]].tile, arch.cores[dc].tile
            hop_t, hop_e = self._hops(src_tile, dst_tile)
            self.fanout[s].append((dc, (t + _fig(ain, "latency_message_in")) * 1e9,
                                   e + _fig(ain, "energy_message_in") + hop_e
                                   + _fig(aout, "energy_message_out")))
        self.t_out = np.array([_fig(_first(arch.cores[net.core[n]].axon_out),
                                    "latency_message_out") for n in range(N)]) * 1e9
        self.xy = np.array([arch.xy[c.tile] for c in arch.cores], np.int64)
        tiles = {arch.cores[c].tile for c in net.core.tolist()}
        self.sync_s = arch.sync(len(tiles))

    def _hops(self, a: int, b: int) -> tuple[float, float]:
        """Latency (ns) and energy (J) of the X-then-Y route between tiles ``a`` and ``b``
        (east = +x, north = +y; each hop costs the figures of the tile it leaves)."""
        (x, y), (dx, dy) = self.arch.xy[a], self.arch.xy[b]
        t = e = 0.0
        tile = a
        while (x, y) != (dx, dy):
            h = self.arch.hop[tile]
            if x != dx:
                d = "east" if dx > x else "west"
                x += 1 if dx > x else -1
            else:
                d = "north" if dy > y else "south"
                y += 1 if dy > y else -1
            t, e = t + _fig(h, f"latency_{d}_hop") * 1e9, e + _fig(h, f"energy_{d}_hop")
            tile = int(np.nonzero((self.arch.xy[:, 0] == x) & (self.arch.xy[:, 1] == y))[0][0])
        return t, e

    def step(self, fired: np.ndarray, updated: np.ndarray, params: NocParams):
        """One step: (``StepResult`` of ``simulate_step``, energy in J)."""
        nodes = len(self.arch.cores)
        dst = [[] for _ in range(nodes)]
        gen = [[] for _ in range(nodes)]
        proc = [[] for _ in range(nodes)]
        since = np.zeros(nodes)
        ts = self.t_soma
        soma_t = ts[:, 0] + ts[:, 1] * updated + ts[:, 2] * fired
        energy = float((self.e_soma[:, 0] + self.e_soma[:, 1] * updated
                        + self.e_soma[:, 2] * fired).sum())
        for n in self.net.order:
            c = int(self.net.core[n])
            since[c] += soma_t[n]
            if not fired[n]:
                continue
            for dc, recv, e in self.fanout[n]:
                dst[c].append(dc)
                gen[c].append(since[c] + self.t_out[n])
                proc[c].append(recv)
                since[c] = 0.0
                energy += e
        clock = params.clock_ns
        res = simulate_step([np.asarray(d, np.int64) for d in dst],
                            [cycles(g, clock) for g in gen], [cycles(p, clock) for p in proc],
                            cycles(since, clock), self.xy, params)
        return res, energy


#: NoC parameters that stand for SANA-FE's two timing models on these small networks: its
#: Booksim-based ``cycle`` model, and its ``detailed`` model (no clock, no buffer limits).
SANAFE_MODELS = {"cycle": NocParams(drain_serialises=True),
                 "detailed": NocParams(clock_ns=1e-3, rx_buffer=1 << 30, inject_credits=1 << 30,
                                       router_cycles=0, pipe_cycles=0, credit_cycles=0,
                                       end_cycles=0)}


def time_network(net: SanafeNet, arch: SanafeArch, steps: int, model: str = "cycle"):
    """Simulate ``net`` for ``steps`` and time it: (latency s [steps], energy J [steps],
    fired bool [steps, neurons])."""
    params = SANAFE_MODELS[model]
    fired, updated = simulate(net, arch, steps)
    nt = NetTiming(net, arch)
    if model == "detailed":  # no clock: a hop costs the tiles' mean east-west latency
        hop_ns = np.mean([_fig(h, k) for h in arch.hop for k in ("latency_east_hop",
                                                                  "latency_west_hop")]) * 1e9
        params = dataclasses.replace(params, router_cycles=int(round(hop_ns / params.clock_ns)))
    lat, energy = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        res, energy[t] = nt.step(fired[t], updated[t], params)
        lat[t] = res.total * params.clock_ns * 1e-9 + nt.sync_s
    return lat, energy, fired


__all__ = ["NetTiming", "SanafeArch", "SanafeNet", "SANAFE_MODELS", "load_arch", "load_net",
           "simulate", "time_network"]
