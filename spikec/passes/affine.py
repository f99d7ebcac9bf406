"""Folds of affine ops into synaptic weights: batch norm, input normalization, average pooling.

Arithmetic is done in float64 and stored in the dtype of the synapse's original weights, so a
float64 graph folds without rounding beyond float64's and a float32 graph stays float32.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from spikec.ir import ops as O
from spikec.ir.types import Kind
from spikec.ir.graph import Graph
from spikec.passes.rewrite import Rewrite, View, consumers, norm_axis, rewrite, rule
from spikec.passes.structure import simplify_layout


def _bn_affine(bn: O.BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` with ``BN(x) = s * x + t`` per channel (float64)."""
    s = bn.gamma.astype(np.float64) / np.sqrt(bn.var.astype(np.float64) + bn.eps)
    t = bn.beta.astype(np.float64) - bn.mean.astype(np.float64) * s
    return s, t


def _scale_synapse(syn: O.Op, s: np.ndarray, t: np.ndarray) -> O.Op:
    """``syn`` followed by ``y -> s[o] * y + t[o]`` on its output channels, as one synapse."""
    w = syn.weight.astype(np.float64)
    w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    b = np.zeros(len(s)) if syn.bias is None else syn.bias.astype(np.float64)
    b = b * s + t
    dtype = syn.weight.dtype
    return replace(syn, weight=w.astype(dtype), bias=b.astype(dtype))


def _bn_on_output_channels(syn: O.Op, bn: O.BatchNorm, ndim: int) -> bool:
    a = norm_axis(bn.axis, ndim)
    if isinstance(syn, O.Conv2d):
        return a == 0
    if isinstance(syn, O.Linear):
        return a == norm_axis(syn.axis, ndim)
    return False


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold every BatchNorm that follows a Conv2d or Linear into its weights and bias.

    Rules::

        batchnorm(conv2d(x, W, b))              -> conv2d(x, s W, s b + t)        (axis 0)
        batchnorm(linear(x, W, b, axis a))      -> linear(x, s W, s b + t, a)     (BN axis a)
        batchnorm(transpose(y, p), axis a)      -> transpose(batchnorm(y, axis p[a]), p)

    with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean s``. The third rule moves a BN across
    the layout ops of the CIFAR pattern ``linear -> transpose -> BN(axis 0) -> transpose`` so that
    the first two apply; the transposes left behind then cancel (``simplify_layout``). The synapse
    keeps its name; readers of the BN's value read the synapse. A BN whose producer is read by
    another op too, or that follows anything else, is left in place.
    """
    return simplify_layout(rewrite(graph, BATCHNORM_RULES))


@rule(O.BatchNorm)
def batchnorm_through_transpose(bn: O.BatchNorm, v: View) -> Rewrite | None:
    """# batchnorm(transpose(y, p), axis a) -> transpose(batchnorm(y, axis p[a]), p)

    The transpose takes the BN's name so that readers of the BN are untouched."""
    src = v.producer(bn.inputs[0])
    if not isinstance(src, O.Transpose) or v.sole_consumer(src.name) is not bn:
        return None
    ndim = len(v.spec(bn.name).shape)
    moved = replace(bn, name=src.name, inputs=src.inputs, axis=src.perm[norm_axis(bn.axis, ndim)])
    return Rewrite(replace=(moved, replace(src, name=bn.name, inputs=(moved.name,))))


@rule(O.BatchNorm)
def batchnorm_into_synapse(bn: O.BatchNorm, v: View) -> Rewrite | None:
    """# batchnorm(conv2d|linear(x, W, b)) -> conv2d|linear(x, s W, s b + t)   (output channels)"""
    src = v.producer(bn.inputs[0])
    if not isinstance(src, (O.Conv2d, O.Linear)) or v.sole_consumer(src.name) is not bn:
        return None
    if not _bn_on_output_channels(src, bn, len(v.spec(bn.name).shape)):
        return None
    return Rewrite(replace=(_scale_synapse(src, *_bn_affine(bn)),), remove=(bn.name,),
                   rename=((bn.name, src.name),))


BATCHNORM_RULES = (batchnorm_through_transpose, batchnorm_into_synapse)


