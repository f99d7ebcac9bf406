"""``--quantized``: a fixed-point graph's integers as NIR float parameters, exactly.

Units are the chip's: a NIR state value is the integer ``u`` or ``v`` of the compartment. With
``A = 2**act_shift`` (64), ``D = decay_unity`` (4096), ``du' = du + u_decay_offset``,
``dv' = dv + v_decay_offset`` (Lava's formulas, ``spikec.target``)::

    conv_synapse / dense_synapse   weight = W * 2**weight_exp[o]          (Conv2d / Affine / 1x1)
    cuba_lif                       CubaLIF(tau_syn = D / du', w_in = A tau_syn,
                                           tau_mem = D / dv', r = tau_mem,
                                           v_leak = (bias_mant << bias_exp) tau_mem,
                                           v_threshold = vth << vth_shift, v_reset = 0)
    graded_input                   Input (the raw integers)
    readout                        Output of its synapse; the host sums A * a_in over the steps
                                   (and ``sum_axes``) and computes scale * acc + offset (metadata)

Forward Euler with dt = 1 then gives ``u' = u (1 - du'/D) + A a_in`` and
``v' = v (1 - dv'/D) + u' + bias``: Lava's update without its integer rounding. What NIR cannot
carry: the truncation of ``decay`` (``sign(z) (|z (D - d)| >> 12)``), the floor of a negative
weight exponent applied to the whole sum, and the 24-bit wrap of ``u`` / clip of ``v``. Every
parameter is exact (integers times powers of two in float32); a NIR consumer runs the quantized
network in real arithmetic. Each node's ``spikec`` metadata holds the integers' exponents.
"""
from __future__ import annotations

import json

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.graph import Graph
from spikec.ir.types import Domain, Kind, ValueSpec
from spikec.target.formats import LAVA_FIXED_PT
from spikec.target.ssa import SSALowering

from .build import EMIT, META_KEY, Carrier, NIRBuilder, dense_groups

#: The quantized export: fixed-only ops here, the shared layout/pooling/join ops from ``EMIT``.
QEMIT = OpTable("the quantized NIR export", parent=EMIT)
QEMIT.refuse(set(O.OP_TYPES.values()) - F.FIXED_DOMAIN_OPS,
             "a float op: the quantized export reads fixed-point graphs")

F32 = np.float32


def _effective(weight: np.ndarray, exp: np.ndarray) -> np.ndarray:
    scale = np.ldexp(1.0, exp.astype(np.int64)).reshape((-1,) + (1,) * (weight.ndim - 1))
    w = weight.astype(np.float64) * scale
    if not np.array_equal(w.astype(F32).astype(np.float64), w):
        raise UnsupportedOpError("a quantized weight is not exact in float32")
    return w.astype(F32)


