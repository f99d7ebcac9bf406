"""Clean-up of a freshly traced op list: layout noise out, dead values out.

Models written for PyTorch move axes around for the library's sake (``BatchNorm1d`` wants channels
on axis 1, so CIFAR Spikformer transposes, normalizes and transposes back). These rewrites remove
what is only layout, so later passes see the network itself. Each keeps the values bit for bit.
The rules and the driver are the float passes' (``spikec.passes``).
"""
from __future__ import annotations

from spikec.ir import ops as O
from spikec.passes.affine import batchnorm_between_transposes
from spikec.passes.rewrite import apply_rules
from spikec.passes.structure import LAYOUT_RULES, live_ops


def simplify(ops: list[O.Op]) -> list[O.Op]:
    """Dead ops out (first, so that single-use tests are exact), then to a fixpoint::

        transpose(batchnorm(transpose(x, p), axis a), p^-1) -> batchnorm(x, axis p[a])
        transpose(x, identity), reshape(x, x.shape)         -> x
        transpose(transpose(x)), reshape(reshape(x))        -> one transpose / reshape

    then dead ops out again. The ops given are not edited."""
    ops = live_ops(ops)
    ops = apply_rules(ops, (batchnorm_between_transposes,))
    ops = apply_rules(ops, LAYOUT_RULES)
    return live_ops(ops)


__all__ = ["simplify"]
