"""Fixed-point ops: the integer network a Loihi-class chip runs.

A quantized graph holds only these ops plus the integer-exact float-IR ops that need no
parameters (``output``, ``reshape``, ``transpose``, ``maxpool2d`` on spikes/counts, ``add`` and
``spike_matmul`` on integers, ``iand``, ``and``, ``reduce_sum``): see ``FIXED_DOMAIN_OPS``. Every array is an integer array;
the exact arithmetic (bit widths, shifts, wrap and clip rules) is the target's, read from the
hardware profile's number formats by ``spikec.target`` and the bit-exact simulator.

Notation: ``shift(z, e) = z << e`` for ``e >= 0`` and ``z >> -e`` (arithmetic, rounds toward -inf)
for ``e < 0``: the per-process weight exponent of Lava's bit-accurate Dense/Conv models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from spikec.ir import ops as O
from spikec.ir.ops import Op, _out_len, register_op
from spikec.ir.types import Encoding, Kind, Rate, ResetMode, ValueSpec


def _int_array(op: Op, name: str, arr) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu":
        raise op._fail(f"{name} must be an integer array, got "
                       f"{getattr(arr, 'dtype', type(arr).__name__)}")


def _integer_inputs(op: Op, specs: list[ValueSpec]) -> None:
    for s in specs:
        if not s.kind.is_integer or s.kind is Kind.CURRENT:
            raise op._fail(f"reads a {s.kind.value} value; synapses read spikes or counts")


def _synapse_input(op: Op, specs: list[ValueSpec]) -> ValueSpec:
    """Checks shared by the synapse ops (integer inputs of one shape, integer weights); returns
    the type of the (first) input."""
    if not specs:
        raise op._fail("needs at least one input")
    _integer_inputs(op, specs)
    _int_array(op, "weight", op.weight)
    _int_array(op, "weight_exp", op.weight_exp)
    shapes = {s.shape for s in specs}
    if len(shapes) != 1:
        raise op._fail(f"inputs differ in shape: {sorted(shapes)}")
    return specs[0]


@register_op("graded_input")
@dataclass(eq=False)
class GradedInput(Op):
    """Raw integer samples sent to the chip every step as graded spikes (payload = the value).

    ``y[t] = pad(x)`` for ``encoding='repeat'`` (the same image each step), ``y[t] = x[t]`` for
    ``'sequence'``. Pixels are sent raw (uint8): their scale, mean and std live in the first
    synapse's weights and per-neuron biases. ``kind``: ``count`` (graded) or ``spike`` (binary
    events). ``payload_bits``: bits of one message (8 for pixels).
    """

    shape: tuple[int, ...] = ()
    encoding: str = "repeat"
    kind: str = "count"
    pad: int = 0
    payload_bits: int = 8
    ARITY: ClassVar[int | None] = 0

    def infer(self, specs):
        shape = tuple(self.shape)
        if self.pad:
            shape = (shape[0], shape[1] + 2 * self.pad, shape[2] + 2 * self.pad)
        if not Encoding.has(self.encoding):
            raise self._fail(f"unknown encoding {self.encoding!r}")
        if self.kind not in (Kind.COUNT, Kind.SPIKE):
            raise self._fail(f"kind must be 'count' or 'spike', not {self.kind!r}")
        return ValueSpec(shape, Kind(self.kind))


@register_op("conv_synapse")
@dataclass(eq=False)
class ConvSynapse(Op):
    """Convolutional synapses: ``a[o,i,j] = sum_k shift(sum_{c,u,v} W[o,c,u,v] x_k[c, s*i+u-p,
    s*j+v-p], weight_exp[o])``.

    One term per input ``x_k`` (fan-in duplication: several spike sources through the same
    weights, one synapse process each). ``weight``: integer mantissas ``[C_out, C_in/groups, kH,
    kW]`` already in the chip's representable set; ``weight_exp``: ``[C_out]`` (one value per
    process; the backend splits output channels with different exponents into processes).
    Output kind ``current`` (the next step's ``a_in``).
    """

    weight: np.ndarray = None
    weight_exp: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    ARITY: ClassVar[int | None] = None

    def infer(self, specs):
        x = _synapse_input(self, specs)
        cout, cin_g, kh, kw = self.weight.shape
        if len(x.shape) != 3 or x.shape[0] != cin_g * self.groups:
            raise self._fail(f"weight expects (C={cin_g * self.groups}, H, W) input, got {x.shape}")
        if self.weight_exp.shape != (cout,):
            raise self._fail(f"weight_exp shape {self.weight_exp.shape} != ({cout},)")
        ho = _out_len(self, x.shape[1], kh, self.stride[0], self.padding[0], self.dilation[0])
        wo = _out_len(self, x.shape[2], kw, self.stride[1], self.padding[1], self.dilation[1])
        return ValueSpec((cout, ho, wo), Kind.CURRENT, O._same_rate(self, specs))

    def dense_ops(self, specs, out):
        return len(specs) * out.size * int(np.prod(self.weight.shape[1:]))


@register_op("dense_synapse")
@dataclass(eq=False)
class DenseSynapse(Op):
    """Dense synapses along ``axis``: ``a[..., o, ...] = sum_k shift(sum_i W[o, i] x_k[..., i, ...],
    weight_exp[o])``. ``weight``: integer ``[out, in]``; ``weight_exp``: ``[out]``. One term per
    input (fan-in duplication). Output kind ``current``."""

    weight: np.ndarray = None
    weight_exp: np.ndarray = None
    axis: int = -1
    ARITY: ClassVar[int | None] = None

    def infer(self, specs):
        x = _synapse_input(self, specs)
        a = O._norm_axis(self, self.axis, len(x.shape))
        n_out, n_in = self.weight.shape
        if x.shape[a] != n_in:
            raise self._fail(f"weight expects {n_in} features on axis {self.axis}, got {x.shape}")
        if self.weight_exp.shape != (n_out,):
            raise self._fail(f"weight_exp shape {self.weight_exp.shape} != ({n_out},)")
        shape = list(x.shape)
        shape[a] = n_out
        return ValueSpec(tuple(shape), Kind.CURRENT, O._same_rate(self, specs))

    def dense_ops(self, specs, out):
        return len(specs) * out.size * int(self.weight.shape[1])


@register_op("cuba_lif")
@dataclass(eq=False)
class CubaLIF(Op):
    """Loihi's current-based LIF compartment (Lava ``PyLifModelBitAcc``), one per input element.

    ``a_in = sum_k x_k`` over its inputs (all of one shape): several synapse ops into the same
    compartment, as Lava sums every connection into one ``a_in`` port (the membrane-shortcut
    residual: ``lif(conv_a(x) + conv_b(y))``). Per step, integer arithmetic, state ``u = v = 0`` at
    t = 0, widths from the profile::

        u = wrap(decay(u, du + 1) + (a_in << act_shift))          # current, 24-bit wrap
        v = clip(decay(v, dv) + u + shift(bias_mant, bias_exp))   # voltage, 24-bit clip
        s = v > (vth << vth_shift)                                # '>'
        v = 0 where s                                             # hard reset (v_subtract None)
        v = v - v_subtract where s                                # soft reset

    with ``decay(z, d) = sign(z) * (|z * (2^12 - d)| >> 12)``. ``a_in`` is a ``current`` (from a
    synapse op) or an integer ``count`` fed directly (the attention product). ``vth``,
    ``bias_mant``, ``bias_exp``: integer arrays of the output shape (Lava keeps one ``vth`` per
    process: the backend splits a layer into one process per distinct ``vth``). ``du``, ``dv``:
    one value per layer. ``v_subtract``: None (hard reset, Lava's LIF) or an integer array of the
    output shape, the float threshold in ``v``'s units (spikingjelly's ``v_reset=None``; on Lava a
    custom process model). The subtraction cannot leave the 24-bit range: a spiking ``v`` is
    above ``vth << vth_shift >= 0`` and ``0 <= v_subtract <= state_max``.
    """

    du: int = 0
    dv: int = 0
    vth: np.ndarray = None
    bias_mant: np.ndarray = None
    bias_exp: np.ndarray = None
    v_subtract: np.ndarray | None = None
    STATEFUL: ClassVar[bool] = True
    ARITY: ClassVar[int | None] = None
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"v_subtract"})

    @property
    def reset(self) -> ResetMode:
        """``hard`` (v = 0) or ``soft`` (v -= v_subtract) after a spike."""
        return ResetMode.HARD if self.v_subtract is None else ResetMode.SOFT

    def infer(self, specs):
        if not specs:
            raise self._fail("needs at least one input")
        x = specs[0]
        if self.v_subtract is not None:
            _int_array(self, "v_subtract", self.v_subtract)
            if self.v_subtract.shape != x.shape:
                raise self._fail(f"v_subtract has shape {self.v_subtract.shape}, neurons have "
                                 f"{x.shape}")
            if self.v_subtract.size and int(self.v_subtract.min()) < 0:
                raise self._fail("v_subtract must be >= 0")
        for s in specs:
            if s.kind not in (Kind.CURRENT, Kind.COUNT, Kind.SPIKE) or s.rate is not Rate.STEP:
                raise self._fail(f"reads a per-step integer input, got {s}")
            if s.shape != x.shape:
                raise self._fail(f"inputs differ in shape: {x.shape} and {s.shape}")
        for nm in ("vth", "bias_mant", "bias_exp"):
            arr = getattr(self, nm)
            _int_array(self, nm, arr)
            if arr.shape != x.shape:
                raise self._fail(f"{nm} has shape {arr.shape}, neurons have {x.shape}")
        return ValueSpec(x.shape, Kind.SPIKE)

    def dense_ops(self, specs, out):
        return out.size


@register_op("readout")
@dataclass(eq=False)
class Readout(Op):
    """Output accumulator read by the host after the last step.

    An integrator compartment (no threshold) sums its input over the T steps,
    ``acc = clip(acc + (a_in << act_shift))`` with ``a_in = sum_k x_k`` over its inputs (24-bit clip like ``v``); the host then computes
    ``y = scale * acc + offset`` (``offset``: float ``[shape]``). ``sum_axes``: input axes also
    summed into one accumulator (the token axis: every token's synapses reach the same class
    compartment). Output rate ``final``, kind ``real``: the logits. This folds token mean, time
    mean and the classifier's bias.
    """

    scale: float = 1.0
    offset: np.ndarray = None
    sum_axes: tuple[int, ...] = ()
    STATEFUL: ClassVar[bool] = True
    ARITY: ClassVar[int | None] = None

    def infer(self, specs):
        if not specs:
            raise self._fail("needs at least one input")
        x = specs[0]
        for s in specs:
            if s.kind is Kind.REAL or s.rate is not Rate.STEP:
                raise self._fail(f"reads a per-step integer input, got {s}")
            if s.shape != x.shape:
                raise self._fail(f"inputs differ in shape: {x.shape} and {s.shape}")
        axes = {O._norm_axis(self, a, len(x.shape)) for a in self.sum_axes}
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        if self.offset is None or self.offset.shape != shape:
            raise self._fail(f"offset must have the output shape {shape}")
        return ValueSpec(shape, Kind.REAL, Rate.FINAL)


#: Op types allowed in a fixed-point graph.
FIXED_DOMAIN_OPS: frozenset[type[Op]] = frozenset({
    GradedInput, ConvSynapse, DenseSynapse, CubaLIF, Readout,
    O.Output, O.Reshape, O.Transpose, O.MaxPool2d, O.Add, O.IAND, O.AND, O.SpikeMatmul,
    O.ReduceSum,
})

#: Op types that exist only in fixed-point graphs.
FIXED_ONLY_OPS: frozenset[type[Op]] = frozenset({GradedInput, ConvSynapse, DenseSynapse, CubaLIF,
                                                  Readout})
