"""Neuron passes: constant scales into thresholds, spikingjelly's LIF into the CUBA form.

The canonical neuron (what the quantizer maps onto Loihi's CUBA compartment) is
``LIF(tau, decay_input=False, v_reset=0)``::

    H[t] = V[t-1] - V[t-1] / tau + X[t]        S[t] = H[t] >= v_threshold       V[t] = H[t] (1 - S[t])

With ``du = 4095`` (the current forgets every step: ``u = a_in << 6``) and ``dv = 4096 / tau`` Loihi
computes ``v[t] = decay(v[t-1]) + (a_in << 6) + bias``: the same recurrence on ``v = K H`` for a
scale ``K``. See docs/compiler.md for why this is exact for integer inputs.
"""
from __future__ import annotations

from dataclasses import replace

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes.rewrite import LAYOUT_OPS, Rewrite, View, is_power_of_two, rewrite, rule


def _scaled_lif(lif: O.LIF, c: float) -> O.LIF:
    """The LIF that, fed ``x``, spikes like ``lif`` fed ``c * x`` (c > 0)."""
    v_reset = None if lif.v_reset is None else lif.v_reset / c
    return replace(lif, v_threshold=lif.v_threshold / c, v_reset=v_reset)


def fold_scale(graph: Graph) -> Graph:
    """Fold a constant ``Scale(c)`` into the LIF it feeds, through layout ops.

    Rule::

        lif(layout*(scale(x, c)), v_th, v_reset) -> lif(layout*(x), v_th / c, v_reset / c)

    The LIF's state is the old one divided by ``c`` and its spikes are the same. Every op between the
    scale and the LIF must be a reshape/transpose read only by the next op. Applied only for
    ``c = 2**k`` (then ``x * c`` and ``v_th / c`` are exact in binary floating point, so the spikes
    agree bit for bit); any other ``c`` is left in place (the quantizer folds it into the threshold
    at integer precision and says so in its notes). Two scales in a row are merged first
    (``scale(scale(x, a), b) -> scale(x, a b)``).
    """
    return rewrite(graph, SCALE_RULES)


@rule(O.Scale)
def merge_scales(sc: O.Scale, v: View) -> Rewrite | None:
    """# scale(scale(x, a), b) -> scale(x, a b)      (the inner scale read once)"""
    inner = v.producer(sc.inputs[0])
    if isinstance(inner, O.Scale) and v.sole_consumer(inner.name) is sc:
        merged = replace(sc, inputs=inner.inputs, factor=inner.factor * sc.factor)
        return Rewrite(replace=(merged,), remove=(inner.name,))
    return None


@rule(O.Scale)
def scale_into_lif(sc: O.Scale, v: View) -> Rewrite | None:
    """# lif(layout*(scale(x, 2**k)), v_th, v_reset) -> lif(layout*(x), v_th / 2**k, v_reset / 2**k)"""
    if not is_power_of_two(sc.factor):
        return None
    user = v.sole_consumer(sc.name)
    chain = []
    while isinstance(user, LAYOUT_OPS):
        chain.append(user)
        user = v.sole_consumer(user.name)
    if not isinstance(user, O.LIF):
        return None
    lif = _scaled_lif(user, sc.factor)
    if not chain:
        return Rewrite(replace=(replace(lif, inputs=sc.inputs),), remove=(sc.name,))
    return Rewrite(replace=(replace(chain[0], inputs=sc.inputs), lif), remove=(sc.name,))


SCALE_RULES = (merge_scales, scale_into_lif)


def canonicalize_lif(graph: Graph) -> Graph:
    """Rewrite every ``decay_input`` LIF with a power-of-two ``tau`` into the canonical form.

    Rule (the state is scaled by ``tau``)::

        lif(x, tau, decay_input=True, v_th, v_reset)
            -> lif(x, tau, decay_input=False, tau v_th, tau v_reset)

    ``H = V + (X - (V - v_r)) / tau``; with ``H' = tau H`` and ``V' = tau V``,
    ``H' = V' - (V' - tau v_r) / tau + X``: the input is no longer divided by ``tau`` and the 1/tau
    moves into the threshold. For ``tau = 2**k`` the rescaling is exact; the two forms then differ only
    in the association of the float sum (exact for integer or dyadic inputs, last-ulp otherwise).
    LIFs that are already canonical, or have another ``tau``, are left unchanged.
    """
    return rewrite(graph, (canonical_lif,))


@rule(O.LIF)
def canonical_lif(op: O.LIF, v: View) -> Rewrite | None:
    """# lif(x, tau, decay_input=True, v_th, v_reset) -> lif(x, tau, False, tau v_th, tau v_reset)"""
    if not (op.decay_input and is_power_of_two(op.tau)):
        return None
    tau = float(op.tau)
    v_reset = None if op.v_reset is None else op.v_reset * tau
    return Rewrite(replace=(replace(op, decay_input=False, v_threshold=op.v_threshold * tau,
                                    v_reset=v_reset),))
