"""Clean-up of a freshly traced op list: layout noise out, dead values out.

Models written for PyTorch move axes around for the library's sake (``BatchNorm1d`` wants channels
on axis 1, so CIFAR Spikformer transposes, normalizes and transposes back). These rewrites remove
what is only layout, so later passes see the network itself. Each keeps the values bit for bit.
"""
from __future__ import annotations

from spikec.ir import ops as O
from spikec.ir.types import ValueSpec


def _specs(ops: list[O.Op]) -> dict[str, ValueSpec]:
    specs: dict[str, ValueSpec] = {}
    for op in ops:
        specs[op.name] = op.infer([specs[i] for i in op.inputs])
    return specs


def _consumers(ops: list[O.Op]) -> dict[str, list[O.Op]]:
    uses: dict[str, list[O.Op]] = {op.name: [] for op in ops}
    for op in ops:
        for i in op.inputs:
            uses[i].append(op)
    return uses


def _rename_uses(ops: list[O.Op], old: str, new: str) -> None:
    for op in ops:
        if old in op.inputs:
            op.inputs = tuple(new if i == old else i for i in op.inputs)


def fold_transpose_batchnorm(ops: list[O.Op]) -> list[O.Op]:
    """# transpose(p) -> batchnorm(axis a) -> transpose(p^-1)  =>  batchnorm(axis p[a])"""
    by_name = {op.name: op for op in ops}
    uses = _consumers(ops)
    specs = _specs(ops)
    drop: set[str] = set()
    for bn in ops:
        if not isinstance(bn, O.BatchNorm):
            continue
        first = by_name[bn.inputs[0]]
        after = uses[bn.name]
        if not (isinstance(first, O.Transpose) and len(uses[first.name]) == 1 and len(after) == 1
                and isinstance(after[0], O.Transpose)):
            continue
        second = after[0]
        perm = first.perm
        inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
        if tuple(second.perm) != inverse:
            continue
        axis = bn.axis % len(specs[bn.name].shape)
        bn.axis = perm[axis]
        bn.inputs = first.inputs
        _rename_uses(ops, second.name, bn.name)
        drop |= {first.name, second.name}
    return [op for op in ops if op.name not in drop]


def merge_layout_ops(ops: list[O.Op]) -> list[O.Op]:
    """# reshape(reshape(x)) -> reshape(x); transpose(q, transpose(p, x)) -> transpose(p[q], x);
    # reshape to x's own shape, identity transpose -> x"""
    changed = True
    while changed:
        changed = False
        by_name = {op.name: op for op in ops}
        uses = _consumers(ops)
        specs = _specs(ops)
        for op in ops:
            if not isinstance(op, (O.Reshape, O.Transpose)):
                continue
            src = by_name[op.inputs[0]]
            if type(src) is type(op) and len(uses[src.name]) == 1:
                if isinstance(op, O.Transpose):
                    op.perm = tuple(src.perm[q] for q in op.perm)
                op.inputs = src.inputs
                ops = [o for o in ops if o is not src]
                changed = True
                break
            x = specs[op.inputs[0]]
            if specs[op.name].shape == x.shape and (
                    isinstance(op, O.Reshape) or tuple(op.perm) == tuple(range(len(op.perm)))):
                _rename_uses(ops, op.name, op.inputs[0])
                ops = [o for o in ops if o is not op]
                changed = True
                break
    return ops


def drop_dead(ops: list[O.Op]) -> list[O.Op]:
    """Keep the inputs and the ops some output depends on."""
    by_name = {op.name: op for op in ops}
    live = set()
    todo = [op.name for op in ops if isinstance(op, O.Output)]
    while todo:
        name = todo.pop()
        if name not in live:
            live.add(name)
            todo.extend(by_name[name].inputs)
    return [op for op in ops if op.name in live or not op.inputs]


def simplify(ops: list[O.Op]) -> list[O.Op]:
    """All the clean-ups above, in order (dead ops first so that single-use tests are exact)."""
    ops = drop_dead(ops)
    ops = fold_transpose_batchnorm(ops)
    ops = merge_layout_ops(ops)
    return drop_dead(ops)


__all__ = ["simplify", "fold_transpose_batchnorm", "merge_layout_ops", "drop_dead"]
