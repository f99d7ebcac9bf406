"""The float IR's ops: one small dataclass each, its equation in the docstring.

Conventions shared by every op
------------------------------
* Each op produces exactly one value, named like the op. ``inputs`` names the values it reads.
* Shapes are per sample and per time step (no batch axis, no time axis). Axis numbers in op
  fields refer to those per-sample shapes. Images are ``(C, H, W)``; token tensors keep whatever
  layout the model used (``(C, N)`` for Conv1d-style attention, ``(N, C)`` for Linear-style).
* Ops run once per time step ``t = 0 .. T-1`` unless their input has rate ``final``. Stateful ops
  (``STATEFUL = True``) carry state from one step to the next; state starts at zero.
* Weights are float32 numpy arrays in PyTorch's layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from spikec.errors import IRError, ShapeError
from spikec.ir.types import Encoding, FireOn, Kind, Rate, ResetMode, ValueSpec

OP_TYPES: dict[str, type["Op"]] = {}


def register_op(opcode: str):
    """Class decorator: give an op type its opcode and make it known to the verifier and the
    serializer (float and fixed-point ops share the one registry)."""
    def wrap(cls):
        if opcode in OP_TYPES:
            raise RuntimeError(f"opcode {opcode!r} registered twice")
        cls.OPCODE = opcode
        OP_TYPES[opcode] = cls
        return cls
    return wrap


@dataclass(eq=False)
class Op:
    """Base of every IR op. ``name`` is also the name of the value it produces."""

    name: str
    inputs: tuple[str, ...]

    OPCODE: ClassVar[str] = ""
    ARITY: ClassVar[int | None] = 1
    STATEFUL: ClassVar[bool] = False
    #: fields written to a ``.spkc`` only when not None (added after artifacts were pinned: a
    #: graph without them keeps its bytes)
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def infer(self, specs: list[ValueSpec]) -> ValueSpec:
        """Type of the output from the types of the inputs; raises ``ShapeError``."""
        raise NotImplementedError

    def dense_ops(self, specs: list[ValueSpec], out: ValueSpec) -> int:
        """Multiply-accumulates (or elementwise ops) per sample and time step, dense, no sparsity."""
        return 0

    def param_count(self) -> int:
        return sum(int(a.size) for a in self.arrays().values())

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}

    def attributes(self) -> dict:
        """Non-array fields other than name and inputs (for dumps and serialization)."""
        return {k: v for k, v in vars(self).items()
                if k not in ("name", "inputs") and not isinstance(v, np.ndarray)}

    def _fail(self, msg: str) -> ShapeError:
        return ShapeError(f"op {self.name!r} ({self.OPCODE}): {msg}")


def _norm_axis(op: Op, axis: int, ndim: int) -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise op._fail(f"axis {axis} out of range for a {ndim}-d value")
    return a


def _out_len(op: Op, size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    n = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    if n <= 0:
        raise op._fail(f"input of size {size} too small for kernel {kernel}, stride {stride}, "
                       f"padding {pad}")
    return n


# ----------------------------------------------------------------------------- input / output
@register_op("input")
@dataclass(eq=False)
class Input(Op):
    """Model input. ``x = (pixels * pixel_scale - mean[c]) / std[c]``.

    With ``encoding='repeat'`` the same (static image) input is presented at every time step
    (direct encoding); with ``encoding='sequence'`` a different frame is given per step and the
    data carry a leading time axis.

    Attributes
    ----------
    shape : (C, H, W) or any per-sample shape of the raw input.
    encoding : Encoding ('repeat' | 'sequence')
    kind : Kind, value kind of the input (``real`` for images, ``spike`` for event data).
    pixel_scale : float, raw value multiplier (1/255 for uint8 images).
    mean, std : per-channel normalization (empty tuple: none), in scaled units.
    pad : int, zero pixels added on each side of H and W of the raw image before scaling
        (the value's shape is ``(C, H + 2 pad, W + 2 pad)``).
    """

    shape: tuple[int, ...] = ()
    encoding: str = "repeat"
    kind: str = "real"
    pixel_scale: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pad: int = 0
    ARITY: ClassVar[int | None] = 0

    def infer(self, specs):
        if not Encoding.has(self.encoding):
            raise self._fail(f"unknown encoding {self.encoding!r}")
        if not Kind.has(self.kind):
            raise self._fail(f"unknown value kind {self.kind!r}")
        if len(self.mean) != len(self.std):
            raise self._fail("mean and std differ in length")
        if self.mean and len(self.mean) != self.shape[0]:
            raise self._fail(f"{len(self.mean)} normalization channels for {self.shape[0]} "
                             "input channels")
        shape = tuple(self.shape)
        if self.pad:
            if len(shape) != 3 or self.pad < 0:
                raise self._fail(f"pad {self.pad} needs a (C, H, W) input and pad >= 0")
            shape = (shape[0], shape[1] + 2 * self.pad, shape[2] + 2 * self.pad)
        return ValueSpec(shape, Kind(self.kind))


@register_op("output")
@dataclass(eq=False)
class Output(Op):
    """A graph output: ``y = x``. Marks what the model returns (logits, per-step scores)."""

    def infer(self, specs):
        return specs[0]


# ----------------------------------------------------------------------------- synapses
@register_op("conv2d")
@dataclass(eq=False)
class Conv2d(Op):
    """2-D convolution: ``y[o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] x[c, s*i+d*u-p, s*j+d*v-p]``.

    Zero padding. ``weight``: ``[C_out, C_in / groups, kH, kW]``; ``bias``: ``[C_out]`` or None.
    Input ``(C_in, H, W)``, output ``(C_out, H_out, W_out)``, kind ``real``.
    """

    weight: np.ndarray = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def infer(self, specs):
        (x,) = specs
        if len(x.shape) != 3:
            raise self._fail(f"expects a (C, H, W) input, got {x.shape}")
        cout, cin_g, kh, kw = self.weight.shape
        if x.shape[0] != cin_g * self.groups:
            raise self._fail(f"weight expects {cin_g * self.groups} input channels, got {x.shape[0]}")
        if self.bias is not None and self.bias.shape != (cout,):
            raise self._fail(f"bias shape {self.bias.shape} != ({cout},)")
        ho = _out_len(self, x.shape[1], kh, self.stride[0], self.padding[0], self.dilation[0])
        wo = _out_len(self, x.shape[2], kw, self.stride[1], self.padding[1], self.dilation[1])
        return ValueSpec((cout, ho, wo), Kind.REAL, x.rate)

    def dense_ops(self, specs, out):
        return out.size * int(np.prod(self.weight.shape[1:]))


@register_op("linear")
@dataclass(eq=False)
class Linear(Op):
    """Dense synapses along one axis: ``y[..., o, ...] = b[o] + sum_i W[o, i] x[..., i, ...]``.

    ``axis`` is the feature axis of the input and output (``-1`` for ``nn.Linear`` on ``(N, C)``
    tokens, ``0`` for a kernel-1 ``Conv1d`` on ``(C, N)``). ``weight``: ``[out, in]``;
    ``bias``: ``[out]`` or None. Output kind ``real``.
    """

    weight: np.ndarray = None
    bias: np.ndarray | None = None
    axis: int = -1

    def infer(self, specs):
        (x,) = specs
        if not x.shape:
            raise self._fail("expects at least a 1-d input")
        a = _norm_axis(self, self.axis, len(x.shape))
        n_out, n_in = self.weight.shape
        if x.shape[a] != n_in:
            raise self._fail(f"weight expects {n_in} features on axis {self.axis}, got {x.shape}")
        if self.bias is not None and self.bias.shape != (n_out,):
            raise self._fail(f"bias shape {self.bias.shape} != ({n_out},)")
        shape = list(x.shape)
        shape[a] = n_out
        return ValueSpec(tuple(shape), Kind.REAL, x.rate)

    def dense_ops(self, specs, out):
        return out.size * int(self.weight.shape[1])


@register_op("batchnorm")
@dataclass(eq=False)
class BatchNorm(Op):
    """Inference batch norm along ``axis``: ``y = (x - mean) / sqrt(var + eps) * gamma + beta``.

    ``mean``, ``var``, ``gamma``, ``beta``: ``[C]`` (C = size of ``axis``). Output kind ``real``.
    """

    mean: np.ndarray = None
    var: np.ndarray = None
    gamma: np.ndarray = None
    beta: np.ndarray = None
    eps: float = 1e-5
    axis: int = 0

    def infer(self, specs):
        (x,) = specs
        a = _norm_axis(self, self.axis, len(x.shape))
        for nm in ("mean", "var", "gamma", "beta"):
            if getattr(self, nm).shape != (x.shape[a],):
                raise self._fail(f"{nm} has shape {getattr(self, nm).shape}, axis {self.axis} "
                                 f"of the input has {x.shape[a]} channels")
        return ValueSpec(x.shape, Kind.REAL, x.rate)

    def param_count(self) -> int:
        """Trainable parameters only (``gamma``, ``beta``), as PyTorch and the papers count them:
        ``mean`` and ``var`` are running statistics (buffers), not parameters."""
        return int(self.gamma.size + self.beta.size)

    def dense_ops(self, specs, out):
        return out.size


# ----------------------------------------------------------------------------- neurons
@register_op("lif")
@dataclass(eq=False)
class LIF(Op):
    """spikingjelly's multi-step LIF neuron, one per input element.

    Per step, with state ``V`` (0 at t = 0)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau      if decay_input
        H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]        otherwise
        S[t] = H[t] >= v_threshold   (fire_on='>=')  or  H[t] > v_threshold  (fire_on='>')
        V[t] = v_reset if S[t] else H[t]                        (hard reset, v_reset not None)
        V[t] = H[t] - v_threshold * S[t]                        (soft reset, v_reset None)

    ``tau`` is dimensionless (time steps). Output kind ``spike``, same shape as the input.
    """

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    fire_on: str = ">="
    STATEFUL: ClassVar[bool] = True

    @property
    def reset(self) -> ResetMode:
        """``hard`` (to ``v_reset``) or ``soft`` (``v_reset`` None: subtract the threshold)."""
        return ResetMode.SOFT if self.v_reset is None else ResetMode.HARD

    def infer(self, specs):
        (x,) = specs
        if x.rate is not Rate.STEP:
            raise self._fail("a neuron needs a per-step input")
        if not FireOn.has(self.fire_on):
            raise self._fail(f"fire_on must be '>=' or '>', not {self.fire_on!r}")
        if not self.tau >= 1.0:
            raise self._fail(f"tau must be >= 1, got {self.tau}")
        return ValueSpec(x.shape, Kind.SPIKE, x.rate)

    def dense_ops(self, specs, out):
        return out.size


# ----------------------------------------------------------------------------- pooling, means
@register_op("maxpool2d")
@dataclass(eq=False)
class MaxPool2d(Op):
    """Max pooling over ``(H, W)`` with padding by -inf: ``y[c,i,j] = max_{u,v} x[c, s*i+u-p, s*j+v-p]``.

    Keeps the input kind (max of spikes is a spike: an OR over the window).
    """

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)

    def infer(self, specs):
        (x,) = specs
        if len(x.shape) != 3:
            raise self._fail(f"expects a (C, H, W) input, got {x.shape}")
        ho = _out_len(self, x.shape[1], self.kernel[0], self.stride[0], self.padding[0])
        wo = _out_len(self, x.shape[2], self.kernel[1], self.stride[1], self.padding[1])
        return ValueSpec((x.shape[0], ho, wo), x.kind, x.rate)

    def dense_ops(self, specs, out):
        return out.size * self.kernel[0] * self.kernel[1]


@register_op("avgpool2d")
@dataclass(eq=False)
class AvgPool2d(Op):
    """Average pooling over ``(H, W)`` with zero padding counted in the divisor:
    ``y[c,i,j] = sum_{u,v} x[c, s*i+u-p, s*j+v-p] / (kH * kW)``. Output kind ``real``."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)

    def infer(self, specs):
        (x,) = specs
        if len(x.shape) != 3:
            raise self._fail(f"expects a (C, H, W) input, got {x.shape}")
        ho = _out_len(self, x.shape[1], self.kernel[0], self.stride[0], self.padding[0])
        wo = _out_len(self, x.shape[2], self.kernel[1], self.stride[1], self.padding[1])
        return ValueSpec((x.shape[0], ho, wo), Kind.REAL, x.rate)

    def dense_ops(self, specs, out):
        return out.size * self.kernel[0] * self.kernel[1]


