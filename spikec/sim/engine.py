"""The bit-exact simulator of a fixed-point graph (``domain='fixed'``).

It computes what the target chip computes, integer for integer: Lava 0.10's ``fixed_pt`` models
for ``loihi2``, whose arithmetic is ``spikec.target.fixedpoint``. Values are arrays ``[T, B,
*shape]`` of integers (``final`` values ``[B, *shape]``).

Layer by layer. The graph is feed-forward (no recurrent edge: every input of an op is produced by
an earlier op), so running one op over all T steps before the next op gives exactly the values of
running all ops step by step; only the neuron ops loop over t, inside their kernel, in the chip's
phase order (``spikec.sim.neurons``). ``Simulator.run(..., stepwise=True)`` runs the step-by-step
order instead (the tests check the two agree). Time here is algorithmic: the ``a_in`` a neuron
receives at step t comes from the spikes of step t. Lava's Dense/Conv deliver it one step later;
a backend that runs on Lava balances those delays (every path through k synapse layers is k steps
late), which shifts every layer's spike train in time without changing it.

Integers travel in float carriers where a bound proves them exact (``spikec.sim.linalg``): each
value has a static bound on its magnitude, computed once from the weights (``_bounds`` over
``spikec.sim.synapse.BOUNDS``), and its
carrier is float32 below 2**24, float64 below 2**53, int64 above. Where a wrap or saturation of the
target could act, the kernel switches to int64 and the ``fixedpoint`` helpers.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from spikec.errors import DataError, IRError, ShapeError, UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.graph import Graph
from spikec.ir.types import Kind, Rate
from spikec.sim import events as ev
from spikec.sim import intgemm as ig
from spikec.sim import linalg as la
from spikec.sim.grid import GridSums, lif_fed, materialized
from spikec.sim.neurons import CubaLIFLayer, ReadoutLayer
from spikec.sim.synapse import BOUNDS, Synapse, shift_bound
from spikec.target import fixedpoint as fx
from spikec.target.formats import LAVA_FIXED_PT, NumberFormats


#: What the simulator does with each op type: ``(self, op, input arrays, stats) -> array``
#: (``stats`` None: count no events)
#: (sources: ``(self, op, data) -> array``).
KERNELS = OpTable("the bit-exact simulator")
KERNELS.refuse(set(O.OP_TYPES.values()) - F.FIXED_DOMAIN_OPS,
               "a float op: compile the graph to fixed point first (spikec.pipeline.compile_graph)")


@dataclass
class SimResult:
    """What one simulation produced.

    Attributes
    ----------
    outputs : output-op name -> array (logits [B, classes] float64 for a readout output).
    values : recorded values by name: spikes as bool [T, B, *shape], other integers as int64.
    stats : op name -> ``LayerStats`` (graph order).
    samples : number of samples.
    seconds : op name -> wall-clock seconds the op's kernel took (layer-by-layer runs).
    """

    outputs: dict[str, np.ndarray]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, ev.LayerStats] = field(default_factory=dict)
    samples: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def logits(self) -> np.ndarray:
        """The first output as scores [B, classes] (per-step outputs: mean over time)."""
        y = next(iter(self.outputs.values()))
        return y.mean(axis=0) if y.ndim >= 3 else y

    def totals(self) -> dict[str, int]:
        """Counts summed over all ops and steps (see ``spikec.sim.events``)."""
        return {c: sum(s.total(c) for s in self.stats.values()) for c in ev.COUNTERS}

    def merge(self, other: "SimResult") -> None:
        """Append another batch (outputs concatenated along the batch axis, counts added)."""
        for k, v in other.outputs.items():
            self.outputs[k] = v if k not in self.outputs else np.concatenate(
                [self.outputs[k], v], axis=0 if v.ndim == 2 else 1)
        for k, s in other.stats.items():
            if k in self.stats:
                self.stats[k].merge(s)
            else:
                self.stats[k] = s
        self.samples += other.samples


def formats_of(graph: Graph, formats: NumberFormats | None = None) -> NumberFormats:
    """The number formats to simulate ``graph`` with: ``formats``, else the profile named by
    ``graph.meta['target']``, else Loihi 2's (Lava ``fixed_pt``)."""
    if formats is None:
        target = graph.meta.get("target")
        if target:
            from spikec.target import load_profile
            formats = load_profile(target).formats
        else:
            formats = LAVA_FIXED_PT
    if not formats.is_lava:
        raise UnsupportedOpError(
            f"the bit-exact simulator computes Lava's fixed_pt arithmetic; number formats with "
            f"arithmetic {formats.arithmetic!r} have no executable definition")
    return formats


