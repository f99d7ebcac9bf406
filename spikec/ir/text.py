"""Readable text dump of a graph, and the per-op summary rows ``spikec inspect`` shows."""
from __future__ import annotations

from spikec.ir.graph import Graph


def _fmt_attr(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ",".join(_fmt_attr(x) for x in v) + ")"
    return str(v)


def describe_params(op) -> str:
    """Short parameter text: array shapes and non-default attributes."""
    parts = [f"{k}{list(a.shape)}" for k, a in op.arrays().items()]
    parts += [f"{k}={_fmt_attr(v)}" for k, v in op.attributes().items() if v is not None]
    return " ".join(parts)


def summary_rows(graph: Graph) -> list[dict]:
    """One dict per op: name, op, inputs, shape, kind, rate, stateful, params, dense_ops."""
    specs = graph.specs
    rows = []
    for op in graph.ops:
        out = specs[op.name]
        ins = [specs[i] for i in op.inputs]
        rows.append({
            "name": op.name,
            "op": op.OPCODE,
            "inputs": list(op.inputs),
            "shape": list(out.shape),
            "kind": out.kind.value,
            "rate": out.rate.value,
            "stateful": op.STATEFUL,
            "params": op.param_count(),
            "attributes": describe_params(op),
            "dense_ops": int(op.dense_ops(ins, out)),
        })
    return rows


def dump(graph: Graph) -> str:
    """One line per op: ``name = opcode(inputs) attrs : kind[shape]``."""
    lines = [f"graph T={graph.timesteps} ops={len(graph.ops)} params={graph.param_count()}"]
    specs = graph.specs
    for op in graph.ops:
        attrs = describe_params(op)
        lines.append(f"  {op.name} = {op.OPCODE}({', '.join(op.inputs)})"
                     f"{' ' + attrs if attrs else ''} : {specs[op.name]}")
    return "\n".join(lines)
