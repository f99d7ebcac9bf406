"""Reference interpreter of the float IR (numpy): the executable meaning of every float op.

Values of rate ``step`` are arrays ``[T, B, *shape]``; values of rate ``final`` are ``[B, *shape]``.
The graph is feed-forward, so running op by op over all T steps at once gives the same result as
running step by step; stateful ops (LIF, TimeMean) loop over T inside their kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from spikec.errors import ShapeError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.graph import Graph
from spikec.ir.types import Encoding, FireOn, Rate

# A kernel maps (op, input arrays) to the output array. Stateless kernels see arrays with any
# number of leading axes flattened to one: [N, *shape]. Kernels marked ``over_time`` (stateful
# ops) see [T, B, *shape].
KERNELS = OpTable("the float interpreter")
KERNELS.refuse(F.FIXED_ONLY_OPS, "a fixed-point op: run the graph with the bit-exact simulator "
               "(spikec.sim)")


def over_time(fn: Callable) -> Callable:
    """Mark a kernel as one that sees the whole ``[T, B, *shape]`` input (a stateful op)."""
    fn.over_time = True
    return fn


def preprocess(op: O.Input, raw: np.ndarray, dtype) -> np.ndarray:
    """Raw input [N, *shape] -> model input: pad with zeros, scale, normalize per channel."""
    x = raw.astype(dtype)
    if op.pad:
        p = op.pad
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
    x = x * dtype(op.pixel_scale)
    if op.mean:
        shape = (1, len(op.mean)) + (1,) * (x.ndim - 2)
        x = (x - np.asarray(op.mean, dtype).reshape(shape)) / np.asarray(op.std, dtype).reshape(shape)
    return x


def _pad_hw(x: np.ndarray, padding, value=0.0) -> np.ndarray:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], constant_values=value)


def _windows(x: np.ndarray, kernel_hw, stride, dilation=(1, 1)) -> np.ndarray:
    """[N, C, H, W] -> [N, C, Ho, Wo, kh, kw] view of the (already padded) input."""
    kh, kw = kernel_hw
    dh, dw = dilation
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::stride[0], ::stride[1], ::dh, ::dw]


def conv2d(x: np.ndarray, weight: np.ndarray, bias, stride, padding, dilation=(1, 1),
           groups: int = 1) -> np.ndarray:
    """Cross-correlation like ``torch.nn.functional.conv2d``; x [N, C, H, W] -> [N, O, Ho, Wo]."""
    win = _windows(_pad_hw(x, padding), weight.shape[2:], stride, dilation)
    cout = weight.shape[0]
    og, cg = cout // groups, weight.shape[1]
    parts = []
    for g in range(groups):
        w = weight[g * og:(g + 1) * og]
        parts.append(np.tensordot(win[:, g * cg:(g + 1) * cg], w, axes=([1, 4, 5], [1, 2, 3])))
    y = np.concatenate(parts, axis=-1) if groups > 1 else parts[0]
    y = np.moveaxis(y, -1, 1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1).astype(y.dtype)
    return np.ascontiguousarray(y)


@KERNELS.register(O.Conv2d)
def _conv(op: O.Conv2d, x):
    w = op.weight.astype(x.dtype)
    b = None if op.bias is None else op.bias.astype(x.dtype)
    return conv2d(x, w, b, op.stride, op.padding, op.dilation, op.groups)


def linear(x: np.ndarray, weight: np.ndarray, bias, axis: int) -> np.ndarray:
    """``x`` [N, *shape]; contracts per-sample ``axis`` with ``weight`` [out, in]."""
    a = axis % (x.ndim - 1) + 1
    xm = np.moveaxis(x, a, -1)
    y = xm @ weight.T.astype(x.dtype)
    if bias is not None:
        y = y + bias.astype(x.dtype)
    return np.ascontiguousarray(np.moveaxis(y, -1, a))


@KERNELS.register(O.Linear)
def _linear(op: O.Linear, x):
    return linear(x, op.weight, op.bias, op.axis)


@KERNELS.register(O.BatchNorm)
def _bn(op: O.BatchNorm, x):
    a = op.axis % (x.ndim - 1) + 1
    shape = [1] * x.ndim
    shape[a] = -1
    dt = x.dtype.type
    inv = (1.0 / np.sqrt(op.var.astype(dt) + dt(op.eps))).astype(dt)
    scale = (op.gamma.astype(dt) * inv).reshape(shape)
    shift = (op.beta.astype(dt) - op.mean.astype(dt) * op.gamma.astype(dt) * inv).reshape(shape)
    return x * scale + shift


@KERNELS.register(O.MaxPool2d)
def _maxpool(op: O.MaxPool2d, x):
    win = _windows(_pad_hw(x, op.padding, -np.inf), op.kernel, op.stride)
    return np.ascontiguousarray(win.max(axis=(4, 5)))


@KERNELS.register(O.AvgPool2d)
def _avgpool(op: O.AvgPool2d, x):
    win = _windows(_pad_hw(x, op.padding, 0.0), op.kernel, op.stride)
    return np.ascontiguousarray(win.sum(axis=(4, 5)) / x.dtype.type(op.kernel[0] * op.kernel[1]))


@KERNELS.register(O.Mean)
def _mean(op: O.Mean, x):
    axes = tuple(a % (x.ndim - 1) + 1 for a in op.axes)
    return x.mean(axis=axes, dtype=x.dtype)


@KERNELS.register(O.Add)
def _add(op, a, b):
    return a + b


@KERNELS.register(O.IAND)
def _iand(op, a, s):
    return (1 - a) * s


@KERNELS.register(O.AND)
def _and(op, a, s):
    return a * s


@KERNELS.register(O.ReduceSum)
def _reduce_sum(op: O.ReduceSum, x):
    axes = tuple(a % (x.ndim - 1) + 1 for a in op.axes)
    return x.sum(axis=axes, dtype=x.dtype, keepdims=True)


@KERNELS.register(O.Scale)
def _scale(op: O.Scale, x):
    return x * x.dtype.type(op.factor)


@KERNELS.register(O.SpikeMatmul)
def _matmul(op, a, b):
    return a @ b


@KERNELS.register(O.Reshape)
def _reshape(op: O.Reshape, x):
    return x.reshape((x.shape[0],) + tuple(op.shape))


@KERNELS.register(O.Transpose)
def _transpose(op: O.Transpose, x):
    return np.ascontiguousarray(x.transpose((0,) + tuple(p + 1 for p in op.perm)))


@KERNELS.register(O.Output)
def _output(op, x):
    return x


@KERNELS.register(O.LIF)
@over_time
def lif_float(op: O.LIF, x: np.ndarray) -> np.ndarray:
    """spikingjelly's multi-step LIF over x [T, ...] (see ``ops.LIF``), float arithmetic of x."""
    dt = x.dtype.type
    tau, vth = dt(op.tau), dt(op.v_threshold)
    v_reset = dt(0.0 if op.v_reset is None else op.v_reset)
    v = np.zeros_like(x[0])
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        if op.decay_input:
            h = v + (x[t] - (v - v_reset)) / tau
        else:
            h = v - (v - v_reset) / tau + x[t]
        s = (h >= vth) if op.fire_on == FireOn.GE else (h > vth)
        out[t] = s
        if op.v_reset is None:
            v = h - vth * s
        else:
            v = np.where(s, v_reset, h)
    return out