@register_op("mean")
@dataclass(eq=False)
class Mean(Op):
    """Mean over per-sample axes (e.g. the token mean): ``y = mean_{axes} x``. Kind ``real``."""

    axes: tuple[int, ...] = ()

    def infer(self, specs):
        (x,) = specs
        axes = sorted({_norm_axis(self, a, len(x.shape)) for a in self.axes})
        if not axes:
            raise self._fail("no axes to average")
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return ValueSpec(shape, Kind.REAL, x.rate)

    def dense_ops(self, specs, out):
        return specs[0].size


@register_op("time_mean")
@dataclass(eq=False)
class TimeMean(Op):
    """Mean over the T time steps: ``y = (1/T) sum_t x[t]``. Stateful (an accumulator); its
    output exists once, after the last step (rate ``final``)."""

    STATEFUL: ClassVar[bool] = True

    def infer(self, specs):
        (x,) = specs
        if x.rate is not Rate.STEP:
            raise self._fail("input is already a final (time-reduced) value")
        return ValueSpec(x.shape, Kind.REAL, Rate.FINAL)

    def dense_ops(self, specs, out):
        return out.size


# ----------------------------------------------------------------------------- elementwise
def _same_rate(op: Op, specs: list[ValueSpec]) -> Rate:
    rates = {s.rate for s in specs}
    if len(rates) != 1:
        raise op._fail("mixes per-step and final values")
    return rates.pop()


