"""Max-pooling of currents before a neuron, moved after the neuron where that is exact.

A chip cannot take a max of currents (synapses sum, they do not compare), but it can take a max of
spikes (an OR). With one time step a LIF is an elementwise nondecreasing function of its input
(``S = X / tau >= v_threshold`` from a zero membrane, or ``X >= v_threshold``), and a max-pool
commutes with every such function: ``LIF(maxpool(x)) == maxpool(LIF(x))`` exactly (the pool's
-inf padding gives no spike, the spike pool's padding none either). Over several steps the
membrane carries the max of one step into the next and the two differ, so the quantizer's
refusal stands there.
"""
from __future__ import annotations

from dataclasses import replace

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes.rewrite import consumers, producers, sole_consumer


def pool_after_neuron(graph: Graph) -> Graph:
    """With ``graph.timesteps == 1``: ``lif(maxpool2d(x)) -> maxpool2d(lif(x))`` for every LIF
    that is the only reader of a max-pool. The LIF and the pool keep their names; readers of the
    LIF read the pool. Other graphs are returned unchanged."""
    if graph.timesteps != 1:
        return graph
    prod, cons = producers(graph.ops), consumers(graph.ops)
    moved: dict[str, O.MaxPool2d] = {}  # LIF name -> the pool now after it
    for op in graph.ops:
        if isinstance(op, O.LIF):
            pool = prod.get(op.inputs[0])
            if isinstance(pool, O.MaxPool2d) and sole_consumer(cons, pool.name) is op:
                moved[op.name] = pool
    if not moved:
        return graph
    pools = {p.name for p in moved.values()}
    after = {lif: pool.name for lif, pool in moved.items()}
    ops = []
    for op in graph.ops:
        if op.name in pools:
            continue
        if any(i in after for i in op.inputs):
            op = replace(op, inputs=tuple(after.get(i, i) for i in op.inputs))
        if op.name in moved:
            pool = moved[op.name]
            ops += [replace(op, inputs=pool.inputs), replace(pool, inputs=(op.name,))]
        else:
            ops.append(op)
    return graph.with_ops(ops)


__all__ = ["pool_after_neuron"]