def _a_in(args: list) -> np.ndarray:
    """A compartment's ``a_in``: the sum of every synapse op feeding it (int64)."""
    total = la.to_int64(args[0])
    for x in args[1:]:
        total = total + la.to_int64(x)
    return total


class Simulator:
    """Bit-exact simulator of one fixed-point graph.

    Parameters
    ----------
    graph : Graph with ``domain == 'fixed'``.
    formats : the target's ``NumberFormats`` (default: see ``formats_of``).
    strict : raise ``StateOverflowError`` (naming layer, quantity, time step and neuron) wherever
        the target would wrap or saturate, instead of computing the wrapped result.
    fast : use float carriers and the LIF fast path where they are provably exact (``False``:
        int64 everywhere, the target helpers for every wrap; identical results, only slower).
    int8 : with ``fast``, run synapses whose inputs and weights fit int8 on the exact int8 GEMM of
        ``spikec.sim.intgemm`` where it is available (torch installed); identical results.
    """

    def __init__(self, graph: Graph, formats: NumberFormats | None = None, *, strict: bool = False,
                 fast: bool = True, int8: bool = True):
        if graph.domain != "fixed":
            raise IRError(f"the bit-exact simulator runs fixed-point graphs; this graph's domain is "
                          f"{graph.domain!r} (compile it first, or use spikec.interp)")
        self.graph = graph
        self.fmt = formats_of(graph, formats)
        self.strict, self.fast = strict, fast
        self.int8 = fast and int8 and ig.available()
        self._layers: dict[str, CubaLIFLayer] = {}
        self.specs = graph.specs
        self.T = graph.timesteps
        self.synapses: dict[str, Synapse] = {}
        for op in graph.ops:
            if isinstance(op, (F.ConvSynapse, F.DenseSynapse)):
                self.synapses[op.name] = Synapse(op, self.specs[op.inputs[0]].shape,
                                                  self.specs[op.name].shape, self.fmt)
            elif isinstance(op, F.CubaLIF):
                fx.check_lif_params(op.du, op.dv, op.vth, op.bias_mant, op.bias_exp, self.fmt,
                                    op.name)
        self.bounds = self._bounds()
        self._readers: dict[str, int] = {}       # value -> how many op inputs read it
        for op in graph.ops:
            for i in op.inputs:
                self._readers[i] = self._readers.get(i, 0) + 1
        self._gridded = lif_fed(graph, self.synapses) if fast and not strict else frozenset()

    def _carrier(self, bound: int) -> np.dtype:
        """The carrier of values bounded by ``bound`` (int64 everywhere when not ``fast``)."""
        return la.carrier(bound) if self.fast else np.dtype(np.int64)

    # ------------------------------------------------------------------ static bounds
    def _bounds(self) -> dict[str, int]:
        """Upper bound on |value| of every integer value (data independent): ``BOUNDS``."""
        b: dict[str, int] = {}
        for op in self.graph.ops:
            b[op.name] = BOUNDS.lookup(op)(self, op, [b.get(i, 0) for i in op.inputs])
        return b

    # ------------------------------------------------------------------ running
    def run(self, data, *, record: Iterable[str] | str | None = None,
            stepwise: bool = False, events: bool = True, raw: bool = False) -> SimResult:
        """Simulate ``graph.timesteps`` steps on one batch.

        Parameters
        ----------
        data : raw integer samples [B, *input shape] (uint8 pixels; [B, T, *shape] for a
            ``sequence`` input), or a dict by input-op name.
        record : names of values to keep (``"all"``: every value), e.g. the ``cuba_lif`` ops.
        stepwise : run step by step (every op at t before any op at t + 1) instead of layer by
            layer; identical results, slower. For tests.
        events : count the events of every op (``SimResult.stats``); ``False`` leaves ``stats``
            empty and skips the counting passes (a caller that compares values only).
        raw : record values as the kernels made them (integers in their carrier dtype, possibly
            read-only broadcast views) instead of as int64 copies; spikes are bool either way.
            No kernel writes into a value after it is made, so they stay valid.
        """
        if stepwise:
            return self._run_stepwise(data, record)
        specs = self.specs
        data = self._data_dict(data)
        keep = set(specs) if record == "all" else set(record or ())
        refcount = dict(self._readers)
        env: dict[str, np.ndarray] = {}
        batch = None
        res = SimResult(outputs={})
        for op in self.graph.ops:
            stats = (ev.LayerStats(op.name, op.OPCODE, _neurons(op, specs[op.name]), self.T)
                     if events else None)
            t0 = time.perf_counter()
            if op.ARITY == 0:
                y = KERNELS.lookup(op)(self, op, data)
                batch = y.shape[1]
            else:
                # only LIFs and reshapes read a GridSums (``lif_fed``): no op here must make it
                y = self._apply(op, [env[i] for i in op.inputs], stats)
            env[op.name] = y
            if stats is not None:
                res.stats[op.name] = stats
            res.seconds[op.name] = time.perf_counter() - t0
            if isinstance(op, O.Output):
                res.outputs[op.name] = y
            if op.name in keep:
                res.values[op.name] = _recorded(materialized(y), specs[op.name].kind, raw)
            for i in op.inputs:
                refcount[i] -= 1
                if refcount[i] == 0:
                    del env[i]
        for s in res.stats.values():
            s.samples = batch or 0
        res.samples = batch or 0
        return res

    def _run_stepwise(self, data, record) -> SimResult:
        """Step-by-step order: every op at step t before any op at t + 1 (neuron state carried
        across steps in int64, no fast path)."""
        data = self._data_dict(data)
        sources = {op.name: self._source(op, data) for op in self.graph.inputs}
        neurons = {}
        for op in self.graph.ops:
            if isinstance(op, F.CubaLIF):
                neurons[op.name] = CubaLIFLayer(op, self.fmt, strict=self.strict, fast=False)
            elif isinstance(op, F.Readout):
                neurons[op.name] = ReadoutLayer(op, self.fmt, strict=self.strict)
        steps: list[dict[str, np.ndarray]] = []
        for t in range(self.T):
            env: dict[str, np.ndarray] = {}
            for op in self.graph.ops:
                if self.specs[op.name].rate is Rate.FINAL and not isinstance(op, F.Readout):
                    continue                      # outputs of final values: read after the loop
                args = [env[i] for i in op.inputs]
                if op.ARITY == 0:
                    y = sources[op.name][t:t + 1]
                elif isinstance(op, F.CubaLIF):
                    layer = neurons[op.name]
                    if t == 0:
                        layer.reset_state(args[0].shape[1:])
                    y = layer.step(_a_in([a[0] for a in args]), t)[None]
                elif isinstance(op, F.Readout):
                    neurons[op.name].step(_a_in([a[0] for a in args]), t)
                    y = None
                else:
                    y = self._apply(op, args, ev.LayerStats(op.name, op.OPCODE, 0, 1))
                env[op.name] = materialized(y)
            steps.append(env)
        keep = set(self.specs) if record == "all" else set(record or ())
        res = SimResult(outputs={})
        final: dict[str, np.ndarray] = {}
        for op in self.graph.ops:
            if isinstance(op, F.Readout):
                y = final[op.name] = neurons[op.name].result()
            elif self.specs[op.name].rate is Rate.FINAL:
                y = final[op.name] = final[op.inputs[0]]
            else:
                y = np.concatenate([e[op.name] for e in steps], axis=0)
            if isinstance(op, O.Output):
                res.outputs[op.name] = y
            if op.name in keep:
                res.values[op.name] = _recorded(y, self.specs[op.name].kind)
        first = next(iter(sources.values()))
        res.samples = first.shape[1]
        return res

    def _data_dict(self, data) -> dict:
        if not isinstance(data, dict):
            if len(self.graph.inputs) != 1:
                raise ShapeError(f"graph has {len(self.graph.inputs)} inputs; pass a dict by name")
            data = {self.graph.inputs[0].name: data}
        return data

    # ------------------------------------------------------------------ sources
    @KERNELS.register(F.GradedInput)
    def _source(self, op: F.GradedInput, data: dict) -> np.ndarray:
        """Raw samples -> [T, B, *shape] in the input's carrier (a broadcast view for ``repeat``)."""
        if op.name not in data:
            raise ShapeError(f"no data for input {op.name!r}")
        raw = np.asarray(data[op.name])
        shape = tuple(op.shape)
        if op.encoding == "repeat":
            if raw.ndim != len(shape) + 1 or raw.shape[1:] != shape:
                raise ShapeError(f"input {op.name!r}: the model expects samples of shape "
                                 f"{_fmt_shape(shape)}, the data has {_fmt_shape(raw.shape[1:])}")
        elif raw.ndim != len(shape) + 2 or raw.shape[1] != self.T or raw.shape[2:] != shape:
            raise ShapeError(f"input {op.name!r}: the model expects sequences of shape "
                             f"[B, {self.T}, {', '.join(map(str, shape))}], the data has "
                             f"{list(raw.shape)}")
        if raw.dtype.kind not in "iub":
            raise DataError(f"input {op.name!r}: the chip takes raw integer samples (uint8 pixels), "
                            f"got dtype {raw.dtype}")
        hi = 1 if op.kind == "spike" else (1 << op.payload_bits) - 1
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > hi):
            raise DataError(f"input {op.name!r}: values must lie in [0, {hi}] ({op.kind} input, "
                            f"{op.payload_bits}-bit payload), got [{int(raw.min())}, {int(raw.max())}]")
        x = raw.astype(self._carrier(hi))
        if op.pad:
            p = op.pad
            x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
        if op.encoding == "repeat":
            return np.broadcast_to(x, (self.T,) + x.shape)
        return np.ascontiguousarray(x.swapaxes(0, 1))

    # ------------------------------------------------------------------ op kernels
    def _apply(self, op, args: list[np.ndarray], stats: ev.LayerStats | None) -> np.ndarray:
        return KERNELS.lookup(op)(self, op, args, stats)

    @KERNELS.register(F.ConvSynapse, F.DenseSynapse)
    def _k_synapse(self, op, args, stats):
        return self._synapse(self.synapses[op.name], args, stats)

    @KERNELS.register(F.CubaLIF)
    def _k_cuba_lif(self, op, args, stats):
        layer = self._layers.get(op.name)
        if layer is None:       # parameters prepared once; ``run`` resets the state
            layer = self._layers[op.name] = CubaLIFLayer(op, self.fmt, strict=self.strict,
                                                         fast=self.fast)
        bound = sum(self.bounds[i] for i in op.inputs)
        y = layer.run(args[0] if len(args) == 1 else _a_in(args), bound)
        layer.u = layer.v = None        # the final state is not read: free it
        if stats is None:
            return y
        stats.add("spikes", ev.nonzero_per_step(y))
        stats.add("neuron_updates", np.full(self.T, y[0].size, dtype=np.int64))
        return y

    @KERNELS.register(F.Readout)
    def _k_readout(self, op, args, stats):
        if stats is not None:
            stats.add("neuron_updates", np.full(self.T, int(np.prod(self.specs[op.name].shape))
                                            * args[0].shape[1], dtype=np.int64))
        return ReadoutLayer(op, self.fmt, strict=self.strict).run(
            args[0] if len(args) == 1 else _a_in(args))

    @KERNELS.register(O.SpikeMatmul)
    def _k_spike_matmul(self, op, args, stats):
        return self._spike_matmul(op, *args, stats)

    @KERNELS.register(O.Add)
    def _k_add(self, op, args, stats):
        a, b = args
        if self.fast and self.bounds[op.name] <= ig.INT8_MAX and _small(a) and _small(b):
            # spikes and small counts (the residual stream): one byte per value, which the int8
            # synapses that read it take as they are
            y = np.add(ig.as_int8(a), ig.as_int8(b), dtype=np.int8)
        else:
            dt = self._carrier(self.bounds[op.name])
            y = np.add(la.as_carrier(a, dt), la.as_carrier(b, dt))
        if stats is not None:
            stats.add("values_out", ev.nonzero_per_step(y))
        return y

    @KERNELS.register(O.IAND)
    def _k_iand(self, op, args, stats):
        a, s = args                   # spikes: (1 - a) * s == s AND NOT a
        return np.logical_and(s != 0, a == 0)

    @KERNELS.register(O.AND)
    def _k_and(self, op, args, stats):
        a, s = args                   # spikes: a * s == a AND s
        return np.logical_and(a != 0, s != 0)

    @KERNELS.register(O.ReduceSum)
    def _k_reduce_sum(self, op, args, stats):
        x = args[0]                   # [T, B, ...]: integers, summed exactly in the carrier
        dt = self._carrier(self.bounds[op.name])
        axes = tuple(a % (x.ndim - 2) + 2 for a in op.axes)
        y = la.as_carrier(x, dt).sum(axis=axes, dtype=dt, keepdims=True)
        if stats is not None:
            stats.add("values_out", ev.nonzero_per_step(y))
        return y

    @KERNELS.register(O.MaxPool2d)
    def _k_maxpool2d(self, op, args, stats):
        x = args[0]
        y = la.maxpool2d(x.reshape((-1,) + x.shape[2:]), op.kernel, op.stride, op.padding)
        return y.reshape(x.shape[:2] + y.shape[1:])

    @KERNELS.register(O.Reshape)
    def _k_reshape(self, op, args, stats):
        x = args[0]
        shape = x.shape[:2] + tuple(op.shape)
        if isinstance(x, GridSums):
            return x.reshape(shape) or x.materialize().reshape(shape)
        return x.reshape(shape)

    @KERNELS.register(O.Transpose)
    def _k_transpose(self, op, args, stats):
        return np.ascontiguousarray(args[0].transpose((0, 1) + tuple(p + 2 for p in op.perm)))

    @KERNELS.register(O.Output)
    def _k_output(self, op, args, stats):
        return args[0]

    def _synapse(self, syn: Synapse, args, stats: ev.LayerStats | None):
        op = syn.op
        total = None
        total_bound = 0
        for k, x in enumerate(args):
            in_spec = self.specs[op.inputs[k]]
            if stats is not None:
                syn.count_events(x, in_spec.kind, stats)
            xb = self.bounds[op.inputs[k]]
            a = self._synapse_term(syn, x, xb, in_spec.kind is Kind.COUNT)
            b = syn.out_bound(xb)
            if total is None:
                total, total_bound = a, b
            else:
                total_bound += b
                dt = self._carrier(total_bound)
                total = np.add(la.as_carrier(total, dt), la.as_carrier(a, dt))
        if total_bound >= 1 << (self.fmt.container_bits - 1):
            # the receiving port sums the terms into one int32 (Lava's in-port)
            total = fx.wrap_signed(la.to_int64(total), self.fmt.container_bits)
        return total

    def _synapse_term(self, syn: Synapse, x: np.ndarray, x_bound: int, graded: bool) -> np.ndarray:
        """One input's weighted sum, shifted by the weight exponent and wrapped like the target.

        Float path (no wrap can act: neither on the sum, which Lava's int32 graded dot product
        wraps before the shift, nor on the shifted output): the weights of output channel o are
        pre-multiplied by ``2**e[o]``, which scales every partial sum by a power of two, exactly,
        so the product lands on ``sum * 2**e`` and a floor (for e < 0) completes the arithmetic
        shift. Otherwise: int64 and the target's wrap helpers.

        A synapse in ``_gridded`` (its only readers are LIFs) on the int8 path returns its
        GEMM's output as it lands where the product is one GEMM (``GridSums``), unshifted: the
        LIF shifts while it reads.
        """
        op = syn.op
        T, B = x.shape[:2]
        invariant = x.strides[0] == 0 and T > 1      # the same input every step (repeat encoding)
        xs = x[:1] if invariant else x
        w8, use_float, dt, weight, shift = self._term_plan(syn, x_bound)
        flat = xs.reshape((-1,) + xs.shape[2:])
        weight, flat = syn.active_inputs(weight, flat)
        gridded = w8 is not None and op.name in self._gridded and (not syn.conv or op.groups == 1)
        if gridded:         # the GEMM's output as it lands, or an unshifted array
            acc = la.conv2d(flat, weight, op.stride, op.padding, op.dilation, 1, grid=True) \
                if syn.conv else la.dense_matmul(flat, weight, op.axis, grid=True)
            if isinstance(acc, tuple):
                y, grid, crop = acc
                return GridSums(y, T, B, grid, crop, shift, self.specs[op.name].shape, op.name,
                                repeated=invariant)
        elif syn.conv:      # the int8 path's shift is done in the conv's output pass
            acc = la.conv2d(flat, weight, op.stride, op.padding, op.dilation, op.groups, shift)
        else:
            acc = la.dense_matmul(flat if w8 is not None else la.as_carrier(flat, dt), weight,
                                  op.axis)
        acc = acc.reshape(xs.shape[:2] + acc.shape[1:])
        if w8 is not None:
            y = acc if syn.conv and not gridded else ig.shift(acc, shift, syn.channel_axis + 2)
        elif use_float:
            if syn.exp_values[0] < 0:
                np.floor(acc, out=acc)
            y = acc
        else:
            y = syn.shift_wrap_int(acc, syn.channel_axis + 2, graded, self.fmt, self.strict)
        if invariant:
            y = np.broadcast_to(y, (T,) + y.shape[1:])
        return y

    def _term_plan(self, syn: Synapse, x_bound: int):
        """How the term of an input bounded by ``x_bound`` is computed (static: from bounds;
        made once per synapse, bound and mode, and kept on the synapse, which clones share):
        ``(w8, use_float, dt, weight, shift)``. ``use_float``: no wrap can act and the sum is
        exact in the float carrier ``dt``; ``w8``: ``(int8 weights, g)`` for the int8 path
        (|x| <= 127, ``W == w8 << g``; with ``use_float`` every partial sum of ``w8 x`` lies
        inside int32 and an arithmetic shift by ``shift = g + e`` per output channel completes
        it), else None (and ``shift`` None); ``weight``: what to multiply."""
        key = ("plan", x_bound, self.fast, self.int8)
        plan = syn.plans.get(key)
        if plan is None:
            plan = syn.plans[key] = self._make_term_plan(syn, x_bound)
        return plan

    def _make_term_plan(self, syn: Synapse, x_bound: int):
        sum_bound = syn.sum_bound(x_bound)
        out_bound = max(shift_bound(sum_bound, e) for e in syn.exp_values)
        dt = self._carrier(sum_bound)
        use_float = max(out_bound, sum_bound) < 1 << (syn.wrap_bits - 1) and dt.kind == "f"
        if not use_float:
            dt = np.dtype(np.int64)
        w8 = syn.int8_weight() if use_float and self.int8 and x_bound <= ig.INT8_MAX else None
        if w8 is not None:
            return w8, use_float, dt, w8[0], (syn.exp + w8[1]).astype(np.int32)
        return None, use_float, dt, syn.scaled_weight(dt) if use_float else syn.weight(dt), None

    def prepare(self) -> None:
        """Do now the one-time work of the first ``run``: every synapse's weights in the form
        its terms use, the neuron layers' constants."""
        for op in self.graph.ops:
            if op.name in self.synapses:
                for i in op.inputs:
                    self._term_plan(self.synapses[op.name], self.bounds[i])
            elif isinstance(op, F.CubaLIF) and op.name not in self._layers:
                self._layers[op.name] = CubaLIFLayer(op, self.fmt, strict=self.strict,
                                                     fast=self.fast)

    def clone(self) -> "Simulator":
        """A simulator of the same graph that shares this one's prepared weights, bounds and
        neuron constants but has its own neuron state, so that the two may run batches on two
        threads at once (``spikec.sim.threads``). Call ``prepare`` first: the weights of the
        synapse terms are then made, and only read, by both."""
        twin = copy.copy(self)
        twin._layers = {name: copy.copy(layer) for name, layer in self._layers.items()}
        for layer in twin._layers.values():
            layer.u = layer.v = None
        return twin

    def _spike_matmul(self, op, a, b, stats: ev.LayerStats | None) -> np.ndarray:
        if stats is not None:
            stats.add("ssa_ops", ev.ssa_ops(a, b))
        dt = self._carrier(self.bounds[op.name])
        y = la.matmul(la.as_carrier(a, dt), la.as_carrier(b, dt))
        if stats is not None:
            stats.add("values_out", ev.nonzero_per_step(y))
        return y


