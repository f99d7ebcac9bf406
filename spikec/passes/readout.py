"""The classifier read-out in a form a chip can accumulate."""
from __future__ import annotations

from dataclasses import replace

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes.rewrite import consumers, norm_axis, producers, sole_consumer


def fold_readout(graph: Graph) -> Graph:
    """Move the classifier in front of the token and time means.

    Rule (``x``: per-step tokens, ``f`` the axis that survives the token mean)::

        output(linear(time_mean(mean(x, axes)), W, b))
            -> output(time_mean(mean(linear(x, W, b, axis f), axes)))

    (any order of ``mean``, ``time_mean`` and ``linear`` in the chain is accepted). Both sides equal
    ``W (1/(N T)) sum_{t,n} x[t, n] + b``. The new form applies the classifier's synapses to every
    token at every step and sums, which is what an on-chip accumulator does: the quantizer maps it
    onto a dense synapse and a ``readout`` (``sum_axes`` = the token axes, ``scale`` = ``1/(N T)``,
    ``offset`` = ``b``). The ops keep their names.
    """
    ops = list(graph.ops)
    specs = graph.specs
    prod, cons = producers(ops), consumers(ops)
    for out in [op for op in ops if isinstance(op, O.Output)]:
        chain = []
        cur = prod[out.inputs[0]]
        while isinstance(cur, (O.Mean, O.TimeMean, O.Linear)) and len(chain) < 3:
            if chain and sole_consumer(cons, cur.name) is not chain[-1]:
                break
            chain.append(cur)
            cur = prod[cur.inputs[0]]
        chain.reverse()  # from the op reading x to the op feeding the output
        kinds = [type(o) for o in chain]
        if sorted(k.__name__ for k in kinds) != ["Linear", "Mean", "TimeMean"]:
            continue
        if kinds == [O.Linear, O.Mean, O.TimeMean]:
            continue  # already folded
        lin = next(o for o in chain if isinstance(o, O.Linear))
        mean = next(o for o in chain if isinstance(o, O.Mean))
        tmean = next(o for o in chain if isinstance(o, O.TimeMean))
        x_name = chain[0].inputs[0]
        x_spec = specs[x_name]
        axes = sorted({norm_axis(a, len(x_spec.shape)) for a in mean.axes})
        if kinds.index(O.Linear) < kinds.index(O.Mean):
            continue  # linear before the token mean: not the classifier pattern
        rest = [i for i in range(len(x_spec.shape)) if i not in axes]
        if len(rest) != 1 or len(specs[lin.inputs[0]].shape) != 1:
            continue
        f = rest[0]
        new_lin = replace(lin, inputs=(x_name,), axis=f)
        new_mean = replace(mean, inputs=(new_lin.name,), axes=tuple(axes))
        new_tmean = replace(tmean, inputs=(new_mean.name,))
        new_out = replace(out, inputs=(new_tmean.name,))
        edits = {id(lin): None, id(mean): None, id(tmean): None, id(out): None}
        pos = min(ops.index(o) for o in chain)
        rest_ops = [o for o in ops if id(o) not in edits]
        ops = rest_ops[:pos] + [new_lin, new_mean, new_tmean] + rest_ops[pos:] + [new_out]
        ops = _topological(ops)
        return fold_readout(graph.with_ops(ops))
    return graph


def _topological(ops: list[O.Op]) -> list[O.Op]:
    """A stable topological order of ``ops`` (they form a DAG)."""
    done: set[str] = set()
    pending = list(ops)
    out = []
    while pending:
        rest = []
        for op in pending:
            if all(i in done for i in op.inputs):
                out.append(op)
                done.add(op.name)
            else:
                rest.append(op)
        if len(rest) == len(pending):
            out.extend(rest)  # a cycle: let the verifier name it
            break
        pending = rest
    return out
