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
``x.mean(0)`` on ``[T, B, ...]``                       ``TimeMean`` (rate final)
``x.mean(dims)`` over per-sample axes                  ``Mean``
=====================================================  =============================================
"""
from __future__ import annotations

import numbers

import torch

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
    if v.negated:
        v = tr.value(args[0])  # raises
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
    return tr.emit(O.Transpose(tr.op_name("transpose"), (v.name,), perm=perm), v.layout)


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
    if v is None or v.negated or v.layout not in (Layout.T1, Layout.STATIC):
        raise tr.unsupported("repeat/expand is supported only for repeating the static input over "
                             "time (x.unsqueeze(0).repeat(T, 1, 1, 1, 1))")
    if len(shape) != len(src) or shape[1:] != src[1:]:
        raise tr.unsupported(f"repeat/expand of {src} to {shape}: only the leading axis may grow")
    if v.layout is Layout.T1:
        tr.set_timesteps(shape[0])
        tr.bind(out, TracedValue(v.name, Layout.TB, v.spec))
    else:
        tr.set_timesteps(shape[0] // src[0])
        tr.bind(out, TracedValue(v.name, Layout.MERGED, v.spec))


# ----------------------------------------------------------------------------- arithmetic
def _join_layout(tr: Tracer, a: TracedValue, b: TracedValue) -> Layout:
    if a.layout is b.layout:
        return a.layout
    if {a.layout, b.layout} == {Layout.STATIC, Layout.TB}:
        return Layout.TB  # the static value broadcasts over time
    raise tr.unsupported(f"combines a {a.layout.value} tensor with a {b.layout.value} one")


def _same_shape(tr: Tracer, a: TracedValue, b: TracedValue, what: str) -> None:
    if a.spec.shape != b.spec.shape:
        raise tr.unsupported(f"{what} of per-sample shapes {a.spec.shape} and {b.spec.shape} "
                             "(broadcasting is not supported)")


def _scale(tr: Tracer, v: TracedValue, factor: float) -> TracedValue:
    if factor == 1.0:
        return v
    return tr.emit(O.Scale(tr.op_name("scale"), (v.name,), factor=float(factor)), v.layout)


@function(*_methods("add", "add_", "__add__", "__radd__", "__iadd__"))
def _add(tr: Tracer, args, kwargs, out):
    a, b = args[0], kwargs.get("other", args[1] if len(args) > 1 else None)
    if kwargs.get("alpha", 1) != 1:
        raise tr.unsupported("add with alpha != 1")
    va, vb = tr.value(a), tr.value(b)
    if va is None or vb is None:
        c = _scalar(tr, b if vb is None else a)
        if c == 0.0:
            tr.bind(out, va or vb)
            return
        raise tr.unsupported("adding a constant (bias) to a traced tensor; the IR adds only "
                             "two traced values")
    _same_shape(tr, va, vb, "add")
    layout = _join_layout(tr, va, vb)
    tr.bind(out, tr.emit(O.Add(tr.op_name("add"), (va.name, vb.name)), layout))


@function(*_methods("mul", "multiply", "mul_", "__mul__", "__rmul__", "__imul__"))
def _mul(tr: Tracer, args, kwargs, out):
    a, b = args[0], kwargs.get("other", args[1] if len(args) > 1 else None)
    va, vb = tr.lookup(a), tr.lookup(b)
    if va is not None and vb is not None:
        both = not va.negated and not vb.negated
        tr.bind(out, _and(tr, tr.value(a), tr.value(b)) if both else _iand(tr, a, b, va, vb))
        return
    v = tr.value(a if va is not None else b)
    c = _scalar(tr, b if va is not None else a)
    if c is None:
        raise tr.unsupported("multiplying a traced tensor by a constant tensor; only scalar "
                             "factors (Scale) are supported")
    tr.bind(out, _scale(tr, v, c))


def _and(tr: Tracer, va: TracedValue, vb: TracedValue) -> TracedValue:
    """``a * s`` of two spike tensors -> ``AND(a, s)``."""
    if va.spec.kind is not Kind.SPIKE or vb.spec.kind is not Kind.SPIKE:
        raise tr.unsupported("an elementwise product of two traced tensors; the IR supports the "
                             "AND a * s and the IAND (1 - a) * s of spike tensors, got "
                             f"{va.spec.kind.value} and {vb.spec.kind.value}")
    _same_shape(tr, va, vb, "AND")
    return tr.emit(O.AND(tr.op_name("and"), (va.name, vb.name)), _join_layout(tr, va, vb))


def _iand(tr: Tracer, a, b, va: TracedValue, vb: TracedValue) -> TracedValue:
    """``(1 - a) * s`` in either order -> ``IAND(a, s)``."""
    if va.negated == vb.negated:
        raise tr.unsupported("an elementwise product of two traced tensors; the IR supports only "
                             "the IAND join (1 - a) * s of spike tensors")
    neg, other = (va, vb) if va.negated else (vb, va)
    other = tr.value(b if neg is va else a)
    base = TracedValue(neg.name, neg.layout, neg.spec)
    if base.spec.kind is not Kind.SPIKE or other.spec.kind is not Kind.SPIKE:
        raise tr.unsupported(f"(1 - a) * s needs two spike tensors, got {base.spec.kind.value} "
                             f"and {other.spec.kind.value}")
    _same_shape(tr, base, other, "IAND")
    layout = _join_layout(tr, base, other)
    return tr.emit(O.IAND(tr.op_name("iand"), (base.name, other.name)), layout)


@function(*_methods("div", "divide", "true_divide", "__truediv__", "div_", "__itruediv__"))
def _div(tr: Tracer, args, kwargs, out):
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
@function(*_methods("mean"))
def _mean(tr: Tracer, args, kwargs, out):
    v = _traced_input(tr, args)
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    if dim is None:
        raise tr.unsupported("mean over all axes (batch included)")
    nd = args[0].dim()
    dims = sorted({d % nd for d in ((dim,) if isinstance(dim, int) else dim)})
    lead = v.layout.lead
    if v.layout is Layout.TB and dims == [0] and not keepdim:
        tr.bind(out, tr.emit(O.TimeMean(tr.op_name("time_mean"), (v.name,)), Layout.FINAL))
        return
    if dims[0] < lead:
        raise tr.unsupported(f"mean over axes {tuple(dims)} of a {v.layout.value} tensor (only "
                             "mean(0) over [T, B, ...] or over per-sample axes is supported)")
    axes = tuple(d - lead for d in dims)
    y = tr.emit(O.Mean(tr.op_name("mean"), (v.name,), axes=axes), v.layout)
    if keepdim:
        y = tr.reshape(y, v.layout, tuple(out.shape[lead:]))
    tr.bind(out, y)


def _unscaled(tr: Tracer, v: TracedValue) -> tuple[TracedValue, float]:
    """``(s, c)`` when ``v`` is ``Scale(c)`` of a spike/count value ``s`` (else ``(v, 1)``)."""
    if v.spec.kind.is_integer:
        return v, 1.0
    producer = next((op for op in reversed(tr.ops) if op.name == v.name), None)
    if isinstance(producer, O.Scale) and tr.specs[producer.inputs[0]].kind.is_integer:
        src = producer.inputs[0]
        return TracedValue(src, v.layout, tr.specs[src]), producer.factor
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
    (sa, ca), (sb, cb) = _unscaled(tr, va), _unscaled(tr, vb)
    if not (sa.spec.kind.is_integer and sb.spec.kind.is_integer):
        raise tr.unsupported(
            f"matmul of {sa.spec.kind.value} {sa.spec.shape} and {sb.spec.kind.value} "
            f"{sb.spec.shape}: only spike/count tensors can be multiplied (spiking self-attention); "
            "a product with real-valued tensors has no spiking equivalent")
    if sa.layout is not sb.layout:
        raise tr.unsupported(f"matmul of a {sa.layout.value} and a {sb.layout.value} tensor")
    y = tr.emit(O.SpikeMatmul(tr.op_name("matmul"), (sa.name, sb.name)), sa.layout)
    tr.bind(out, _scale(tr, y, ca * cb))

__all__ = ["FUNCTIONS", "function"]
