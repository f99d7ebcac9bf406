"""The token mean of a membrane-shortcut stream, folded into the synapses that make the stream.

The Spike-driven Transformer's head reads ``head_lif(mean_N(x))``, where ``x`` is the stream of real
currents (``stem conv + rpe conv + sum over blocks of attn proj + mlp fc2``, every term a synapse
of spikes). A chip has no "mean of currents" before a neuron; it has synapses. The mean of a sum of
synapse outputs is a sum of means, and the mean of a synapse is itself a synapse (a linear map of
its spikes), so the neuron can be fed by one synapse op per term, which the quantizer maps as a
membrane shortcut (``spikec/quantize/membrane.py``).
"""
from __future__ import annotations

import numpy as np

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.types import Kind
from spikec.memory import require_memory
from spikec.passes.compose import bias_or_zeros, dense_weight
from spikec.passes.rewrite import Rewrite, View, norm_axis, rewrite, rule

_SYNAPSES = (O.Conv2d, O.Linear)


def fold_mean_of_currents(graph: Graph) -> Graph:
    """Feed a LIF that reads the mean of a sum of synapse outputs by one synapse per term.

    Rules (``x_k`` the spikes or counts each synapse reads, ``c`` the one axis the mean keeps,
    ``N`` the number of positions it averages)::

        lif(mean(reshape?(sum_k syn_k(x_k)), axes))
            -> lif(sum_k term_k)
        term_k = linear(reshape(reduce_sum(x_k, all but c), [C_in]), W_k / N, b_k)
                                             syn_k pointwise: a linear along c, a 1x1 conv
        term_k = linear(reshape(x_k, [|x_k|]), M_k, b_k)                    any other conv

    Both are the exact composed map ``mean o syn_k`` (``b_k`` passes through the mean). A
    pointwise synapse applies one matrix at every position, so its mean is that matrix applied
    to the token count ``sum_n x_k[n]`` (an integer: ``C_in x N`` unit synapses into count
    neurons plus ``C_out x C_in`` weights on a chip, instead of ``C_out x C_in x N``). A conv
    with a larger kernel (the stem's 3x3 convs) sees fewer taps at the borders; its dense map is
    the conv's adjoint applied to ones::

        M[o, ci, y, x] = (1/N) sum_{u,v} W[o, ci, u, v] [y = s_h i + d_h u - p_h for some i < H_out]
                                                      [x = s_w j + d_w v - p_w for some j < W_out]

    so padding (border taps fall off), stride, dilation and groups (zero blocks) are respected.
    Synapses of one kind reading the same values share one linear (their maps summed); a synapse
    the sum reaches by two paths counts twice. The optional reshape may only merge or split the
    averaged axes (``flatten(2)`` then ``mean(-1)``); inside the sum, reshapes that carry the kept
    axis unchanged are looked through (Meta-SpikeFormer's MLP reshapes its 1x1 conv's
    ``[C, N]`` output to ``[C, H, W]``: the mean over the other axes does not see it). The ops before the mean stay for their other
    readers (``eliminate_dead_ops`` drops the rest); the last new op takes the mean's name.

    Matches only when every reader of the mean is a LIF and every term is a conv2d/linear of
    spikes or counts along the kept axis; anything else is left for the quantizer to refuse. A
    dense map needs ``C_out x |x_k|`` float64 entries: ``spikec.memory.require_memory`` refuses
    it past the memory budget, naming the mean, the synapse and the bytes.
    """
    return rewrite(graph, MEAN_RULES)