@register_op("add")
@dataclass(eq=False)
class Add(Op):
    """Elementwise sum ``y = a + b`` (same shapes). Kind: ``count`` when both inputs are integer
    (the residual stream of spike tensors), else ``real``."""

    ARITY: ClassVar[int | None] = 2

    def infer(self, specs):
        a, b = specs
        if a.shape != b.shape:
            raise self._fail(f"shapes differ: {a.shape} and {b.shape}")
        kind = Kind.COUNT if a.kind.is_integer and b.kind.is_integer else Kind.REAL
        return ValueSpec(a.shape, kind, _same_rate(self, specs))

    def dense_ops(self, specs, out):
        return out.size


@register_op("iand")
@dataclass(eq=False)
class IAND(Op):
    """SEW's IAND residual join: ``y = (1 - a) * s`` for spikes ``a`` (the shortcut) and ``s``."""

    ARITY: ClassVar[int | None] = 2

    def infer(self, specs):
        a, s = specs
        if a.shape != s.shape:
            raise self._fail(f"shapes differ: {a.shape} and {s.shape}")
        if a.kind is not Kind.SPIKE or s.kind is not Kind.SPIKE:
            raise self._fail(f"needs two spike inputs, got {a.kind.value} and {s.kind.value}")
        return ValueSpec(a.shape, Kind.SPIKE, _same_rate(self, specs))

    def dense_ops(self, specs, out):
        return out.size