@KERNELS.register(O.TimeMean)
@over_time
def _time_mean(op, x):
    return x.sum(axis=0) / x.dtype.type(x.shape[0])


@dataclass
class Trace:
    """What one run produced: ``outputs`` by output-op name, ``values`` by name when recorded."""

    outputs: dict[str, np.ndarray]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def logits(self) -> np.ndarray:
        """The first output, read out as scores [B, classes] (per-step outputs: mean over time)."""
        y = next(iter(self.outputs.values()))
        return y.mean(axis=0) if y.ndim >= 3 else y


def run(graph: Graph, data: np.ndarray | dict[str, np.ndarray], *, dtype=np.float32,
        record: Iterable[str] | str | None = None) -> Trace:
    """Run ``graph`` for ``graph.timesteps`` steps on a batch.

    Parameters
    ----------
    data : array [B, *input shape] (raw pixels for ``repeat`` inputs, [B, T, *shape] for
        ``sequence`` inputs), or a dict by input-op name when the graph has several inputs.
    dtype : float dtype of the arithmetic (float32 like PyTorch, or float64).
    record : names of values to keep, ``"all"``, or None (outputs only).
    """
    specs = graph.specs
    T = graph.timesteps
    if not isinstance(data, dict):
        if len(graph.inputs) != 1:
            raise ShapeError(f"graph has {len(graph.inputs)} inputs; pass a dict by input name")
        data = {graph.inputs[0].name: data}
    keep = set(specs) if record == "all" else set(record or ())
    refcount: dict[str, int] = {}
    for op in graph.ops:
        for i in op.inputs:
            refcount[i] = refcount.get(i, 0) + 1
    env: dict[str, np.ndarray] = {}
    trace = Trace(outputs={})
    dt = np.dtype(dtype).type
    for op in graph.ops:
        spec = specs[op.name]
        if op.ARITY == 0:
            y = KERNELS.lookup(op)(op, data, spec, T, dt)
        else:
            args = [env[i] for i in op.inputs]
            y = _apply(op, args, [specs[i] for i in op.inputs])
        env[op.name] = y
        if isinstance(op, O.Output):
            trace.outputs[op.name] = y
        if op.name in keep:
            trace.values[op.name] = y
        for i in op.inputs:
            refcount[i] -= 1
            if refcount[i] == 0 and i not in keep:
                del env[i]
    return trace


