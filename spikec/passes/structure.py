"""Structural clean-ups: dead ops and no-op layout ops."""
from __future__ import annotations

from dataclasses import replace

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes.rewrite import Rewrite, View, rewrite, rule


def eliminate_dead_ops(graph: Graph) -> Graph:
    """Drop every op whose value no output depends on (unused branches, orphaned parameters).

    Source ops (``input``) are kept even when unused: they define the graph's data interface.
    """
    keep = live_ops(graph.ops)
    if len(keep) == len(graph.ops):
        return graph
    return graph.with_ops(keep)


def live_ops(ops: list[O.Op]) -> list[O.Op]:
    """The ops of a topologically ordered list that some output depends on, and the sources."""
    needed: set[str] = set()
    keep = []
    for op in reversed(ops):
        if isinstance(op, O.Output) or op.name in needed or op.ARITY == 0:
            keep.append(op)
            needed.update(op.inputs)
    keep.reverse()
    return keep


@rule(O.Transpose, O.Reshape)
def identity_layout(op, v: View) -> Rewrite | None:
    """# transpose(x, identity) -> x;  reshape(x, x.shape) -> x"""
    src = op.inputs[0]
    if isinstance(op, O.Transpose):
        identity = tuple(op.perm) == tuple(range(len(op.perm)))
    else:
        identity = tuple(op.shape) == v.spec(src).shape
    return Rewrite(remove=(op.name,), rename=((op.name, src),)) if identity else None


@rule(O.Transpose, O.Reshape)
def merge_layout(op, v: View) -> Rewrite | None:
    """# transpose(transpose(x, p1), p2) -> transpose(x, p1[p2]);
    # reshape(reshape(x, s1), s2) -> reshape(x, s2)            (the inner op read once)"""
    inner = v.producer(op.inputs[0])
    if type(inner) is not type(op) or v.sole_consumer(inner.name) is not op:
        return None
    if isinstance(op, O.Transpose):
        merged = replace(op, inputs=inner.inputs, perm=tuple(inner.perm[p] for p in op.perm))
    else:
        merged = replace(op, inputs=inner.inputs)
    return Rewrite(replace=(merged,), remove=(inner.name,))


#: The layout clean-up rules, in the order they are tried on an op.
LAYOUT_RULES = (identity_layout, merge_layout)


def simplify_layout(graph: Graph) -> Graph:
    """Remove layout ops that do nothing and merge chains of them (``LAYOUT_RULES``).

    Rules (each ``# before -> after``)::

        transpose(x, identity)            -> x
        reshape(x, x.shape)               -> x
        transpose(transpose(x, p1), p2)   -> transpose(x, p1[p2])      (inner read once)
        reshape(reshape(x, s1), s2)       -> reshape(x, s2)            (inner read once)
    """
    return rewrite(graph, LAYOUT_RULES)
