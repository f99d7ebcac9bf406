"""Composition of convolutions with no neuron between them into one convolution.

A chip's synapse reads spikes and writes a neuron's current; a convolution whose real-valued output
feeds another convolution directly (Meta-SpikeFormer's SepConv: depthwise 7x7 then pointwise; its
RepConv: pointwise, padded batch norm, depthwise 3x3, pointwise) has no neuron to hold the value
between them. Both are linear, so where the composition is exact they become one convolution (the
"re-parameterisation" of RepConv), a dense one in general.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes.rewrite import Rewrite, View, rewrite, rule


def compose_convs(graph: Graph) -> Graph:
    """Compose every Conv2d whose output only another Conv2d reads with that conv.

    Rules (``a`` the first conv, ``b`` the second; weights made dense, ``groups = 1``)::

        b 1x1, stride 1, no padding:      W[o,c,u,v] = sum_m Wb[o,m] Wa[m,c,u,v]
                                          bias = Wb ba + bb; a's stride, padding, dilation
        a 1x1, stride 1, (ba = 0 or b     W[o,c,u,v] = sum_m Wb[o,m,u,v] Wa[m,c]
          unpadded):                      bias = bb + sum_{m,u,v} Wb[o,m,u,v] ba[m]
                                          padding pa + pb; b's stride and dilation

    The second holds because a 1x1 conv of a zero-padded input is its bias on the border: with
    ``ba = 0`` padding before or after ``a`` is the same; with ``ba != 0`` only an unpadded ``b``
    sees ``a``'s border as ``a`` computed it. Anything else is left alone (the quantizer then
    says which synapse has no neuron to drive). Float64 sums, stored in ``a``'s weight dtype.
    """
    return rewrite(graph, (conv_into_conv,))


def dense_weight(conv: O.Conv2d) -> np.ndarray:
    """The weights ``[C_out, C_in, kH, kW]`` (float64) with groups expanded (zeros between
    groups)."""
    w = conv.weight.astype(np.float64)
    g = conv.groups
    if g == 1:
        return w
    cout, cin_g = w.shape[:2]
    dense = np.zeros((cout, cin_g * g) + w.shape[2:])
    per = cout // g
    for k in range(g):
        dense[k * per:(k + 1) * per, k * cin_g:(k + 1) * cin_g] = w[k * per:(k + 1) * per]
    return dense


def _pointwise(conv: O.Conv2d, *, padded: bool) -> bool:
    """1x1, stride 1 (and no padding unless ``padded``)."""
    return (conv.weight.shape[2:] == (1, 1) and tuple(conv.stride) == (1, 1)
            and (padded or tuple(conv.padding) == (0, 0)))


def bias_or_zeros(syn: O.Op) -> np.ndarray:
    """A conv2d's or linear's bias in float64, zeros where it has none."""
    return np.zeros(syn.weight.shape[0]) if syn.bias is None else syn.bias.astype(np.float64)


@rule(O.Conv2d)
def conv_into_conv(b: O.Conv2d, v: View) -> Rewrite | None:
    """# conv2d(conv2d(x, Wa, ba), Wb, bb) -> conv2d(x, W, bias)   (see compose_convs)"""
    a = v.producer(b.inputs[0])
    if not isinstance(a, O.Conv2d) or v.sole_consumer(a.name) is not b:
        return None
    wa, wb, ba, bb = dense_weight(a), dense_weight(b), bias_or_zeros(a), bias_or_zeros(b)
    if _pointwise(b, padded=False):
        w = np.einsum("om,mcuv->ocuv", wb[:, :, 0, 0], wa)
        fields = dict(stride=a.stride, padding=a.padding, dilation=a.dilation)
        bias = wb[:, :, 0, 0] @ ba + bb
    elif _pointwise(a, padded=True) and (not ba.any() or tuple(b.padding) == (0, 0)):
        w = np.einsum("omuv,mc->ocuv", wb, wa[:, :, 0, 0])
        pad = tuple(int(p) + int(q) for p, q in zip(a.padding, b.padding))
        fields = dict(stride=b.stride, padding=pad, dilation=b.dilation)
        bias = bb + np.einsum("omuv,m->o", wb, ba)
    else:
        return None
    dtype = a.weight.dtype
    has_bias = a.bias is not None or b.bias is not None
    new = replace(b, inputs=a.inputs, weight=w.astype(dtype), groups=1,
                  bias=bias.astype(dtype) if has_bias else None, **fields)
    return Rewrite(replace=(new,), remove=(a.name,))


__all__ = ["compose_convs", "conv_into_conv"]
