"""The one rewrite mechanism of the passes, and small helpers they share.

A local rewrite is a ``Rule``: a ``pattern -> replacement`` function over ops of some types that
returns a ``Rewrite`` (new ops, removed ops, renamed values) or None, and never edits an op.
``rewrite(graph, rules)`` applies rules to a fixpoint and verifies the result once (after every
rule with ``SPIKEC_VERIFY_EACH_RULE=1``). The float passes and the torch frontend's clean-up use it.

A pass never edits the ops of the graph it was given: it builds new op objects (``dataclasses.replace``)
and returns a new ``Graph`` (``Graph.with_ops`` verifies it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from spikec.errors import SpikecError
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.types import ValueSpec

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


def norm_axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def is_power_of_two(x: float) -> bool:
    """True for ``2**k`` (any integer k, negative included), exactly representable as a float."""
    if not np.isfinite(x) or x <= 0:
        return False
    m, _ = np.frexp(x)
    return m == 0.5


# ----------------------------------------------------------------------------- the rewrite driver
#: Set to 1 to verify the graph after every applied rule (slow; names the rule that broke it).
VERIFY_EACH_RULE_ENV = "SPIKEC_VERIFY_EACH_RULE"


@dataclass(frozen=True)
class Rewrite:
    """What a rule asks for, in terms of the op list it saw.

    Attributes
    ----------
    replace : new ops, each put where the op of the same name was (a rule may give an op the name
        of another op it replaces: the two swap roles).
    remove : names of ops to drop.
    rename : value ``old -> new``: every remaining reader of ``old`` reads ``new``.
    insert : new ops (names not yet in the graph), put in this order right before the first op of
        ``replace``; they may read only values produced before that op.
    """

    replace: tuple[O.Op, ...] = ()
    remove: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    insert: tuple[O.Op, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A ``pattern -> replacement`` rewrite: ``fn(op, view)`` for ops of the types ``on``,
    returning a ``Rewrite`` or None (no match). It never edits an op: it builds new ones."""

    name: str
    on: tuple[type, ...]
    fn: Callable[[O.Op, "View"], Rewrite | None]


def rule(*on: type):
    """Decorator: the function becomes a ``Rule`` over ops of the types ``on``."""
    def wrap(fn):
        return Rule(fn.__name__, tuple(on), fn)
    return wrap


class View:
    """What a rule may look at: producers, consumers and types of the op list of one sweep.

    Every name a rule reads through the view is recorded, so that the driver can tell whether a
    rewrite applied earlier in the same sweep made the rule's answer stale."""

    def __init__(self, ops: list[O.Op]):
        self._ops = ops
        self._prod = producers(ops)
        self._cons = consumers(ops)
        self._specs: dict[str, ValueSpec] | None = None
        self.read: set[str] = set()

    def producer(self, name: str) -> O.Op:
        self.read.add(name)
        return self._prod[name]

    def consumers(self, name: str) -> list[O.Op]:
        self.read.add(name)
        self.read.update(o.name for o in self._cons.get(name, []))
        return self._cons.get(name, [])

    def sole_consumer(self, name: str) -> O.Op | None:
        """The one op reading ``name``, or None when zero or several ops read it."""
        users = self.consumers(name)
        return users[0] if len(users) == 1 else None

    def is_value(self, name: str) -> bool:
        """Whether some op of the list produces ``name`` (to pick fresh names for new ops)."""
        return name in self._prod

    def spec(self, name: str) -> ValueSpec:
        if self._specs is None:
            self._specs = infer_specs(self._ops)
        self.read.add(name)
        return self._specs[name]


def infer_specs(ops: Iterable[O.Op]) -> dict[str, ValueSpec]:
    """The type of every value of a topologically ordered op list (no other checks)."""
    specs: dict[str, ValueSpec] = {}
    for op in ops:
        specs[op.name] = op.infer([specs[i] for i in op.inputs])
    return specs


def apply_rules(ops: list[O.Op], rules: Iterable[Rule], *,
                verify_each: Callable[[list[O.Op], str], None] | None = None) -> list[O.Op]:
    """Apply ``rules`` to ``ops`` until none matches (a fixpoint); returns the new op list.

    One sweep visits the ops in order and tries the rules of each op's type in the order given;
    every rewrite whose rule read nothing that an earlier rewrite of the same sweep changed is
    applied, the others wait for the next sweep. Sweeps repeat until one applies nothing. The ops
    given are never edited; ``verify_each(ops, rule_name)`` runs after every applied rewrite.
    """
    by_type: dict[type, list[Rule]] = {}
    for r in rules:
        for t in r.on:
            by_type.setdefault(t, []).append(r)
    ops = list(ops)
    while True:
        view = View(ops)
        touched: set[str] = set()
        edits: list[Rewrite] = []
        for op in ops:
            for r in by_type.get(type(op), ()):
                view.read = {op.name, *op.inputs}
                rw = r.fn(op, view)
                if rw is None:
                    continue
                if view.read & touched:
                    break                       # stale: retried in the next sweep
                touched |= view.read | _names(rw)
                edits.append(rw)
                if verify_each is not None:
                    ops_now = _apply(ops, edits)
                    verify_each(ops_now, r.name)
                break
        if not edits:
            return ops
        ops = _apply(ops, edits)


def _names(rw: Rewrite) -> set[str]:
    out = {o.name for o in (*rw.replace, *rw.insert)} | set(rw.remove)
    for old, new in rw.rename:
        out |= {old, new}
    return out


def _apply(ops: list[O.Op], edits: list[Rewrite]) -> list[O.Op]:
    replace_by = {o.name: o for rw in edits for o in rw.replace}
    remove = {n for rw in edits for n in rw.remove}
    rename = {old: new for rw in edits for old, new in rw.rename}
    insert_at = {rw.replace[0].name: rw.insert for rw in edits if rw.insert}
    out = []
    for op in ops:
        if op.name in remove and op.name not in replace_by:
            continue
        for new in (*insert_at.get(op.name, ()), replace_by.get(op.name, op)):
            if rename and any(i in rename for i in new.inputs):
                new = replace(new, inputs=tuple(_final(rename, i) for i in new.inputs))
            out.append(new)
    return out


def _final(rename: dict[str, str], name: str) -> str:
    while name in rename:
        name = rename[name]
    return name


def rewrite(graph: Graph, rules: Iterable[Rule]) -> Graph:
    """``graph`` with ``rules`` applied to a fixpoint (``apply_rules``), verified once at the end
    (after every applied rewrite when the environment sets ``SPIKEC_VERIFY_EACH_RULE=1``).
    Returns ``graph`` itself when no rule matched."""
    each = None
    if os.environ.get(VERIFY_EACH_RULE_ENV) == "1":
        def each(ops, name):
            try:
                graph.with_ops(ops)
            except SpikecError as e:
                raise type(e)(f"after rewrite rule {name!r}: {e}") from None
    ops = apply_rules(graph.ops, rules, verify_each=each)
    if len(ops) == len(graph.ops) and all(a is b for a, b in zip(ops, graph.ops)):
        return graph
    return graph.with_ops(ops)
