"""The membrane-shortcut residual in the quantizer: neurons and read-outs fed by a sum of synapse
outputs (``x = x + bn(conv(lif(x)))``; docs/compiler.md, "Membrane-shortcut residual").

A LIF whose input is an ``add`` tree of conv2d/linear outputs becomes one ``cuba_lif`` with one
synapse op per term, all at the neuron's per-channel scale and exponent; a head that reads such a
sum (Spikingformer's ``head(mean(x))``) is composed with every term into one ``readout`` with
several synapse inputs. ``lower_membrane`` and ``lower_readout_of_currents`` take the quantizer's
``_Lowering`` state (``low``) and append to ``low.out``.
"""
from __future__ import annotations

import math

import numpy as np

from spikec import interp
from spikec.errors import UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.types import Kind
from spikec.passes.rewrite import LAYOUT_OPS
from spikec.quantize.bounds import worst_case_sums
from spikec.quantize.layers import (Ranges, _per_neuron, _valuation, apply_layout,
                                    quantize_current_sum, quantize_readout)
from spikec.quantize.numbers import (max_weight_scale, round_weights, sign_mode_of,
                                     truncation_offset, weight_grid)
from spikec.target.formats import SignMode


def current_terms(value: str, prod, specs) -> list[tuple[O.Op, list[O.Op]]] | None:
    """The synapses whose outputs ``value`` sums (a membrane shortcut), each with the layout ops
    between it and ``value``; None when ``value`` is not such a sum."""
    op = prod[value]
    if isinstance(op, (O.Conv2d, O.Linear)):
        return [(op, [])]
    if specs[value].kind is not Kind.REAL:
        return None
    if isinstance(op, O.Add):
        a, b = (current_terms(i, prod, specs) for i in op.inputs)
        return None if a is None or b is None else a + b
    if isinstance(op, LAYOUT_OPS):
        inner = current_terms(op.inputs[0], prod, specs)
        return None if inner is None else [(syn, ops + [op]) for syn, ops in inner]
    return None


def tree_ops(value: str, prod, specs) -> set[str]:
    """The adds and layout ops of a sum of synapse outputs (they get no fixed twin)."""
    op = prod[value]
    if isinstance(op, (O.Conv2d, O.Linear)):
        return set()
    return {op.name}.union(*(tree_ops(i, prod, specs) for i in op.inputs))


def term_mantissas(w: np.ndarray, k: float, fmt):
    """One summed synapse of a read-out at the read-out's scale ``k``: its own exponent (the
    widest mantissas with ``r = k / 2**(s + e)``), the symmetric mixed grid (exact in every Lava
    sign mode). Returns ``(mantissas, weight_exp [C_out], truncation offset, squared error)``."""
    s = fmt.weight_shift
    rows = w.astype(np.float64).reshape(w.shape[0], -1)
    mode = sign_mode_of(rows)
    hi = weight_grid(SignMode.MIXED, fmt)[1]
    r_max = min(max_weight_scale(rows, mode, fmt), hi / max(float(np.abs(rows).max()), 1e-300))
    e = fmt.weight_exp_min if not np.isfinite(r_max) else \
        min(max(math.ceil(math.log2(k / ((1 << s) * r_max))), fmt.weight_exp_min), fmt.weight_exp_max)
    r = k / 2.0 ** (s + e)
    q = round_weights(rows * r, mode, fmt)
    if mode is SignMode.MIXED:
        q = np.maximum(q, -hi)
    comp = truncation_offset(e, fmt) if e + _valuation(q) < 0 else 0.0
    sq = float(np.sum((q / r - rows) ** 2))
    return (q.reshape(w.shape).astype(np.int16), np.full(w.shape[0], e, np.int8), comp, sq)