def _small(x: np.ndarray) -> bool:
    """Spikes or int8 integers (``Add``'s one-byte inputs)."""
    return x.dtype == np.bool_ or x.dtype == np.int8


def _neurons(op, spec) -> int:
    if isinstance(op, (F.CubaLIF, F.Readout)):
        return int(np.prod(spec.shape)) if spec.shape else 1
    return 0


def _recorded(y: np.ndarray, kind: Kind, raw: bool = False) -> np.ndarray:
    if kind is Kind.SPIKE:
        # a neuron layer's own spike array (no kernel writes into its inputs): kept, not copied
        return y if y.dtype == bool and (raw or y.flags.owndata) else y != 0
    if raw:
        return y
    if kind is Kind.REAL:
        return np.array(y)
    return np.array(y, dtype=np.int64)       # one copy, whatever the carrier


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def simulate(graph: Graph, data, *, formats: NumberFormats | None = None, strict: bool = False,
             batch_size: int = 32, record: Iterable[str] | str | None = None,
             progress=None) -> SimResult:
    """Simulate ``graph`` on ``data`` [N, ...] in batches; outputs concatenated, counts summed.
    The batches run on the machine's cores (``spikec.sim.threads``), the results are those of
    one thread.

    ``progress(n)`` is called after each batch with its size.
    """
    from spikec.sim.threads import SimulatorPool, threads_for

    data = np.asarray(data)
    starts = range(0, len(data), batch_size)
    pool = SimulatorPool(graph, threads_for(graph, batch_size, len(starts)), formats=formats,
                         strict=strict)
    total: SimResult | None = None
    with pool:
        for r in pool.map((data[s:s + batch_size] for s in starts), record=record):
            if total is None:
                total = r
            else:
                values = {k: np.concatenate([total.values[k], v], axis=1 if v.ndim > 1 else 0)
                          for k, v in r.values.items()}
                total.merge(r)
                total.values = values
            if progress:
                progress(r.samples)
    return total if total is not None else SimResult(outputs={})
