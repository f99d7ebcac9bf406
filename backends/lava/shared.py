"""Weight-shared synapses as Lava ``Conv`` processes: the geometry of a conv or token-wise dense
synapse in Lava's (X, Y, C) port layout.

A ``conv_synapse`` over (C, H, W) values is Lava's Conv directly: the port is transposed to
(W, H, C). A ``dense_synapse`` with weights ``[C_out, C_in]`` applied along axis ``a`` of a value
of shape ``S`` is a 1x1 convolution: ``S`` is viewed as ``(pre, C_in, post)`` (``pre``: the axes
before ``a``, ``post``: those after) and transposed to ``(pre, post, C_in)``, so every token is an
(X, Y) position and the ``C_out x C_in`` weights are stored once, not once per token.

Lava's Conv sends ``wrap24(sum << e)`` (``procs.PyConvModelExp`` on the CPU, the chip's Conv on
Loihi 2), which is what spikec's simulator computes for a conv synapse. A dense synapse wraps its
sum at int32 before the shift instead; the two agree whenever neither wrap can act, which
``dense_fits_conv`` proves from the weights and the input bound (otherwise the dense synapse is
unrolled into Sparse).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.ir import fixed as F
from spikec.target.fixedpoint import conv_weight_from_torch


@dataclass(frozen=True)
class ConvGeometry:
    """How one synapse op maps onto Lava Conv ports.

    ``pre``, ``channels``, ``post``: the IR value (input) seen as ``(pre, C_in, post)`` for a
    dense synapse whose weights apply along ``axis``; a conv synapse has ``axis`` 0 and
    ``channels`` C_in. ``channel_major``: the channel axis is the outermost axis of the IR value,
    so a split value's parts (whole channels in order) can feed a Conv each.
    """

    op: object
    in_shape: tuple
    out_shape: tuple
    axis: int
    pre: int
    channels: int
    post: int

    @property
    def is_conv(self) -> bool:
        return isinstance(self.op, F.ConvSynapse)

    @property
    def channel_major(self) -> bool:
        return self.axis == 0

    def in_vops(self, n_chans: int) -> list:
        """Port transforms from a part carrying ``n_chans`` whole input channels (in IR order)
        to Conv's (X, Y, C) input."""
        if self.is_conv:
            _, h, w = self.in_shape
            return [["reshape", [n_chans, h, w]], ["transpose", [2, 1, 0]]]
        return [["reshape", [self.pre, n_chans, self.post]], ["transpose", [0, 2, 1]]]

    def input_shape(self, n_chans: int) -> list:
        if self.is_conv:
            _, h, w = self.in_shape
            return [w, h, n_chans]
        return [self.pre, self.post, n_chans]

    def out_vops(self, whole: bool) -> list:
        """Port transforms from Conv's (X, Y, C_out) output back to IR order: the synapse's
        output shape when ``whole`` (every output channel), else (channels, positions)."""
        if self.is_conv:
            return [["transpose", [2, 1, 0]]]
        vops = [["transpose", [0, 2, 1]]]
        return vops + [["reshape", list(self.out_shape)]] if whole else vops

    def lava_weight(self, w: np.ndarray) -> np.ndarray:
        """IR weights (``[C_out, C_in/groups, kH, kW]`` or ``[C_out, C_in]``) in Lava's Conv
        layout ``[C_out, kX, kY, C_in/groups]``."""
        if self.is_conv:
            return conv_weight_from_torch(w)
        return np.asarray(w)[:, None, None, :]

    def conv_params(self) -> dict:
        op = self.op
        if not self.is_conv:
            return {"padding": [0, 0], "stride": [1, 1], "dilation": [1, 1], "groups": 1}
        return {"padding": [int(op.padding[1]), int(op.padding[0])],
                "stride": [int(op.stride[1]), int(op.stride[0])],
                "dilation": [int(op.dilation[1]), int(op.dilation[0])],
                "groups": int(op.groups)}


def geometry(op, in_shape, out_shape) -> ConvGeometry | None:
    """The Conv geometry of a conv synapse or a dense synapse on a value of rank >= 2; None for
    a dense synapse on a 1-d value (that is Lava's Dense)."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if isinstance(op, F.ConvSynapse):
        return ConvGeometry(op, in_shape, out_shape, 0, 1, in_shape[0], 1)
    if len(in_shape) < 2:
        return None
    a = op.axis % len(in_shape)
    pre = int(np.prod(in_shape[:a], dtype=np.int64))
    post = int(np.prod(in_shape[a + 1:], dtype=np.int64))
    return ConvGeometry(op, in_shape, out_shape, a, pre, in_shape[a], post)


def dense_fits_conv(op, x_bound: int, out_bits: int) -> bool:
    """Neither Dense's int32 wrap (before the shift) nor Conv's ``out_bits`` wrap (after it) can
    act on any output of ``op`` for inputs in ``[-x_bound, x_bound]``: then Conv sends what
    spikec's simulator computes for the dense synapse."""
    w = np.abs(np.asarray(op.weight, np.int64)).sum(axis=1) * int(x_bound)
    e = np.asarray(op.weight_exp, np.int64)
    shifted = np.where(e >= 0, w << np.maximum(e, 0), w)   # a right shift only shrinks the sum
    return bool(np.all(np.maximum(w, shifted) < (1 << (out_bits - 1))))


def narrow(arr: np.ndarray) -> np.ndarray:
    """An integer array in the narrowest signed type that holds its values (int8 for Loihi's
    8-bit weight mantissas): the bundle's arrays are read back with ``astype``."""
    arr = np.asarray(arr)
    if arr.size == 0 or arr.dtype.kind not in "iu":
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dt, copy=False)
    return arr
