"""ONNX export (``spikec compile --target onnx``): one time step of the network as an ONNX model.

The convention (also what ``spikec.frontends.onnx`` reads back)::

    inputs   input.raw          [B, *raw shape]  raw samples of this step (uint8 values as float32);
                                                 the input op's pad, pixel scale, mean and std
                                                 are ops of the model
             state.<op>         [B, *shape]      one per stateful op: a LIF's membrane V[t-1], a
                                                 time mean's running sum (zeros at t = 0)
    outputs  <output op>        [B, *shape]      the graph outputs after this step (a time-mean
                                                 output is the mean of the steps so far)
             state.<op>.next    [B, *shape]      the new state: feed it back as state.<op>

Standard ONNX ops only (opset 17): the LIF step is ``Sub, Div, Add, GreaterOrEqual|Greater, Cast,
Where`` in the interpreter's order of operations, so a float32 runtime reproduces it bit for bit.
Every IR value is a tensor named like its op; the ops of IR op ``x`` are named ``x/...``. The
model's ``metadata_props["spikec"]`` (JSON) lists the states, T and the neurons' parameters.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikec import __version__
from spikec.errors import UnsupportedOpError, require
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.graph import Graph
from spikec.atomic import write_atomic
from spikec.ir.types import Domain, FireOn, Rate
from spikec.passes import eliminate_dead_ops, fold_batchnorm, simplify_layout

OPSET = 17
FILE_NAME = "model.onnx"
META_KEY = "spikec"
STATE_PREFIX = "state."
NEXT_SUFFIX = ".next"
#: Float passes run before export (BN folded: the runtime's BatchNormalization rounds otherwise).
EXPORT_PASSES = (eliminate_dead_ops, simplify_layout, fold_batchnorm)

#: How every IR op type is carried (checked against spikec.ir.OP_TYPES by tests/test_onnx.py).
_FIXED_WHY = "Loihi's integer arithmetic (shifts, truncating decay, wrap) is not exported to ONNX"
COVERAGE = {
    "input": ("export", "input.raw + Pad/Mul/Sub/Div"), "output": ("export", "graph output"),
    "conv2d": ("export", "Conv"), "linear": ("export", "[Transpose] MatMul [Add] [Transpose]"),
    "batchnorm": ("export", "Mul, Add (the interpreter's scale and shift)"),
    "lif": ("export", "Sub, Div, Add, GreaterOrEqual|Greater, Cast, Where|Mul+Sub; state I/O"),
    "maxpool2d": ("export", "MaxPool"), "avgpool2d": ("export", "AveragePool(count_include_pad)"),
    "mean": ("export", "ReduceMean"), "time_mean": ("export", "Add to a state, Div by T"),
    "add": ("export", "Add"), "iand": ("export", "Sub(1, a), Mul"), "and": ("export", "Mul (broadcasting)"),
    "reduce_sum": ("export", "ReduceSum(keepdims=1)"), "scale": ("export", "Mul"),
    "spike_matmul": ("export", "MatMul"), "reshape": ("export", "Reshape"),
    "transpose": ("export", "Transpose"),
    "graded_input": ("refuse", _FIXED_WHY), "conv_synapse": ("refuse", _FIXED_WHY),
    "dense_synapse": ("refuse", _FIXED_WHY), "cuba_lif": ("refuse", _FIXED_WHY),
    "readout": ("refuse", _FIXED_WHY),
}

__all__ = ["export", "COVERAGE", "to_onnx", "prepare", "run_steps", "OPSET", "FILE_NAME", "STATE_PREFIX",
           "NEXT_SUFFIX", "META_KEY"]


def _onnx():
    return require("onnx", "ONNX export")


def prepare(graph: Graph) -> Graph:
    if graph.domain != Domain.FLOAT:
        raise UnsupportedOpError("ONNX export reads the float graph (the fixed-point graph's "
                                 "Loihi arithmetic has no ONNX form)")
    for p in EXPORT_PASSES:
        graph = p(graph)
    return graph


#: What the ONNX export does with each op type: ``(self: _Builder, op, node-name prefix) -> None``.
EMIT = OpTable("the ONNX export")
EMIT.refuse(F.FIXED_ONLY_OPS, _FIXED_WHY)


class _Builder:
    def __init__(self, graph: Graph):
        self.onnx = _onnx()
        self.h = self.onnx.helper
        self.g = graph
        self.specs = graph.specs
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.states, self.neurons = [], []

    def const(self, name: str, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op_type: str, ins, out: str, name: str, **attrs) -> str:
        self.nodes.append(self.h.make_node(op_type, list(ins), [out], name=name, **attrs))
        return out

    def vinfo(self, name: str, shape, elem=None):
        elem = elem or self.onnx.TensorProto.FLOAT
        return self.h.make_tensor_value_info(name, elem, ["B"] + [int(d) for d in shape])

    def state(self, op: O.Op, shape) -> tuple[str, str]:
        s_in, s_out = f"{STATE_PREFIX}{op.name}", f"{STATE_PREFIX}{op.name}{NEXT_SUFFIX}"
        self.inputs.append(self.vinfo(s_in, shape))
        self.outputs.append(self.vinfo(s_out, shape))
        self.states.append({"op": op.name, "opcode": op.OPCODE, "input": s_in, "output": s_out,
                            "shape": list(shape)})
        return s_in, s_out

    def emit(self, op: O.Op) -> None:
        EMIT.lookup(op)(self, op, f"{op.name}/")

    # -- ops ------------------------------------------------------------------------------------
    @EMIT.register(O.Input)
    def _op_input(self, op: O.Input, p):
        self.inputs.append(self.vinfo("input.raw", op.shape))
        x = "input.raw"
        if op.pad:
            nd = len(op.shape) + 1
            pads = [0] * (nd - 2) + [op.pad, op.pad] + [0] * (nd - 2) + [op.pad, op.pad]
            x = self.node("Pad", [x, self.const(p + "pads", pads, np.int64)], p + "pad", p + "Pad")
        x = self.node("Mul", [x, self.const(p + "pixel_scale", op.pixel_scale)], p + "scaled", p + "Mul")
        if op.mean:
            c = (1, len(op.mean)) + (1,) * (len(op.shape) - 1)
            x = self.node("Sub", [x, self.const(p + "mean", np.reshape(op.mean, c))], p + "centered",
                          p + "Sub")
            x = self.node("Div", [x, self.const(p + "std", np.reshape(op.std, c))], p + "normed",
                          p + "Div")
        self.node("Identity", [x], op.name, p + "Identity")

    @EMIT.register(O.Output)
    def _op_output(self, op: O.Output, p):
        self.node("Identity", [op.inputs[0]], op.name, p + "Identity")
        self.outputs.append(self.vinfo(op.name, self.specs[op.name].shape))

    @EMIT.register(O.Conv2d)
    def _op_conv2d(self, op: O.Conv2d, p):
        ins = [op.inputs[0], self.const(p + "weight", op.weight)]
        if op.bias is not None:
            ins.append(self.const(p + "bias", op.bias))
        self.node("Conv", ins, op.name, p + "Conv", strides=list(op.stride),
                  pads=[op.padding[0], op.padding[1], op.padding[0], op.padding[1]],
                  dilations=list(op.dilation), group=op.groups,
                  kernel_shape=list(op.weight.shape[2:]))

    @EMIT.register(O.Linear)
    def _op_linear(self, op: O.Linear, p):
        nd = len(self.specs[op.inputs[0]].shape)
        a = op.axis % nd + 1
        x = op.inputs[0]
        perm = None
        if a != nd:
            perm = [i for i in range(nd + 1) if i != a] + [a]
            x = self.node("Transpose", [x], p + "moved", p + "Transpose", perm=perm)
        y = self.node("MatMul", [x, self.const(p + "weight_t", op.weight.T)], p + "matmul", p + "MatMul")
        if op.bias is not None:
            y = self.node("Add", [y, self.const(p + "bias", op.bias)], p + "biased", p + "Add")
        if perm is not None:
            inv = list(np.argsort(perm))
            y = self.node("Transpose", [y], p + "back", p + "TransposeBack", perm=[int(i) for i in inv])
        self.node("Identity", [y], op.name, p + "Identity")

    @EMIT.register(O.BatchNorm)
    def _op_batchnorm(self, op: O.BatchNorm, p):
        nd = len(self.specs[op.inputs[0]].shape)
        shape = [1] * (nd + 1)
        shape[op.axis % nd + 1] = -1
        dt = np.float32   # the interpreter's arithmetic, constant by constant
        inv = (dt(1.0) / np.sqrt(op.var.astype(dt) + dt(op.eps))).astype(dt)
        scale = (op.gamma.astype(dt) * inv).reshape(shape)
        shift = (op.beta.astype(dt) - op.mean.astype(dt) * op.gamma.astype(dt) * inv).reshape(shape)
        y = self.node("Mul", [op.inputs[0], self.const(p + "scale", scale)], p + "scaled", p + "Mul")
        self.node("Add", [y, self.const(p + "shift", shift)], op.name, p + "Add")

    @EMIT.register(O.LIF)
    def _op_lif(self, op: O.LIF, p):
        shape = self.specs[op.name].shape
        v, v_next = self.state(op, shape)
        x = op.inputs[0]
        tau, vth = self.const(p + "tau", op.tau), self.const(p + "v_threshold", op.v_threshold)
        vr = self.const(p + "v_reset", 0.0 if op.v_reset is None else op.v_reset)
        d = self.node("Sub", [v, vr], p + "v_minus_reset", p + "SubReset")
        if op.decay_input:   # H = V + (X - (V - v_reset)) / tau
            t = self.node("Sub", [x, d], p + "drive", p + "SubDrive")
            t = self.node("Div", [t, tau], p + "drive_tau", p + "Div")
            h = self.node("Add", [v, t], p + "h", p + "AddH")
        else:                # H = V - (V - v_reset) / tau + X
            t = self.node("Div", [d, tau], p + "leak", p + "Div")
            t = self.node("Sub", [v, t], p + "decayed", p + "SubLeak")
            h = self.node("Add", [t, x], p + "h", p + "AddH")
        cmp = "GreaterOrEqual" if op.fire_on == FireOn.GE else "Greater"
        fired = self.node(cmp, [h, vth], p + "fired", p + cmp)
        self.node("Cast", [fired], op.name, p + "Cast", to=self.onnx.TensorProto.FLOAT)
        if op.v_reset is None:   # soft reset: V = H - v_th S
            m = self.node("Mul", [op.name, vth], p + "vth_s", p + "MulReset")
            self.node("Sub", [h, m], v_next, p + "SoftReset")
        else:
            self.node("Where", [fired, vr, h], v_next, p + "Where")
        self.neurons.append({"op": op.name, "tau": op.tau, "v_threshold": op.v_threshold,
                             "v_reset": op.v_reset, "decay_input": op.decay_input,
                             "fire_on": op.fire_on, "input": x, "state": v})

    def _pool(self, onnx_op, op, p, **extra):
        self.node(onnx_op, [op.inputs[0]], op.name, p + onnx_op, kernel_shape=list(op.kernel),
                  strides=list(op.stride),
                  pads=[op.padding[0], op.padding[1], op.padding[0], op.padding[1]], **extra)

    @EMIT.register(O.MaxPool2d)
    def _op_maxpool2d(self, op, p):
        self._pool("MaxPool", op, p)

    @EMIT.register(O.AvgPool2d)
    def _op_avgpool2d(self, op, p):
        self._pool("AveragePool", op, p, count_include_pad=1)

    @EMIT.register(O.Mean)
    def _op_mean(self, op: O.Mean, p):
        nd = len(self.specs[op.inputs[0]].shape)
        axes = sorted(a % nd + 1 for a in op.axes)
        self.node("ReduceMean", [op.inputs[0]], op.name, p + "ReduceMean", axes=axes, keepdims=0)

    @EMIT.register(O.ReduceSum)
    def _op_reduce_sum(self, op: O.ReduceSum, p):
        nd = len(self.specs[op.inputs[0]].shape)
        axes = self.const(p + "axes", sorted(a % nd + 1 for a in op.axes), np.int64)
        self.node("ReduceSum", [op.inputs[0], axes], op.name, p + "ReduceSum", keepdims=1)

    @EMIT.register(O.TimeMean)
    def _op_time_mean(self, op: O.TimeMean, p):
        acc, acc_next = self.state(op, self.specs[op.name].shape)
        self.node("Add", [acc, op.inputs[0]], acc_next, p + "Accumulate")
        self.node("Div", [acc_next, self.const(p + "T", float(self.g.timesteps))], op.name, p + "Div")

    @EMIT.register(O.Add)
    def _op_add(self, op, p):
        self.node("Add", list(op.inputs), op.name, p + "Add")

    @EMIT.register(O.IAND)
    def _op_iand(self, op, p):   # (1 - a) * s
        n = self.node("Sub", [self.const(p + "one", 1.0), op.inputs[0]], p + "not_a", p + "Sub")
        self.node("Mul", [n, op.inputs[1]], op.name, p + "Mul")

    @EMIT.register(O.AND)
    def _op_and(self, op, p):    # a * s
        self.node("Mul", list(op.inputs), op.name, p + "Mul")

    @EMIT.register(O.Scale)
    def _op_scale(self, op: O.Scale, p):
        self.node("Mul", [op.inputs[0], self.const(p + "factor", op.factor)], op.name, p + "Mul")

    @EMIT.register(O.SpikeMatmul)
    def _op_spike_matmul(self, op, p):
        self.node("MatMul", list(op.inputs), op.name, p + "MatMul")

    @EMIT.register(O.Reshape)
    def _op_reshape(self, op: O.Reshape, p):
        self.node("Reshape", [op.inputs[0], self.const(p + "shape", [0, *op.shape], np.int64)],
                  op.name, p + "Reshape")

    @EMIT.register(O.Transpose)
    def _op_transpose(self, op: O.Transpose, p):
        self.node("Transpose", [op.inputs[0]], op.name, p + "Transpose",
                  perm=[0] + [int(i) + 1 for i in op.perm])


def to_onnx(graph: Graph, *, prepared: bool = False):
    """The single-step ONNX model of ``graph`` (``onnx.ModelProto``) and facts about it."""
    onnx = _onnx()
    g = graph if prepared else prepare(graph)
    if len(g.inputs) != 1 or not isinstance(g.inputs[0], O.Input):
        raise UnsupportedOpError("ONNX export takes a float graph with one input op")
    b = _Builder(g)
    for op in g.ops:
        b.emit(op)
    final = [o.name for o in g.outputs if g.spec(o.name).rate is Rate.FINAL]
    meta = {"producer": f"spikec {__version__}", "timesteps": g.timesteps, "states": b.states,
            "neurons": b.neurons, "final_outputs": final,
            "input": {k: v for k, v in vars(g.inputs[0]).items() if k not in ("inputs",)},
            "convention": "one time step; feed state.<op>.next back as state.<op> (zeros at t=0); "
                          "outputs listed in final_outputs are valid after the last step"}
    graph_proto = b.h.make_graph(b.nodes, "spikec", b.inputs, b.outputs, initializer=b.inits)
    model = b.h.make_model(graph_proto, opset_imports=[b.h.make_opsetid("", OPSET)],
                           producer_name="spikec", producer_version=__version__)
    model.ir_version = 8
    b.h.set_model_props(model, {META_KEY: json.dumps(meta, default=_plain, sort_keys=True)})
    onnx.checker.check_model(model)
    facts = {"states": len(b.states), "neurons": len(b.neurons), "nodes": len(b.nodes),
             "timesteps": g.timesteps}
    return model, facts


def _plain(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def export(graph: Graph, out_path) -> dict:
    """Write the single-step model to ``out_path`` (a ``.onnx`` file or a directory, which gets
    ``model.onnx``) atomically; returns facts (states, neurons, nodes)."""
    model, facts = to_onnx(graph)
    path = Path(out_path)
    if path.suffix != ".onnx":
        path = path / FILE_NAME
    write_atomic(path, model.SerializeToString())
    facts["path"] = str(path)
    return facts


def run_steps(model_bytes: bytes, raw: np.ndarray, timesteps: int | None = None) -> dict:
    """Step a spikec ONNX model T times in onnxruntime on raw samples [B, *shape] (the same
    sample each step); returns the outputs of the last step by name (and ``steps``: every
    step's outputs). Needs ``onnxruntime``."""
    ort = require("onnxruntime", "running ONNX models", extra="test")
    onnx = _onnx()
    model = onnx.load_from_string(model_bytes)
    meta = json.loads({p.key: p.value for p in model.metadata_props}[META_KEY])
    T = timesteps or meta["timesteps"]
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    B = raw.shape[0]
    state = {s["input"]: np.zeros((B, *s["shape"]), np.float32) for s in meta["states"]}
    names = [o.name for o in sess.get_outputs()]
    steps = []
    for _ in range(T):
        res = dict(zip(names, sess.run(None, {"input.raw": raw.astype(np.float32), **state})))
        for s in meta["states"]:
            state[s["input"]] = res[s["output"]]
        steps.append(res)
    return {"last": steps[-1], "steps": steps}