@rule(O.Mean)
def mean_of_currents_into_synapses(mean: O.Mean, v: View) -> Rewrite | None:
    """# lif(mean(reshape?(sum_k syn_k(x_k)))) -> lif(sum_k linear(count|flat(x_k), mean o syn))"""
    readers = v.consumers(mean.name)
    if not readers or not all(isinstance(r, O.LIF) for r in readers):
        return None
    src, axes = _averaged(mean, v)
    shape = v.spec(src).shape
    kept = [a for a in range(len(shape)) if a not in axes]
    if len(kept) != 1:
        return None
    terms = _summed_synapses(src, kept[0], v)
    if terms is None:
        return None
    for syn, _ in terms.values():
        if not v.spec(syn.inputs[0]).kind.is_integer:
            return None
    groups: dict[tuple[str, bool], list] = {}   # (spikes read, counted) -> [synapse, M, b]
    for syn, times in terms.values():
        x_shape = v.spec(syn.inputs[0]).shape
        counted = _pointwise(syn)
        m = times * (_count_map(syn, v.spec(syn.name).shape) if counted else
                     _dense_map(syn, x_shape, v.spec(syn.name).shape, mean.name))
        b = times * bias_or_zeros(syn)
        key = (syn.inputs[0], counted)
        if key in groups:
            groups[key][1] += m
            groups[key][2] += b
        else:
            groups[key] = [syn, m, b]
    new = _term_ops(mean.name, groups, v)
    return Rewrite(replace=(new[-1],), insert=tuple(new[:-1]))


def _term_ops(name: str, groups: dict, v: View) -> list[O.Op]:
    """The ops feeding the neuron: per group a linear on the token count (pointwise terms) or on
    the flattened input (dense maps), then their sum; the last op is named ``name``."""
    new, values = [], []
    for (x, counted), (syn, m, b) in groups.items():
        x_shape = v.spec(x).shape
        if counted:
            channel = _synapse_axis(syn, len(x_shape))
            total = _fresh(v, f"{name}.{syn.name}.count")
            others = tuple(a for a in range(len(x_shape)) if a != channel)
            flat = _fresh(v, f"{name}.{syn.name}.counts")
            new += [O.ReduceSum(total, (x,), axes=others),
                    O.Reshape(flat, (total,), shape=(x_shape[channel],))]
        else:
            flat = _fresh(v, f"{name}.{syn.name}.flat")
            new.append(O.Reshape(flat, (x,), shape=(int(np.prod(x_shape)),)))
        out = name if len(groups) == 1 else _fresh(v, f"{name}.{syn.name}")
        dtype = syn.weight.dtype
        new.append(O.Linear(out, (flat,), weight=m.reshape(len(m), -1).astype(dtype),
                            bias=b.astype(dtype), axis=0))
        values.append(out)
    acc = values[0]
    for k, val in enumerate(values[1:], start=1):
        out = name if k == len(values) - 1 else _fresh(v, f"{name}.add{k}")
        new.append(O.Add(out, (acc, val)))
        acc = out
    return new


MEAN_RULES = (mean_of_currents_into_synapses,)


def _averaged(mean: O.Mean, v: View) -> tuple[str, set[int]]:
    """The value the mean averages and its averaged axes, seen through a reshape that keeps the
    unaveraged axes as a leading or trailing block (``[C, H, W] -> [C, H W]``, mean over 1)."""
    x = mean.inputs[0]
    out = v.spec(x).shape
    axes = {norm_axis(a, len(out)) for a in mean.axes}
    src = v.producer(x)
    if not isinstance(src, O.Reshape):
        return x, axes
    inner = v.spec(src.inputs[0]).shape
    kept = [a for a in range(len(out)) if a not in axes]
    k = len(kept)
    if kept == list(range(k)) and out[:k] == inner[:k]:
        return src.inputs[0], set(range(k, len(inner)))
    if kept == list(range(len(out) - k, len(out))) and k and out[-k:] == inner[-k:]:
        return src.inputs[0], set(range(len(inner) - k))
    return x, axes


