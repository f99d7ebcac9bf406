"""Handlers for the torch functions and Tensor methods the tracer records (outside leaf modules).

Each handler gets ``(tracer, args, kwargs, out)`` after the call ran, maps the traced inputs to IR
values, emits ops and binds ``out``. Keys are the names ``torch.overrides.resolve_name`` gives.

Supported (a traced tensor ``x``, spike or count tensors ``s``, a Python number ``c``):

=====================================================  =============================================
torch                                                  IR
=====================================================  =============================================
``x.reshape / view / flatten / unflatten / squeeze /   ``Reshape`` of the per-sample shape (none if
unsqueeze`` (leading axes classified by layout)        unchanged); ``flatten(0, 1)``: ``[T*B]``
``x.transpose / permute`` (per-sample axes only)       ``Transpose``
``x.unsqueeze(0).repeat(T, 1, ...)`` / ``.expand``     the input's repeat encoding (sets T)
``x.contiguous / clone / detach / float / to``         nothing (same value)
``s1 @ s2``, ``torch.matmul``, ``torch.bmm``           ``SpikeMatmul`` (``(c * s1) @ s2`` becomes
                                                       ``c * (s1 @ s2)``: exact for c = 2^k)
``x * c``, ``c * x``, ``x / c``                        ``Scale``
``x + y`` (same per-sample shape)                      ``Add``
``(1 - a) * s`` of spikes                              ``IAND(a, s)``
``s1 * s2`` of two spike tensors (broadcasting size-1   ``AND`` (the spike-driven attention's
axes of the same rank)                                 Hadamard products, QKFormer's mask)
``x.mean(0)`` on ``[T, B, ...]``                       ``TimeMean`` (rate final)
``x.mean(dims)`` over per-sample axes                  ``Mean``
``x.sum(0)`` over time; ``x.sum(dims)`` of real values  ``TimeMean`` / ``Mean``, then ``Scale(n)``
``x.sum(dims)`` of spikes or counts (per-sample axes)  ``ReduceSum`` (a count; ``Reshape`` unless
                                                       ``keepdim``)
``out = out + y[t]`` in a loop over steps, ``out / T``  ``TimeMean(y)`` (``Scale`` unless 1)
``einsum`` that is a matrix product                    ``Transpose`` + ``SpikeMatmul``
=====================================================  =============================================

``chunk``/``split``/indexing and ``stack``/``cat`` are in ``parts.py``. Constructs that need an IR op
spikec does not have (a max over an axis, a concatenation) are refused with the name of the missing
op; see docs/frontend-torch.md.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from dataclasses import replace

from spikec.frontends.torch.tracer import Layout, Tracer, TracedValue
from spikec.ir import ops as O
from spikec.ir.types import Kind

FUNCTIONS: dict[str, callable] = {}


def function(*names: str):
    """Register a handler for the torch functions/methods called ``names``."""
    def wrap(fn):
        for n in names:
            FUNCTIONS[n] = fn
        return fn
    return wrap


def _methods(*names: str) -> list[str]:
    out = []
    for n in names:
        out += [f"torch.Tensor.{n}", f"torch.{n}"]
    return out


def _scalar(tr: Tracer, x) -> float | None:
    """A Python number or an untraced one-element tensor, as float; else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, numbers.Number):
        return float(x)
    if isinstance(x, torch.Tensor) and tr.lookup(x) is None and x.numel() == 1:
        return float(x.item())
    return None


def _traced_input(tr: Tracer, args) -> TracedValue:
    v = tr.value(args[0])
    if v is None:
        raise tr.unsupported("an operation on a constant tensor feeds a traced one")
    return v