@register_op("and")
@dataclass(eq=False)
class AND(Op):
    """SEW's AND residual join, and the Hadamard product of two spike tensors:
    ``y = a * s = a AND s`` for spikes ``a`` and ``s``.

    The shapes have the same number of axes and broadcast (an axis of size 1 in one input is
    repeated along the other's): the spike-driven attention's mask ``Q * kv`` with ``kv`` summed
    over tokens (size 1 there) is one ``and``. Kind ``spike``.
    """

    ARITY: ClassVar[int | None] = 2

    def infer(self, specs):
        a, s = specs
        if a.kind is not Kind.SPIKE or s.kind is not Kind.SPIKE:
            raise self._fail(f"needs two spike inputs, got {a.kind.value} and {s.kind.value}")
        return ValueSpec(broadcast_shape(self, a.shape, s.shape), Kind.SPIKE,
                         _same_rate(self, specs))

    def dense_ops(self, specs, out):
        return out.size


def broadcast_shape(op: Op, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape two inputs of one rank broadcast to (size-1 axes repeat); raises otherwise."""
    if len(a) != len(b) or any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise op._fail(f"shapes {a} and {b} do not broadcast (same rank, axes equal or 1)")
    return tuple(max(x, y) for x, y in zip(a, b))


@register_op("reduce_sum")
@dataclass(eq=False)
class ReduceSum(Op):
    """Sum over per-sample axes, the summed axes kept with size 1:
    ``y[..., 0, ...] = sum_{axes} x``. Kind ``count`` for spike or count inputs (a sum of spikes
    is an exact integer: the spike-driven attention's token sum, QKFormer's channel sum), else
    ``real``.
    """

    axes: tuple[int, ...] = ()

    def infer(self, specs):
        (x,) = specs
        axes = {_norm_axis(self, a, len(x.shape)) for a in self.axes}
        if not axes:
            raise self._fail("no axes to sum")
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        return ValueSpec(shape, Kind.COUNT if x.kind.is_integer else Kind.REAL, x.rate)

    def dense_ops(self, specs, out):
        return specs[0].size


@register_op("scale")
@dataclass(eq=False)
class Scale(Op):
    """Multiplication by a constant: ``y = factor * x``. Kind ``real``."""

    factor: float = 1.0

    def infer(self, specs):
        (x,) = specs
        return ValueSpec(x.shape, Kind.REAL, x.rate)

    def dense_ops(self, specs, out):
        return out.size


@register_op("spike_matmul")
@dataclass(eq=False)
class SpikeMatmul(Op):
    """Product of two dynamic integer tensors (spiking self-attention):
    ``y[..., m, n] = sum_k a[..., m, k] * b[..., k, n]``.

    Both inputs are ``spike`` or ``count``, with equal leading (head) axes. Output kind ``count``.
    No static synapse can express it: every factor changes with every step.
    """

    ARITY: ClassVar[int | None] = 2

    def infer(self, specs):
        a, b = specs
        if not (a.kind.is_integer and b.kind.is_integer):
            raise self._fail(f"needs spike or count inputs, got {a.kind.value} and {b.kind.value}")
        if len(a.shape) < 2 or len(a.shape) != len(b.shape) or a.shape[:-2] != b.shape[:-2]:
            raise self._fail(f"incompatible batch axes: {a.shape} @ {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise self._fail(f"inner dimensions differ: {a.shape} @ {b.shape}")
        return ValueSpec(a.shape[:-1] + b.shape[-1:], Kind.COUNT, _same_rate(self, specs))

    def dense_ops(self, specs, out):
        return out.size * specs[0].shape[-1]


# ----------------------------------------------------------------------------- layout
@register_op("reshape")
@dataclass(eq=False)
class Reshape(Op):
    """Row-major reshape of the per-sample tensor: ``y = x.reshape(shape)`` (flatten, head split)."""

    shape: tuple[int, ...] = ()

    def infer(self, specs):
        (x,) = specs
        n = 1
        for d in self.shape:
            n *= d
        if n != x.size or any(d <= 0 for d in self.shape):
            raise self._fail(f"cannot reshape {x.shape} to {self.shape}")
        return ValueSpec(tuple(self.shape), x.kind, x.rate)


@register_op("transpose")
@dataclass(eq=False)
class Transpose(Op):
    """Axis permutation of the per-sample tensor: ``y = x.transpose(perm)``."""

    perm: tuple[int, ...] = ()

    def infer(self, specs):
        (x,) = specs
        if sorted(self.perm) != list(range(len(x.shape))):
            raise self._fail(f"perm {self.perm} is not a permutation of {len(x.shape)} axes")
        return ValueSpec(tuple(x.shape[p] for p in self.perm), x.kind, x.rate)


def op_type(opcode: str) -> type[Op]:
    try:
        return OP_TYPES[opcode]
    except KeyError:
        raise IRError(f"unknown op type {opcode!r}; known: {', '.join(sorted(OP_TYPES))}") from None


__all__ = ["OP_TYPES", "register_op", "op_type", "Op", "Input", "Output", "Conv2d", "Linear",
           "BatchNorm", "LIF", "MaxPool2d", "AvgPool2d", "Mean", "TimeMean", "Add", "IAND", "AND",
           "ReduceSum",
           "Scale", "SpikeMatmul", "Reshape", "Transpose"]
