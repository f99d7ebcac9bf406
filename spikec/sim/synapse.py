"""The simulator's per-op preparation: a synapse op's weights in each carrier with its bounds
(``Synapse``), and the static bound on |value| of every op type's output (``BOUNDS``), from
which ``spikec.sim.engine`` picks exact carriers once per graph."""
from __future__ import annotations

import numpy as np

from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.types import Kind
from spikec.sim import events as ev
from spikec.sim import intgemm as ig
from spikec.sim import linalg as la
from spikec.sim.neurons import overflow
from spikec.target import fixedpoint as fx
from spikec.target.formats import NumberFormats


#: ``Synapse.active_inputs``: after this many batches in a row without pruning, a synapse tests
#: only every ``PRUNE_RETRY``-th batch.
PRUNE_PATIENCE = 4
PRUNE_RETRY = 16


class Synapse:
    """A conv/dense synapse op prepared for the simulator: weights per carrier, bounds, fan-out."""

    def __init__(self, op, in_shape, out_shape, fmt: NumberFormats):
        self.op = op
        self.conv = isinstance(op, F.ConvSynapse)
        w = np.asarray(op.weight).astype(np.int64)
        self.w_int = w
        self.row_abs = la.abs_row_sums(w.reshape(w.shape[0], -1))          # [out]
        self.row_abs_max = int(self.row_abs.max()) if self.row_abs.size else 0
        self.exp = np.asarray(op.weight_exp, dtype=np.int64)
        self.exp_values = sorted(set(int(e) for e in self.exp))
        self._w: dict = {}
        self.plans: dict = {}        # the simulator's term plans, by input bound and mode
        self._out_bounds: dict[int, int] = {}
        self.prune_misses = 0       # batches in a row whose inputs pruned nothing (a heuristic)
        if self.conv:
            self.channel_axis = 0
            self.fanout = ev.conv_fanout(in_shape, out_shape, w.shape[2:], op.stride, op.padding,
                                         op.dilation, op.groups)
        else:
            self.channel_axis = op.axis % len(out_shape)
            self.fanout = int(w.shape[0])
        self.wrap_bits = fmt.conv_out_bits if self.conv else fmt.container_bits

    def weight(self, dtype) -> np.ndarray:
        """The integer weights in a carrier dtype."""
        if dtype not in self._w:
            self._w[dtype] = self.w_int.astype(dtype)
        return self._w[dtype]

    def int8_weight(self) -> tuple[np.ndarray, int] | None:
        """``(w8, g)``: the weights as int8 with ``W == w8 << g`` (None: they do not fit)."""
        if "int8" not in self._w:
            self._w["int8"] = ig.int8_weights(self.w_int)
        return self._w["int8"]

    def scaled_weight(self, dtype) -> np.ndarray:
        """``W[o] * 2**e[o]`` in a float carrier: exact (an 8-bit mantissa times a power of two)."""
        key = ("scaled", dtype)
        if key not in self._w:
            scale = np.ldexp(np.ones(self.exp.shape, dtype), self.exp.astype(np.int32))
            shape = (-1,) + (1,) * (self.w_int.ndim - 1)
            self._w[key] = self.w_int.astype(dtype) * scale.reshape(shape).astype(dtype)
        return self._w[key]

    def active_inputs(self, weight: np.ndarray, flat: np.ndarray):
        """Event-driven pruning of one term: ``(weight, flat)`` without the input features
        (channels) that carry no event in this batch, and their weight columns. Their terms are
        zero, so the sums are unchanged.

        A synapse whose last ``PRUNE_PATIENCE`` batches pruned nothing is tried again only every
        ``PRUNE_RETRY``-th batch (the test is a pass over the input: 5% of the shipped V2's
        time, where no layer ever prunes). Pruning or not, the sums are the same."""
        if self.conv and self.op.groups != 1:
            return weight, flat
        if self.prune_misses >= PRUNE_PATIENCE:
            self.prune_misses += 1
            if self.prune_misses % PRUNE_RETRY:
                return weight, flat
        pruned = self._prune(weight, flat)
        self.prune_misses = 0 if pruned is not None else self.prune_misses + 1
        return pruned or (weight, flat)

    def _prune(self, weight: np.ndarray, flat: np.ndarray):
        """``active_inputs``'s pruned ``(weight, flat)``, or None where too few features are
        silent (a quarter at least must be)."""
        feat = 1 if self.conv else self.op.axis % (flat.ndim - 1) + 1
        n_in = flat.shape[feat]
        others = tuple(i for i in range(flat.ndim) if i != feat)
        # the features active in the first sample (and step) are active in the batch: where they
        # alone are too many to prune, the pass over the whole batch is skipped
        if len(flat) > 1 and np.count_nonzero(flat[:1].any(axis=others)) > 0.75 * n_in:
            return None
        active = flat.any(axis=others)
        n_active = int(np.count_nonzero(active))
        if n_active > 0.75 * n_in:
            return None
        if n_active == 0:
            active[0] = True          # keep one (all-zero) feature: shapes stay valid
        return np.compress(active, weight, axis=1), np.compress(active, flat, axis=feat)

    def count_events(self, x: np.ndarray, kind: Kind, stats: ev.LayerStats) -> None:
        """The events one input ``x`` [T, B, ...] brings (``spikec.sim.events``)."""
        nz = ev.nonzero_per_step(x)
        stats.add("input_events", nz)
        if kind is Kind.COUNT:
            stats.add("graded_events", nz)
        if self.conv:
            stats.add("synaptic_events", ev.conv_synaptic_events(x, self.fanout))
        else:
            stats.add("synaptic_events", nz * self.fanout)

    def shift_wrap_int(self, acc, ch: int, graded: bool, fmt: NumberFormats,
                       strict: bool) -> np.ndarray:
        """int64 path where a wrap may act: Lava's Dense (``scale_dendritic_sum``: int32 container,
        graded sums wrap before the shift) or Conv (shift, then the 24-bit wrap of its output);
        ``strict`` raises where the chip would wrap. ``acc`` [T, B, ...], channels on axis ``ch``."""
        acc = la.to_int64(acc)
        out = np.empty_like(acc)
        idx = [slice(None)] * acc.ndim
        for e in self.exp_values:
            sel = np.flatnonzero(self.exp == e)
            idx[ch] = sel
            part = acc[tuple(idx)]
            shifted = part << e if e >= 0 else part >> -e
            if self.conv:
                y = fx.wrap_signed(shifted, fmt.conv_out_bits)
                limit, bits = f"{fmt.conv_out_bits}-bit conv output", fmt.conv_out_bits
            else:
                y = fx.scale_dendritic_sum(part, e, fmt, graded=graded)
                limit, bits = f"int{fmt.container_bits} dendritic sum", fmt.container_bits
            if strict:
                ok = fx.fits_signed(shifted, bits) & fx.fits_signed(part, fmt.container_bits)
                if not ok.all():
                    bad = tuple(int(i) for i in np.argwhere(~ok)[0])
                    raise overflow(self.op.name, f"synaptic output a_out ({limit})", bad[0],
                                   shifted[bad[0]], ok[bad[0]], f"{bits}-bit signed")
            out[tuple(idx)] = y
        return out

    def sum_bound(self, x_bound: int) -> int:
        """Bound on |sum_k W[o, k] x[k]| over all outputs."""
        return self.row_abs_max * int(x_bound)

    def out_bound(self, x_bound: int) -> int:
        """Bound on the magnitude of one term after the weight exponent and the wrap."""
        if x_bound not in self._out_bounds:
            rows = {(int(r), int(e)) for r, e in zip(self.row_abs, self.exp)}
            b = max((shift_bound(r * int(x_bound), e) for r, e in rows), default=0)
            self._out_bounds[x_bound] = min(b, 1 << (self.wrap_bits - 1))
        return self._out_bounds[x_bound]


