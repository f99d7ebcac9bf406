"""``--ssa host``: the graph as a sequence of NIR parts with the attention products between them.

Part k runs on the neuromorphic side; after it, the host runs the IR ops of the attention regions
of stage k+1 (``spike_matmul`` and their layout/scale ops, recorded as JSON in the metadata) and
feeds part k+1. nirtorch and most NIR consumers run single-input graphs, so every boundary is one
packed tensor: the values crossing it, each carried as ``(C, H, W)`` on the common token grid,
concatenated along channels. A part unpacks its input with 1x1 Conv2d of 0/1 weights and packs its
output the same way (exact: one nonzero term per sum).

``host_step`` is the reference host: numpy, spikec's interpreter kernels.
"""
from __future__ import annotations

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir.graph import Graph


def stages(graph: Graph, regions) -> tuple[dict[str, int], dict[int, list]]:
    """Stage of every value (0 = first part) and the regions run before each stage."""
    owner = {op.name: r for r in regions for op in r.ops}
    stage: dict[str, int] = {}
    before: dict[int, list] = {}
    for op in graph.ops:
        if op.name in stage:
            continue
        r = owner.get(op.name)
        if r is None:
            stage[op.name] = max((stage[i] for i in op.inputs), default=0)
        elif op is r.ops[-1]:  # all of the region's inputs exist by its last op
            s = max(stage[i] for i in r.inputs) + 1
            for rop in r.ops:
                stage[rop.name] = s
            before.setdefault(s, []).append(r)
    return stage, before


def plan(graph: Graph, regions):
    """Parts and boundaries: (ops of part k, [values crossing boundary k -> k+1], stage map)."""
    stage, before = stages(graph, regions)
    region_ops = {op.name for r in regions for op in r.ops}
    n_parts = max(stage.values()) + 1
    parts = [[op for op in graph.ops if op.name not in region_ops and stage[op.name] == k]
             for k in range(n_parts)]
    for out in graph.outputs:
        if stage[out.name] != n_parts - 1:
            raise UnsupportedOpError(f"--ssa host: output {out.name!r} is computed before the last "
                                     "attention product; one final part must hold every output")

    def used_at(v: str) -> list[int]:
        return [stage[op.name] for op in graph.ops if v in op.inputs]

    crossing = []
    for k in range(n_parts - 1):
        live = [v for v in stage if stage[v] <= k and v not in region_ops
                and any(s > k for s in used_at(v))]
        crossing.append(live)
    return parts, crossing, before, stage


def _op_json(op: O.Op) -> dict:
    rec = {"op": op.OPCODE}
    for k, v in vars(op).items():
        if isinstance(v, np.ndarray):
            raise UnsupportedOpError(f"--ssa host: op {op.name!r} has arrays; host ops must be "
                                     "layout, scale or product ops")
        rec[k] = list(v) if isinstance(v, tuple) else v
    return rec


def host_program(regions, graph: Graph) -> list[dict]:
    return [_op_json(op) for r in regions for op in r.ops]


def layout(graph: Graph, builder_shapes, values: list[str]) -> list[dict]:
    """Channel offsets of ``values`` in a packed boundary tensor."""
    out, off = [], 0
    hw = None
    for v in values:
        shape = builder_shapes(graph.spec(v).shape)
        if len(shape) != 3 or (hw is not None and tuple(shape[1:]) != hw):
            raise UnsupportedOpError(
                f"--ssa host: value {v!r} crosses a host boundary as {shape}; a packed boundary "
                f"needs (C, H, W) values on one token grid ({hw})")
        hw = tuple(shape[1:])
        out.append({"value": v, "offset": off, "channels": int(shape[0]),
                    "ir_shape": list(graph.spec(v).shape), "carrier": list(shape)})
        off += int(shape[0])
    return out


def host_step(boundary: dict, packed: np.ndarray) -> np.ndarray:
    """Run one boundary on the host: packed part output [B, C, H, W] -> packed next input.

    ``boundary``: an entry of the metadata's ``boundaries`` list.
    """
    from spikec import interp
    from spikec.ir.ops import op_type

    env = {}
    B = packed.shape[0]
    for e in boundary["part_output"]:
        x = packed[:, e["offset"]:e["offset"] + e["channels"]]
        env[e["value"]] = x.reshape((B,) + tuple(e["ir_shape"]))
    for rec in boundary["host_ops"]:
        rec = dict(rec)
        cls = op_type(rec.pop("op"))
        op = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec.items()})
        args = [env[i] for i in op.inputs]
        env[op.name] = interp.KERNELS[cls](op, *args)
    parts = []
    for e in boundary["part_input"]:
        parts.append(env[e["value"]].reshape((B,) + tuple(e["carrier"])))
    return np.concatenate(parts, axis=1)