@KERNELS.register(O.Input)
def _input_value(op: O.Input, data: dict, spec, T: int, dt) -> np.ndarray:
    if op.name not in data:
        raise ShapeError(f"no data for input {op.name!r}")
    raw = np.asarray(data[op.name])
    if op.encoding == Encoding.REPEAT:
        if raw.shape[1:] != tuple(op.shape):
            raise ShapeError(f"input {op.name!r} expects samples of shape {tuple(op.shape)}, "
                             f"data has {raw.shape[1:]}")
        x = preprocess(op, raw, dt)
        return np.broadcast_to(x, (T,) + x.shape)
    if raw.ndim < 2 or raw.shape[1] != T or raw.shape[2:] != tuple(op.shape):
        raise ShapeError(f"input {op.name!r} expects [B, {T}, {', '.join(map(str, op.shape))}] "
                         f"sequences, data has {raw.shape}")
    x = preprocess(op, raw.reshape((-1,) + raw.shape[2:]), dt)
    return np.ascontiguousarray(x.reshape(raw.shape[:2] + x.shape[1:]).swapaxes(0, 1))


def _apply(op: O.Op, args: list[np.ndarray], in_specs) -> np.ndarray:
    fn = KERNELS.lookup(op)
    if getattr(fn, "over_time", False):
        return fn(op, *args)
    lead = 2 if in_specs[0].rate is Rate.STEP else 1
    lead_shape = args[0].shape[:lead]
    flat = [a.reshape((-1,) + a.shape[lead:]) for a in args]
    y = fn(op, *flat)
    return y.reshape(lead_shape + y.shape[1:])


def predict(graph: Graph, images: np.ndarray, *, batch_size: int = 64, dtype=np.float32,
            progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Logits [N, classes] for ``images`` [N, ...], in batches; ``progress(n)`` after each."""
    out = []
    for s in range(0, len(images), batch_size):
        out.append(run(graph, images[s:s + batch_size], dtype=dtype).logits)
        if progress:
            progress(len(out[-1]))
    return np.concatenate(out) if out else np.zeros((0,))