def shift_bound(b: int, e: int) -> int:
    return b << e if e >= 0 else -(-b >> -e)


#: The static bound on |value| of each op type's output, from its inputs' bounds:
#: ``(sim, op, input bounds) -> int``.
BOUNDS = OpTable("the simulator's static bounds")
BOUNDS.refuse(set(O.OP_TYPES.values()) - F.FIXED_DOMAIN_OPS,
              "a float op: compile the graph to fixed point first (spikec.pipeline.compile_graph)")


@BOUNDS.register(F.GradedInput)
def _bound_input(sim, op, ins) -> int:
    return 1 if op.kind == Kind.SPIKE else (1 << op.payload_bits) - 1


@BOUNDS.register(F.ConvSynapse, F.DenseSynapse)
def _bound_synapse(sim, op, ins) -> int:
    syn = sim.synapses[op.name]
    return min(sum(syn.out_bound(x) for x in ins), 1 << (sim.fmt.container_bits - 1))


@BOUNDS.register(F.CubaLIF, O.IAND, O.AND)
def _bound_spikes(sim, op, ins) -> int:
    return 1


@BOUNDS.register(O.Add)
def _bound_add(sim, op, ins) -> int:
    return ins[0] + ins[1]


@BOUNDS.register(O.ReduceSum)
def _bound_reduce_sum(sim, op, ins) -> int:
    x = sim.specs[op.inputs[0]].shape
    return ins[0] * int(np.prod([x[a] for a in op.axes]))


@BOUNDS.register(O.SpikeMatmul)
def _bound_matmul(sim, op, ins) -> int:
    return sim.specs[op.inputs[0]].shape[-1] * ins[0] * ins[1]


@BOUNDS.register(F.Readout)
def _bound_readout(sim, op, ins) -> int:
    return 0


@BOUNDS.register(O.Output, O.Reshape, O.Transpose, O.MaxPool2d)
def _bound_same(sim, op, ins) -> int:
    return ins[0]