class QuantizedBuilder(NIRBuilder):
    """NIRBuilder for fixed-domain graphs (the shared layout, pooling and join ops are the same)."""

    fmt = LAVA_FIXED_PT
    TABLE = QEMIT

    def __init__(self, graph: Graph):
        super().__init__(graph)
        self.specs = dict(graph.specs)
        self.readout_meta: dict[str, dict] = {}

    def _fan_in(self, op) -> str:
        """One value for a synapse's inputs (fan-in duplication: NIR sums a node's inputs)."""
        if len(op.inputs) == 1:
            return op.inputs[0]
        name = f"{op.name}.fanin"
        shape = self.values[op.inputs[0]].shape
        self._junction(name, shape, [self.as_shape(i, shape, op) for i in op.inputs],
                       {"op": "fan_in"})
        self.values[name] = Carrier(name, shape)
        self.specs[name] = ValueSpec(self.specs[op.inputs[0]].shape, Kind.COUNT)
        return name

    @QEMIT.register(F.GradedInput)
    def _op_graded_input(self, op):
        shape = self.specs[op.name].shape
        self.add(op.name, self.nir.Input(input_type={"input": np.array(shape)}),
                 meta={"op": "graded_input", "shape": list(op.shape), "pad": op.pad,
                       "encoding": op.encoding, "payload_bits": op.payload_bits, "kind": op.kind})
        self._set(op, op.name, shape)

    @QEMIT.register(F.ConvSynapse)
    def _op_conv_synapse(self, op):
        x = self._fan_in(op)
        w = _effective(dense_groups(op.weight, op.groups).astype(np.float64), op.weight_exp)
        src = self.as_shape(x, self.specs[x].shape, op)
        self.add(op.name, self.nir.Conv2d(
            input_shape=tuple(self.specs[x].shape[1:]), weight=w, stride=tuple(op.stride),
            padding=tuple(op.padding), dilation=tuple(op.dilation), groups=1,
            bias=np.zeros(w.shape[0], F32)), src,
            meta={"op": "conv_synapse", "weight_exp": op.weight_exp.tolist(), "groups": op.groups,
                  "fan_in": len(op.inputs)})
        self._set(op, op.name)

    @QEMIT.register(F.DenseSynapse)
    def _op_dense_synapse(self, op):
        x = self._fan_in(op)
        w = _effective(op.weight, op.weight_exp)
        self._op_linear(O.Linear(op.name, (x,), weight=w, bias=None, axis=op.axis))
        node = self.nodes[op.name]
        node.metadata = {META_KEY: json.dumps({"op": "dense_synapse", "axis": op.axis,
                                               "weight_exp": op.weight_exp.tolist(),
                                               "fan_in": len(op.inputs)})}

    @QEMIT.register(F.CubaLIF)
    def _op_cuba_lif(self, op):
        f = self.fmt
        if op.v_subtract is not None:
            raise UnsupportedOpError(f"op {op.name!r} (cuba_lif): soft reset (v -= v_subtract on a "
                                     "spike) has no NIR neuron; NIR neurons reset to v_reset")
        c = self.values[op.inputs[0]]
        shape = c.shape
        D = float(f.decay_unity)
        du, dv = op.du + f.u_decay_offset, op.dv + f.v_decay_offset
        if dv == 0:
            raise UnsupportedOpError(f"op {op.name!r} (cuba_lif): dv = 0 (no voltage decay) has no "
                                     "NIR CubaLIF form (tau_mem would be infinite)")
        tau_syn, tau_mem = D / du, D / dv
        bias = np.ldexp(op.bias_mant.astype(np.float64), op.bias_exp.astype(np.int64))
        full = lambda a: np.broadcast_to(np.asarray(a, np.float64), op.vth.shape).astype(F32).reshape(shape)  # noqa: E731
        a_in = float(1 << f.weight_shift) if self.specs[op.inputs[0]].kind is Kind.CURRENT else 1.0
        node = self.nir.CubaLIF(
            tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem),
            v_leak=full(bias * tau_mem), v_threshold=full(op.vth.astype(np.float64) * (1 << f.vth_shift)),
            v_reset=full(0.0), w_in=full(a_in * tau_syn))
        # several inputs (a membrane shortcut): one edge each, NIR sums a node's inputs
        srcs = [self.values[i].node for i in op.inputs]
        self.add(op.name, node, *srcs, meta={"op": "cuba_lif", "du": op.du, "dv": op.dv,
                                              "vth_shift": f.vth_shift, "act_shift": f.weight_shift,
                                              "input_shift": a_in != 1.0})
        self.neurons[op.name] = int(np.prod(shape))
        self._set(op, op.name, shape)

    @QEMIT.register(F.Readout)
    def _op_readout(self, op):
        if len(op.inputs) > 1:
            raise UnsupportedOpError(
                f"op {op.name!r} (readout) sums {len(op.inputs)} synapse ops (a head over a "
                "membrane-shortcut sum); the quantized NIR export carries one; export the float "
                "graph instead")
        src = op.inputs[0]
        self.readout_meta[op.name] = {"op": "readout", "scale": op.scale,
                                      "offset": op.offset.tolist(), "sum_axes": list(op.sum_axes),
                                      "act_shift": self.fmt.weight_shift,
                                      "ir_shape": list(self.specs[src].shape)}
        self.values[op.name] = self.values[src]

    @QEMIT.register(O.Output)
    def _op_output(self, op):
        prod = self.graph.op(op.inputs[0])
        if isinstance(prod, F.Readout):
            meta = self.readout_meta[prod.name]
            c = self.values[prod.name]
            self.add(op.name, self.nir.Output(output_type={"output": np.array(c.shape)}), c.node,
                     meta={**meta, "readout_op": prod.name})
            self.readouts[op.name] = "sum_scale_offset"
            return
        super()._op_output(op)


def to_nir_quantized(fixed: Graph, ssa: str | None = None, notes: dict | None = None):
    """The NIR graph of a fixed-point graph and export facts (see the module docstring)."""
    from . import count_nodes, nest_blocks
    from .ssa import decompose, find_regions

    if fixed.domain != Domain.FIXED:
        raise UnsupportedOpError("--quantized exports a fixed-point graph (spikec compile's result)")
    if fixed.meta.get("input_encoding", "graded") != "graded":
        raise UnsupportedOpError(f"--quantized NIR export writes a graded input only; this graph was "
                                 f"compiled with --input-encoding {fixed.meta['input_encoding']}")
    regions = find_regions(fixed)
    if regions and ssa != SSALowering.DECOMPOSE:
        raise UnsupportedOpError(
            "the quantized model has spiking self-attention; with --quantized choose --ssa "
            "decompose (the host split is exported from the float graph)")
    b = QuantizedBuilder(fixed)
    owner = {op.name: r for r in regions for op in r.ops}
    facts = {"ssa": ssa if regions else None, "timesteps": fixed.timesteps, "regions": [],
             "quantized": True}
    for op in fixed.ops:
        r = owner.get(op.name)
        if r is None:
            b.emit(op)
        elif op is r.ops[-1]:
            f = decompose(r, fixed, b)
            facts["regions"].append({"name": r.name, "units": f.units, "weights": f.weights})
    nir = b.nir
    top = nest_blocks(nir.NIRGraph(nodes=b.nodes, edges=b.edges, type_check=True))
    facts.update(neurons=int(sum(b.neurons.values())), readouts=b.readouts,
                 ssa_units=int(sum(r["units"] for r in facts["regions"])), nodes=count_nodes(top))
    f = b.fmt
    meta = {"producer": "spikec", "quantized": True, "timesteps": fixed.timesteps, "dt": 1.0,
            "units": "chip integers: weights W * 2**weight_exp, states u and v, thresholds vth << "
                     f"{f.vth_shift}, synaptic input a_in << {f.weight_shift}",
            "formats": {"decay_unity": f.decay_unity, "u_decay_offset": f.u_decay_offset,
                        "v_decay_offset": f.v_decay_offset, "act_shift": f.weight_shift,
                        "vth_shift": f.vth_shift, "state_bits": f.state_bits},
            "not_carried": "decay truncation, the floor of negative weight exponents, 24-bit "
                           "wrap/clip: a NIR consumer runs the quantized values in real arithmetic",
            "regions": facts["regions"], "readouts": b.readouts}
    if notes:
        meta["notes"] = notes
    top.metadata = {META_KEY: json.dumps(meta, sort_keys=True, default=str)}
    return top, facts
