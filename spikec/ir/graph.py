"""The graph: an ordered list of ops (topological), each producing one named value."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from spikec.errors import IRError, ShapeError
from spikec.ir.ops import OP_TYPES, Op, Output
from spikec.ir.types import Domain, ValueSpec


@dataclass(eq=False)
class Graph:
    """A spiking network as typed ops over named values.

    Attributes
    ----------
    ops : list of Op
        In topological order: every input of an op is produced by an earlier op.
    timesteps : int
        Number of time steps T one inference runs.
    meta : dict
        JSON-able facts about where the graph came from (model name, arch, preprocessing, ...).
    domain : Domain ('float' | 'fixed')
        ``float``: the traced network (float weights). ``fixed``: the quantized integer network
        of a target; only ``spikec.ir.fixed.FIXED_DOMAIN_OPS`` may appear in it.
    """

    ops: list[Op]
    timesteps: int = 1
    meta: dict = field(default_factory=dict)
    domain: str = "float"

    def __post_init__(self):
        self._specs: dict[str, ValueSpec] | None = None

    # -- lookup --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise IRError(f"no op named {name!r}")

    @property
    def specs(self) -> dict[str, ValueSpec]:
        """Type of every value (runs the verifier once and caches)."""
        if self._specs is None:
            self._specs = verify(self)
        return self._specs

    def spec(self, name: str) -> ValueSpec:
        return self.specs[name]

    @property
    def inputs(self) -> list[Op]:
        """Source ops (``input``, ``graded_input``): the ops that read no value."""
        return [op for op in self.ops if op.ARITY == 0]

    @property
    def outputs(self) -> list[Op]:
        return [op for op in self.ops if isinstance(op, Output)]

    def consumers(self, name: str) -> list[Op]:
        return [op for op in self.ops if name in op.inputs]

    def with_ops(self, ops: Iterable[Op], **changes) -> "Graph":
        """A new graph with other ops (same timesteps and meta unless changed); verified."""
        g = replace(self, ops=list(ops), **changes)
        g.meta = dict(g.meta)
        verify(g)
        return g

    def param_count(self) -> int:
        return sum(op.param_count() for op in self.ops)

    def to_networkx(self):
        """A ``networkx.DiGraph`` view: one node per op (attributes ``op``, ``spec``), one edge per
        value use (attribute ``port``: the input position)."""
        import networkx as nx

        g = nx.DiGraph()
        for op in self.ops:
            g.add_node(op.name, op=op, spec=self.specs[op.name])
            for port, src in enumerate(op.inputs):
                g.add_edge(src, op.name, port=port)
        return g

    # -- equality (structural, bit-exact on arrays) ---------------------------------------
    def __eq__(self, other) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        if (self.timesteps, self.domain, self.meta) != (other.timesteps, other.domain, other.meta):
            return False
        return len(self.ops) == len(other.ops) and all(
            ops_equal(a, b) for a, b in zip(self.ops, other.ops))


def ops_equal(a: Op, b: Op) -> bool:
    if type(a) is not type(b):
        return False
    va, vb = vars(a), vars(b)
    if va.keys() != vb.keys():
        return False
    for k, x in va.items():
        y = vb[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
                return False
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                return False
        elif x != y:
            return False
    return True


def verify(graph: Graph) -> dict[str, ValueSpec]:
    """Check the graph and return the type of every value.

    Checks: known op types, unique names, inputs defined before use (no dangling values, no
    cycles), arity, shapes and kinds (each op's ``infer``), at least one input and one output,
    ``timesteps >= 1``. Raises ``IRError`` or ``ShapeError`` naming the op.
    """
    from spikec.ir.fixed import FIXED_DOMAIN_OPS, FIXED_ONLY_OPS

    if not isinstance(graph.timesteps, int) or graph.timesteps < 1:
        raise IRError(f"timesteps must be a positive integer, got {graph.timesteps!r}")
    if not Domain.has(graph.domain):
        raise IRError(f"graph domain must be 'float' or 'fixed', not {graph.domain!r}")
    specs: dict[str, ValueSpec] = {}
    for op in graph.ops:
        if OP_TYPES.get(op.OPCODE) is not type(op):
            raise IRError(f"op {op.name!r}: type {type(op).__name__} is not a registered op")
        if graph.domain == Domain.FIXED and type(op) not in FIXED_DOMAIN_OPS:
            raise IRError(f"op {op.name!r} ({op.OPCODE}) is a float op in a fixed-point graph")
        if graph.domain == Domain.FLOAT and type(op) in FIXED_ONLY_OPS:
            raise IRError(f"op {op.name!r} ({op.OPCODE}) is a fixed-point op in a float graph")
        if not op.name or op.name in specs:
            raise IRError(f"op name {op.name!r} is empty or used twice")
        if op.ARITY is not None and len(op.inputs) != op.ARITY:
            raise IRError(f"op {op.name!r} ({op.OPCODE}) takes {op.ARITY} inputs, "
                          f"has {len(op.inputs)}")
        missing = [i for i in op.inputs if i not in specs]
        if missing:
            raise IRError(f"op {op.name!r} ({op.OPCODE}) reads {missing[0]!r}, which no earlier op "
                          "produces")
        try:
            spec = op.infer([specs[i] for i in op.inputs])
        except ShapeError:
            raise
        except (ValueError, TypeError, AttributeError, IndexError) as e:
            raise ShapeError(f"op {op.name!r} ({op.OPCODE}): malformed fields: {e}") from None
        specs[op.name] = spec
    if not any(not op.inputs for op in graph.ops):
        raise IRError("graph has no input op")
    if not graph.outputs:
        raise IRError("graph has no output op")
    graph._specs = specs
    return specs
