"""Lowering of fixed-point IR ops onto Lava processes (the plan), one function per op type.

=================  =========================================================================
IR op              Lava processes
=================  =========================================================================
graded_input       io.source.RingBuffer (graded int payloads, or binary events)
conv_synapse       proc.conv.Conv when one exponent, one whole aligned input and exponent >= 0;
                   else proc.sparse.Sparse of the unrolled kernel (exact for any exponent);
                   one process per (input term, exponent group, threshold group)
dense_synapse      proc.dense.Dense on 1-d values, proc.sparse.Sparse (token-wise weights)
                   otherwise; DelayDense/DelaySparse where the input must wait
cuba_lif           proc.lif.LIFReset, one process per distinct vth (Lava: one vth per process);
                   every input's synapses connect into its a_in (Lava sums them)
readout            spikec Readout (accumulator read by the host)
add                Sparse identities -> GradedVec(vth=0) (graded sum, one step)
iand               Sparse +1 (s) and -1 (a) -> LIF(du=dv=4095, vth=0): fires iff s and not a
and                Sparse +1 (a) and +1 (s) -> LIF(du=dv=4095, vth=1): fires iff a and s
maxpool2d          Sparse window sums -> LIF(du=dv=4095, vth=0): OR over the window (spikes)
reshape/transpose  Lava virtual ports (no process), or re-indexing of a split value
spike_matmul       ssa.py: spikec SpikeMatmul (host) or coincidence/gate/product neurons
output             nothing (its input is probed)
=================  =========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir import fixed as F
from spikec.ir.dispatch import OpTable
from spikec.target.fixedpoint import conv_weight_from_torch

from .matrix import SynapseMatrix
from .plan import LValue, Part, PlanBuilder, message_bits

#: What the Lava lowering does with each op type: ``(self: Lowering, op) -> None``.
LOWER = OpTable("the Lava lowering")
LOWER.refuse(set(O.OP_TYPES.values()) - F.FIXED_DOMAIN_OPS,
             "a float op: the Lava backend lowers fixed-point graphs (spikec compile quantizes)")


# ----------------------------------------------------------------------------- matrices
def conv_matrix(op: F.ConvSynapse, in_shape, out_shape) -> SynapseMatrix:
    """The unrolled convolution ``[C_out*Ho*Wo, C_in*H*W]`` over flat IR (C, H, W) values
    (zero padding: taps outside the input are absent)."""
    cout, cin_g, kh, kw = op.weight.shape
    _, H, W = in_shape
    _, Ho, Wo = out_shape
    g_out = cout // op.groups
    o, c, u, v, i, j = np.meshgrid(np.arange(cout), np.arange(cin_g), np.arange(kh), np.arange(kw),
                                   np.arange(Ho), np.arange(Wo), indexing="ij")
    y = op.stride[0] * i + op.dilation[0] * u - op.padding[0]
    x = op.stride[1] * j + op.dilation[1] * v - op.padding[1]
    ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    cin = (o // g_out) * cin_g + c
    rows = ((o * Ho + i) * Wo + j)[ok]
    cols = ((cin * H + y) * W + x)[ok]
    vals = op.weight[o, c, u, v][ok].astype(np.int64)
    return SynapseMatrix.build(rows, cols, vals, (cout * Ho * Wo, int(np.prod(in_shape))))


def axis_matrix(w: np.ndarray, in_shape, axis: int) -> SynapseMatrix:
    """``W`` applied along ``axis`` of a flat value of ``in_shape``: ``[out_size, in_size]``."""
    a = axis % len(in_shape)
    n_out, n_in = w.shape
    pre = int(np.prod(in_shape[:a], dtype=np.int64))
    post = int(np.prod(in_shape[a + 1:], dtype=np.int64))
    p, o, i, q = np.meshgrid(np.arange(pre), np.arange(n_out), np.arange(n_in), np.arange(post),
                             indexing="ij")
    rows = ((p * n_out + o) * post + q).ravel()
    cols = ((p * n_in + i) * post + q).ravel()
    vals = w[o, i].astype(np.int64).ravel()
    return SynapseMatrix.build(rows, cols, vals, (pre * n_out * post, pre * n_in * post))


def window_matrix(op: O.MaxPool2d, in_shape, out_shape) -> SynapseMatrix:
    """Ones from every element of each pooling window (padding taps absent)."""
    C, H, W = in_shape
    _, Ho, Wo = out_shape
    c, u, v, i, j = np.meshgrid(np.arange(C), np.arange(op.kernel[0]), np.arange(op.kernel[1]),
                                np.arange(Ho), np.arange(Wo), indexing="ij")
    y = op.stride[0] * i + u - op.padding[0]
    x = op.stride[1] * j + v - op.padding[1]
    ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    rows = ((c * Ho + i) * Wo + j)[ok]
    cols = ((c * H + y) * W + x)[ok]
    return SynapseMatrix.build(rows, cols, 1, (C * Ho * Wo, C * H * W))


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

    def value(self, name: str) -> LValue:
        if name in self.pending:
            raise UnsupportedOpError(f"value {name!r} is a synaptic current; only cuba_lif and "
                                     "readout can read it")
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
            return [self.value(i) for i in op.inputs], op
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
        if cur.perm is not None:  # rows of the synapse, in the order of the neurons
            rows = cur.perm if rows is None else cur.perm[rows]
        in_shape = tuple(self.g.spec(op.inputs[0]).shape)
        out_shape = tuple(self.g.spec(op.name).shape)
        sparse_terms = []
        values = [self._gathered(v) if self._needs_gather(v, op) else v for v in values]
        for v in values:
            if self.conv_mode == "lava" and self._conv_ok(op, v, rows, arrive, exps, cur):
                self._lava_conv(op, v, dst, rows, base, cur.vops, exps)
            else:
                sparse_terms.append(v)
        if not sparse_terms:
            return
        if isinstance(op, F.ConvSynapse):
            m = conv_matrix(op, in_shape, out_shape)
            chan = np.repeat(np.arange(out_shape[0]), int(np.prod(out_shape[1:])))
        else:
            m = axis_matrix(op.weight, in_shape, op.axis)
            a = op.axis % len(out_shape)
            chan = np.indices(out_shape)[a].ravel()
        if rows is not None:
            m, chan = m.take_rows(rows), chan[rows]
        use_dense = isinstance(op, F.DenseSynapse) and len(in_shape) == 1
        for e in np.unique(exps[chan]):
            group = m.mask_rows(exps[chan] == e)
            for v in sparse_terms:
                self.b.linear(v, group, dst, arrive=arrive, base=f"{base}_e{e}",
                              weight_exp=int(e), dense=use_dense)

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

    def _conv_ok(self, op, v: LValue, rows, arrive, exps, cur) -> bool:
        """Lava's Conv can take this input term: an aligned input (Conv has no delay), whole
        input and output channels, exponents >= 0 (Lava's CPU Conv ignores the exponent;
        ``network.py`` folds a positive one into the weights), ungrouped unless unsplit."""
        if not isinstance(op, F.ConvSynapse) or v.depth != arrive - 1:
            return False
        out_shape = tuple(self.g.spec(op.name).shape)
        if rows is not None and cur.perm is not None:
            return False
        out_chans = self._channels(rows, out_shape)
        if out_chans is None or np.any(exps[out_chans] < 0):
            return False
        in_chans = [self._channels(p.index, v.shape) for p in v.parts]
        if any(c is None for c in in_chans):
            return False
        return op.groups == 1 or (v.simple and rows is None)

    def _lava_conv(self, op, v: LValue, dst, rows, base, vops, exps) -> None:
        """One Lava Conv per (input part, exponent group): the part's input channels, the
        neurons' output channels, rows of other exponents zero."""
        out_shape = tuple(self.g.spec(op.name).shape)
        out_chans = self._channels(rows, out_shape)
        c_all, h, wd = v.shape
        for part in v.parts:
            in_chans = self._channels(part.index, v.shape)
            src = part.ref([["reshape", [len(in_chans), h, wd]], ["transpose", [2, 1, 0]]])
            for e in np.unique(exps[out_chans]):
                wt = op.weight[out_chans]
                if op.groups == 1:
                    wt = wt[:, in_chans]
                wt = np.where((exps[out_chans] == e)[:, None, None, None], wt, 0)
                if not np.any(wt):
                    continue
                w = conv_weight_from_torch(wt).astype(np.int32)
                name = self.b.unique(f"{base}_conv_e{e}")
                self.b.processes.append({
                    "name": name, "type": "conv", "weight": self.b.array(name, "weight", w),
                    "weight_exp": int(e), "input_shape": [wd, h, len(in_chans)],
                    "padding": [int(op.padding[1]), int(op.padding[0])],
                    "stride": [int(op.stride[1]), int(op.stride[0])],
                    "dilation": [int(op.dilation[1]), int(op.dilation[0])],
                    "groups": int(op.groups),
                    "num_message_bits": message_bits(v.bound) if v.kind == "count" else 0})
                self.b.count("processes", 1)
                self.b.count("synapses", int(np.count_nonzero(w)))
                self.b.connect(src, [name, "s_in", []])
                # a split layer's rows are whole channels in order: the flat order is the same
                layout = list(vops) if rows is None else []
                self.b.connect([name, "a_out", [["transpose", [2, 1, 0]]] + layout +
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
        w = np.asarray(op.weight).astype(np.int64).reshape(exps.size, -1)
        for e in np.unique(exps[exps < 0]):
            if np.any(w[exps == e] % (1 << int(-e))):
                return True
        return False

    def _arrive(self, src: str) -> int:
        values, op = self._input_terms(src)
        return max(v.depth + int(self._needs_gather(v, op)) for v in values) + 1

    def _gathered(self, v: LValue) -> LValue:
        ref = self.b.full_port(v, v.depth + 1)
        return LValue(v.name, v.shape, v.kind, v.bound,
                      [Part(ref[0], ref[1], list(ref[2]), v.shape, None, v.depth + 1)])

    @LOWER.register(F.CubaLIF)
    def cuba_lif(self, op: F.CubaLIF) -> None:
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
                              bias_exp=sel(op.bias_exp), depth=arrive, ir=op.name)
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
        eye = SynapseMatrix.identity(a.size)
        # v = (s - a) << 6 > 0  <=>  s and not a
        self._spike_relay(op, [(s, eye), (a, -eye)], tuple(self.g.spec(op.name).shape))

    @LOWER.register(O.AND)
    def and_(self, op: O.AND) -> None:
        a, s = (self.value(i) for i in op.inputs)
        eye = SynapseMatrix.identity(a.size)
        # v = (a + s) << 6 > 1 << 6  <=>  a and s
        self._spike_relay(op, [(a, eye), (s, eye)], tuple(self.g.spec(op.name).shape), vth=1)

    @LOWER.register(O.MaxPool2d)
    def maxpool(self, op: O.MaxPool2d) -> None:
        x = self.value(op.inputs[0])
        shape = tuple(self.g.spec(op.name).shape)
        # v = (spikes in the window) << 6 > 0  <=>  any spike (max of spikes = OR)
        self._spike_relay(op, [(x, window_matrix(op, x.shape, shape))], shape)

    # -- layout ----------------------------------------------------------------------------------
    @LOWER.register(O.Reshape)
    def reshape(self, op: O.Reshape) -> None:
        x = self.value(op.inputs[0])
        shape = tuple(op.shape)
        if x.simple:
            p = x.parts[0]
            parts = [Part(p.proc, p.port, p.vops + [["reshape", list(shape)]], shape, None, p.depth)]
        else:  # row-major reshape keeps flat indices
            parts = list(x.parts)
        self._set(op.name, x.kind, x.bound, parts)

    @LOWER.register(O.Transpose)
    def transpose(self, op: O.Transpose) -> None:
        x = self.value(op.inputs[0])
        perm = [int(p) for p in op.perm]
        shape = tuple(x.shape[p] for p in perm)
        if x.simple:
            p = x.parts[0]
            parts = [Part(p.proc, p.port, p.vops + [["transpose", perm]], shape, None, p.depth)]
        else:
            new_of_old = _transpose_index(x.shape, perm)
            parts = [Part(p.proc, p.port, p.vops, p.shape, new_of_old[p.index], p.depth)
                     for p in x.parts]
        self._set(op.name, x.kind, x.bound, parts)

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


#: IR op types whose values are probed (compared with the simulator by ``spikec validate``).
PROBED_OPS = (F.CubaLIF, F.Readout, O.Add, O.IAND, O.AND, O.MaxPool2d, O.SpikeMatmul)