# ----------------------------------------------------------------------------- layout
def _classify(tr: Tracer, v: TracedValue, shape: tuple[int, ...]) -> tuple[Layout, tuple]:
    """Layout and per-sample shape of a reshaped tensor from its concrete torch shape."""
    T, B = tr.timesteps, tr.batch
    if v.layout in (Layout.TB, Layout.MERGED):
        if len(shape) >= 2 and shape[0] == T and shape[1] == B:
            return Layout.TB, shape[2:]
        if shape and shape[0] == T * B:
            return Layout.MERGED, shape[1:]
    elif v.layout in (Layout.STATIC, Layout.T1):
        if len(shape) >= 2 and shape[0] == 1 and shape[1] == B:
            return Layout.T1, shape[2:]
        if shape and shape[0] == B:
            return Layout.STATIC, shape[1:]
    elif v.layout is Layout.STEP:
        if len(shape) >= 2 and shape[0] == 1 and shape[1] == B:
            return Layout.T1, shape[2:]  # unsqueeze(0) of one step, for torch.cat over the steps
        if shape and shape[0] == B:
            return Layout.STEP, shape[1:]
    elif shape and shape[0] == B:
        return Layout.FINAL, shape[1:]
    raise tr.unsupported(f"a reshape of a {v.layout.value} tensor to {tuple(shape)} changes its "
                         f"batch/time axes (T = {T}, B = {B})")


@function(*_methods("reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze"),
          "torch.Tensor.view_as", "torch.Tensor.reshape_as")
def _reshape(tr: Tracer, args, kwargs, out):
    v = tr.lookup(args[0])
    if v is None:
        raise tr.unsupported("reshape of a constant")
    if v.negated or v.layout is Layout.ACCUM:
        v = tr.value(args[0])  # raises for 1 - x; a finished running sum is a final value
    layout, shape = _classify(tr, v, tuple(out.shape))
    tr.bind(out, tr.reshape(v, layout, shape))


@function(*_methods("contiguous", "clone", "detach", "float", "to", "type_as"),
          "torch.Tensor.requires_grad_")
def _same(tr: Tracer, args, kwargs, out):
    v = tr.lookup(args[0])  # keeps a pending [1, B] layout and a pending 1 - x
    if v is None:
        raise tr.unsupported("an operation on a constant tensor feeds a traced one")
    if out.dtype != args[0].dtype:
        raise tr.unsupported(f"a dtype change to {out.dtype}")
    tr.bind(out, v)


def _full_perm(tr: Tracer, v: TracedValue, perm: list[int]) -> tuple[int, ...]:
    lead = v.layout.lead
    if perm[:lead] != list(range(lead)):
        raise tr.unsupported(f"a transpose/permute {tuple(perm)} of a {v.layout.value} tensor moves "
                             "its batch/time axes")
    return tuple(p - lead for p in perm[lead:])


def _permute_value(tr: Tracer, v: TracedValue, perm: tuple[int, ...]) -> TracedValue:
    if perm == tuple(range(len(perm))):
        return v
    return tr.emit(O.Transpose(tr.op_name("transpose"), (v.name,), perm=perm), v.layout, v.step)


@function(*_methods("transpose", "swapaxes", "swapdims"))
def _transpose(tr: Tracer, args, kwargs, out):
    v = _traced_input(tr, args)
    nd = out.dim()
    d0 = kwargs.get("dim0", args[1] if len(args) > 1 else None)
    d1 = kwargs.get("dim1", args[2] if len(args) > 2 else None)
    perm = list(range(nd))
    d0, d1 = d0 % nd, d1 % nd
    perm[d0], perm[d1] = perm[d1], perm[d0]
    tr.bind(out, _permute_value(tr, v, _full_perm(tr, v, perm)))


@function(*_methods("permute"))
def _permute(tr: Tracer, args, kwargs, out):
    v = _traced_input(tr, args)
    dims = kwargs.get("dims", args[1:])
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    nd = out.dim()
    tr.bind(out, _permute_value(tr, v, _full_perm(tr, v, [d % nd for d in dims])))