def _summed_synapses(value: str, channel: int, v: View) -> dict[str, tuple[O.Op, int]] | None:
    """The conv2d/linear ops whose outputs ``value`` sums through ``add`` ops and reshapes that
    keep the ``channel`` axis (the axis the mean keeps, in ``value``'s frame) as it is, each with
    how many paths reach it (in the order met); None when something else contributes or a
    synapse's own output axis is not that channel."""
    op = v.producer(value)
    if isinstance(op, _SYNAPSES):
        if _synapse_axis(op, len(v.spec(value).shape)) != channel:
            return None
        return {op.name: (op, 1)}
    if isinstance(op, O.Reshape):
        inner = _same_axis(v.spec(value).shape, v.spec(op.inputs[0]).shape, channel)
        return None if inner is None else _summed_synapses(op.inputs[0], inner, v)
    if not isinstance(op, O.Add) or v.spec(value).kind is not Kind.REAL:
        return None
    out: dict[str, tuple[O.Op, int]] = {}
    for i in op.inputs:
        part = _summed_synapses(i, channel, v)
        if part is None:
            return None
        for name, (syn, times) in part.items():
            out[name] = (syn, out[name][1] + times if name in out else times)
    return out


def _synapse_axis(syn: O.Op, rank: int) -> int:
    """The axis a synapse's input and output features lie on (a conv2d's channels come first)."""
    return 0 if isinstance(syn, O.Conv2d) else norm_axis(syn.axis, rank)


def _same_axis(out: tuple[int, ...], inner: tuple[int, ...], axis: int) -> int | None:
    """The axis of ``inner`` that a row-major reshape ``inner -> out`` carries unchanged onto
    ``out``'s ``axis`` (same size, same number of elements before it), or None. The mean over
    every other axis does not see how a reshape rearranges those."""
    before = int(np.prod(out[:axis]))
    for a in range(len(inner)):
        if inner[a] == out[axis] and int(np.prod(inner[:a])) == before:
            return a
    return None


def _pointwise(syn: O.Op) -> bool:
    """Whether ``syn`` applies one matrix at every position (a linear, a 1x1 conv with unit
    stride and no padding): then ``mean(syn(x)) = W (sum_positions x) / N + b``."""
    if isinstance(syn, O.Linear):
        return True
    return (syn.weight.shape[2:] == (1, 1) and tuple(syn.stride) == (1, 1)
            and tuple(syn.padding) == (0, 0))


def _count_map(syn: O.Op, y_shape: tuple[int, ...]) -> np.ndarray:
    """``W / N [C_out, C_in]`` of a pointwise synapse (``N``: positions averaged)."""
    if isinstance(syn, O.Linear):
        w = syn.weight.astype(np.float64)
    else:
        w = dense_weight(syn)[:, :, 0, 0]
    return w / (int(np.prod(y_shape)) // w.shape[0])


def _dense_map(conv: O.Conv2d, x_shape: tuple[int, ...], y_shape: tuple[int, ...],
               where: str) -> np.ndarray:
    """``M [C_out, C_in, H, W]`` (float64) with ``mean(conv(x)) - b = sum M x`` (the docstring's
    adjoint of the conv applied to ones), after asking the memory budget for it."""
    cout, n_in = conv.weight.shape[0], int(np.prod(x_shape))
    require_memory(16.0 * cout * n_in,
                   f"folding the token mean {where!r} into a dense synapse on the input of "
                   f"{conv.name!r} ({cout} x {n_in} weights)")
    full = dense_weight(conv)
    taps = [_taps(y_shape[1 + d], x_shape[1 + d], full.shape[2 + d], conv.stride[d],
                  conv.padding[d], conv.dilation[d]) for d in range(2)]
    return np.einsum("ocuv,uy,vx->ocyx", full, *taps) / (y_shape[1] * y_shape[2])


def _taps(n_out: int, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """``t[u, y]``: how many output positions read input position ``y`` through kernel tap ``u``."""
    t = np.zeros((k, n_in))
    for u in range(k):
        y = s * np.arange(n_out) + d * u - p
        np.add.at(t[u], y[(y >= 0) & (y < n_in)], 1.0)
    return t


def _fresh(v: View, base: str) -> str:
    name, k = base, 1
    while v.is_value(name):
        name, k = f"{base}_{k}", k + 1
    return name
