"""Float IR ops -> NIR nodes (see docs/interchange.md for the table and the LIF argument).

NIR types carry no batch axis and NIR has no reshape, unflatten or transpose node, so every IR value
is given a *carrier*: the NIR node whose output holds it and the NIR shape of that output. The
carrier holds the value's elements in the IR's row-major order, so a reshape of the IR value is a
no-op on the carrier (or a NIR ``Flatten``). Token tensors ``(C, N)`` whose tokens came from a grid
``(C, H, W)`` are carried as ``(C, H, W)``: a ``linear`` over their channel axis becomes a 1x1
``Conv2d`` and a token mean an ``AvgPool2d`` over the grid.

Neuron mapping (forward Euler, dt = 1, one NIR step per IR step)::

    IR lif(tau, decay_input=True, v_th, v_reset, '>=')
        -> NIR LIF(tau, r=1, v_leak=v_reset, v_threshold=prev_float32(v_th), v_reset)
    NIR Euler: v + (1/tau) * ((v_leak - v) + r*I)  ==  spikingjelly: v + (x - (v - v_reset)) / tau

Both sides compute ``v + (x - v) * 2**-k`` with the same two roundings when tau = 2**k and
v_reset = 0. NIR fires on ``v > v_threshold``; spikingjelly on ``H >= v_th``: for float32 ``H``,
``H >= v_th`` iff ``H > prev_float32(v_th)`` (no float32 lies strictly between the two).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.graph import Graph
from spikec.ir.types import Encoding, FireOn, Kind, Rate

#: Key of the JSON string spikec writes into NIR metadata (graph and node level).
META_KEY = "spikec"
#: NIR parameters are written in this dtype; the '>=' threshold nudge is exact for it.
PARAM_DTYPE = np.float32

#: What the NIR export does with each float op type: ``(self: NIRBuilder, op) -> None``.
EMIT = OpTable("the NIR export")
EMIT.refuse(F.FIXED_ONLY_OPS, "a fixed-point op: export the quantized graph (--quantized)")


def nudged_threshold(v_th: float, fire_on: str) -> np.float32:
    """The NIR ``v_threshold`` (fires on ``>``) that fires exactly like ``fire_on`` at ``v_th``."""
    t = PARAM_DTYPE(v_th)
    return np.nextafter(t, PARAM_DTYPE(-np.inf)) if fire_on == FireOn.GE else t


@dataclass(frozen=True)
class Carrier:
    """Where a value lives in the NIR graph: node name and its NIR output shape."""

    node: str
    shape: tuple[int, ...]


def token_grids(graph: Graph) -> dict[int, tuple[int, int]]:
    """Token count N -> (H, W) for every reshape between ``(C, H, W)`` and ``(C, H*W)``."""
    grids: dict[int, tuple[int, int]] = {}
    specs = graph.specs
    for op in graph.ops:
        if isinstance(op, O.Reshape):
            a, b = specs[op.inputs[0]].shape, tuple(op.shape)
            for s3, s2 in ((a, b), (b, a)):
                if len(s3) == 3 and len(s2) == 2 and s3[0] == s2[0] and s3[1] * s3[2] == s2[1]:
                    grids[s2[1]] = (s3[1], s3[2])
    return grids


def _flatten_dims(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, int] | None:
    """(start, end) when ``dst`` is ``src`` with the axes start..end merged (NIR Flatten)."""
    for s in range(len(src)):
        for e in range(s + 1, len(src)):
            if src[:s] + (int(np.prod(src[s:e + 1])),) + src[e + 1:] == dst:
                return s, e
    return None


def dense_groups(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weight as the equivalent dense one (zeros between groups).

    nir 1.0.8 types a Conv2d's input as ``weight.shape[1]`` channels, which is wrong for
    groups > 1 and fails ``nir.read``'s type check; the dense form is exact (zero terms)."""
    w = np.asarray(weight, PARAM_DTYPE)
    if groups == 1:
        return w
    cout, cin_g = w.shape[:2]
    og = cout // groups
    dense = np.zeros((cout, cin_g * groups) + w.shape[2:], PARAM_DTYPE)
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * cin_g:(g + 1) * cin_g] = w[g * og:(g + 1) * og]
    return dense