def compose_head(head: O.Linear, syn: O.Op, chain: list[O.Op], name: str, specs):
    """``head(layout*(syn(x)))`` as one synapse op ``name`` on ``x`` and its layout ops (the
    channel count replaced by the class count), or None when the layout does not carry the
    synapse's channel axis onto the head's feature axis as a whole axis."""
    H = head.weight.astype(np.float64)
    shape = tuple(specs[syn.name].shape)
    ax = 0 if isinstance(syn, O.Conv2d) else syn.axis % len(shape)
    layout, prev = [], name
    for op in chain:
        if isinstance(op, O.Reshape):
            new = tuple(op.shape)
            pre, post = int(np.prod(shape[:ax])), int(np.prod(shape[ax + 1:]))
            js = [j for j in range(len(new)) if new[j] == shape[ax]
                  and int(np.prod(new[:j])) == pre and int(np.prod(new[j + 1:])) == post]
            if not js:
                return None
            ax, shape = js[0], new
            resized = list(new)
            resized[ax] = H.shape[0]
            layout.append(O.Reshape(f"{name}.{op.name}", (prev,), shape=tuple(resized)))
        else:
            perm = [int(p) for p in op.perm]
            ax, shape = perm.index(ax), tuple(shape[p] for p in perm)
            layout.append(O.Transpose(f"{name}.{op.name}", (prev,), perm=tuple(perm)))
        prev = layout[-1].name
    if ax != head.axis % len(shape):
        return None
    w = syn.weight.astype(np.float64)
    if isinstance(syn, O.Conv2d):
        g, cout = syn.groups, w.shape[0]
        full = np.zeros((cout, w.shape[1] * g) + w.shape[2:])
        for i in range(g):  # a grouped conv as a dense one (zero blocks)
            rows = slice(i * cout // g, (i + 1) * cout // g)
            full[rows, i * w.shape[1]:(i + 1) * w.shape[1]] = w[rows]
        op = O.Conv2d(name, syn.inputs, weight=np.tensordot(H, full, axes=(1, 0)), bias=None,
                      stride=tuple(syn.stride), padding=tuple(syn.padding),
                      dilation=tuple(syn.dilation), groups=1)
    else:
        op = O.Linear(name, syn.inputs, weight=H @ w, bias=None, axis=syn.axis)
    return op, layout


def lower_membrane(low, layer) -> tuple[str, ...]:
    """A neuron fed by a sum of synapse outputs (membrane shortcut): one fixed synapse per
    term, all at the neuron's scale (per output channel one ``K`` and one weight exponent
    shared by every term), laid out like the LIF, all into one ``cuba_lif``."""
    lif = layer.lif
    shape = tuple(low.specs[lif.name].shape)
    chan, bias = None, np.zeros(shape)
    rows, columns, srcs_of, ranges_of = [], [], [], []
    for syn, chain in layer.terms:
        out_shape = tuple(low.specs[syn.name].shape)
        cout = syn.weight.shape[0]
        ax = 0 if isinstance(syn, O.Conv2d) else syn.axis % len(out_shape)
        c = apply_layout(_per_neuron(np.arange(cout), ax, out_shape), chain)
        if chan is None:
            chan = c
        elif c.shape != chan.shape or not np.array_equal(c, chan):
            raise UnsupportedOpError(
                f"LIF {lif.name!r} sums synapses {layer.terms[0][0].name!r} and {syn.name!r} "
                "whose output channels reach different neurons; spikec maps a membrane "
                "shortcut whose summed synapses share their output channels")
        b = np.zeros(cout) if syn.bias is None else syn.bias.astype(np.float64)
        bias_map = low._input_mean_bias(syn, out_shape)
        bias = bias + apply_layout(_per_neuron(b, ax, out_shape) if bias_map is None
                                   else bias_map, chain)
        srcs = low.sources(syn.inputs[0])
        for src in srcs:
            low._needs_graded(low.origin.get(src, src), lif.name)
        r = low.ranges(syn, len(srcs))
        rows.append(syn.weight.astype(np.float64).reshape(cout, -1))
        columns.append((rows[-1].shape[1], r.x_max, len(srcs)))
        srcs_of.append(srcs)
        ranges_of.append(r)
    ranges = Ranges(sum(r.sums for r in ranges_of), sum(r.worst for r in ranges_of),
                    max(r.x_max for r in ranges_of), sum(len(s) for s in srcs_of),
                    calibrated=all(r.calibrated for r in ranges_of))
    names = [low._fresh(f"{lif.name}.in{k}") for k in range(len(layer.terms))]
    for _ in range(4):
        w, e, params, notes = quantize_current_sum(
            ", ".join(names), np.hstack(rows), columns, chan, bias, lif, ranges, low.fmt,
            low.opts, low.T, synapse_copy=True)
        over = notes["a_in_worst_case"] / low.fmt.a_in_max
        if ranges.calibrated or over <= 1.0:
            break
        ranges = Ranges(ranges.sums * over * 1.01, ranges.worst, ranges.x_max, ranges.sources)
    inputs, at = [], 0
    for name, (syn, chain), srcs, (width, _, _), e_k in zip(names, layer.terms, srcs_of,
                                                            columns, e):
        wk = w[:, at:at + width].reshape(syn.weight.shape)
        at += width
        if isinstance(syn, O.Conv2d):
            fop = F.ConvSynapse(name, tuple(srcs), weight=wk, weight_exp=e_k,
                                stride=tuple(syn.stride), padding=tuple(syn.padding),
                                dilation=tuple(syn.dilation), groups=syn.groups)
        else:
            fop = F.DenseSynapse(name, tuple(srcs), weight=wk, weight_exp=e_k, axis=syn.axis)
        low.out.append(fop)
        if low.specs[syn.inputs[0]].kind is Kind.COUNT:
            low.residual_reads[name] = srcs
            low.residual_inputs[name] = syn.inputs[0]
        value = name
        for op in chain:
            copy = type(op)(low._fresh(f"{name}.{op.name}"), (value,), **op.attributes())
            low.out.append(copy)
            value = copy.name
        inputs.append(value)
    notes.update(op="membrane_sum", reads=", ".join(low._reads(syn, s) for (syn, _), s
                                                    in zip(layer.terms, srcs_of)),
                 terms={n: syn.name for n, (syn, _) in zip(names, layer.terms)},
                 tau=float(lif.tau))
    low._risks(lif.name, notes, tau=float(lif.tau))
    low.notes_layers[lif.name] = notes
    layer.params = params
    return tuple(inputs)



def lower_readout_of_currents(low, ro) -> None:
    """The head reads a sum of synapse outputs (Spikingformer's ``head(mean(x))``, no neuron
    before it): the head is composed with every term (``H W_k``, a conv stays a conv with one
    output channel per class), the terms' biases go to the host offset, and every composed
    synapse feeds the read-out (``readout`` with several inputs, one ``K``, one exponent)."""
    head = ro.syn
    out_shape = tuple(low.specs[head.name].shape)
    tok_axes = [a % len(out_shape) for a in (ro.mean.axes if ro.mean else ())]
    tokens = int(np.prod([out_shape[a] for a in tok_axes]))
    offset = np.zeros(out_shape) + (0.0 if head.bias is None else
                                    _per_neuron(head.bias.astype(np.float64),
                                                head.axis % len(out_shape), out_shape))
    composed, worst, x_max, n_src = [], 0.0, 0.0, 0
    term_bias = np.zeros(out_shape)  # the terms' biases through the head, per output
    for k, (syn, chain) in enumerate(ro.terms):
        name = low._fresh(f"{head.name}.in{k}")
        made = compose_head(head, syn, chain, name, low.specs)
        if made is None:
            raise UnsupportedOpError(
                f"read-out {head.name!r} reads the sum of currents through a layout that "
                f"moves {syn.name!r}'s channels off its feature axis; spikec composes the head "
                "with each summed synapse only along their channel axis")
        op, layout = made
        syn_shape = tuple(low.specs[syn.name].shape)
        ax = 0 if isinstance(syn, O.Conv2d) else syn.axis % len(syn_shape)
        bias_map = low._input_mean_bias(syn, syn_shape)
        b = np.zeros(syn.weight.shape[0]) if syn.bias is None else syn.bias.astype(np.float64)
        bias_in = apply_layout(_per_neuron(b, ax, syn_shape) if bias_map is None else bias_map,
                               chain)
        term_bias = term_bias + interp.linear(bias_in[None], head.weight.astype(np.float64),
                                              None, head.axis)[0]
        srcs = low.sources(syn.inputs[0])
        xm = low.bounds.get(syn.inputs[0])
        if xm is None:
            raise UnsupportedOpError(f"synapse {syn.name!r} reads {syn.inputs[0]!r}, a real "
                                     "value; synapses read spikes, counts or the raw input only")
        worst = worst + worst_case_sums(op, xm) * len(srcs)
        x_max, n_src = max(x_max, xm), n_src + len(srcs)
        composed.append((op, layout, srcs))
    offset = offset + term_bias
    offset = offset.mean(axis=tuple(tok_axes)) if tok_axes else offset
    rows = np.hstack([op.weight.astype(np.float64).reshape(op.weight.shape[0], -1)
                      for op, _, _ in composed])
    combined = O.Linear(head.name, (head.inputs[0],), weight=rows, bias=None, axis=head.axis)
    ranges = Ranges(worst, worst, x_max, n_src, calibrated=False)
    acc = worst * tokens * low.T
    if low.cal is not None and head.name in low.cal.sums:
        # the float head saw the terms' biases too: |sum W'x| <= |H x - h_b| + |H b_terms|
        hax = head.axis % len(out_shape)
        b_abs = np.abs(np.moveaxis(term_bias, hax, 0).reshape(len(worst), -1)).max(axis=1)
        margin = low.opts.calib_margin
        ranges = Ranges(np.minimum((low.cal.sums[head.name] + b_abs) * margin, worst),
                        worst, x_max, n_src, calibrated=True)
        acc = np.minimum((low.cal.accumulated[head.name] + low.T * tokens * b_abs) * margin,
                         acc)
    w, e, scale, off, notes = quantize_readout(combined, tokens, ranges, acc, low.fmt,
                                               low.opts, low.T)
    k = float(notes["k"][0])
    off, exps, err_num = np.zeros_like(off), [], 0.0
    inputs = []
    for op, layout, srcs in composed:
        wk, e, comp, sq = term_mantissas(op.weight, k, low.fmt)
        exps.append(int(e[0]))
        err_num += sq
        if low.opts.truncation_compensation:
            off = off + comp * len(srcs) / k
        if isinstance(op, O.Conv2d):
            low.out.append(F.ConvSynapse(op.name, tuple(srcs), weight=wk, weight_exp=e,
                                          stride=tuple(op.stride), padding=tuple(op.padding),
                                          dilation=tuple(op.dilation), groups=1))
        else:
            low.out.append(F.DenseSynapse(op.name, tuple(srcs), weight=wk, weight_exp=e,
                                           axis=op.axis))
        value = op.name
        for lay in layout:
            lay = type(lay)(lay.name, (value,), **lay.attributes())
            low.out.append(lay)
            value = lay.name
        inputs.append(value)
    ro.fixed = F.Readout(ro.tmean.name, tuple(inputs), scale=scale,
                         offset=np.asarray(off + offset, np.float64),
                         sum_axes=tuple(tok_axes))
    notes.update(weight_exp=exps, weight_rel_rms_error=float(
        np.sqrt(err_num / rows.size) / max(np.sqrt(np.mean(rows ** 2)), 1e-30)))
    notes.update(op="readout", synapse=", ".join(op.name for op, _, _ in composed),
                 reads="sum of currents (head composed with each synapse)",
                 terms={op.name: syn.name for (op, _, _), (syn, _) in zip(composed, ro.terms)})
    if notes["accumulator_bound"] > low.fmt.state_max:
        notes.setdefault("overflow_risks", []).append("accumulator")
    low._risks(ro.tmean.name, notes, tau=None)
    low.notes_layers[ro.tmean.name] = notes