@function(*_methods("repeat", "expand"))
def _repeat(tr: Tracer, args, kwargs, out):
    """``x.unsqueeze(0).repeat(T, 1, ...)`` (-> [T, B]) or ``x.repeat(T, 1, ...)`` (-> [T*B])
    of the static input: the input op's repeat encoding."""
    v = tr.lookup(args[0])
    shape = tuple(out.shape)
    src = tuple(args[0].shape)
    if v is None or v.negated or v.layout not in (Layout.T1, Layout.STATIC) or v.step is not None:
        raise tr.unsupported("repeat/expand is supported only for repeating the static input over "
                             "time (x.unsqueeze(0).repeat(T, 1, 1, 1, 1)); repeating per-sample "
                             "axes needs a broadcast op the IR does not have")
    if len(shape) != len(src) or shape[1:] != src[1:]:
        raise tr.unsupported(f"repeat/expand of {src} to {shape}: only the leading axis may grow")
    if v.layout is Layout.T1:
        tr.set_timesteps(shape[0])
        tr.bind(out, TracedValue(v.name, Layout.TB, v.spec))
    else:
        tr.set_timesteps(shape[0] // src[0])
        tr.bind(out, TracedValue(v.name, Layout.MERGED, v.spec))


# ----------------------------------------------------------------------------- arithmetic
def _join_layout(tr: Tracer, a: TracedValue, b: TracedValue) -> tuple[Layout, int | None]:
    """Layout and step of an elementwise combination of ``a`` and ``b``."""
    if a.layout is b.layout:
        if a.step != b.step:
            raise tr.unsupported(f"combines the values of time steps {a.step} and {b.step} (a "
                                 "recurrence across steps has no IR equivalent)")
        return a.layout, a.step
    if {a.layout, b.layout} == {Layout.STATIC, Layout.TB}:
        return Layout.TB, None  # the static value broadcasts over time
    if {a.layout, b.layout} == {Layout.STATIC, Layout.STEP}:
        return Layout.STEP, a.step if a.step is not None else b.step
    raise tr.unsupported(f"combines a {a.layout.value} tensor with a {b.layout.value} one")


def _same_shape(tr: Tracer, a: TracedValue, b: TracedValue, what: str) -> None:
    if a.spec.shape != b.spec.shape:
        raise tr.unsupported(f"{what} of per-sample shapes {a.spec.shape} and {b.spec.shape} "
                             "(broadcasting is not supported)")


def _scale(tr: Tracer, v: TracedValue, factor: float) -> TracedValue:
    if v.layout is Layout.ACCUM:
        return tr.finish_sum(v, factor)
    if factor == 1.0:
        return v
    return tr.emit(O.Scale(tr.op_name("scale"), (v.name,), factor=float(factor)), v.layout, v.step)


def _is_zero(tr: Tracer, x) -> bool:
    """A constant zero: the number 0 or an untraced all-zero tensor made in forward
    (``torch.zeros_like(y)``; a parameter that happens to be zero is still a parameter)."""
    if isinstance(x, torch.Tensor) and tr.lookup(x) is None:
        return not isinstance(x, torch.nn.Parameter) and not bool(x.any())
    return _scalar(tr, x) == 0.0


@function(*_methods("add", "add_", "__add__", "__radd__", "__iadd__"))
def _add(tr: Tracer, args, kwargs, out):
    a, b = args[0], kwargs.get("other", args[1] if len(args) > 1 else None)
    if kwargs.get("alpha", 1) != 1:
        raise tr.unsupported("add with alpha != 1")
    acc = _accumulate(tr, tr.lookup(a), tr.lookup(b))
    if acc is not None:
        tr.bind(out, acc)
        return
    va, vb = tr.value(a), tr.value(b)
    if va is None or vb is None:
        if _is_zero(tr, b if vb is None else a):
            tr.bind(out, va or vb)
            return
        raise tr.unsupported("adding a constant (bias) to a traced tensor; the IR adds only "
                             "two traced values")
    _same_shape(tr, va, vb, "add")
    layout, step = _join_layout(tr, va, vb)
    tr.bind(out, tr.emit(O.Add(tr.op_name("add"), (va.name, vb.name)), layout, step))


def _accumulate(tr: Tracer, va: TracedValue | None, vb: TracedValue | None):
    """``out = out + y[t]`` in a Python loop over time: the running sum of ``y`` over the steps
    ``0 .. t`` (an ``ACCUM`` value), or None when this add is not one."""
    if va is None or vb is None:
        return None
    pair = {va.layout, vb.layout}
    if pair == {Layout.STEP} and va.step != vb.step:
        first, new = (va, vb) if va.step < vb.step else (vb, va)
        if first.step != 0 or new.step != 1:
            return None  # _join_layout refuses it
        acc = replace(first, layout=Layout.ACCUM, step=1)
    elif pair == {Layout.ACCUM, Layout.STEP}:
        acc, new = (va, vb) if va.layout is Layout.ACCUM else (vb, va)
    else:
        return None
    if new.name != acc.name or new.step != acc.step:
        raise tr.unsupported(f"adds the value of time step {new.step} to a running sum over "
                             f"steps 0..{acc.step - 1} of another value (only out = out + y[t] "
                             "summing one value over consecutive steps is supported)")
    return replace(acc, step=acc.step + 1)


@function(*_methods("mul", "multiply", "mul_", "__mul__", "__rmul__", "__imul__"))
def _mul(tr: Tracer, args, kwargs, out):
    a, b = args[0], kwargs.get("other", args[1] if len(args) > 1 else None)
    va, vb = tr.lookup(a), tr.lookup(b)
    if va is not None and vb is not None:
        tr.bind(out, _product(tr, a, b, va, vb))
        return
    v = va if va is not None else vb
    if v.layout is not Layout.ACCUM:
        v = tr.value(a if va is not None else b)
    c = _scalar(tr, b if va is not None else a)
    if c is None:
        raise tr.unsupported("multiplying a traced tensor by a constant tensor; only scalar "
                             "factors (Scale) are supported")
    tr.bind(out, _scale(tr, v, c))


def _product(tr: Tracer, a, b, va: TracedValue, vb: TracedValue) -> TracedValue:
    """An elementwise product of two traced tensors: ``(1 - a) * s`` in either order ->
    ``IAND(a, s)``; ``s1 * s2`` of spikes -> ``AND(s1, s2)`` (size-1 axes broadcast)."""
    if va.negated != vb.negated:
        return _iand(tr, a, b, va, vb)
    if va.negated:
        raise tr.unsupported("(1 - a) * (1 - b) of spikes: only (1 - a) * s (IAND) and a * b (AND)")
    va, vb = tr.value(a), tr.value(b)
    if va.spec.kind is not Kind.SPIKE or vb.spec.kind is not Kind.SPIKE:
        raise tr.unsupported(
            f"an elementwise product of a {va.spec.kind.value} and a {vb.spec.kind.value} tensor: "
            "only a product of two spike tensors (an AND) has an exact spiking form; a product "
            "with a count or a real value would need a multiplier neuron")
    if len(va.spec.shape) != len(vb.spec.shape) or any(
            x != y and 1 not in (x, y) for x, y in zip(va.spec.shape, vb.spec.shape)):
        raise tr.unsupported(f"a product of spike tensors of per-sample shapes {va.spec.shape} "
                             f"and {vb.spec.shape} (they must have one rank and broadcast)")
    layout, step = _join_layout(tr, va, vb)
    return tr.emit(O.AND(tr.op_name("and"), (va.name, vb.name)), layout, step)


def _iand(tr: Tracer, a, b, va: TracedValue, vb: TracedValue) -> TracedValue:
    """``(1 - a) * s`` in either order -> ``IAND(a, s)``."""
    neg, other = (va, vb) if va.negated else (vb, va)
    other = tr.value(b if neg is va else a)
    base = TracedValue(neg.name, neg.layout, neg.spec)
    if base.spec.kind is not Kind.SPIKE or other.spec.kind is not Kind.SPIKE:
        raise tr.unsupported(f"(1 - a) * s needs two spike tensors, got {base.spec.kind.value} "
                             f"and {other.spec.kind.value}")
    _same_shape(tr, base, other, "IAND")
    layout, step = _join_layout(tr, base, other)
    return tr.emit(O.IAND(tr.op_name("iand"), (base.name, other.name)), layout, step)


@function(*_methods("div", "divide", "true_divide", "__truediv__", "div_", "__itruediv__"))
def _div(tr: Tracer, args, kwargs, out):
    v = tr.lookup(args[0])
    if v is None or v.layout is not Layout.ACCUM:
        v = _traced_input(tr, args)
    c = _scalar(tr, kwargs.get("other", args[1] if len(args) > 1 else None))
    if c is None or c == 0.0 or kwargs.get("rounding_mode") is not None:
        raise tr.unsupported("division other than by a nonzero scalar")
    tr.bind(out, _scale(tr, v, 1.0 / c))


@function(*_methods("rsub", "__rsub__"))
def _rsub(tr: Tracer, args, kwargs, out):
    """``1 - a`` of a spike tensor: remembered as negated, consumed by :func:`_iand`."""
    v = _traced_input(tr, args)
    c = _scalar(tr, kwargs.get("other", args[1] if len(args) > 1 else None))
    if c != 1.0 or kwargs.get("alpha", 1) != 1 or v.spec.kind is not Kind.SPIKE:
        raise tr.unsupported("c - x is supported only as 1 - s of a spike tensor (IAND)")
    tr.bind(out, TracedValue(v.name, v.layout, v.spec, negated=True))


# ----------------------------------------------------------------------------- reductions, matmul
def _reduce_dims(tr: Tracer, args, kwargs, what: str) -> tuple[list[int], bool]:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    if dim is None:
        raise tr.unsupported(f"{what} over all axes (batch included)")
    nd = args[0].dim()
    return sorted({d % nd for d in ((dim,) if isinstance(dim, int) else dim)}), bool(keepdim)


@function(*_methods("mean", "sum"))
def _mean(tr: Tracer, args, kwargs, out):
    """``mean``: ``TimeMean`` over time, ``Mean`` over per-sample axes. ``sum``: over time or of
    real values the same times the number of elements summed (``Scale(n)``); of spikes or counts
    over per-sample axes a ``ReduceSum`` (an exact count)."""
    v = _traced_input(tr, args)
    is_sum = tr.current_function.endswith("sum")
    dims, keepdim = _reduce_dims(tr, args, kwargs, "sum" if is_sum else "mean")
    lead = v.layout.lead
    if v.layout is Layout.TB and dims == [0] and not keepdim:
        y = tr.emit(O.TimeMean(tr.op_name("time_mean"), (v.name,)), Layout.FINAL)
        tr.bind(out, _scale(tr, y, float(args[0].shape[0])) if is_sum else y)
        return
    if dims[0] < lead:
        raise tr.unsupported(f"{'sum' if is_sum else 'mean'} over axes {tuple(dims)} of a "
                             f"{v.layout.value} tensor (only over time, axis 0 of [T, B, ...], "
                             "or over per-sample axes)")
    axes = tuple(d - lead for d in dims)
    n = int(np.prod([v.spec.shape[a] for a in axes]))
    if is_sum and v.spec.kind.is_integer:
        y = tr.emit(O.ReduceSum(tr.op_name("reduce_sum"), (v.name,), axes=axes), v.layout, v.step)
        if not keepdim:
            y = tr.reshape(y, v.layout, tuple(out.shape[lead:]))
        tr.bind(out, y)
        return
    y = tr.emit(O.Mean(tr.op_name("mean"), (v.name,), axes=axes), v.layout, v.step)
    if is_sum:
        y = _scale(tr, y, float(n))
    if keepdim:
        y = tr.reshape(y, v.layout, tuple(out.shape[lead:]))
    tr.bind(out, y)


@function(*_methods("max", "amax", "min", "amin", "maximum", "minimum", "logsumexp"))
def _max(tr: Tracer, args, kwargs, out):
    name = tr.current_function.rsplit(".", 1)[-1]
    raise tr.unsupported(
        f"{name} over an axis or of two tensors (a max of spikes is an OR) needs an IR op "
        "'reduce_max' that spikec does not have yet; max-pooling (nn.MaxPool2d) is supported")


def _unscaled(tr: Tracer, v: TracedValue) -> tuple[TracedValue, float]:
    """``(s, c)`` when ``v`` is ``Scale(c)`` of a spike/count value ``s`` (else ``(v, 1)``)."""
    if v.spec.kind.is_integer:
        return v, 1.0
    producer = tr.producer.get(v.name)
    if isinstance(producer, O.Scale) and tr.specs[producer.inputs[0]].kind.is_integer:
        src = producer.inputs[0]
        return TracedValue(src, v.layout, tr.specs[src], step=v.step), producer.factor
    return v, 1.0


@function("torch.Tensor.__rmatmul__")
def _rmatmul(tr: Tracer, args, kwargs, out):
    _matmul(tr, (args[1], args[0]), {}, out)


@function("torch.Tensor.matmul", "torch.matmul", "torch.Tensor.__matmul__", "torch.bmm",
          "torch.Tensor.bmm")
def _matmul(tr: Tracer, args, kwargs, out):
    a, b = args[0], kwargs.get("other", kwargs.get("mat2", args[1] if len(args) > 1 else None))
    va, vb = tr.value(a), tr.value(b)
    if va is None or vb is None:
        raise tr.unsupported("matmul with a constant tensor (use nn.Linear for static weights)")
    tr.bind(out, _matmul_values(tr, va, vb))


def _matmul_values(tr: Tracer, va: TracedValue, vb: TracedValue) -> TracedValue:
    """``va @ vb`` of spike/count values (``(c * s1) @ s2`` as ``c * (s1 @ s2)``)."""
    (sa, ca), (sb, cb) = _unscaled(tr, va), _unscaled(tr, vb)
    if not (sa.spec.kind.is_integer and sb.spec.kind.is_integer):
        raise tr.unsupported(
            f"matmul of {sa.spec.kind.value} {sa.spec.shape} and {sb.spec.kind.value} "
            f"{sb.spec.shape}: only spike/count tensors can be multiplied (spiking self-attention); "
            "a product with real-valued tensors has no spiking equivalent")
    if sa.layout is not sb.layout or sa.step != sb.step:
        raise tr.unsupported(f"matmul of a {sa.layout.value} and a {sb.layout.value} tensor")
    y = tr.emit(O.SpikeMatmul(tr.op_name("matmul"), (sa.name, sb.name)), sa.layout, sa.step)
    return _scale(tr, y, ca * cb)

@function("torch.einsum", "torch.functional.einsum")
def _einsum(tr: Tracer, args, kwargs, out):
    """``torch.einsum`` of two traced tensors that is a (batched) matrix product, with any axis
    order: transposes around one ``SpikeMatmul``. ``"...ij,...ij->...ij"`` (elementwise) is the
    Hadamard product (``AND`` of spikes); other equations are refused."""
    eq, ops = args[0], args[1:]
    if len(ops) == 1 and isinstance(ops[0], (tuple, list)):
        ops = tuple(ops[0])
    eq = eq.replace(" ", "")
    if len(ops) != 2 or "->" not in eq or "." in eq:
        raise tr.unsupported(f"einsum {eq!r}: only explicit two-operand equations ('ab,bc->ac')")
    lhs, res = eq.split("->")
    sa, sb = lhs.split(",")
    va, vb = tr.value(ops[0]), tr.value(ops[1])
    if va is None or vb is None:
        raise tr.unsupported(f"einsum {eq!r} with a constant tensor")
    lead = va.layout.lead
    if (vb.layout is not va.layout or sa[:lead] != sb[:lead] or res[:lead] != sa[:lead]
            or len(set(sa)) != len(sa) or len(set(sb)) != len(sb)):
        raise tr.unsupported(f"einsum {eq!r} mixes the batch/time axes of its operands")
    batch = [c for c in res[lead:] if c in sa and c in sb]
    free_a = [c for c in sa[lead:] if c not in sb]
    free_b = [c for c in sb[lead:] if c not in sa]
    summed = [c for c in sa[lead:] if c in sb and c not in res]
    if not summed and not free_a and not free_b and sa == sb == res:
        tr.bind(out, _product(tr, ops[0], ops[1], va, vb))  # the Hadamard product: AND
        return
    if len(summed) != 1 or len(free_a) != 1 or len(free_b) != 1 or set(res[lead:]) != set(
            batch + free_a + free_b):
        raise tr.unsupported(f"einsum {eq!r} is not a matrix product (one summed axis, one free "
                             "axis per operand)")

    def arranged(v, sub, order):
        perm = tuple(sub[lead:].index(c) for c in order)
        return _permute_value(tr, v, perm)

    a = arranged(va, sa, batch + free_a + summed)
    b = arranged(vb, sb, batch + summed + free_b)
    y = _matmul_values(tr, a, b)
    order = batch + free_a + free_b
    tr.bind(out, _permute_value(tr, y, tuple(order.index(c) for c in res[lead:])))


__all__ = ["FUNCTIONS", "function"]
