"""Parts of traced tensors: ``chunk``, ``split``, ``unbind``, indexing, and the steps of a Python
loop over time (``x_seq[t]``, ``torch.stack``, ``torch.cat``).

The IR has no slice op. A part of a value along a per-sample axis is instead built by slicing the
ops that produce it, back to the synapse that made it: a fused ``qkv`` projection followed by a
batch norm and a neuron, then ``q, k, v = qkv.chunk(3, dim)``, becomes three projections with
sliced weights, each with its own sliced batch norm and neuron (exact: each output channel of a
conv/linear layer depends only on its own weights, and batch norms and neurons act per element).
The full chain is left unused and dropped. A part of a value whose producers cannot be sliced so
(the input, a mean, a spike matmul) is refused, naming the op the IR would need.

Along the time axis of a ``[T, B, ...]`` value, ``x_seq[t]`` / ``select(0, t)`` / ``unbind(0)``
give the value at step ``t`` (a ``STEP`` value, see ``tracer.py``); ``torch.stack`` (or
``torch.cat`` of ``unsqueeze(0)``) of the steps ``0 .. T-1`` of one value, in order, is that
value again (spikingjelly's ``multi_step_forward``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from spikec.frontends.torch.functions import _methods, function
from spikec.frontends.torch.tracer import Layout, Tracer, TracedValue
from spikec.ir import ops as O

_ELEMENTWISE = (O.LIF, O.Scale, O.Add, O.IAND, O.TimeMean)


# ----------------------------------------------------------------------------- slicing producers
def slice_value(tr: Tracer, v: TracedValue, axis: int, start: int, stop: int) -> TracedValue:
    """``v[..., start:stop, ...]`` along per-sample ``axis``, built from sliced producers."""
    name = _slice(tr, v.name, axis % len(v.spec.shape), start, stop, v)
    return replace(v, name=name, spec=tr.specs[name])


def _slice(tr: Tracer, name: str, axis: int, start: int, stop: int, like: TracedValue) -> str:
    shape = tr.specs[name].shape
    if start == 0 and stop == shape[axis]:
        return name
    key = (name, axis, start, stop)
    if key not in tr.slices:
        op = tr.producer.get(name)
        new = _sliced_op(tr, op, axis, start, stop, like) if op is not None else None
        if new is None:
            what = type(op).__name__ if op is not None else "a value"
            raise tr.unsupported(
                f"a part [{start}:{stop}] of axis {axis} of {name!r} (made by {what}) needs an IR "
                "op 'slice' that spikec does not have yet; parts of conv/linear outputs (through "
                "batch norms, neurons, reshapes and transposes) are supported")
        tr.slices[key] = tr.emit(new, like.layout, like.step).name
    return tr.slices[key]


def _sliced_op(tr: Tracer, op: O.Op, axis: int, start: int, stop: int, like) -> O.Op | None:
    """``op`` computing only ``[start:stop]`` of output ``axis`` (its inputs sliced as needed)."""
    name = tr.fresh_name(f"{op.name}.part{start}_{stop}")
    part = slice(start, stop)

    def inp(i: int, ax: int = axis, a: int = start, b: int = stop) -> str:
        return _slice(tr, op.inputs[i], ax, a, b, like)

    def same(inputs, **fields):
        new = replace(op, name=name, inputs=tuple(inputs), **fields)
        return new

    if isinstance(op, _ELEMENTWISE):
        return same(inp(i) for i in range(len(op.inputs)))
    if isinstance(op, O.Conv2d) and axis == 0:
        bias = None if op.bias is None else op.bias[part].copy()
        if op.groups == 1:
            return same(op.inputs, weight=op.weight[part].copy(), bias=bias)
        per_group = op.weight.shape[0] // op.groups
        if start % per_group or stop % per_group:
            return None
        cin = op.weight.shape[1]
        src = inp(0, 0, start // per_group * cin, stop // per_group * cin)
        return same((src,), weight=op.weight[part].copy(), bias=bias,
                    groups=(stop - start) // per_group)
    if isinstance(op, O.Linear):
        if axis == op.axis % len(tr.specs[op.name].shape):
            bias = None if op.bias is None else op.bias[part].copy()
            return same(op.inputs, weight=op.weight[part].copy(), bias=bias)
        return same((inp(0),))
    if isinstance(op, O.BatchNorm):
        if axis != op.axis % len(tr.specs[op.name].shape):
            return same((inp(0),))
        return same((inp(0),), **{k: getattr(op, k)[part].copy()
                                  for k in ("mean", "var", "gamma", "beta")})
    if isinstance(op, (O.MaxPool2d, O.AvgPool2d)) and axis == 0:
        return same((inp(0),))
    if isinstance(op, O.Transpose):
        return same((inp(0, op.perm[axis]),))
    if isinstance(op, O.Reshape):
        return _sliced_reshape(tr, op, axis, start, stop, like, name)
    return None


def _sliced_reshape(tr, op: O.Reshape, axis, start, stop, like, name) -> O.Op | None:
    """A part of a reshape's output is a part of one input axis when, in row-major order, the
    elements it selects are whole rows of that axis."""
    src = tr.specs[op.inputs[0]].shape
    out = tuple(op.shape)
    outer, inner = int(np.prod(out[:axis])), int(np.prod(out[axis + 1:]))
    for j in range(len(src)):
        if int(np.prod(src[:j])) != outer:
            continue
        inner_in = int(np.prod(src[j + 1:]))
        if (start * inner) % inner_in or (stop * inner) % inner_in:
            continue
        a, b = start * inner // inner_in, stop * inner // inner_in
        if b > src[j]:
            continue
        sliced = _slice(tr, op.inputs[0], j, a, b, like)
        shape = out[:axis] + (stop - start,) + out[axis + 1:]
        return O.Reshape(name, (sliced,), shape=shape)
    return None


# ----------------------------------------------------------------------------- chunk, split, index
def _torch_dim(args, kwargs, pos: int, default=0) -> int:
    d = kwargs.get("dim", args[pos] if len(args) > pos else default)
    return int(d) % args[0].dim()


def _bind_parts(tr: Tracer, t: torch.Tensor, dim: int, outs, *, drop: bool = False) -> None:
    """Bind each tensor of ``outs``, consecutive parts of ``t`` along torch axis ``dim`` (each of
    size 1 and squeezed when ``drop``)."""
    v = tr.value(t)
    lead = v.layout.lead
    if dim < lead:
        if v.layout is Layout.TB and dim == 0 and drop:
            for step, o in enumerate(outs):
                tr.bind(o, TracedValue(v.name, Layout.STEP, v.spec, step=step))
            return
        raise tr.unsupported(f"parts along axis {dim} of a {v.layout.value} tensor split its "
                             "batch/time axes")
    axis, start = dim - lead, 0
    for o in outs:
        size = 1 if drop else o.shape[dim]
        part = slice_value(tr, v, axis, start, start + size)
        if drop:
            part = tr.reshape(part, v.layout, part.spec.shape[:axis] + part.spec.shape[axis + 1:])
        tr.bind(o, part)
        start += size


@function(*_methods("chunk", "split", "tensor_split", "split_with_sizes"), "torch.functional.split")
def _chunk(tr: Tracer, args, kwargs, out):
    _bind_parts(tr, args[0], _torch_dim(args, kwargs, 2), out)


@function(*_methods("unbind"))
def _unbind(tr: Tracer, args, kwargs, out):
    _bind_parts(tr, args[0], _torch_dim(args, kwargs, 1), out, drop=True)


@function(*_methods("select"))
def _select(tr: Tracer, args, kwargs, out):
    dim, index = _torch_dim(args, kwargs, 1), kwargs.get("index", args[2] if len(args) > 2 else 0)
    _index_one(tr, args[0], dim, int(index), out)


@function(*_methods("narrow"))
def _narrow(tr: Tracer, args, kwargs, out):
    dim = _torch_dim(args, kwargs, 1)
    start = int(kwargs.get("start", args[2]))
    v = tr.value(args[0])
    _need_per_sample(tr, v, dim)
    start %= args[0].shape[dim]
    tr.bind(out, slice_value(tr, v, dim - v.layout.lead, start, start + out.shape[dim]))


def _need_per_sample(tr: Tracer, v: TracedValue, dim: int) -> None:
    if dim < v.layout.lead:
        raise tr.unsupported(f"a part along axis {dim} of a {v.layout.value} tensor splits its "
                             "batch/time axes")


def _index_one(tr: Tracer, t: torch.Tensor, dim: int, index: int, out) -> None:
    v = tr.value(t)
    index %= t.shape[dim]
    if v.layout is Layout.TB and dim == 0:
        tr.bind(out, TracedValue(v.name, Layout.STEP, v.spec, step=index))
        return
    _need_per_sample(tr, v, dim)
    axis = dim - v.layout.lead
    part = slice_value(tr, v, axis, index, index + 1)
    tr.bind(out, tr.reshape(part, v.layout, part.spec.shape[:axis] + part.spec.shape[axis + 1:]))


@function("torch.Tensor.__getitem__")
def _getitem(tr: Tracer, args, kwargs, out):
    """``x[t]`` of a ``[T, B, ...]`` value (one step), and basic slices/integers on per-sample
    axes (``x[..., :d]``); other indexing (tensors, None, steps != 1) is refused."""
    t, index = args[0], args[1]
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        k = index.index(Ellipsis)
        fill = t.dim() - (len(index) - 1)
        index = index[:k] + (slice(None),) * fill + index[k + 1:]
    parts: list[tuple[int, object]] = list(enumerate(index))
    if not all(isinstance(i, int) or (isinstance(i, slice) and i.step in (None, 1))
               for _, i in parts):
        raise tr.unsupported(f"indexing with {args[1]!r}: only integers and unit-step slices")
    v = tr.value(t)
    # integers last-to-first so that earlier axis numbers stay valid; slices need no reshape
    for d, i in parts:
        if isinstance(i, slice):
            a, b, _ = i.indices(t.shape[d])
            if (a, b) != (0, t.shape[d]):
                _need_per_sample(tr, v, d)
                v = slice_value(tr, v, d - v.layout.lead, a, b)
    for d, i in reversed(parts):
        if isinstance(i, int):
            if v.layout is Layout.TB and d == 0:
                v = TracedValue(v.name, Layout.STEP, v.spec, step=i % t.shape[0])
                continue
            _need_per_sample(tr, v, d)
            axis = d - v.layout.lead
            part = slice_value(tr, v, axis, i % t.shape[d], i % t.shape[d] + 1)
            v = tr.reshape(part, v.layout, part.spec.shape[:axis] + part.spec.shape[axis + 1:])
    tr.bind(out, v)


# ----------------------------------------------------------------------------- stack, cat
@function("torch.stack", "torch.cat", "torch.concat", "torch.concatenate")
def _stack(tr: Tracer, args, kwargs, out):
    tensors = list(args[0])
    dim = int(kwargs.get("dim", args[1] if len(args) > 1 else 0))
    is_cat = not tr.current_function.endswith("stack")
    values = [tr.lookup(x) for x in tensors]
    want = Layout.T1 if is_cat else Layout.STEP
    if (dim == 0 and values and all(v is not None and v.layout is want for v in values)
            and len({v.name for v in values}) == 1
            and [v.step for v in values] == list(range(len(values)))):
        tr.set_timesteps(len(values))
        tr.bind(out, TracedValue(values[0].name, Layout.TB, values[0].spec))
        return
    what = "torch.cat" if is_cat else "torch.stack"
    raise tr.unsupported(
        f"{what} of {len(tensors)} tensors along axis {dim} needs an IR op 'concat' that spikec "
        "does not have yet (only the steps 0..T-1 of one value, in order, along axis 0 are "
        "supported)")


__all__ = ["slice_value"]