class NIRBuilder:
    """Accumulates NIR nodes and edges for one (sub)graph while walking IR ops in order."""

    TABLE = EMIT

    def __init__(self, graph: Graph):
        import nir

        self.nir = nir
        self.graph = graph
        self.specs = graph.specs
        self.grids = token_grids(graph)
        self.nodes: dict[str, object] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[str, Carrier] = {}
        self.readouts: dict[str, str] = {}   # NIR output node -> host reduction over time
        self.neurons: dict[str, int] = {}    # neuron-like NIR node -> units

    # -- plumbing -------------------------------------------------------------------------------
    def add(self, name: str, node, *sources: str, meta: dict | None = None) -> str:
        if name in self.nodes:
            raise UnsupportedOpError(f"NIR export: node name {name!r} used twice")
        if meta:
            node.metadata = {META_KEY: json.dumps(meta, sort_keys=True)}
        self.nodes[name] = node
        for s in sources:
            self.edges.append((s, name))
        return name

    def carrier_shape(self, ir_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(ir_shape) == 2 and ir_shape[1] in self.grids:
            return (ir_shape[0],) + self.grids[ir_shape[1]]
        return tuple(ir_shape)

    def as_shape(self, value: str, shape: tuple[int, ...], who: O.Op) -> str:
        """The NIR node holding ``value`` with NIR shape ``shape`` (adds a Flatten if needed)."""
        c = self.values[value]
        if c.shape == tuple(shape):
            return c.node
        dims = _flatten_dims(c.shape, tuple(shape))
        if dims is None:
            raise UnsupportedOpError(
                f"op {who.name!r} ({who.OPCODE}): needs its input {value!r} as {shape}, but NIR "
                f"carries it as {c.shape} and has no reshape/unflatten node")
        name = f"{c.node}.flatten_{'x'.join(map(str, shape))}"
        if name not in self.nodes:
            self.add(name, self.nir.Flatten(input_type={"input": np.array(c.shape)},
                                            start_dim=dims[0], end_dim=dims[1]), c.node)
        return name

    def full(self, shape, value) -> np.ndarray:
        return np.full(tuple(shape), value, dtype=PARAM_DTYPE)

    # -- ops ------------------------------------------------------------------------------------
    def emit(self, op: O.Op) -> None:
        self.TABLE.lookup(op)(self, op)

    def _set(self, op: O.Op, node: str, shape=None) -> None:
        self.values[op.name] = Carrier(node, tuple(shape if shape is not None
                                                   else self.carrier_shape(self.specs[op.name].shape)))

    @EMIT.register(O.Input)
    def _op_input(self, op: O.Input):
        shape = self.specs[op.name].shape
        meta = {"op": "input", "shape": list(op.shape), "encoding": op.encoding, "kind": op.kind,
                "pixel_scale": op.pixel_scale, "mean": list(op.mean), "std": list(op.std),
                "pad": op.pad}
        if op.encoding != Encoding.REPEAT:
            meta["note"] = "one frame per time step"
        self.add(op.name, self.nir.Input(input_type={"input": np.array(shape)}), meta=meta)
        self._set(op, op.name, shape)

    @EMIT.register(O.Output)
    def _op_output(self, op: O.Output):
        src = op.inputs[0]
        spec = self.specs[src]
        readout = readout_op = None
        if spec.rate is Rate.FINAL:
            prod = self.graph.op(src)
            if not isinstance(prod, O.TimeMean):
                raise UnsupportedOpError(
                    f"op {op.name!r}: its value {src!r} ({prod.OPCODE}) is computed once after the "
                    "last step; NIR graphs run per step (only a final time mean can stay on the host)")
            src, readout = prod.inputs[0], "time_mean"
            readout_op = prod.name
        shape = tuple(self.specs[src].shape)
        node = self.as_shape(src, shape, op)
        self.add(op.name, self.nir.Output(output_type={"output": np.array(shape)}), node,
                 meta={"op": "output", "readout": readout, "readout_op": readout_op})
        if readout:
            self.readouts[op.name] = readout

    @EMIT.register(O.TimeMean)
    def _op_time_mean(self, op: O.TimeMean):
        users = self.graph.consumers(op.name)
        if not all(isinstance(u, O.Output) for u in users):
            raise UnsupportedOpError(
                f"op {op.name!r} (time_mean): read by {users[0].name!r}; NIR export needs the "
                "time mean to be the last op (run the readout fold first)")

    @EMIT.register(O.Conv2d)
    def _op_conv2d(self, op: O.Conv2d):
        x_shape = self.specs[op.inputs[0]].shape
        src = self.as_shape(op.inputs[0], x_shape, op)
        bias = np.zeros(op.weight.shape[0], PARAM_DTYPE) if op.bias is None else op.bias
        self.add(op.name, self.nir.Conv2d(
            input_shape=tuple(x_shape[1:]), weight=dense_groups(op.weight, op.groups),
            stride=tuple(op.stride), padding=tuple(op.padding), dilation=tuple(op.dilation),
            groups=1, bias=np.asarray(bias, PARAM_DTYPE)), src,
            meta={"op": "conv2d", "bias": op.bias is not None, "groups": op.groups})
        self._set(op, op.name)

    @EMIT.register(O.Linear)
    def _op_linear(self, op: O.Linear):
        x = self.specs[op.inputs[0]].shape
        axis = op.axis % len(x)
        w = op.weight.astype(PARAM_DTYPE)
        bias = np.zeros(w.shape[0], PARAM_DTYPE) if op.bias is None else op.bias.astype(PARAM_DTYPE)
        meta = {"op": "linear", "axis": op.axis, "bias": op.bias is not None}
        if len(x) == 1:
            src = self.as_shape(op.inputs[0], x, op)
            node = (self.nir.Linear(weight=w) if op.bias is None
                    else self.nir.Affine(weight=w, bias=bias))
            self.add(op.name, node, src, meta=meta)
        elif len(x) == 2 and axis == 0:
            c = self.values[op.inputs[0]]
            if len(c.shape) == 3:  # tokens on a grid: 1x1 convolution
                self.add(op.name, self.nir.Conv2d(
                    input_shape=c.shape[1:], weight=w[:, :, None, None], stride=(1, 1),
                    padding=(0, 0), dilation=(1, 1), groups=1, bias=bias), c.node, meta=meta)
            else:
                src = self.as_shape(op.inputs[0], x, op)
                self.add(op.name, self.nir.Conv1d(
                    input_shape=x[1], weight=w[:, :, None], stride=1, padding=0, dilation=1,
                    groups=1, bias=bias), src, meta=meta)
        else:
            raise UnsupportedOpError(
                f"op {op.name!r} (linear): a linear over axis {op.axis} of a {x} value has no NIR "
                "node (NIR's Affine takes 1-d inputs, Conv1d/Conv2d mix the channel axis 0)")
        self._set(op, op.name)

    @EMIT.register(O.BatchNorm)
    def _op_batchnorm(self, op: O.BatchNorm):
        c = self.values[op.inputs[0]]
        if op.axis % len(self.specs[op.inputs[0]].shape) != 0 or len(c.shape) != 3:
            raise UnsupportedOpError(f"op {op.name!r} (batchnorm): only a channel BN of (C, H, W) "
                                     "values is exported (as a depthwise 1x1 Conv2d); fold it first")
        s = op.gamma.astype(np.float64) / np.sqrt(op.var.astype(np.float64) + op.eps)
        t = op.beta.astype(np.float64) - op.mean.astype(np.float64) * s
        C = c.shape[0]
        self.add(op.name, self.nir.Conv2d(
            input_shape=c.shape[1:], weight=dense_groups(s.reshape(C, 1, 1, 1), C),
            stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
            bias=t.astype(PARAM_DTYPE)), c.node, meta={"op": "batchnorm"})
        self._set(op, op.name, c.shape)

    @EMIT.register(O.LIF)
    def _op_lif(self, op: O.LIF):
        c = self.values[op.inputs[0]]
        if op.v_reset is None:
            raise UnsupportedOpError(f"op {op.name!r} (lif): soft reset (v_reset None) has no NIR "
                                     "neuron; NIR neurons reset to v_reset")
        shape = c.shape
        meta = {"op": "lif", "tau": op.tau, "v_threshold": op.v_threshold, "v_reset": op.v_reset,
                "decay_input": op.decay_input, "fire_on": op.fire_on}
        thr = self.full(shape, nudged_threshold(op.v_threshold, op.fire_on))
        reset = self.full(shape, op.v_reset)
        if not op.decay_input and math.isinf(op.tau):
            node = self.nir.IF(r=self.full(shape, 1.0), v_threshold=thr, v_reset=reset)
        elif not op.decay_input and op.tau == 1.0 and op.v_reset == 0.0:
            node = self.nir.Threshold(threshold=thr)  # H = (V - V) + X = X: no state
        else:
            r = 1.0 if op.decay_input else op.tau
            node = self.nir.LIF(tau=self.full(shape, op.tau), r=self.full(shape, r),
                                v_leak=self.full(shape, op.v_reset), v_threshold=thr, v_reset=reset)
        self.add(op.name, node, c.node, meta=meta)
        self.neurons[op.name] = int(np.prod(shape))
        self._set(op, op.name, shape)

    def _pool_source(self, op) -> str:
        x = self.specs[op.inputs[0]].shape
        return self.as_shape(op.inputs[0], x, op)

    @EMIT.register(O.MaxPool2d)
    def _op_maxpool2d(self, op: O.MaxPool2d):
        if self.specs[op.inputs[0]].kind is not Kind.SPIKE:
            raise UnsupportedOpError(f"op {op.name!r} (maxpool2d): max of non-binary values has no "
                                     "NIR node (a spike max is exported as SumPool2d + Threshold)")
        out = self.specs[op.name].shape
        src = self._pool_source(op)
        pool = self.add(f"{op.name}.sum", self.nir.SumPool2d(
            kernel_size=np.array(op.kernel), stride=np.array(op.stride),
            padding=np.array(op.padding)), src)
        self.add(op.name, self.nir.Threshold(threshold=self.full(out, 0.5)), pool,
                 meta={"op": "maxpool2d", "kernel": list(op.kernel), "stride": list(op.stride),
                       "padding": list(op.padding)})
        self.neurons[op.name] = int(np.prod(out))
        self._set(op, op.name, out)

    @EMIT.register(O.AvgPool2d)
    def _op_avgpool2d(self, op: O.AvgPool2d):
        src = self._pool_source(op)
        self.add(op.name, self.nir.AvgPool2d(kernel_size=np.array(op.kernel),
                                             stride=np.array(op.stride),
                                             padding=np.array(op.padding)), src)
        self._set(op, op.name, self.specs[op.name].shape)

    @EMIT.register(O.Mean)
    def _op_mean(self, op: O.Mean):
        x = self.specs[op.inputs[0]].shape
        axes = sorted(a % len(x) for a in op.axes)
        c = self.values[op.inputs[0]]
        grid_mean = (len(c.shape) == 3 and ((len(x) == 2 and axes == [1]) or
                                            (len(x) == 3 and axes == [1, 2])))
        if not grid_mean:
            raise UnsupportedOpError(f"op {op.name!r} (mean): only a mean over the token grid of a "
                                     f"(C, H, W) value maps to NIR (AvgPool2d); got axes {op.axes} "
                                     f"of {x}")
        k = np.array(c.shape[1:])
        self.add(op.name, self.nir.AvgPool2d(kernel_size=k, stride=k, padding=np.array([0, 0])),
                 c.node, meta={"op": "mean", "axes": list(op.axes)})
        self._set(op, op.name, (c.shape[0], 1, 1))

    @EMIT.register(O.ReduceSum)
    def _op_reduce_sum(self, op: O.ReduceSum):
        x = self.specs[op.inputs[0]].shape
        axes = sorted(a % len(x) for a in op.axes)
        c = self.values[op.inputs[0]]
        if not (len(c.shape) == 3 and ((len(x) == 2 and axes == [1]) or
                                       (len(x) == 3 and axes == [1, 2]))):
            raise UnsupportedOpError(
                f"op {op.name!r} (reduce_sum): only a sum over the token grid of a (C, H, W) value "
                f"maps to NIR (SumPool2d); got axes {op.axes} of {x} (NIR has no sum over other "
                "axes, and no transpose to bring them there)")
        k = np.array(c.shape[1:])
        self.add(op.name, self.nir.SumPool2d(kernel_size=k, stride=k, padding=np.array([0, 0])),
                 c.node, meta={"op": "reduce_sum", "axes": list(op.axes)})
        self._set(op, op.name, (c.shape[0], 1, 1))

    def _junction(self, name: str, shape, sources, meta) -> None:
        """A sum of several values: NIR sums a node's inputs; Scale(1) makes the sum a node."""
        self.add(name, self.nir.Scale(scale=self.full(shape, 1.0)), *sources, meta=meta)

    @EMIT.register(O.Add)
    def _op_add(self, op: O.Add):
        shape = self.values[op.inputs[0]].shape
        srcs = [self.as_shape(i, shape, op) for i in op.inputs]
        self._junction(op.name, shape, srcs, {"op": "add"})
        self._set(op, op.name, shape)

    @EMIT.register(O.IAND)
    def _op_iand(self, op: O.IAND):
        a, s = op.inputs
        shape = self.values[s].shape
        neg = self.add(f"{op.name}.neg", self.nir.Scale(scale=self.full(shape, -1.0)),
                       self.as_shape(a, shape, op))
        # (1 - a) s = [s - a > 0.5] for spikes a, s
        self.add(op.name, self.nir.Threshold(threshold=self.full(shape, 0.5)),
                 self.as_shape(s, shape, op), neg, meta={"op": "iand"})
        self.neurons[op.name] = int(np.prod(shape))
        self._set(op, op.name, shape)

    @EMIT.register(O.AND)
    def _op_and(self, op: O.AND):
        a, s = (self.specs[i].shape for i in op.inputs)
        if a != s:
            raise UnsupportedOpError(f"op {op.name!r} (and): inputs of shapes {a} and {s} "
                                     "broadcast; NIR edges connect equal shapes only")
        shape = self.values[op.inputs[1]].shape
        # a s = [a + s > 1.5] for spikes a, s (NIR sums a node's inputs)
        self.add(op.name, self.nir.Threshold(threshold=self.full(shape, 1.5)),
                 *(self.as_shape(i, shape, op) for i in op.inputs), meta={"op": "and"})
        self.neurons[op.name] = int(np.prod(shape))
        self._set(op, op.name, shape)

    @EMIT.register(O.Scale)
    def _op_scale(self, op: O.Scale):
        c = self.values[op.inputs[0]]
        self.add(op.name, self.nir.Scale(scale=self.full(c.shape, op.factor)), c.node,
                 meta={"op": "scale", "factor": op.factor})
        self._set(op, op.name, c.shape)

    @EMIT.register(O.Reshape)
    def _op_reshape(self, op: O.Reshape):
        target = self.carrier_shape(tuple(op.shape))
        node = self.as_shape(op.inputs[0], target, op)
        self._set(op, node, target)

    @EMIT.register(O.Transpose)
    def _op_transpose(self, op: O.Transpose):
        x = self.specs[op.inputs[0]].shape
        moved = [p for i, p in enumerate(op.perm) if p != i and x[p] != 1]
        if moved:
            raise UnsupportedOpError(
                f"op {op.name!r} (transpose): NIR has no transpose node (outside spiking "
                "self-attention, which --ssa lowers, a permutation cannot be exported)")
        self._op_reshape(O.Reshape(op.name, op.inputs, shape=self.specs[op.name].shape))

    @EMIT.register(O.SpikeMatmul)
    def _op_spike_matmul(self, op: O.SpikeMatmul):
        raise UnsupportedOpError(
            f"op {op.name!r} (spike_matmul): spiking self-attention multiplies two dynamic tensors, "
            "which no NIR node does; export with --ssa decompose (exact, coincidence units) or "
            "--ssa host (split graph, the host computes the product)")
