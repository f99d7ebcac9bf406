"""Constant padding, and in-place writes of a per-channel constant into the padded border.

Meta-SpikeFormer's ``BNAndPadLayer`` (and code like it, in its own words) pads a batch norm's
output with zeros and then overwrites the border with what the batch norm makes of a zero input,
so that an unpadded 3x3 convolution after it sees the batch norm of a zero-padded input::

    y = F.pad(z, [p] * 4)                      # z = bn(x), [N, C, H, W]
    y[:, :, 0:p, :] = c;  y[:, :, -p:, :] = c  # c: one constant per channel, [1, C, 1, 1]
    y[:, :, :, 0:p] = c;  y[:, :, :, -p:] = c

The IR has no pad op and no in-place write. The tracer keeps the padded tensor *pending* (a
:class:`PendingPad` on its traced value): ``F.pad`` of a traced value records the pad, each
``__setitem__`` on it records which positions it wrote and checks that it wrote one per-channel
constant ``c``. When the tensor is first read, the pending value becomes ops, by

    pad(z, p, 0) with every border position set to c   ==   pad(z - c, p, 0) + c

where ``pad(u, p, 0) + c`` is a depthwise 1x1 ``Conv2d`` with unit weights, zero padding ``p`` and
bias ``c``, and ``z - c`` a ``BatchNorm`` with mean ``c``, unit variance and ``eps = 0``. Where
``z`` is a batch norm's output and ``c`` is that batch norm's response to zero (to float32
rounding: ``c`` was computed by the model in float32 during the trace), the same value is
``BN(pad(u, p, 0))`` of the batch norm's input ``u``, and that form is emitted: exact in float64
whatever precision the model computed ``c`` in, and, after the batch norm is folded, a padded
convolution that the float passes compose with the convolutions around it
(``spikec.passes.compose``).

Refused with one line naming the module: a non-constant pad mode or a nonzero pad value, a write
of a traced tensor, a write into a tensor that is not a pending pad or that was already read, a
write outside the border, a written value that is not one constant per channel, two different
constants, and a border that is only partly written when the tensor is read.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from spikec.frontends.torch.functions import function
from spikec.frontends.torch.tracer import Layout, Tracer, TracedValue
from spikec.ir import ops as O

ZERO_RESPONSE_RTOL = 1e-5
"""How close (relative to the batch norm's terms) a written constant must be to the batch norm's
response to zero to be read as that response: float32 arithmetic in the model's own formula."""


@dataclass(frozen=True)
class PendingPad:
    """A zero-padded value not yet emitted: ``base`` padded by ``pads`` ((top, bottom), (left,
    right)) on the last two per-sample axes; ``written``: per-sample positions overwritten (the
    padded shape without the channel axis), ``fill``: the per-channel constant written there."""

    base: TracedValue
    pads: tuple[tuple[int, int], tuple[int, int]]
    scope: str
    written: np.ndarray
    fill: np.ndarray | None = None


@function("torch.nn.functional.pad", "torch._C._nn.pad")
def _pad(tr: Tracer, args, kwargs, out):
    v = tr.value(args[0])
    if v is None:
        raise tr.unsupported("a pad of a constant tensor feeds a traced one")
    pad = tuple(kwargs.get("pad", args[1] if len(args) > 1 else ()))
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    value = kwargs.get("value", args[3] if len(args) > 3 else None)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise tr.unsupported(f"F.pad with mode={mode!r}, value={value!r}: only zero padding "
                             "(mode='constant', value 0)")
    if len(v.spec.shape) != 3 or len(pad) not in (2, 4) or min(pad) < 0:
        raise tr.unsupported(f"F.pad {list(pad)} of a per-sample {v.spec.shape} tensor: only "
                             "non-negative padding of the last two axes of (C, H, W)")
    pads = ((0, 0) if len(pad) == 2 else (pad[2], pad[3]), (pad[0], pad[1]))
    shape = tuple(out.shape[v.layout.lead + 1:])
    pending = PendingPad(v, pads, tr.where(), np.zeros(shape, bool))
    tr.bind(out, TracedValue(v.name, v.layout, v.spec, step=v.step, pad=pending))


def setitem(tr: Tracer, args) -> None:
    """``t[index] = value`` on a traced ``t`` (called by the tracer for every write into a traced
    tensor, and for a traced value written into any tensor)."""
    t, index, value = args[0], args[1], args[2]
    if tr.lookup(value, materialize=False) is not None:
        raise tr.unsupported("an in-place write of a traced tensor (t[...] = x) has no IR "
                             "equivalent; build the value with torch.stack/cat or arithmetic")
    v = tr.lookup(t, materialize=False)
    if v is None:
        return
    if v.pad is None:
        raise tr.unsupported("an in-place write (t[...] = c) into a traced tensor; spikec takes "
                             "only writes of a per-channel constant into the border of a tensor "
                             "just padded with F.pad (see docs/frontend-torch.md)")
    pending = v.pad
    region = _write_region(tr, t, index, v.layout.lead, pending.written.shape)
    border = _border(pending)
    if (region & ~border).any():
        raise tr.unsupported("an in-place write into the interior of a padded tensor (only its "
                             "border may be overwritten, with one constant per channel)")
    c = _per_channel(tr, t, index, value, v.layout.lead)
    if pending.fill is not None and not np.array_equal(c, pending.fill):
        raise tr.unsupported("two different constants written into the border of one padded "
                             "tensor")
    pending = replace(pending, written=pending.written | region, fill=c)
    tr.bind(t, replace(v, pad=pending))


def _write_region(tr: Tracer, t, index, lead: int, shape: tuple[int, ...]) -> np.ndarray:
    """The per-sample ``(H, W)`` positions ``t[index]`` covers (all channels, all samples)."""
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (t.dim() - len(index) + 1) + index[k + 1:]
    index = tuple(index) + (slice(None),) * (t.dim() - len(index))
    if not all(isinstance(i, slice) and i.step in (None, 1) for i in index):
        raise tr.unsupported(f"an in-place write with index {index!r}: only unit-step slices")
    for d in range(lead + 1):
        if index[d].indices(t.shape[d])[:2] != (0, t.shape[d]):
            what = "channels" if d == lead else "batch/time axes"
            raise tr.unsupported(f"an in-place write into part of the {what} of a padded tensor "
                                 "(only whole border bands, all channels)")
    region = np.zeros(shape, bool)
    region[index[lead + 1:]] = True
    return region


def _border(p: PendingPad) -> np.ndarray:
    (top, bottom), (left, right) = p.pads
    border = np.ones(p.written.shape, bool)
    h, w = p.written.shape
    border[top:h - bottom, left:w - right] = False
    return border


def _per_channel(tr: Tracer, t, index, value, lead: int) -> np.ndarray:
    """The written value as one float64 constant per channel, ``[C]``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        full = np.broadcast_to(np.asarray(value, np.float64), tuple(t[index].shape))
    except (ValueError, TypeError):
        raise tr.unsupported(f"an in-place write of {type(value).__name__} into a padded "
                             "tensor") from None
    c = np.moveaxis(full, lead, 0).reshape(full.shape[lead], -1)
    if not (c == c[:, :1]).all():
        raise tr.unsupported("an in-place write into a padded tensor of a value that is not one "
                             "constant per channel")
    return c[:, 0].copy()


def materialize(tr: Tracer, t, v: TracedValue) -> TracedValue:
    """The ops of a pending pad, when its tensor is first read (see the module docstring)."""
    p = v.pad
    written = p.written.any()
    if written and not np.array_equal(p.written, _border(p)):
        raise tr.unsupported(f"reads the tensor padded in {p.scope or 'the forward'} with its "
                             "border only partly overwritten; spikec takes a border written whole "
                             "with one constant per channel")
    base, fill = p.base, p.fill if written else None
    bn = tr.producer.get(base.name)
    if fill is not None and _is_zero_response(bn, fill):
        inner = TracedValue(bn.inputs[0], base.layout, tr.specs[bn.inputs[0]], step=base.step)
        padded = _pad_conv(tr, p, inner, None)
        out = tr.emit(replace(bn, name=tr.fresh_name(f"{bn.name}.padded"), inputs=(padded.name,)),
                      v.layout, v.step)
    else:
        if fill is not None and fill.any():
            c = fill.astype(np.float32)
            shift = O.BatchNorm(tr.fresh_name(f"{p.scope}.pad_shift"), (base.name,), mean=c,
                                var=np.ones_like(c), gamma=np.ones_like(c),
                                beta=np.zeros_like(c), eps=0.0, axis=0)
            base = tr.emit(shift, v.layout, v.step)
        out = _pad_conv(tr, p, base, fill)
    tr.bind(t, out)
    return out


def _pad_conv(tr: Tracer, p: PendingPad, v: TracedValue, bias) -> TracedValue:
    """``pad(v) + bias``: a depthwise 1x1 Conv2d with unit weights and zero padding."""
    (top, bottom), (left, right) = p.pads
    if top != bottom or left != right:
        raise tr.unsupported(f"F.pad with unequal sides {p.pads}: the IR pads symmetrically")
    C = v.spec.shape[0]
    conv = O.Conv2d(tr.fresh_name(f"{p.scope}.pad" if p.scope else "pad"), (v.name,),
                    weight=np.ones((C, 1, 1, 1), np.float32),
                    bias=None if bias is None else np.asarray(bias, np.float32),
                    padding=(top, left), groups=C)
    return tr.emit(conv, v.layout, v.step)


def _is_zero_response(bn, c: np.ndarray) -> bool:
    """Whether ``c`` is batch norm ``bn``'s output for a zero input, to float32 rounding."""
    if not isinstance(bn, O.BatchNorm) or bn.axis != 0 or len(c) != len(bn.mean):
        return False
    s = bn.gamma.astype(np.float64) / np.sqrt(bn.var.astype(np.float64) + bn.eps)
    terms = bn.mean.astype(np.float64) * s
    zero = bn.beta.astype(np.float64) - terms
    scale = np.abs(bn.beta.astype(np.float64)) + np.abs(terms) + 1e-30
    return bool(np.all(np.abs(c - zero) <= ZERO_RESPONSE_RTOL * scale))


__all__ = ["PendingPad", "setitem", "materialize"]