@rule(O.BatchNorm)
def batchnorm_between_transposes(bn: O.BatchNorm, v: View) -> Rewrite | None:
    """# transpose(batchnorm(transpose(x, p), axis a), p^-1) -> batchnorm(x, axis p[a])

    The pattern PyTorch's ``BatchNorm1d`` leaves in token models (channels moved to axis 1 and
    back). The BN keeps its name; readers of the second transpose read it."""
    first = v.producer(bn.inputs[0])
    after = v.consumers(bn.name)
    if not (isinstance(first, O.Transpose) and v.sole_consumer(first.name) is bn
            and len(after) == 1 and isinstance(after[0], O.Transpose)):
        return None
    second, perm = after[0], first.perm
    if tuple(second.perm) != tuple(sorted(range(len(perm)), key=lambda i: perm[i])):
        return None
    axis = perm[bn.axis % len(v.spec(bn.name).shape)]
    return Rewrite(replace=(replace(bn, axis=axis, inputs=first.inputs),),
                   remove=(first.name, second.name), rename=((second.name, bn.name),))


# ----------------------------------------------------------------------------- input normalization

def _input_channel_factors(syn: O.Op, factor: np.ndarray) -> np.ndarray:
    """Per-weight multiplier that scales input channel ``c`` by ``factor[c]`` (groups aware)."""
    w = syn.weight
    if isinstance(syn, O.Linear):
        return np.broadcast_to(factor[None, :], w.shape[:2])
    cout, cg = w.shape[:2]
    og = cout // syn.groups
    chan = (np.arange(cout)[:, None] // og) * cg + np.arange(cg)[None, :]  # [C_out, C_in/groups]
    return factor[chan].reshape(cout, cg, 1, 1)


def _mean_bias(syn: O.Op, wmul: np.ndarray, mean_raw: np.ndarray) -> np.ndarray:
    """``sum_{c,u,v} W'[o, c, u, v] * mean_raw[c]`` per output channel (no border effects)."""
    w = syn.weight.astype(np.float64) * wmul
    if isinstance(syn, O.Linear):
        return w @ mean_raw
    cout, cg = w.shape[:2]
    og = cout // syn.groups
    chan = (np.arange(cout)[:, None] // og) * cg + np.arange(cg)[None, :]
    return (w.sum(axis=(2, 3)) * mean_raw[chan]).sum(axis=1)


def fold_input_normalization(graph: Graph) -> Graph:
    """Fold the input's pixel scale and per-channel std (and the mean where exact) into the first
    synapses, so that the first layer reads raw pixels (``pixel_scale = 1``).

    With ``x = (p * scale - mean[c]) / std[c] = (scale / std[c]) * (p - mean[c] / scale)``::

        conv2d(input(p, scale, mean, std), W, b)
            -> conv2d(input(p, 1, mean / scale, 1), W * scale / std[c], b)          always
            -> conv2d(input(p, 1), W * scale / std[c], b - sum W' mean / scale)      no padding

    The mean can move into the bias only where every output sees every input position: a conv
    with zero padding, or a Linear over the channel axis. A padded conv sees zeros at its borders
    (not ``-mean``), so there the mean stays in the input (in raw pixel units) and the quantizer
    turns it into a per-neuron bias, exact at the borders. Left unchanged: inputs read by anything
    other than Conv2d / Linear-over-channels (the input then stays real-valued, and quantizing it
    needs the fold).
    """
    ops = list(graph.ops)
    cons = consumers(ops)
    new_ops = {}
    for inp in [op for op in ops if isinstance(op, O.Input)]:
        if inp.kind != Kind.REAL or (inp.pixel_scale == 1.0 and not inp.mean):
            continue
        readers = cons.get(inp.name, [])
        if not readers or not all(
                isinstance(r, O.Conv2d) or (isinstance(r, O.Linear) and len(inp.shape) >= 1
                                            and norm_axis(r.axis, len(inp.shape)) == 0)
                for r in readers):
            continue
        nch = inp.shape[0]
        std = np.asarray(inp.std, np.float64) if inp.std else np.ones(nch)
        mean = np.asarray(inp.mean, np.float64) if inp.mean else np.zeros(nch)
        factor = float(inp.pixel_scale) / std
        mean_raw = mean / float(inp.pixel_scale)
        fold_mean = not mean.any() or all(
            isinstance(r, O.Linear) or tuple(r.padding) == (0, 0) for r in readers)
        for r in readers:
            wmul = _input_channel_factors(r, factor)
            w = (r.weight.astype(np.float64) * wmul).astype(r.weight.dtype)
            bias = r.bias
            if fold_mean and mean.any():
                b = np.zeros(r.weight.shape[0]) if r.bias is None else r.bias.astype(np.float64)
                bias = (b - _mean_bias(r, wmul, mean_raw)).astype(r.weight.dtype)
            new_ops[r.name] = replace(r, weight=w, bias=bias)
        keep_mean = () if fold_mean else tuple(float(m) for m in mean_raw)
        new_ops[inp.name] = replace(inp, pixel_scale=1.0, mean=keep_mean,
                                    std=tuple(1.0 for _ in keep_mean))
    if not new_ops:
        return graph
    return graph.with_ops([new_ops.get(op.name, op) for op in ops])


# ----------------------------------------------------------------------------- average pooling

def _pool_matrix(op: O.AvgPool2d, h: int, w: int) -> np.ndarray:
    """``P[(i, j), (y, x)]``: weight of input pixel (y, x) in output pixel (i, j) (float64)."""
    kh, kw = op.kernel
    sh, sw = op.stride
    ph, pw = op.padding
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    p = np.zeros((ho, wo, h, w))
    inv = 1.0 / (kh * kw)
    for i in range(ho):
        for j in range(wo):
            y0, x0 = i * sh - ph, j * sw - pw
            p[i, j, max(y0, 0):min(y0 + kh, h), max(x0, 0):min(x0 + kw, w)] = inv
    return p


def fold_avgpool(graph: Graph) -> Graph:
    """Fold average pooling into the synapse that reads it (exact cases only).

    Rules::

        conv2d(avgpool(x, k, s, 0), W, stride S, padding 0) -> conv2d(x, W (*) box_k / k^2, stride s S)
        linear(reshape(avgpool(x), [C*H*W]), W)              -> linear(reshape(x, [C*h*w]), W P)

    where ``W (*) box`` is the full correlation of each kernel with the pooling box (dilated by s),
    and ``P`` the pooling matrix. Both need the pool read by that synapse only. A padded conv after
    a pool is not exact as one conv (its zero border would be pooled) and is left alone.
    """
    return rewrite(graph, AVGPOOL_RULES)


@rule(O.AvgPool2d)
def avgpool_into_conv(pool: O.AvgPool2d, v: View) -> Rewrite | None:
    """# conv2d(avgpool(x, k, s, 0), W, stride S, padding 0) -> conv2d(x, W (*) box_k / k^2, s S)"""
    user = v.sole_consumer(pool.name)
    if isinstance(user, O.Conv2d) and tuple(pool.padding) == (0, 0) \
            and tuple(user.padding) == (0, 0) and tuple(user.dilation) == (1, 1):
        return Rewrite(replace=(_fold_pool_conv(pool, user),), remove=(pool.name,))
    return None


@rule(O.AvgPool2d)
def avgpool_into_linear(pool: O.AvgPool2d, v: View) -> Rewrite | None:
    """# linear(reshape(avgpool(x), [C*H*W]), W) -> linear(reshape(x, [C*h*w]), W P)"""
    user = v.sole_consumer(pool.name)
    if not (isinstance(user, O.Reshape) and len(user.shape) == 1):
        return None
    lin = v.sole_consumer(user.name)
    if not (isinstance(lin, O.Linear) and norm_axis(lin.axis, 1) == 0):
        return None
    c, h, w = v.spec(pool.inputs[0]).shape
    p = _pool_matrix(pool, h, w)  # [ho, wo, h, w]
    wl = lin.weight.astype(np.float64).reshape(lin.weight.shape[0], c, -1)
    wn = np.einsum("ock,kyx->ocyx", wl, p.reshape(-1, h, w))
    new_lin = replace(lin, weight=wn.reshape(len(wn), -1).astype(lin.weight.dtype))
    new_rs = replace(user, inputs=pool.inputs, shape=(c * h * w,))
    return Rewrite(replace=(new_lin, new_rs), remove=(pool.name,))


AVGPOOL_RULES = (avgpool_into_conv, avgpool_into_linear)


def _fold_pool_conv(pool: O.AvgPool2d, conv: O.Conv2d) -> O.Conv2d:
    kh, kw = pool.kernel
    sh, sw = pool.stride
    w = conv.weight.astype(np.float64)
    cout, cg, KH, KW = w.shape
    nh, nw = (KH - 1) * sh + kh, (KW - 1) * sw + kw
    out = np.zeros((cout, cg, nh, nw))
    inv = 1.0 / (kh * kw)
    for u in range(KH):
        for v in range(KW):
            out[:, :, u * sh:u * sh + kh, v * sw:v * sw + kw] += w[:, :, u:u + 1, v:v + 1] * inv
    return replace(conv, inputs=pool.inputs, weight=out.astype(conv.weight.dtype),
                   stride=(sh * conv.stride[0], sw * conv.stride[1]))
