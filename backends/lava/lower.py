"""Lowering of fixed-point IR ops onto Lava processes (the plan), one function per op type.

=================  =========================================================================
IR op              Lava processes
=================  =========================================================================
graded_input       io.source.RingBuffer (graded int payloads, or binary events); bitplane
                   input: one binary RingBuffer per bit plane; host input: none (encodings.py)
conv_synapse       proc.conv.Conv when one exponent, one whole aligned input and exponent >= 0;
                   else proc.sparse.Sparse of the unrolled kernel (exact for any exponent);
                   one process per (input term, exponent group, threshold group)
dense_synapse      proc.dense.Dense on 1-d values, proc.sparse.Sparse (token-wise weights)
                   otherwise; DelayDense/DelaySparse where the input must wait
cuba_lif           proc.lif.LIFReset, one process per distinct vth (Lava: one vth per process);
                   soft reset (v_subtract): spikec's SoftLIFReset (runtime/procs.py) instead;
                   every input's synapses connect into its a_in (Lava sums them); the first
                   layer under the host input encoding: a RingBuffer of its spikes
readout            spikec Readout (accumulator read by the host)
add                Sparse identities -> GradedVec(vth=0) (graded sum, one step)
iand               Sparse +1 (s) and -1 (a) -> LIF(du=dv=4095, vth=0): fires iff s and not a
and                Sparse +1 (a) and +1 (s) -> LIF(du=dv=4095, vth=1): fires iff a and s
                   (a size-1 axis broadcasts: its synapses fan out along the other input's axis)
reduce_sum         Sparse ones (each input to the output it is summed into) -> GradedVec(vth=0)
                   (graded sum, one step); fed to a LIF the quantizer has already made it the
                   LIF's dense synapse of unit weights, so it reaches here only for other readers
maxpool2d          Sparse window sums -> LIF(du=dv=4095, vth=0): OR over the window (spikes)
reshape/transpose  Lava virtual ports (no process), or re-indexing of a split value
spike_matmul       ssa.py: spikec SpikeMatmul (host) or coincidence/gate/product neurons
output             nothing (its input is probed)
=================  =========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir import fixed as F
from spikec.ir.dispatch import OpTable
from spikec.target.fixedpoint import conv_weight_from_torch

from . import encodings, shared
from .matrix import SynapseMatrix, guard_synapses, unrolled_axis, unrolled_conv, unrolled_window
from .plan import LValue, Part, PlanBuilder, message_bits

#: What the Lava lowering does with each op type: ``(self: Lowering, op) -> None``.
LOWER = OpTable("the Lava lowering")
LOWER.refuse(set(O.OP_TYPES.values()) - F.FIXED_DOMAIN_OPS,
             "a float op: the Lava backend lowers fixed-point graphs (spikec compile quantizes)")


def _transpose_index(shape, perm) -> np.ndarray:
    """``new_of_old[old_flat] = new_flat`` for ``x.transpose(perm)``."""
    n = int(np.prod(shape, dtype=np.int64))
    old_of_new = np.arange(n).reshape(shape).transpose(perm).ravel()
    new_of_old = np.empty(n, np.int64)
    new_of_old[old_of_new] = np.arange(n)
    return new_of_old


# ----------------------------------------------------------------------------- the lowering
@dataclass
class Current:
    """A synapse op's output seen through reshapes/transposes: ``perm[i]`` is the synapse output
    (flat) that element ``i`` of the current is (None: the same order); ``vops``: the same
    re-layout as Lava port transforms."""

    op: object
    perm: np.ndarray | None
    vops: list


class Lowering:
    """Lowers a fixed graph op by op into a ``PlanBuilder``."""

    def __init__(self, graph, builder: PlanBuilder, ssa: str, conv: str = "lava"):
        self.g = graph
        self.b = builder
        self.ssa = ssa
        self.conv_mode = conv
        # synaptic currents, lowered by the neuron that reads them: name -> Current
        self.pending: dict[str, Current] = {}
        self.outputs: dict[str, str] = {}
        # the raw input under a non-graded encoding (encodings.py), and its re-layouts:
        # bitplane: value -> one LValue per plane; host: value -> the raw input it is
        self.encoding = graph.meta.get("input_encoding", "graded")
        self.planes: dict[str, list[LValue]] = {}
        self.on_host: dict[str, str] = {}

    def value(self, name: str) -> LValue:
        if name in self.pending:
            raise UnsupportedOpError(f"value {name!r} is a synaptic current; only cuba_lif and "
                                     "readout can read it")
        if name in self.planes or name in self.on_host:
            raise UnsupportedOpError(f"value {name!r} is the raw input, sent as {self.encoding} "
                                     "(--input-encoding); only the first layer's synapses read it")
        try:
            return self.b.values[name]
        except KeyError:
            raise UnsupportedOpError(f"value {name!r} has no Lava lowering") from None

    def run(self) -> None:
        for op in self.g.ops:
            if isinstance(op, (O.Reshape, O.Transpose)) and op.inputs[0] in self.pending:
                self.pending[op.name] = self._relayout(self.pending[op.inputs[0]], op)
                continue
            LOWER.lookup(op)(self, op)
        for name in self.pending:
            if not self.g.consumers(name):
                raise UnsupportedOpError(f"synapse {name!r} feeds no neuron")

    def _relayout(self, cur: "Current", op) -> "Current":
        """A current seen through a reshape/transpose: the same synapse, rows re-indexed."""
        shape = tuple(self.g.spec(op.inputs[0]).shape)
        if isinstance(op, O.Reshape):
            return Current(cur.op, cur.perm, cur.vops + [["reshape", list(op.shape)]])
        old_of_new = np.arange(int(np.prod(shape))).reshape(shape).transpose(op.perm).ravel()
        perm = old_of_new if cur.perm is None else cur.perm[old_of_new]
        return Current(cur.op, perm, cur.vops + [["transpose", [int(p) for p in op.perm]]])

    def _set(self, name, kind, bound, parts) -> LValue:
        v = LValue(name, tuple(self.g.spec(name).shape), kind, int(bound), parts)
        self.b.values[name] = v
        return v

    @LOWER.register(F.ConvSynapse, F.DenseSynapse)
    def synapse(self, op) -> None:
        """Synapses are lowered by the neuron op that reads their current."""
        self.pending[op.name] = Current(op, None, [])

    # -- sources and neurons -------------------------------------------------------------------
    @LOWER.register(F.GradedInput)
    def graded_input(self, op: F.GradedInput) -> None:
        shape = tuple(self.g.spec(op.name).shape)
        graded = op.kind == "count"
        if graded and self.encoding != "graded":
            return encodings.lower_input(self, op)
        name = self.b.add_process("source", op.name, shape=list(shape), value=op.name)
        self.b.inputs.append({"value": op.name, "process": name, "shape": list(shape),
                              "raw_shape": list(op.shape), "pad": int(op.pad),
                              "encoding": op.encoding, "graded": graded,
                              "payload_bits": int(op.payload_bits)})
        self.b.processes[-1].update({"encoding": op.encoding, "pad": int(op.pad)})
        bound = (1 << op.payload_bits) - 1 if graded else 1
        self._set(op.name, "count" if graded else "spike", bound,
                  [Part(name, "s_out", [], shape, None, 0)])

    def _input_terms(self, src: str):
        """The synaptic terms feeding a neuron: (input values, synapse op or None)."""
        if src in self.pending:
            op = self.pending[src].op
            return [v for i in op.inputs for v in self.planes.get(i) or [self.value(i)]], op
        return [self.value(src)], None

    def current(self, src: str, dst: list, rows: np.ndarray | None, arrive: int, base: str):
        """Connect the input of a neuron op into ``dst`` (port reference + shape) for the neurons
        ``rows`` (flat indices, None: all)."""
        values, op = self._input_terms(src)
        cur = self.pending.get(src)
        if op is None:  # a count or spike fed directly: identity synapse
            (v,) = values
            eye = SynapseMatrix.identity(v.size)
            self.b.linear(v, eye if rows is None else eye.take_rows(rows), dst, arrive=arrive,
                          base=base)
            return
        exps = np.asarray(op.weight_exp).astype(np.int64)
        encodings.check_plane_exponents(op, exps, values, self.b.fmt)
        if cur.perm is not None:  # rows of the synapse, in the order of the neurons
            rows = cur.perm if rows is None else cur.perm[rows]
        in_shape = tuple(self.g.spec(op.inputs[0]).shape)
        out_shape = tuple(self.g.spec(op.name).shape)
        geo = shared.geometry(op, in_shape, out_shape)
        sparse_terms = []
        values = [self._gathered(v) if self._needs_gather(v, op) else v for v in values]
        for v in values:
            if self.conv_mode == "lava" and self._conv_ok(op, geo, v, rows, cur):
                if v.depth < arrive - 1:  # Conv has no synaptic delay: a delay line
                    v = self._aligned(v, arrive - 1)
                self._lava_conv(op, geo, v, dst, rows, base, cur.vops, exps + v.exp_shift)
            else:
                sparse_terms.append(v)
        if not sparse_terms:
            return
        if isinstance(op, F.ConvSynapse):
            m = unrolled_conv(op, in_shape, out_shape, rows, avoid=self._unroll_hint())
            chan = np.repeat(np.arange(out_shape[0]), int(np.prod(out_shape[1:])))
        else:
            m = unrolled_axis(op, in_shape, rows, avoid=self._unroll_hint())
            a = op.axis % len(out_shape)
            chan = np.indices(out_shape)[a].ravel()
        if rows is not None:
            chan = chan[rows]
        use_dense = isinstance(op, F.DenseSynapse) and len(in_shape) == 1
        for e in np.unique(exps[chan]):
            group = m.mask_rows(exps[chan] == e)
            for v in sparse_terms:   # a bit plane k of the input: exponent e + k
                e_v = int(e) + v.exp_shift
                self.b.linear(v, group, dst, arrive=arrive, base=f"{base}_e{e_v}",
                              weight_exp=e_v, dense=use_dense)

    def _unroll_hint(self) -> str:
        if self.conv_mode == "sparse":
            return "use `--conv lava` (weight-shared Lava Conv processes)"
        return ("this synapse cannot be a Lava Conv (neuron groups through a transpose, a split "
                "grouped conv, or a sum that may wrap); use a machine with more memory")

    @staticmethod
    def _channels(index: np.ndarray | None, shape) -> np.ndarray | None:
        """The channels (axis 0) that flat ``index`` covers as whole channels in order, or None."""
        c, hw = shape[0], int(np.prod(shape[1:]))
        if index is None:
            return np.arange(c)
        if index.size % hw:
            return None
        blocks = index.reshape(-1, hw)
        chans = blocks[:, 0] // hw
        if np.any(np.diff(chans) <= 0) or \
                not np.array_equal(blocks, chans[:, None] * hw + np.arange(hw)[None, :]):
            return None
        return chans

    def _conv_ok(self, op, geo, v: LValue, rows, cur) -> bool:
        """Lava's Conv can take this input term exactly: a conv synapse, or a dense synapse on
        tokens whose sums no wrap can reach; whole input and output channels (a split value or
        neuron group only where the channel axis is outermost); ungrouped unless unsplit. Any
        exponent (``procs.PyConvModelExp`` applies it on the CPU, the chip's Conv on Loihi)."""
        if geo is None or (rows is not None and cur.perm is not None):
            return False
        if not geo.is_conv and not shared.dense_fits_conv(op, v.bound, self.b.fmt.conv_out_bits):
            return False
        if not geo.channel_major and (rows is not None or not v.simple):
            return False
        out_shape = tuple(self.g.spec(op.name).shape)
        if geo.channel_major and self._channels(rows, out_shape) is None:
            return False
        if geo.channel_major and any(self._channels(p.index, v.shape) is None for p in v.parts):
            return False
        if geo.is_conv and op.groups != 1:
            return v.simple and rows is None
        return True

    def _aligned(self, v: LValue, depth: int) -> LValue:
        ref = self.b.full_port(v, depth)
        return replace(v, parts=[Part(ref[0], ref[1], list(ref[2]), v.shape, None, depth)])

    def _lava_conv(self, op, geo, v: LValue, dst, rows, base, vops, exps) -> None:
        """One Lava Conv per (input part, exponent group): the part's input channels, the
        neurons' output channels, rows of other exponents zero. Weights stored once (8-bit
        mantissas in int8), never per output position."""
        out_shape = tuple(self.g.spec(op.name).shape)
        out_chans = self._channels(rows, out_shape) if rows is not None else \
            np.arange(op.weight.shape[0])
        for part in v.parts:
            in_chans = self._channels(part.index, v.shape) if part.index is not None else \
                np.arange(geo.channels)
            src = part.ref(geo.in_vops(len(in_chans)))
            for e in np.unique(exps[out_chans]):
                wt = op.weight[out_chans]
                if not geo.is_conv or op.groups == 1:
                    wt = wt[:, in_chans]
                keep = (exps[out_chans] == e).reshape((-1,) + (1,) * (wt.ndim - 1))
                wt = np.where(keep, wt, 0)
                if not np.any(wt):
                    continue
                w = shared.narrow(geo.lava_weight(wt))
                name = self.b.unique(f"{base}_conv_e{e}")
                self.b.processes.append({
                    "name": name, "type": "conv", "weight": self.b.array(name, "weight", w),
                    "weight_exp": int(e), "input_shape": geo.input_shape(len(in_chans)),
                    **geo.conv_params(),
                    "num_message_bits": message_bits(v.bound) if v.kind == "count" else 0})
                self.b.count("processes", 1)
                self.b.count("synapses", int(np.count_nonzero(w)))
                self.b.connect(src, [name, "s_in", []])
                # a split layer's rows are whole channels in order: the flat order is the same
                layout = list(vops) if rows is None else []
                self.b.connect([name, "a_out", geo.out_vops(rows is None) + layout +
                                [["reshape", list(dst[3])]]], dst[:3])

    @staticmethod
    def _needs_gather(v: LValue, op) -> bool:
        """A split input of a synapse with a negative exponent is gathered first: Lava shifts
        each process's sum, and ``floor(sum / 2**k)`` is not the sum of the parts' floors --
        unless every weight of the row is a multiple of ``2**k`` (then every partial sum is, and
        each shift is exact; Lava's mixed-sign weights are even, so exponent -1 never needs it)."""
        if op is None or v.simple:
            return False
        exps = np.asarray(op.weight_exp).astype(np.int64)
        if not np.any(exps < 0):
            return False
        w = np.asarray(op.weight).reshape(exps.size, -1)
        for e in np.unique(exps[exps < 0]):
            low_bits = (1 << int(-e)) - 1               # w % 2**k != 0 (two's complement)
            rows = w[exps == e] if low_bits <= np.iinfo(w.dtype).max else \
                w[exps == e].astype(np.int64)
            if np.any(rows & rows.dtype.type(low_bits)):
                return True
        return False

    def _arrive(self, src: str) -> int:
        values, op = self._input_terms(src)
        return max(v.depth + int(self._needs_gather(v, op)) for v in values) + 1

    def _gathered(self, v: LValue) -> LValue:
        ref = self.b.full_port(v, v.depth + 1)
        return replace(v, parts=[Part(ref[0], ref[1], list(ref[2]), v.shape, None, v.depth + 1)])

    @LOWER.register(F.CubaLIF)
    def cuba_lif(self, op: F.CubaLIF) -> None:
        reads = encodings.host_layer_input(self, op)
        if reads is not None:   # the first layer, on the host: its spikes come in
            return encodings.lower_host_layer(self, op, reads)
        shape = tuple(self.g.spec(op.name).shape)
        # several inputs (a membrane shortcut): every synapse into the same a_in, delay-balanced
        arrive = max(self._arrive(i) for i in op.inputs)
        vth = np.asarray(op.vth).ravel()
        groups = np.unique(vth)
        parts = []
        for g in groups:
            rows = None if groups.size == 1 else np.flatnonzero(vth == g)
            pshape = shape if rows is None else (rows.size,)
            sel = (lambda a: np.asarray(a).ravel()) if rows is None else \
                (lambda a: np.asarray(a).ravel()[rows])
            name = self.b.lif(op.name if groups.size == 1 else f"{op.name}_vth{g}", pshape,
                              du=op.du, dv=op.dv, vth=int(g), bias_mant=sel(op.bias_mant),
                              bias_exp=sel(op.bias_exp), depth=arrive, ir=op.name,
                              v_subtract=None if op.v_subtract is None else sel(op.v_subtract))
            for k, src in enumerate(op.inputs):
                self.current(src, [name, "a_in", [], list(pshape)], rows, arrive,
                             base=f"{op.name}_syn" if k == 0 else f"{op.name}_syn{k}")
            parts.append(Part(name, "s_out", [], pshape, rows, arrive))
        if groups.size > 1:
            self.b.notes.append(f"{op.name}: {groups.size} LIF processes (one per threshold)")
        self._set(op.name, "spike", 1, parts)

    @LOWER.register(F.Readout)
    def readout(self, op: F.Readout) -> None:
        in_shape = tuple(self.g.spec(op.inputs[0]).shape)
        out_shape = tuple(self.g.spec(op.name).shape)
        arrive = max(self._arrive(i) for i in op.inputs)
        name = self.b.add_process("readout", op.name, neurons=int(np.prod(out_shape)),
                                  in_shape=list(in_shape), sum_axes=[int(a) for a in op.sum_axes],
                                  act_shift=self.b.fmt.weight_shift,
                                  state_bits=self.b.fmt.state_bits, depth=arrive)
        for k, src in enumerate(op.inputs):
            self.current(src, [name, "a_in", [], list(in_shape)], None, arrive,
                         base=f"{op.name}_syn" if k == 0 else f"{op.name}_syn{k}")
        lv = LValue(op.name, out_shape or (1,), "count", 0,
                    [Part(name, "s_out", [], out_shape or (1,), None, arrive)])
        self.b.values[op.name] = lv

    # -- joins -----------------------------------------------------------------------------------
    @LOWER.register(O.Add)
    def add(self, op: O.Add) -> None:
        a, b = (self.value(i) for i in op.inputs)
        shape = tuple(self.g.spec(op.name).shape)
        arrive = max(a.depth, b.depth) + 1
        guard_synapses(2 * a.size, f"the identity synapses of add {op.name!r}")
        relay = self.b.relay(op.name, shape, "count", arrive)
        eye = SynapseMatrix.identity(a.size)
        for v in (a, b):
            self.b.linear(v, eye, [relay, "a_in", [], list(shape)], arrive=arrive,
                          base=f"{op.name}_syn")
        self._set(op.name, "count", a.bound + b.bound, [Part(relay, "s_out", [], shape, None, arrive)])

    def _spike_relay(self, op, terms, shape, vth: int = 0) -> None:
        arrive = max(v.depth for v, _ in terms) + 1
        forget = self.b.fmt.decay_max
        name = self.b.lif(op.name, shape, du=forget, dv=forget, vth=vth,
                          bias_mant=np.zeros(shape, np.int32), bias_exp=np.zeros(shape, np.int32),
                          depth=arrive, ir=op.name)
        for v, w in terms:
            if v.kind != "spike":
                raise UnsupportedOpError(f"op {op.name!r} ({op.OPCODE}) on {v.kind} values: the "
                                         "Lava backend lowers it for spikes only")
            self.b.linear(v, w, [name, "a_in", [], list(shape)], arrive=arrive,
                          base=f"{op.name}_syn")
        self._set(op.name, "spike", 1, [Part(name, "s_out", [], shape, None, arrive)])

    @LOWER.register(O.IAND)
    def iand(self, op: O.IAND) -> None:
        a, s = (self.value(i) for i in op.inputs)
        guard_synapses(2 * a.size, f"the identity synapses of iand {op.name!r}")
        eye = SynapseMatrix.identity(a.size)
        # v = (s - a) << 6 > 0  <=>  s and not a
        self._spike_relay(op, [(s, eye), (a, -eye)], tuple(self.g.spec(op.name).shape))

    @LOWER.register(O.AND)
    def and_(self, op: O.AND) -> None:
        a, s = (self.value(i) for i in op.inputs)
        shape = tuple(self.g.spec(op.name).shape)
        # v = (a + s) << 6 > 1 << 6  <=>  a and s (each output reads its broadcast inputs)
        self._spike_relay(op, [(a, _broadcast_matrix(a.shape, shape)),
                               (s, _broadcast_matrix(s.shape, shape))], shape, vth=1)

    @LOWER.register(O.ReduceSum)
    def reduce_sum(self, op: O.ReduceSum) -> None:
        x = self.value(op.inputs[0])
        shape = tuple(self.g.spec(op.name).shape)
        arrive = x.depth + 1
        relay = self.b.relay(op.name, shape, "count", arrive)
        # the transpose of a broadcast: input element i adds into the output it is summed into
        w = _broadcast_matrix(shape, x.shape)
        w = SynapseMatrix(w.cols, w.rows, w.vals, (w.shape[1], w.shape[0])).canonical()
        self.b.linear(x, w, [relay, "a_in", [], list(shape)], arrive=arrive, base=f"{op.name}_syn")
        n = x.size // max(int(np.prod(shape, dtype=np.int64)), 1)
        self._set(op.name, "count", x.bound * n, [Part(relay, "s_out", [], shape, None, arrive)])

    @LOWER.register(O.MaxPool2d)
    def maxpool(self, op: O.MaxPool2d) -> None:
        x = self.value(op.inputs[0])
        shape = tuple(self.g.spec(op.name).shape)
        # v = (spikes in the window) << 6 > 0  <=>  any spike (max of spikes = OR)
        m = unrolled_window(op, x.shape, shape, avoid="max pooling is unrolled in every lowering")
        self._spike_relay(op, [(x, m)], shape)

    # -- layout ----------------------------------------------------------------------------------
    @LOWER.register(O.Reshape, O.Transpose)
    def relayout(self, op) -> None:
        if not encodings.relayout(self, op, _relaid):
            x = _relaid(op, self.value(op.inputs[0]))
            self._set(op.name, x.kind, x.bound, x.parts)

    @LOWER.register(O.SpikeMatmul)
    def spike_matmul(self, op: O.SpikeMatmul) -> None:
        from . import ssa

        a, b = (self.value(i) for i in op.inputs)
        lower = ssa.lower_host if self.ssa == "host" else ssa.lower_decompose
        prev = self.b.category
        self.b.category = f"ssa_{self.ssa}"
        try:
            y = lower(self.b, op.name, a, b, tuple(self.g.spec(op.name).shape))
        finally:
            self.b.category = prev
        self.b.values[op.name] = y

    @LOWER.register(O.Output)
    def output(self, op: O.Output) -> None:
        self.outputs[op.name] = op.inputs[0]


def _relaid(op, x: LValue) -> LValue:
    """``x`` seen through a reshape or transpose ``op``: Lava virtual ports on a simple value,
    re-indexed parts on a split one (a row-major reshape keeps flat indices)."""
    if isinstance(op, O.Reshape):
        shape = tuple(op.shape)
        vop = ["reshape", list(shape)]
        new_of_old = None
    else:
        perm = [int(p) for p in op.perm]
        shape = tuple(x.shape[p] for p in perm)
        vop = ["transpose", perm]
        new_of_old = None if x.simple else _transpose_index(x.shape, perm)
    if x.simple:
        p = x.parts[0]
        parts = [Part(p.proc, p.port, p.vops + [vop], shape, None, p.depth)]
    elif new_of_old is None:
        parts = list(x.parts)
    else:
        parts = [Part(p.proc, p.port, p.vops, p.shape, new_of_old[p.index], p.depth)
                 for p in x.parts]
    return replace(x, name=op.name, shape=shape, parts=parts)


def _broadcast_matrix(src: tuple[int, ...], dst: tuple[int, ...]) -> SynapseMatrix:
    """``[prod(dst), prod(src)]`` ones: output element ``j`` reads the input element that ``j``
    broadcasts from (size-1 axes of ``src`` repeat; the identity when the shapes are equal)."""
    n_out = int(np.prod(dst, dtype=np.int64))
    cols = np.broadcast_to(np.arange(int(np.prod(src, dtype=np.int64))).reshape(src), dst).ravel()
    return SynapseMatrix.build(np.arange(n_out), cols, 1, (n_out, int(np.prod(src, dtype=np.int64))))


#: IR op types whose values are probed (compared with the simulator by ``spikec validate``).
PROBED_OPS = (F.CubaLIF, F.Readout, O.Add, O.IAND, O.AND, O.ReduceSum, O.MaxPool2d, O.SpikeMatmul)
