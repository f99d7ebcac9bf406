"""The graph walk of quantization: a folded float graph becomes a new fixed-point graph.

Which float ops become which fixed ops (names are kept, so a float LIF and its CUBA twin share a
name)::

    input (raw pixels)                     -> graded_input (8-bit graded spikes)
    conv2d | linear -> layout* -> lif      -> conv_synapse | dense_synapse -> layout* -> cuba_lif
    add(conv2d | linear, ...) -> layout* -> lif   (membrane shortcut: currents summed before it)
                                           -> per term: synapse -> layout* ; cuba_lif(all terms)
    (integer value) -> layout* [scale] -> lif
                                           -> layout* [reshape, dense_synapse (gain), reshape] -> cuba_lif
    linear [-> mean] -> time_mean -> output -> dense_synapse -> readout -> output
    add (count) read by synapses           -> kept (graded payload) or dissolved into fan-in inputs
    reduce_sum (one axis) -> layout* [scale] -> lif
                                           -> dense_synapse (unit weights times the gain, along
                                              the summed axis) -> layout* -> cuba_lif
    maxpool2d, spike_matmul, iand, and, reduce_sum, reshape, transpose, output -> unchanged
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from spikec import interp
from spikec.errors import CapacityError, DataError, FormatError, UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.graph import Graph
from spikec.ir.types import Domain, Encoding, Kind
from spikec.passes.rewrite import LAYOUT_OPS, consumers, producers, sole_consumer
from spikec.passes.structure import eliminate_dead_ops
from spikec.quantize.bounds import Calibration, calibrate, integer_bounds, worst_case_sums
from spikec.quantize.layers import (Ranges, quantize_count_layer, quantize_readout,
                                    quantize_synaptic_layer)
from spikec.quantize.membrane import (current_terms, lower_membrane, lower_readout_of_currents,
                                      tree_ops)
from spikec.quantize.options import CompileOptions, InputEncoding, ResidualLowering

#: Bits of a raw pixel sent as a graded spike (uint8 images).
PIXEL_BITS = 8

#: What quantization does with each float op type: ``(self: _Lowering, op) -> None`` (appends the
#: op's fixed-point twin, if any, to ``self.out``).
LOWER = OpTable("the quantizer")
_FOLDED = ("folded by the float passes; run spikec.pipeline.FLOAT_PASSES first (a {} they "
           "cannot fold has no fixed-point form)")
LOWER.refuse(O.BatchNorm, _FOLDED.format("batch norm not after a conv2d/linear"))
LOWER.refuse(O.AvgPool2d, _FOLDED.format("pooling not before a conv2d/linear"))
LOWER.refuse(O.Scale, _FOLDED.format("scale that is neither a power of two before a LIF nor "
                                     "part of a folded layer"))
LOWER.refuse(O.Mean, _FOLDED.format("mean outside a read-out (linear -> mean -> time_mean)"))
LOWER.refuse(F.FIXED_ONLY_OPS, "already a fixed-point op: quantization reads float graphs")


@dataclass
class _Layer:
    lif: O.LIF
    chain: list[O.Op]                 # layout ops between the driver and the LIF, in order
    syn: O.Op | None = None           # conv2d / linear driving the LIF
    count: str | None = None          # or: the integer value read directly
    factor: float = 1.0               # a non-power-of-two scale folded into the threshold
    summed: O.ReduceSum | None = None  # the count is this token/channel sum: fused into a synapse
    params: object = None             # NeuronParams, once the driver is quantized
    # or: a sum of synapse outputs (membrane shortcut): (synapse, layout ops to the LIF) per term
    terms: list[tuple[O.Op, list[O.Op]]] | None = None


@dataclass
class _Readout:
    syn: O.Linear
    mean: O.Mean | None               # the token mean (None: no token axes)
    tmean: O.TimeMean
    fixed: F.Readout | None = None
    # or: the head reads a sum of synapse outputs (Spikingformer): (synapse, layout ops) per term
    terms: list[tuple[O.Op, list[O.Op]]] | None = None


@dataclass
class _Plan:
    layers: dict[str, _Layer] = field(default_factory=dict)        # by LIF name
    by_synapse: dict[str, _Layer] = field(default_factory=dict)
    readouts: dict[str, _Readout] = field(default_factory=dict)    # by synapse name
    absorbed: set[str] = field(default_factory=set)                 # float ops with no twin
    alias: dict[str, str] = field(default_factory=dict)             # absorbed value -> its input


def _plan(graph: Graph) -> _Plan:
    specs = graph.specs
    prod, cons = producers(graph.ops), consumers(graph.ops)
    plan = _Plan()
    for lif in graph.ops:
        if not isinstance(lif, O.LIF):
            continue
        chain, factor = [], 1.0
        cur = prod[lif.inputs[0]]
        while True:
            nxt = chain[0] if chain else lif
            if isinstance(cur, LAYOUT_OPS) and sole_consumer(cons, cur.name) is nxt:
                chain.insert(0, cur)
            elif isinstance(cur, O.Scale) and factor == 1.0 and sole_consumer(cons, cur.name) is nxt:
                factor = float(cur.factor)
                if not factor > 0:
                    raise UnsupportedOpError(f"scale {cur.name!r} by {factor} before LIF {lif.name!r}: "
                                             "a non-positive scale flips the threshold test")
                plan.absorbed.add(cur.name)
                plan.alias[cur.name] = cur.inputs[0]
            else:
                break
            cur = prod[cur.inputs[0]]
        # a scale, if any, sits between `cur` and the chain: drop it from the chain's inputs
        first = chain[0] if chain else lif
        if isinstance(cur, (O.Conv2d, O.Linear)) and factor == 1.0 \
                and sole_consumer(cons, cur.name) is first:
            layer = _Layer(lif, chain, syn=cur)
            plan.by_synapse[cur.name] = layer
        elif specs[cur.name].kind.is_integer:
            layer = _Layer(lif, chain, count=cur.name, factor=factor)
            if isinstance(cur, O.ReduceSum) and len(cur.axes) == 1 \
                    and len(cons.get(cur.name, ())) == 1:
                layer.summed = cur          # lowered by _reduce_sum, before the chain
        elif factor == 1.0 and (terms := current_terms(cur.name, prod, specs)) is not None:
            layer = _Layer(lif, chain, terms=[(syn, inner + chain) for syn, inner in terms])
            plan.absorbed |= {op.name for op in chain} | tree_ops(cur.name, prod, specs)
        elif isinstance(cur, O.MaxPool2d):
            raise UnsupportedOpError(
                f"LIF {lif.name!r} is driven by maxpool2d {cur.name!r} of real-valued currents, "
                "which a chip cannot take exactly (synapses sum, they do not compare); pool after "
                "the neuron instead (a max of spikes is an OR, which spikec maps)")
        else:
            raise UnsupportedOpError(
                f"LIF {lif.name!r} is driven by {cur.OPCODE} {cur.name!r}; spikec maps a LIF fed by a "
                "conv2d/linear (after batch-norm folding), a sum of their outputs, or an integer "
                "value only")
        plan.layers[lif.name] = layer
    for out in graph.outputs:
        tm = prod[out.inputs[0]]
        if not isinstance(tm, O.TimeMean):
            continue
        mean = prod[tm.inputs[0]]
        if not isinstance(mean, O.Mean) or sole_consumer(cons, mean.name) is not tm:
            mean = None
        syn = prod[(mean or tm).inputs[0]]
        if isinstance(syn, O.Linear) and sole_consumer(cons, syn.name) is (mean or tm):
            terms = None
            if specs[syn.inputs[0]].kind is Kind.REAL:
                terms = current_terms(syn.inputs[0], prod, specs)
                if terms is not None:
                    plan.absorbed |= tree_ops(syn.inputs[0], prod, specs)
            plan.readouts[syn.name] = _Readout(syn, mean, tm, terms=terms)
            if mean is not None:
                plan.absorbed.add(mean.name)
    return plan


def _check_shapes(graph: Graph, calib: np.ndarray) -> np.ndarray:
    inp = graph.inputs[0]
    calib = np.asarray(calib)
    want = tuple(inp.shape) if inp.encoding == Encoding.REPEAT else (graph.timesteps,) + tuple(inp.shape)
    if calib.ndim != len(want) + 1 or calib.shape[1:] != want:
        raise DataError(f"calibration data of shape {calib.shape[1:]} per sample does not match the "
                        f"model input {want}")
    return calib


class _Lowering:
    """State of one quantization run (see ``quantize``)."""

    def __init__(self, graph: Graph, fmt, opts: CompileOptions, residual: str,
                 calib: Calibration | None, input_encoding: str = InputEncoding.GRADED):
        if opts.min_weight_exp is not None:
            lo = min(max(fmt.weight_exp_min, opts.min_weight_exp), fmt.weight_exp_max)
            fmt = dataclasses.replace(fmt, weight_exp_min=lo)
        self.g, self.fmt, self.opts, self.residual, self.cal = graph, fmt, opts, residual, calib
        self.T = graph.timesteps
        self.specs = graph.specs
        self.prod = producers(graph.ops)
        self.plan = _plan(graph)
        self.bounds = integer_bounds(graph, float((1 << PIXEL_BITS) - 1))
        self.out: list[O.Op] = []
        self.names = {op.name for op in graph.ops}
        self.resolved: dict[str, list[str]] = {}
        self.origin: dict[str, str] = {}  # fan-in layout copy -> the float value it copies
        self.notes_layers: dict[str, dict] = {}
        self.residual_reads: dict[str, list[str]] = {}
        self.residual_inputs: dict[str, str] = {}  # fixed synapse -> the float value it reads
        self.membrane_synapses = {syn.name for lay in [*self.plan.layers.values(),
                                                       *self.plan.readouts.values()]
                                  for syn, _ in (lay.terms or ())}
        self.real_input: dict | None = None
        self.input_encoding = input_encoding

    # -- fan-in sources ---------------------------------------------------------------------
    def sources(self, value: str) -> list[str]:
        """Values a synapse reads for ``value``: itself, or with fan-in the spike sources of the
        adds it sums (layout ops between are copied once per source)."""
        if self.residual != ResidualLowering.FANIN or self.specs[value].kind is not Kind.COUNT:
            return [value]
        if value in self.resolved:
            return self.resolved[value]
        op = self.prod[value]
        if isinstance(op, O.Add):
            srcs = self.sources(op.inputs[0]) + self.sources(op.inputs[1])
        elif isinstance(op, LAYOUT_OPS):
            inner = self.sources(op.inputs[0])
            if inner == [op.inputs[0]]:
                srcs = [value]
            else:
                srcs = []
                for k, src in enumerate(inner):
                    nm = f"{op.name}.src{k}"
                    while nm in self.names:
                        nm += "_"
                    self.names.add(nm)
                    copy = type(op)(nm, (src,), **op.attributes())
                    self.out.append(copy)
                    self.origin[nm] = self.origin.get(src, src)
                    srcs.append(nm)
        else:
            srcs = [value]
        self.resolved[value] = srcs
        return srcs

    # -- ranges ------------------------------------------------------------------------------
    def ranges(self, syn: O.Op, n_sources: int) -> Ranges:
        x_max = self.bounds.get(syn.inputs[0])
        if x_max is None:
            raise UnsupportedOpError(f"synapse {syn.name!r} reads {syn.inputs[0]!r}, a real value; "
                                     "synapses read spikes, counts or the raw input only")
        worst = worst_case_sums(syn, x_max)
        if self.cal is not None and syn.name in self.cal.sums:
            sums = np.minimum(self.cal.sums[syn.name] * self.opts.calib_margin, worst)
            return Ranges(sums, worst, x_max, n_sources, calibrated=True)
        return Ranges(worst, worst, x_max, n_sources, calibrated=False)

    # -- ops ---------------------------------------------------------------------------------
    def run(self) -> Graph:
        for op in self.g.ops:
            if op.name in self.plan.absorbed:
                continue
            LOWER.lookup(op)(self, op)
        fixed = Graph(self.out, timesteps=self.T, meta=dict(self.g.meta), domain=Domain.FIXED)
        return eliminate_dead_ops(fixed.with_ops(self.out))

    @LOWER.register(O.Input)
    def _input(self, op: O.Input):
        if op.kind == Kind.REAL:
            if op.pixel_scale != 1.0 or any(s != 1.0 for s in op.std):
                raise FormatError(f"input {op.name!r} still has pixel_scale/std; run "
                                  "fold_input_normalization (its reader must be a conv2d or linear)")
            readers = [o.name for o in self.g.consumers(op.name)]
            if not self.fmt.graded_spikes and self.input_encoding == InputEncoding.GRADED:
                raise FormatError(
                    f"layer {', '.join(readers)!s} consumes real-valued input {op.name!r}, and this "
                    "target has no graded spikes; use --input-encoding bitplane or host")
            self.real_input = {"input": op.name, "consumers": readers, "payload_bits": PIXEL_BITS,
                               "encoding": self.input_encoding,
                               "bias": "per-neuron (input mean, exact at borders)" if op.mean
                               else "per-channel"}
        self.out.append(F.GradedInput(op.name, (), shape=tuple(op.shape), encoding=op.encoding,
                                      kind=(Kind.COUNT if op.kind == Kind.REAL else Kind.SPIKE).value, pad=op.pad,
                                      payload_bits=PIXEL_BITS if op.kind == Kind.REAL else 1))

    @LOWER.register(O.Conv2d)
    def _conv2d(self, op: O.Conv2d):
        self._synapse(op)

    @LOWER.register(O.Linear)
    def _linear(self, op: O.Linear):
        self._synapse(op)

    def _needs_graded(self, value: str, layer: str) -> None:
        if self.specs[value].kind is Kind.COUNT and not self.fmt.graded_spikes \
                and not isinstance(self.prod[value], O.Input):
            # a limit of the chip, not of the model or the options: exit 3, like any capacity
            raise CapacityError(
                f"layer {layer!r} reads {value!r}, a multi-bit count ({self.prod[value].OPCODE}), and "
                "this target has no graded spikes; counts from spike_matmul (or joins that fan-in "
                "cannot dissolve) need a target with graded spikes such as loihi2")

    def _synapse(self, syn: O.Op):
        if syn.name in self.membrane_synapses:
            return  # quantized with the neuron that sums it (``_membrane``)
        srcs = self.sources(syn.inputs[0])
        for src in srcs:
            self._needs_graded(self.origin.get(src, src), syn.name)
        if self.specs[syn.inputs[0]].kind is Kind.COUNT:
            self.residual_reads[syn.name] = srcs
        if syn.name in self.plan.readouts:
            return self._readout_synapse(syn, srcs)
        layer = self.plan.by_synapse.get(syn.name)
        if layer is None:
            raise UnsupportedOpError(f"synapse {syn.name!r} ({syn.OPCODE}) does not drive a LIF or "
                                     "the read-out; spikec cannot give its real output a target form")
        ranges = self.ranges(syn, len(srcs))
        out_shape = self.specs[syn.name].shape
        bias_map = self._input_mean_bias(syn, out_shape)
        fmt = self._input_synapse_formats(syn)
        for _ in range(4):
            w, e, params, notes = quantize_synaptic_layer(
                syn, layer.lif, out_shape, layer.chain, ranges, fmt, self.opts, self.T, bias_map)
            over = notes["a_in_worst_case"] / self.fmt.a_in_max
            if ranges.calibrated or over <= 1.0:
                break
            ranges = Ranges(ranges.sums * over * 1.01, ranges.worst, ranges.x_max, ranges.sources)
        kw = dict(weight=w, weight_exp=e)
        if isinstance(syn, O.Conv2d):
            fop = F.ConvSynapse(syn.name, tuple(srcs), stride=tuple(syn.stride),
                                padding=tuple(syn.padding), dilation=tuple(syn.dilation),
                                groups=syn.groups, **kw)
        else:
            fop = F.DenseSynapse(syn.name, tuple(srcs), axis=syn.axis, **kw)
        self.out.append(fop)
        notes.update(op="conv_synapse" if isinstance(syn, O.Conv2d) else "dense_synapse",
                     reads=self._reads(syn, srcs), tau=float(layer.lif.tau))
        self._risks(layer.lif.name, notes, tau=float(layer.lif.tau))
        self.notes_layers[layer.lif.name] = notes
        layer.params = params

    def _input_synapse_formats(self, syn: O.Op):
        """The formats the synapse reading the raw input is quantized with. ``bitplane`` sends
        plane ``k`` through the same mantissas with exponent ``e + k``; the sum over planes equals
        the graded ``shift(W x, e)`` exactly when no plane shifts right (``e >= 0``) and
        ``e + PIXEL_BITS - 1`` is a weight exponent of the target."""
        if self.input_encoding != InputEncoding.BITPLANE or \
                not isinstance(self.prod[syn.inputs[0]], O.Input):
            return self.fmt
        hi = self.fmt.weight_exp_max - (PIXEL_BITS - 1)
        if hi < 0:
            raise FormatError(f"layer {syn.name!r}: bitplane input needs weight exponents up to "
                              f"{PIXEL_BITS - 1}, the target's end at {self.fmt.weight_exp_max}; "
                              "use --input-encoding host")
        return dataclasses.replace(self.fmt, weight_exp_min=max(0, self.fmt.weight_exp_min),
                                   weight_exp_max=hi)

    def _reads(self, syn, srcs) -> str:
        kind = self.specs[syn.inputs[0]].kind
        if isinstance(self.prod[syn.inputs[0]], O.Input):
            return {InputEncoding.BITPLANE: f"raw input ({PIXEL_BITS} binary bit planes)",
                    InputEncoding.HOST: "raw input (on the host)"}.get(
                        self.input_encoding, "raw input (graded payload)")
        if kind is Kind.SPIKE:
            return "spikes"
        return f"counts (fan-in of {len(srcs)} spike sources)" if len(srcs) > 1 or \
            self.residual == ResidualLowering.FANIN else "counts (graded payload)"

    def _input_mean_bias(self, syn: O.Op, out_shape) -> np.ndarray | None:
        src = self.prod[syn.inputs[0]]
        if not (isinstance(src, O.Input) and src.mean):
            return None
        shape = self.specs[src.name].shape
        mean_img = np.broadcast_to(np.asarray(src.mean, np.float64).reshape(-1, 1, 1), shape)[None]
        m = interp.conv2d(np.ascontiguousarray(mean_img), syn.weight.astype(np.float64), None,
                          syn.stride, syn.padding, syn.dilation, syn.groups)[0]
        b = np.zeros(out_shape[0]) if syn.bias is None else syn.bias.astype(np.float64)
        return b.reshape(-1, 1, 1) - m

    def _readout_synapse(self, syn: O.Linear, srcs):
        ro = self.plan.readouts[syn.name]
        if ro.terms is not None:
            return self._readout_of_currents(ro)
        ranges = self.ranges(syn, len(srcs))
        tok_axes = [a % len(self.specs[syn.name].shape) for a in (ro.mean.axes if ro.mean else ())]
        tokens = int(np.prod([self.specs[syn.name].shape[a] for a in tok_axes]))
        if ranges.calibrated and syn.name in self.cal.accumulated:
            acc = self.cal.accumulated[syn.name] * self.opts.calib_margin
        else:
            acc = ranges.worst * tokens * self.T
        w, e, scale, offset, notes = quantize_readout(syn, tokens, ranges, acc, self.fmt,
                                                      self.opts, self.T)
        self.out.append(F.DenseSynapse(syn.name, tuple(srcs), weight=w, weight_exp=e, axis=syn.axis))
        ro.fixed = F.Readout(ro.tmean.name, (syn.name,), scale=scale, offset=offset,
                             sum_axes=tuple(tok_axes))
        notes.update(op="readout", reads=self._reads(syn, srcs))
        if notes["accumulator_bound"] > self.fmt.state_max:
            notes.setdefault("overflow_risks", []).append("accumulator")
        self._risks(ro.tmean.name, notes, tau=None)
        self.notes_layers[ro.tmean.name] = notes

    @LOWER.register(O.LIF)
    def _lif(self, lif: O.LIF):
        layer = self.plan.layers[lif.name]
        if layer.terms is not None:
            inputs = self._membrane(layer)
        else:
            inp = layer.chain[-1].name if layer.chain else (layer.syn.name if layer.syn else layer.count)
            if layer.syn is None and layer.summed is None:
                inp = self._count_layer(layer, inp)
            inputs = (inp,)
        p = layer.params
        self.out.append(F.CubaLIF(lif.name, inputs, du=p.du, dv=p.dv, vth=p.vth,
                                  bias_mant=p.bias_mant, bias_exp=p.bias_exp,
                                  v_subtract=p.v_subtract))

    def _count_layer(self, layer: _Layer, inp: str) -> str:
        lif = layer.lif
        if layer.summed is None:
            self._needs_graded(layer.count, lif.name)
        static = self.bounds.get(layer.count, math.inf)
        cal = self.cal.values.get(layer.count) if self.cal is not None else None
        bound = min(static, cal * self.opts.calib_margin) if cal is not None else static
        shape = self.specs[lif.name].shape
        gain, params, notes = quantize_count_layer(lif, layer.factor, bound, cal is not None,
                                                   self.fmt, self.opts, self.T, shape)
        reads = f"count {layer.count!r} directly" if layer.summed is None else \
            f"spikes summed over axis {layer.summed.axes[0]} by unit-weight synapses"
        notes.update(op="cuba_lif", reads=reads,
                     a_in_worst_case=int(gain * static) if math.isfinite(static) else None,
                     tau=float(lif.tau))
        layer.params = params
        self._risks(lif.name, notes, tau=float(lif.tau))
        self.notes_layers[lif.name] = notes
        w_max = (1 << self.fmt.weight_bits) - 1
        wexp = 0 if gain <= w_max else int(math.log2(gain))
        wq = gain if gain <= w_max else 1
        if layer.summed is not None:
            return self._summing_synapse(layer.summed, lif.name, wq, wexp)
        if gain == 1:
            return inp
        # a one-to-one synapse of weight `gain` over a size-1 axis: a_in = gain * count
        a, b, c = (f"{lif.name}.gain_in", f"{lif.name}.gain", f"{lif.name}.gain_out")
        self.out += [O.Reshape(a, (inp,), shape=tuple(shape) + (1,)),
                     F.DenseSynapse(b, (a,), weight=np.array([[wq]], np.int16),
                                    weight_exp=np.array([wexp], np.int8), axis=-1),
                     O.Reshape(c, (b,), shape=tuple(shape))]
        return c

    @LOWER.register(O.ReduceSum)
    def _reduce_sum(self, op: O.ReduceSum):
        layer = next((lay for lay in self.plan.layers.values() if lay.summed is op), None)
        if layer is None:
            return self._copy(op)       # a count kept for its readers (graded payload)
        self._count_layer(layer, op.name)

    def _summing_synapse(self, op: O.ReduceSum, lif: str, wq: int, wexp: int) -> str:
        """``reduce_sum -> [layout] -> lif`` on the chip: the sum is the synapses of the LIF,
        ``a_in = gain * sum_axis x`` (``wq << wexp = gain``; exact: integer weights, no rounding),
        one dense synapse named like the sum so that the layout ops between still read it. A
        summed count reads its spike sources by fan-in where the residual lowering says so."""
        (x,) = op.inputs
        axis = op.axes[0] % len(self.specs[x].shape)
        n = self.specs[x].shape[axis]
        srcs = self.sources(self.plan.alias.get(x, x))
        for src in srcs:
            self._needs_graded(self.origin.get(src, src), lif)
        self.out.append(F.DenseSynapse(op.name, tuple(srcs), axis=axis,
                                       weight=np.full((1, n), wq, np.int16),
                                       weight_exp=np.array([wexp], np.int8)))
        return op.name

    def _membrane(self, layer: _Layer) -> tuple[str, ...]:
        return lower_membrane(self, layer)

    def _readout_of_currents(self, ro: _Readout) -> None:
        lower_readout_of_currents(self, ro)

    def _fresh(self, name: str) -> str:
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def _risks(self, layer: str, notes: dict, tau: float | None):
        fmt = self.fmt
        risks = notes.setdefault("overflow_risks", [])
        possible = notes.setdefault("possible_overflow", [])
        a_used = notes["a_in_bound"]
        a_worst = notes.get("a_in_worst_case")
        if a_used > fmt.a_in_max:
            risks.append("a_in")
        elif a_worst is not None and a_worst > fmt.a_in_max:
            possible.append("a_in")
        u_bound = a_used << fmt.weight_shift
        notes["u_bound"] = int(u_bound)
        if tau is not None:
            # v sums at most sum_k (1 - 1/tau)^k <= tau inputs; without a leak (IF, tau = inf)
            # it sums the T steps of one inference
            horizon = self.T if math.isinf(tau) else tau
            v_bound = int(math.ceil(horizon * (u_bound + notes.get("bias_max", 0))))
            notes["v_bound"] = v_bound
            if v_bound > fmt.state_max:
                risks.append("v")
        if u_bound > fmt.state_max:
            risks.append("u")
        notes["state_limit"] = fmt.state_max
        if self.opts.strict and risks:
            raise FormatError(
                f"layer {layer!r}: {', '.join(risks)} can overflow (a_in up to {a_used} vs "
                f"{fmt.a_in_max}, u up to {u_bound}, v up to {notes.get('v_bound')} vs "
                f"{fmt.state_max}, {notes['a_in_source']} bounds); give --calib samples or relax "
                "strict mode")

    @LOWER.register(O.TimeMean)
    def _timemean(self, op: O.TimeMean):
        ro = next((r for r in self.plan.readouts.values() if r.tmean is op), None)
        if ro is None:
            raise UnsupportedOpError(f"time_mean {op.name!r} is not part of a foldable read-out "
                                     "(linear [-> mean] -> time_mean -> output); run fold_readout")
        self.out.append(ro.fixed)

    @LOWER.register(O.Reshape, O.Transpose, O.MaxPool2d, O.SpikeMatmul, O.IAND, O.AND, O.Output,
                    O.Add)
    def _copy(self, op: O.Op):
        if any(i in self.plan.alias for i in op.inputs):
            op = type(op)(op.name, tuple(self.plan.alias.get(i, i) for i in op.inputs),
                          **op.attributes())
        for i in op.inputs:
            if self.specs[i].kind is Kind.REAL and not isinstance(op, LAYOUT_OPS + (O.Output,)):
                raise UnsupportedOpError(f"op {op.name!r} ({op.OPCODE}) reads the real value {i!r}")
        self.out.append(op)


def residual_cost(lowering: _Lowering, fixed: Graph) -> dict:
    """What the chosen lowering of count values costs (static counts)."""
    specs = lowering.specs
    live = {op.name for op in fixed.ops}
    reads = lowering.residual_reads
    adds = [op for op in lowering.g.ops if isinstance(op, O.Add) and specs[op.name].kind is Kind.COUNT]
    count_bound = max((lowering.bounds.get(op.name, 0) for op in adds), default=0)
    info = {"mode": lowering.residual, "joins": len(adds),
            "synapses_reading_counts": len(reads),
            "max_count": int(count_bound),
            "payload_bits": int(count_bound).bit_length()}
    syn_ops = {op.name: op for op in fixed.ops if isinstance(op, (F.ConvSynapse, F.DenseSynapse))}
    if lowering.residual == ResidualLowering.GRADED:
        info["relay_neurons"] = int(sum(specs[a.name].size for a in adds if a.name in live))
        info["graded_values_per_step"] = int(sum(
            specs[lowering.residual_inputs.get(n) or lowering.g.op(n).inputs[0]].size
            for n in reads))
        info["extra_weights"] = 0
    else:
        extra = sum((len(srcs) - 1) * int(syn_ops[n].weight.size) for n, srcs in reads.items()
                    if n in syn_ops)
        info["adds_kept"] = [a.name for a in adds if a.name in live]
        info["sources_per_synapse"] = {n: len(s) for n, s in reads.items()}
        info["extra_weights"] = int(extra)
        info["extra_synapse_memory_bits"] = int(extra * lowering.fmt.weight_bits)
        info["relay_neurons"] = int(sum(specs[a].size for a in info["adds_kept"]))
    return info
