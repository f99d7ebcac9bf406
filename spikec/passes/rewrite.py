"""Small helpers shared by the passes: who produces and who reads a value, and edits of an op list.

A pass never edits the ops of the graph it was given: it builds new op objects (``dataclasses.replace``)
and returns a new ``Graph`` (``Graph.with_ops`` verifies it).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import numpy as np

from spikec.ir import ops as O
from spikec.ir.graph import Graph

#: Ops that only move elements around (exact on any value kind).
LAYOUT_OPS = (O.Reshape, O.Transpose)


def producers(ops: Iterable[O.Op]) -> dict[str, O.Op]:
    return {op.name: op for op in ops}


def consumers(ops: Iterable[O.Op]) -> dict[str, list[O.Op]]:
    """Value name -> the ops that read it (an op reading a value twice is listed twice)."""
    out: dict[str, list[O.Op]] = {}
    for op in ops:
        out.setdefault(op.name, [])
        for i in op.inputs:
            out.setdefault(i, []).append(op)
    return out


def sole_consumer(cons: dict[str, list[O.Op]], name: str) -> O.Op | None:
    """The one op reading ``name``, or None when zero or several ops read it."""
    users = cons.get(name, [])
    return users[0] if len(users) == 1 else None


def rename_inputs(ops: list[O.Op], old: str, new: str) -> list[O.Op]:
    """Every op that reads ``old`` reads ``new`` instead (new op objects where changed)."""
    out = []
    for op in ops:
        if old in op.inputs:
            op = replace(op, inputs=tuple(new if i == old else i for i in op.inputs))
        out.append(op)
    return out


def fresh_name(taken: Iterable[str], base: str) -> str:
    """``base`` or ``base.1``, ``base.2``, ... : a name no op in ``taken`` has."""
    taken = set(taken)
    if base not in taken:
        return base
    k = 1
    while f"{base}.{k}" in taken:
        k += 1
    return f"{base}.{k}"


def norm_axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def is_power_of_two(x: float) -> bool:
    """True for ``2**k`` (any integer k, negative included), exactly representable as a float."""
    if not np.isfinite(x) or x <= 0:
        return False
    m, _ = np.frexp(x)
    return m == 0.5


def rebuild(graph: Graph, ops: list[O.Op]) -> Graph:
    """``graph`` with ``ops`` (dead values are left to ``eliminate_dead_ops``); verified."""
    return graph.with_ops(ops)
