"""The NIR frontend: a ``.nir`` file (nir >= 1.0.8) becomes spikec's float IR.

NIR's neurons are continuous-time ODEs; spikec reads them with forward Euler and ``dt`` seconds
per IR time step (``dt`` from the file's spikec metadata, ``--set dt=...``, else 1). Mapping (see
docs/interchange.md)::

    LIF(tau, r, v_leak=0, v_th, v_reset=0)
        r == 1           -> lif(tau/dt, decay_input=True,  v_th, '>')
        r == tau/dt      -> lif(tau/dt, decay_input=False, v_th, '>')
        otherwise        -> scale(r) -> lif(tau/dt, decay_input=True, v_th, '>')
    IF(r, v_th, v_reset=0)               -> [scale(r dt)] -> lif(tau=inf, decay_input=False, '>')
    CubaLIF(tau_syn = dt, ...)           -> scale(w_in) -> the LIF above (the current forgets)
    Threshold(th)                        -> lif(tau=1, decay_input=False, th, '>') (no state)
    Affine / Linear                      -> linear (1-d input)
    Conv2d                               -> conv2d;  Conv1d (kernel 1) -> linear(axis 0)
    SumPool2d                            -> conv2d with a ones kernel per channel
    AvgPool2d, Flatten                   -> avgpool2d, reshape
    Scale                                -> scale (uniform), depthwise 1x1 conv2d (per channel)
    several edges into one node          -> add ops
    NIRGraph                             -> inlined

Files written by spikec carry node metadata that restores the exact IR (spikingjelly's ``>=``
threshold, absent biases, linears over token grids, the host time mean). Everything else raises
``UnsupportedOpError`` naming the node: Delay, I, LI, CubaLI, recurrent edges, a leak or reset
potential other than 0, non-uniform neuron parameters (one value per layer on the chip), CubaLIF
with a synaptic time constant longer than one step.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from spikec.errors import InputFileError, UnsupportedOpError, require
from spikec.ir import ops as O
from spikec.ir.graph import Graph, verify

META_KEY = "spikec"
DEFAULT_TIMESTEPS = 4

__all__ = ["load", "from_nir", "META_KEY"]


def _nir():
    return require("nir", "reading .nir files")


def load(path, options=None) -> Graph:
    """Read ``path`` with ``nir.read`` and convert it (``from_nir``)."""
    nir = _nir()
    try:
        try:
            graph = nir.read(str(path))
        except ValueError:  # a type check: e.g. the several inputs of a --ssa host split
            graph = nir.read(str(path), type_check=False)
    except Exception as e:  # h5py, unknown node types: all report the file
        raise InputFileError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from None
    return from_nir(graph, options, source=Path(path).name)


def _meta(node) -> dict:
    raw = (getattr(node, "metadata", None) or {}).get(META_KEY)
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, np.ndarray):
        raw = raw.item()
        raw = raw.decode() if isinstance(raw, bytes) else raw
    return json.loads(raw)


def _flat(graph, prefix: str, nodes: dict, edges: list, taken: set):
    """Inline nested graphs. Returns (name map of this level, entry alias, exit alias)."""
    nir = _nir()
    names = {}
    items = sorted(graph.nodes.items(), key=lambda kv: isinstance(kv[1], nir.NIRGraph))
    for name, node in items:
        full = name if name not in taken else f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            sub_names = _flat(node, f"{full}.", nodes, edges, taken)
            names[name] = sub_names
        else:
            taken.add(full)
            nodes[full] = node
            names[name] = full
    for s, t in graph.edges:
        src = names[s]
        dst = names[t]
        if isinstance(src, dict):   # out of a subgraph: from what feeds its Output
            src = src["__out__"]
        if isinstance(dst, dict):   # into a subgraph: to its Input
            dst = dst["__in__"]
        edges.append((src, dst))
    ins = [names[n] for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outs = [names[n] for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if prefix:  # nested: its Input/Output become pass-through aliases
        if len(ins) != 1 or len(outs) != 1:
            raise UnsupportedOpError(f"NIR subgraph {prefix[:-1]!r}: {len(ins)} inputs and "
                                     f"{len(outs)} outputs; spikec inlines one-in one-out subgraphs")
        names["__in__"], names["__out__"] = ins[0], outs[0]
        nodes[ins[0]] = _Alias()
        nodes[outs[0]] = _Alias()
    return names


class _Alias:
    """The Input/Output of an inlined subgraph: passes the sum of its inputs on."""


def _order(nodes: dict, edges: list) -> list[str]:
    preds = {n: [] for n in nodes}
    for s, t in edges:
        preds[t].append(s)
    done, out = set(), []
    pending = list(nodes)
    while pending:
        rest = [n for n in pending if not all(p in done for p in preds[n])]
        ready = [n for n in pending if n not in rest]
        if not ready:
            raise UnsupportedOpError(
                f"NIR node {rest[0]!r}: recurrent edges (a cycle through {rest[0]!r}); spikec's IR is "
                "feed-forward (a recurrent connection needs an explicit one-step delay)")
        out += ready
        done.update(ready)
        pending = rest
    return out, preds


def _uniform(node_name: str, kind: str, field: str, arr) -> float:
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        raise UnsupportedOpError(f"NIR node {node_name!r} ({kind}): empty {field}")
    if not np.all(a == a.flat[0]):
        raise UnsupportedOpError(
            f"NIR node {node_name!r} ({kind}): {field} differs between neurons "
            f"({a.min():g} .. {a.max():g}); the chip shares one value per layer")
    return float(a.flat[0])


class _Converter:
    def __init__(self, nir_graph, options, source: str):
        self.nir = _nir()
        self.options = options
        self.top = _meta(nir_graph)
        overrides = dict(getattr(options, "overrides", {}) or {})
        self.dt = float(overrides.get("dt", self.top.get("dt", 1.0)))
        self.ops: list[O.Op] = []
        self.specs: dict = {}
        self.pending: dict[str, float] = {}   # avgpool value -> factor owed by its synapses
        self.nshape: dict[str, tuple] = {}    # value -> its NIR shape (a reshape of the IR one)
        self.nodes, self.preds, self.succs = {}, {}, {}
        self.source = source

    def add(self, op: O.Op) -> str:
        if op.name in self.specs:
            raise UnsupportedOpError(f"NIR import: value name {op.name!r} used twice")
        self.specs[op.name] = op.infer([self.specs[i] for i in op.inputs])
        self.ops.append(op)
        return op.name

    def shape(self, v: str) -> tuple[int, ...]:
        return tuple(self.specs[v].shape)

    def nir_shape(self, v: str) -> tuple[int, ...]:
        return self.nshape.get(v, self.shape(v))

    def nir_form(self, v: str) -> str:
        """``v`` reshaped to its NIR shape (values of linears over token grids keep the IR's
        (C, N) shape until an op needs the grid)."""
        want = self.nir_shape(v)
        if want == self.shape(v):
            return v
        name = f"{v}.grid"
        if name not in self.specs:
            self.add(O.Reshape(name, (v,), shape=want))
        return name

    def summed(self, name: str, srcs: list[str], final: bool = False) -> str:  # noqa: C901
        """One value for a node's inputs (NIR sums them); add ops named after the node."""
        if not srcs:
            raise UnsupportedOpError(f"NIR node {name!r} has no input edge")
        if len({self.shape(v) for v in srcs}) > 1:
            srcs = [self.nir_form(v) for v in srcs]
        cur = srcs[0]
        for k, s in enumerate(srcs[1:]):
            if self.shape(s) != self.shape(cur):
                raise UnsupportedOpError(f"NIR node {name!r}: inputs of shapes {self.shape(cur)} and "
                                         f"{self.shape(s)} cannot be summed")
            last = k == len(srcs) - 2
            cur = self.add(O.Add(name if (last and final) else f"{name}.in{k + 1}", (cur, s)))
        return cur

    # -- nodes ----------------------------------------------------------------------------------
    def convert(self, name: str, node, srcs: list[str]) -> str:
        nir = self.nir
        meta = _meta(node)
        if isinstance(node, _Alias):
            y = self.summed(name, srcs)
            self.nshape.setdefault(y, self.nir_shape(srcs[0]))
            return y
        if isinstance(node, nir.Input):
            return self.add(self._input(name, node, meta))
        kind = type(node).__name__
        fn = getattr(self, f"_n_{kind}", None)
        if fn is None:
            raise UnsupportedOpError(
                f"NIR node {name!r} ({kind}) has no spikec equivalent (supported: Input, Output, "
                "Affine, Linear, Conv1d (kernel 1), Conv2d, LIF, IF, CubaLIF (tau_syn = dt), "
                "Threshold, Scale, SumPool2d, AvgPool2d, Flatten, NIRGraph)")
        if isinstance(node, (nir.Scale,)) and meta.get("op") == "add":
            y = self.summed(name, srcs, final=True)
            self.nshape.setdefault(y, self.nir_shape(srcs[0]))
            return y
        x = self.summed(name, srcs)
        self.summed_src = x
        if not isinstance(node, self.ELEMENTWISE + (nir.Flatten,)):
            x = self.nir_form(x)
        y = fn(name, node, x, meta)
        if isinstance(node, self.ELEMENTWISE):
            self.nshape.setdefault(y, self.nir_shape(x))
        return y

    @property
    def ELEMENTWISE(self):
        nir = self.nir
        return (nir.LIF, nir.IF, nir.CubaLIF, nir.Threshold, nir.Scale, nir.Output)

    def _input(self, name, node, meta) -> O.Input:
        shape = tuple(int(d) for d in np.asarray(node.input_type["input"]).ravel())
        if meta.get("op") == "input":
            return O.Input(name, (), shape=tuple(meta["shape"]), encoding=meta["encoding"],
                           kind=meta["kind"], pixel_scale=float(meta["pixel_scale"]),
                           mean=tuple(meta["mean"]), std=tuple(meta["std"]), pad=int(meta["pad"]))
        pre = getattr(self.options, "preprocess", None) or {}
        return O.Input(name, (), shape=shape, encoding="repeat", kind="real",
                       pixel_scale=float(pre.get("pixel_scale", 1.0)),
                       mean=tuple(pre.get("mean") or ()), std=tuple(pre.get("std") or ()))

    def _n_Output(self, name, node, x, meta):
        if meta.get("readout") == "time_mean":
            x = self.add(O.TimeMean(meta.get("readout_op", f"{name}.time_mean"), (x,)))
        return self.add(O.Output(name, (x,)))

    def _bias(self, node, meta, n):
        b = getattr(node, "bias", None)
        if b is None or meta.get("bias") is False:
            return None
        return np.asarray(b, np.float32).reshape(n)

    def _n_Affine(self, name, node, x, meta):
        w = self.weight(x, np.asarray(node.weight, np.float32))
        if w.ndim != 2 or len(self.shape(x)) != 1:
            raise UnsupportedOpError(f"NIR node {name!r} (Affine): weight {w.shape} on a "
                                     f"{self.shape(x)} input; spikec reads 2-d weights on 1-d inputs")
        return self.add(O.Linear(name, (x,), weight=w, bias=self._bias(node, meta, w.shape[0]),
                                 axis=-1 if meta.get("axis") is None else meta["axis"]))

    def _n_Linear(self, name, node, x, meta):
        node.bias = None
        return self._n_Affine(name, node, x, meta)

    def _conv_padding(self, name, node, k):
        p = node.padding
        if isinstance(p, str):
            if p == "valid":
                return (0, 0)
            if all(d % 2 == 1 for d in k):
                return tuple(d // 2 for d in k)
            raise UnsupportedOpError(f"NIR node {name!r} (Conv2d): padding 'same' with an even kernel")
        p = tuple(int(v) for v in np.atleast_1d(p))
        return p * 2 if len(p) == 1 else p

    def _n_Conv2d(self, name, node, x, meta):
        w = self.weight(x, np.asarray(node.weight, np.float32))
        k = w.shape[2:]
        stride = tuple(int(v) for v in np.atleast_1d(node.stride))
        dil = tuple(int(v) for v in np.atleast_1d(node.dilation))
        stride, dil = stride * (2 // len(stride)), dil * (2 // len(dil))
        pad = self._conv_padding(name, node, k)
        bias = self._bias(node, meta, w.shape[0])
        if meta.get("op") == "linear" and k == (1, 1) and stride == (1, 1) and pad == (0, 0):
            # a linear over the channels of a token grid: the IR's (C, N) form and kernel
            C, H, W = self.shape(x)
            flat = self.add(O.Reshape(f"{name}.tokens", (x,), shape=(C, H * W)))
            lin = self.add(O.Linear(name, (flat,), weight=w[:, :, 0, 0], bias=bias, axis=0))
            self.nshape[lin] = (w.shape[0], H, W)
            return lin
        groups = int(node.groups)
        g = int(meta.get("groups", 1))
        if groups == 1 and g > 1:  # spikec wrote a grouped conv densely: take the blocks back
            og, cg = w.shape[0] // g, w.shape[1] // g
            w = np.concatenate([w[i * og:(i + 1) * og, i * cg:(i + 1) * cg] for i in range(g)])
            groups = g
        return self.add(O.Conv2d(name, (x,), weight=w, bias=bias, stride=stride, padding=pad,
                                 dilation=dil, groups=groups))

    def _n_Conv1d(self, name, node, x, meta):
        w = np.asarray(node.weight, np.float32)
        trivial = (w.shape[2] == 1 and int(np.atleast_1d(node.stride)[0]) == 1
                   and not isinstance(node.padding, str) and int(np.atleast_1d(node.padding)[0]) == 0
                   and int(node.groups) == 1)
        if not trivial:
            raise UnsupportedOpError(f"NIR node {name!r} (Conv1d): only kernel-1, stride-1, "
                                     "unpadded, ungrouped Conv1d (a linear over channels) is read")
        return self.add(O.Linear(name, (x,), weight=w[:, :, 0],
                                 bias=self._bias(node, meta, w.shape[0]), axis=0))

    # neurons
    def _lif_params(self, name, kind, node, fields):
        return {f: _uniform(name, kind, f, getattr(node, f)) for f in fields}

    def _check_rest(self, name, kind, p):
        if p.get("v_leak", 0.0) != 0.0:
            raise UnsupportedOpError(
                f"NIR node {name!r} ({kind}): v_leak = {p['v_leak']:g}; the chip's compartments "
                "decay toward 0 (no leak target)")
        if p.get("v_reset", 0.0) != 0.0:
            raise UnsupportedOpError(f"NIR node {name!r} ({kind}): v_reset = {p['v_reset']:g}; the "
                                     "chip resets to 0")

    def _spikec_lif(self, name, x, meta):
        tau = float(meta["tau"])
        return self.add(O.LIF(name, (x,), tau=tau, v_threshold=float(meta["v_threshold"]),
                              v_reset=meta["v_reset"], decay_input=bool(meta["decay_input"]),
                              fire_on=meta["fire_on"]))

    def _n_LIF(self, name, node, x, meta):
        if meta.get("op") == "lif":
            return self._spikec_lif(name, x, meta)
        p = self._lif_params(name, "LIF", node, ("tau", "r", "v_leak", "v_threshold", "v_reset"))
        self._check_rest(name, "LIF", p)
        return self._leaky(name, "LIF", x, p["tau"] / self.dt, p["r"], p["v_threshold"])

    def _leaky(self, name, kind, x, tau, r, v_th):
        if not tau >= 1.0:
            raise UnsupportedOpError(
                f"NIR node {name!r} ({kind}): tau = {tau:g} time steps (dt = {self.dt:g}); forward "
                "Euler needs tau >= dt: give the producer's step with --set dt=SECONDS")
        if r == 1.0:
            decay_input = True
        elif math.isclose(r, tau, rel_tol=1e-6):
            decay_input = False
        else:
            x = self.add(O.Scale(f"{name}.r", (x,), factor=r))
            decay_input = True
        return self.add(O.LIF(name, (x,), tau=tau, v_threshold=v_th, v_reset=0.0,
                              decay_input=decay_input, fire_on=">"))

    def _n_IF(self, name, node, x, meta):
        if meta.get("op") == "lif":
            return self._spikec_lif(name, x, meta)
        p = self._lif_params(name, "IF", node, ("r", "v_threshold", "v_reset"))
        self._check_rest(name, "IF", p)
        gain = p["r"] * self.dt   # forward Euler of dv/dt = R I: v += dt R I
        if gain != 1.0:
            x = self.add(O.Scale(f"{name}.r", (x,), factor=gain))
        return self.add(O.LIF(name, (x,), tau=math.inf, v_threshold=p["v_threshold"], v_reset=0.0,
                              decay_input=False, fire_on=">"))

    def _n_CubaLIF(self, name, node, x, meta):
        p = self._lif_params(name, "CubaLIF", node, ("tau_syn", "tau_mem", "r", "v_leak",
                                                      "v_threshold", "v_reset", "w_in"))
        self._check_rest(name, "CubaLIF", p)
        tau_syn = p["tau_syn"] / self.dt
        if not math.isclose(tau_syn, 1.0, rel_tol=1e-6):
            raise UnsupportedOpError(
                f"NIR node {name!r} (CubaLIF): tau_syn = {tau_syn:g} time steps; spikec's float IR "
                "has no synaptic-current decay (only tau_syn = dt, a current that forgets each step)")
        if p["w_in"] != 1.0:
            x = self.add(O.Scale(f"{name}.w_in", (x,), factor=p["w_in"]))
        return self._leaky(name, "CubaLIF", x, p["tau_mem"] / self.dt, p["r"], p["v_threshold"])

    def _n_Threshold(self, name, node, x, meta):
        th = _uniform(name, "Threshold", "threshold", node.threshold)
        if meta.get("op") == "iand":
            pass  # s - a > 0.5: the inputs were summed above
        return self.add(O.LIF(name, (x,), tau=1.0, v_threshold=th, v_reset=0.0,
                              decay_input=False, fire_on=">"))

    def _n_Scale(self, name, node, x, meta):
        s = np.asarray(node.scale, np.float64)
        shape = self.shape(x)
        if s.size and np.all(s == s.flat[0]):
            f = float(s.flat[0])
            if f == 1.0:
                return x
            return self.add(O.Scale(name, (x,), factor=f))
        if len(shape) == 3 and s.shape == shape and np.all(s == s[:, :1, :1]):
            C = shape[0]
            w = s[:, 0, 0].astype(np.float32).reshape(C, 1, 1, 1)
            return self.add(O.Conv2d(name, (x,), weight=w, groups=C))
        raise UnsupportedOpError(f"NIR node {name!r} (Scale): a scale that varies within a channel "
                                 "has no spikec op")

    def _pool_args(self, node):
        k, s, p = (tuple(int(v) for v in np.atleast_1d(a)) for a in
                   (node.kernel_size, node.stride, node.padding))
        return k * (2 // len(k)), s * (2 // len(s)), p * (2 // len(p))

    def _n_SumPool2d(self, name, node, x, meta):
        k, s, p = self._pool_args(node)
        if p == (0, 0) and self.feeds_synapses(name):
            # sum = k_h k_w avg: an avgpool the compiler folds, the factor in the next weights
            y = self.add(O.AvgPool2d(name, (x,), kernel=k, stride=s, padding=p))
            self.pending[y] = float(k[0] * k[1])
            return y
        C = self.shape(x)[0]
        return self.add(O.Conv2d(name, (x,), weight=np.ones((C, 1) + k, np.float32), stride=s,
                                 padding=p, groups=C))

    def feeds_synapses(self, name: str) -> bool:
        nir = self.nir
        succ = self.succs.get(name, [])
        return bool(succ) and all(
            len(self.preds[t]) == 1 and (
                isinstance(self.nodes[t], (nir.Conv2d, nir.Affine, nir.Linear))
                or (isinstance(self.nodes[t], nir.Flatten) and self.feeds_synapses(t)))
            for t in succ)

    def weight(self, x: str, w: np.ndarray) -> np.ndarray:
        """Synapse weights reading ``x``, times a pending sum-pool factor of ``x``."""
        f = self.pending.get(x)
        return w if f is None else (w * np.float32(f)).astype(np.float32)

    def _n_AvgPool2d(self, name, node, x, meta):
        k, s, p = self._pool_args(node)
        if meta.get("op") == "mean":  # spikec's token mean: the IR's mean over (C, N)
            src = self.summed_src
            nd = len(self.shape(src))
            y = self.add(O.Mean(name, (src,), axes=tuple(range(1, nd))))
            self.nshape[y] = (self.shape(y)[0], 1, 1)
            return y
        return self.add(O.AvgPool2d(name, (x,), kernel=k, stride=s, padding=p))

    def _n_Flatten(self, name, node, x, meta):
        shape = self.nir_shape(x)
        start, end = int(node.start_dim), int(node.end_dim)
        end = end if end >= 0 else len(shape) + end
        start = start if start >= 0 else len(shape) + start
        new = shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
        if self.shape(x) == new:
            return x
        y = self.add(O.Reshape(name, (x,), shape=new))
        if x in self.pending:
            self.pending[y] = self.pending[x]
        return y


def _convert_level(conv: "_Converter", graph, skip=lambda name, node: None) -> None:
    """Convert one (top-level or part) graph into ``conv``; ``skip(name, node)`` may return the IR
    value a node stands for (or "" to drop it) instead of converting it."""
    nodes: dict = {}
    edges: list = []
    _flat(graph, "", nodes, edges, set())
    order, preds = _order(nodes, edges)
    conv.nodes, conv.preds, conv.succs = nodes, preds, {}
    for s, t in edges:
        conv.succs.setdefault(s, []).append(t)
    value: dict[str, str] = {}
    for name in order:
        alias = skip(name, nodes[name])
        if alias is not None:
            value[name] = alias
            continue
        value[name] = conv.convert(name, nodes[name], [value[p] for p in preds[name] if value[p]])


def _host_split(conv: "_Converter", nir_graph, boundaries: list) -> None:
    """Reassemble a ``--ssa host`` file: its parts in order, the host's IR ops between them."""
    from spikec.ir.ops import op_type

    nir = conv.nir
    last = len(boundaries)
    for k in range(last + 1):
        part = nir_graph.nodes[f"part{k}"]
        carried = {e["value"]: e for e in (boundaries[k - 1]["part_input"] if k else [])}
        for v, e in carried.items():
            conv.nshape[v] = tuple(e["carrier"])

        def skip(name, node, k=k, carried=carried):
            if k and isinstance(node, nir.Input):
                return ""
            if name.endswith(".unpack") and name[:-len(".unpack")] in carried:
                return name[:-len(".unpack")]
            if k < last and (name.endswith(".pack") or name in ("packed", "output")):
                return ""
            return None
        _convert_level(conv, part, skip)
        if k < last:
            for rec in boundaries[k]["host_ops"]:
                rec = dict(rec)
                cls = op_type(rec.pop("op"))
                conv.add(cls(**{f: tuple(v) if isinstance(v, list) else v for f, v in rec.items()}))


def _decomposed_regions(conv: "_Converter", regions: list):
    """A ``skip`` for a ``--ssa decompose`` file written by spikec: each attention region's NIR
    units (AND, thermometer gates, their fan-outs and sums) are read back as the region's own IR
    ops, recorded in the metadata (the exact product the units compute, at a fraction of their
    size). The units must be in the file as recorded: names and node types are checked."""
    from spikec.ir.ops import op_type

    nir = conv.nir
    owner = {}
    for r in regions:
        if "ir_ops" not in r:
            raise UnsupportedOpError(f"NIR import: attention region {r.get('name')!r} has no "
                                     "recorded IR ops (written by an older spikec); re-export it")
        for n in r["nodes"]:
            owner[n] = r
    kinds = (nir.Conv2d, nir.Threshold, nir.SumPool2d, nir.Scale)

    def skip(name, node):
        r = owner.get(name)
        if r is None:
            return None
        if not isinstance(node, kinds):
            raise UnsupportedOpError(f"NIR node {name!r} ({type(node).__name__}) is listed as a "
                                     f"unit of attention region {r['name']!r} but is not one")
        if name != r["exit"]:
            return ""
        missing = [n for n in r["nodes"] if n not in conv.nodes]
        if missing:
            raise UnsupportedOpError(f"NIR import: attention region {r['name']!r} lacks its "
                                     f"node {missing[0]!r}")
        rename = {}
        for e in r["inputs"]:
            v, want = e["value"], tuple(e["ir_shape"])
            if v not in conv.specs:
                raise UnsupportedOpError(f"NIR import: attention region {r['name']!r} reads "
                                         f"{v!r}, which the file does not define")
            if conv.shape(v) != want:   # carried as a (C, H, W) grid: back to the IR's shape
                rename[v] = conv.add(O.Reshape(f"{v}.ir", (v,), shape=want))
        for rec in r["ir_ops"]:
            rec = dict(rec)
            cls = op_type(rec.pop("op"))
            fields = {f: tuple(v) if isinstance(v, list) else v for f, v in rec.items()}
            fields["inputs"] = tuple(rename.get(i, i) for i in fields["inputs"])
            conv.add(cls(**fields))
        conv.nshape[r["output"]] = tuple(r["carrier"])
        return r["output"]
    return skip


def from_nir(nir_graph, options=None, source: str = "<nir>") -> Graph:
    """Convert a ``nir.NIRGraph`` into a verified float IR graph (a spikec ``--ssa host`` file:
    its parts joined by the host ops recorded in its metadata; a spikec ``--ssa decompose`` file:
    each attention region's units read back as its recorded ops)."""
    conv = _Converter(nir_graph, options, source)
    top = conv.top
    if top.get("boundaries"):
        _host_split(conv, nir_graph, top["boundaries"])
    elif any("ir_ops" in r for r in top.get("regions") or []):
        _convert_level(conv, nir_graph, _decomposed_regions(conv, top["regions"]))
    else:
        _convert_level(conv, nir_graph)
    T = getattr(options, "timesteps", None) or top.get("timesteps") or DEFAULT_TIMESTEPS
    meta = {"source": "nir", "file": source, "dt": conv.dt}
    if top.get("producer"):
        meta["producer"] = top["producer"]
    graph = Graph(conv.ops, timesteps=int(T), meta=meta)
    verify(graph)
    return graph
