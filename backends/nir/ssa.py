"""Spiking self-attention in NIR, which has no node multiplying two dynamic tensors.

A *region* is a connected set of ``spike_matmul`` ops with the reshape/transpose/scale ops around
them (the head split before, the scale and head merge after). Two lowerings, named like the Lava
backend's:

decompose
    Exact, in NIR primitives, for attention of the form ``out = s * merge(q @ (k^T @ v))`` on spike
    tensors ``q, k, v`` carried as ``(C, H, W)`` token grids (Spikformer V1 ImageNet and V2). With
    Z heads of width d, P = H*W tokens::

        a[z,i,j,l,n] = [k[z,i,n] + v[z,n,j] > 1.5]                  AND units, on token n
        kv[z,i,j,l,m] = sum_n a[z,i,j,l,n]                            SumPool2d, on every token m
        g[z,i,j,l,m] = [kv + P q[z,m,i] - (l - 1) > P + 1/2]          gate units, l = 1..P
        y[z,m,j] = sum_{i,l} g[z,i,j,l,m]

    since ``q * kv = sum_l q [kv >= l]`` and, with ``0 <= kv <= P``, ``q [kv >= l]`` is
    ``[kv + P q - (l - 1) > P + 1/2]`` (the level is a bias of q's fan-out, so every gate shares
    one threshold). Units (z,i,j,l) are the channels of (C, H, W) maps on the token
    grid: the fan-outs from k, v and q are 1x1 Conv2d with constant weights, the sum over all
    tokens a SumPool2d with a (2H-1, 2W-1) window and (H-1, W-1) zero padding (each token sees the
    whole grid), the final sum a 1x1 Conv2d. Grouped convolutions are avoided: nir 1.0.8 types a
    Conv2d's input as ``weight.shape[1]`` channels, which is wrong for groups > 1. Every sum is of
    small integers, exact in float32; ``s`` is a Scale node after the sum (the IR's one rounding).
    Size: ``2 Z d^2 P^2`` threshold units per attention (AND and gate), 4 weight matrices of
    ``Z d^2 P x C``.

host
    The graph is split at every region: NIR part k ends with the region's inputs, the host runs the
    region's IR ops (listed in the metadata), part k+1 starts with their result. See ``split.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.types import Kind
from spikec.target.ssa import LOWERINGS as MODES
_REGION_OPS = (O.Reshape, O.Transpose, O.Scale, O.SpikeMatmul)


@dataclass
class Region:
    """One attention region: its ops (graph order), the values it reads and the ones it gives."""

    ops: list[O.Op]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {op.name for op in self.ops}

    @property
    def name(self) -> str:
        return next(op.name for op in self.ops if isinstance(op, O.SpikeMatmul))


def find_regions(graph: Graph) -> list[Region]:
    """Group every spike_matmul with the layout/scale ops around it into regions."""
    ops = graph.ops
    inside = {op.name for op in ops if isinstance(op, O.SpikeMatmul)}
    if not inside:
        return []
    changed = True
    while changed:
        changed = False
        for op in ops:
            if op.name in inside or not isinstance(op, _REGION_OPS):
                continue
            users = graph.consumers(op.name)
            feeds = isinstance(op, (O.Reshape, O.Transpose)) and users and all(
                u.name in inside for u in users)
            follows = any(i in inside for i in op.inputs)
            if feeds or follows:
                inside.add(op.name)
                changed = True
    # connected components
    parent = {n: n for n in inside}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for op in ops:
        if op.name in inside:
            for i in op.inputs:
                if i in inside:
                    parent[root(i)] = root(op.name)
    groups: dict[str, Region] = {}
    for op in ops:
        if op.name in inside:
            groups.setdefault(root(op.name), Region([])).ops.append(op)
    regions = list(groups.values())
    for r in regions:
        names = r.names
        for op in r.ops:
            for i in op.inputs:
                if i not in names and i not in r.inputs:
                    r.inputs.append(i)
        for op in r.ops:
            if any(op.name in u.inputs for u in graph.ops if u.name not in names):
                r.outputs.append(op.name)
    return regions


# ----------------------------------------------------------------------------- index tracing
def _trace(region: Region, graph: Graph, start: str, seed: np.ndarray, stop: set[str]):
    """Push an index array through the region's layout ops from ``start``; returns arrays by name
    for every value reached through reshape/transpose only (not through matmuls or scales)."""
    out = {start: seed}
    for op in region.ops:
        if op.name in stop or not op.inputs or op.inputs[0] not in out:
            continue
        x = out[op.inputs[0]]
        if isinstance(op, O.Reshape):
            out[op.name] = x.reshape(op.shape)
        elif isinstance(op, O.Transpose):
            out[op.name] = x.transpose(op.perm)
    return out


def _operand_map(region, graph, matmul: O.SpikeMatmul, port: int):
    """For operand ``port`` of ``matmul``: (source value, channel map, token map) where each
    element of the operand is ``source[channel, token]`` on its ``(C, P)`` flattening."""
    target = matmul.inputs[port]
    for src in region.inputs:
        shape = graph.spec(src).shape
        seed = np.arange(int(np.prod(shape))).reshape(shape)
        got = _trace(region, graph, src, seed, stop=set())
        if target in got:
            P = int(np.prod(shape[1:]))
            idx = got[target]
            return src, idx // P, idx % P
    return None


def _fail(region: Region, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"attention at {region.name!r}: --ssa decompose supports out = s * q @ (k^T @ v) on spike "
        f"tokens carried as (C, H, W) grids; {why}. Use --ssa host for this model")


@dataclass
class DecomposeFacts:
    heads: int
    width: int
    tokens: int
    and_kv_units: int
    gate_units: int
    weights: int

    @property
    def units(self) -> int:
        return self.and_kv_units + self.gate_units


def decompose(region: Region, graph: Graph, builder) -> DecomposeFacts:
    """Emit the exact decomposition of ``region`` into ``builder``; sets the carrier of its output."""
    nir = builder.nir
    mms = [op for op in region.ops if isinstance(op, O.SpikeMatmul)]
    if len(mms) != 2 or len(region.outputs) != 1:
        raise _fail(region, f"found {len(mms)} products and {len(region.outputs)} results")
    inner, outer = (mms if mms[1].inputs[1] == mms[0].name else (None, None))
    if inner is None:
        raise _fail(region, "the second product does not read the first one as its right factor")
    for v in region.inputs:
        if graph.spec(v).kind is not Kind.SPIKE:
            raise _fail(region, f"{v!r} is not a spike value")
    maps = [_operand_map(region, graph, inner, 0), _operand_map(region, graph, inner, 1),
            _operand_map(region, graph, outer, 0)]
    if any(m is None for m in maps):
        raise _fail(region, "a factor is not a layout of a region input")
    (kb, kc, kt), (vb, vc, vt), (qb, qc, qt) = maps
    Z, d, P = kc.shape
    dj = vc.shape[2]
    carriers = {s: builder.values[s].shape for s in (kb, vb, qb)}
    if any(len(c) != 3 or int(np.prod(c[1:])) != P for c in carriers.values()):
        raise _fail(region, f"factor carriers {sorted(set(carriers.values()))} are not (C, H, W) "
                    f"grids of the {P} contracted tokens")
    n = np.arange(P)
    # k^T[z, i, n] on token n; v[z, n, j] on token n; q[z, m, i] on token m
    if not (np.all(kt == n[None, None, :]) and np.all(vt == n[None, :, None])
            and np.all(qt == n[None, :, None]) and qc.shape == (Z, P, d)):
        raise _fail(region, "the token axes do not line up (contraction over tokens, then per token)")
    if not (np.all(kc == kc[:, :, :1]) and np.all(vc == vc[:, :1, :]) and np.all(qc == qc[:, :1, :])):
        raise _fail(region, "a channel depends on the token")
    kc, vc, qc = kc[:, :, 0], vc[:, 0, :], qc[:, 0, :]          # [Z, d], [Z, dj], [Z, d]
    # the region result: out[c, p] = scale * y[z, p, j]
    out = region.outputs[0]
    y_shape = graph.spec(outer.name).shape
    seed = np.arange(int(np.prod(y_shape))).reshape(y_shape)
    scale = 1.0
    got = {outer.name: seed}
    for op in region.ops:
        if op.inputs and op.inputs[0] in got and op.name not in got:
            x = got[op.inputs[0]]
            if isinstance(op, O.Reshape):
                got[op.name] = x.reshape(op.shape)
            elif isinstance(op, O.Transpose):
                got[op.name] = x.transpose(op.perm)
            elif isinstance(op, O.Scale):
                got[op.name] = x
                scale *= op.factor
    if out not in got:
        raise _fail(region, f"its result {out!r} is not a layout of the last product")
    C_out = int(graph.spec(out).shape[0])
    oidx = got[out].reshape(C_out, -1)
    oz, om, oj = np.unravel_index(oidx, y_shape)
    if oidx.shape[1] != P or not np.all(om == n[None, :]):
        raise _fail(region, "the result is not one row per token")
    if not (np.all(oz == oz[:, :1]) and np.all(oj == oj[:, :1])):
        raise _fail(region, "a result channel mixes heads")
    oz, oj = oz[:, 0], oj[:, 0]
    H, W = carriers[qb][1:]
    base = region.name
    f32 = np.float32
    # unit (z, i, j, l): one per term of kv = sum_n k v and level l = 1..P of kv (thermometer)
    L = P
    n1 = Z * d * dj
    n2 = n1 * L
    zz, ii, jj, ll = (a.ravel() for a in np.meshgrid(np.arange(Z), np.arange(d), np.arange(dj),
                                                     np.arange(1, L + 1), indexing="ij"))
    units = np.arange(n2)
    conv = _conv1x1(nir, (H, W))
    fan_k = np.zeros((n2, carriers[kb][0], 1, 1), f32)
    fan_k[units, kc[zz, ii]] = 1
    fan_v = np.zeros((n2, carriers[vb][0], 1, 1), f32)
    fan_v[units, vc[zz, jj]] = 1
    fan_q = np.zeros((n2, carriers[qb][0], 1, 1), f32)
    fan_q[units, qc[zz, ii]] = L
    builder.add(f"{base}.fan_k", conv(fan_k), builder.values[kb].node)
    builder.add(f"{base}.fan_v", conv(fan_v), builder.values[vb].node)
    builder.add(f"{base}.and_kv", nir.Threshold(threshold=np.full((n2, H, W), 1.5, f32)),
                f"{base}.fan_k", f"{base}.fan_v")
    # every token sees the sum over all tokens: a (2H-1, 2W-1) window with H-1, W-1 zero padding
    builder.add(f"{base}.kv", nir.SumPool2d(kernel_size=np.array([2 * H - 1, 2 * W - 1]),
                                            stride=np.array([1, 1]),
                                            padding=np.array([H - 1, W - 1])), f"{base}.and_kv")
    # q * [kv >= l] = [kv + L q - (l - 1) > L + 1/2]  (0 <= kv <= L): the level is the fan-out's
    # bias, so that every gate shares one threshold (one value per layer, as on the chip)
    builder.add(f"{base}.fan_q", conv(fan_q, bias=-(ll - 1).astype(f32)), builder.values[qb].node)
    builder.add(f"{base}.gate", nir.Threshold(threshold=np.full((n2, H, W), L + 0.5, f32)),
                f"{base}.kv", f"{base}.fan_q")
    summ = np.zeros((C_out, n2, 1, 1), f32)
    for c in range(C_out):
        summ[c, (zz == oz[c]) & (jj == oj[c]), 0, 0] = 1
    node = builder.add(f"{base}.sum", conv(summ), f"{base}.gate")
    if scale != 1.0:
        node = builder.add(f"{base}.scale", nir.Scale(scale=np.full((C_out, H, W), scale, f32)), node)
    builder.values[out] = type(builder.values[qb])(node, (C_out, H, W))
    facts = DecomposeFacts(heads=Z, width=d, tokens=P, and_kv_units=n2 * P, gate_units=n2 * P,
                           weights=int(fan_k.size + fan_v.size + fan_q.size + summ.size))
    builder.neurons[f"{base}.and_kv"] = n2 * P
    builder.neurons[f"{base}.gate"] = n2 * P
    return facts


def _conv1x1(nir, hw):
    def make(weight, bias=None):
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
        return nir.Conv2d(input_shape=tuple(hw), weight=weight, stride=(1, 1), padding=(0, 0),
                          dilation=(1, 1), groups=1, bias=bias)
    return make
