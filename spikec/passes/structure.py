"""Structural clean-ups: dead ops and no-op layout ops."""
from __future__ import annotations

from dataclasses import replace

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes.rewrite import consumers, producers, rename_inputs, sole_consumer


def eliminate_dead_ops(graph: Graph) -> Graph:
    """Drop every op whose value no output depends on (unused branches, orphaned parameters).

    Source ops (``input``) are kept even when unused: they define the graph's data interface.
    """
    needed: set[str] = set()
    keep = []
    for op in reversed(graph.ops):
        if isinstance(op, O.Output) or op.name in needed or op.ARITY == 0:
            keep.append(op)
            needed.update(op.inputs)
    keep.reverse()
    if len(keep) == len(graph.ops):
        return graph
    return graph.with_ops(keep)


def simplify_layout(graph: Graph) -> Graph:
    """Remove layout ops that do nothing and merge chains of them.

    Rules (each ``# before -> after``)::

        transpose(x, identity)            -> x
        reshape(x, x.shape)               -> x
        transpose(transpose(x, p1), p2)   -> transpose(x, p1[p2])      (inner read once)
        reshape(reshape(x, s1), s2)       -> reshape(x, s2)            (inner read once)
    """
    ops = list(graph.ops)
    while True:
        specs = graph.with_ops(ops).specs
        prod, cons = producers(ops), consumers(ops)
        for op in ops:
            if not isinstance(op, (O.Transpose, O.Reshape)):
                continue
            src_name = op.inputs[0]
            identity = (isinstance(op, O.Transpose) and tuple(op.perm) == tuple(range(len(op.perm)))) \
                or (isinstance(op, O.Reshape) and tuple(op.shape) == specs[src_name].shape)
            if identity:
                ops = rename_inputs([o for o in ops if o is not op], op.name, src_name)
                break
            inner = prod[src_name]
            if type(inner) is type(op) and sole_consumer(cons, inner.name) is op:
                if isinstance(op, O.Transpose):
                    merged = replace(op, inputs=inner.inputs,
                                     perm=tuple(inner.perm[p] for p in op.perm))
                else:
                    merged = replace(op, inputs=inner.inputs)
                ops = [merged if o is op else o for o in ops if o is not inner]
                break
        else:
            break
    if len(ops) == len(graph.ops) and all(a is b for a, b in zip(ops, graph.ops)):
        return graph
    return graph.with_ops(ops)
