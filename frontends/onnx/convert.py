"""ONNX graph -> float IR (see the package docstring for the convention and the op table).

Layout: ONNX tensors carry leading axes the IR does not (the batch axis, and a size-1 time axis in
models exported one step at a time). Shapes come from ONNX shape inference with the export's
static batch size ``B``; a tensor's *sample shape* is what follows its first axis of size ``B``
(all axes before it have size 1). Pure layout ops then become an alias (same sample shape) or an
IR reshape; every other op's axes are taken relative to the sample shape.
"""
from __future__ import annotations

import json
import math

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir.graph import Graph, verify
from spikec.ir.types import Kind, Rate

from . import DEFAULT_TIMESTEPS, NEXT_SUFFIX, STATE_PREFIX, _onnx
from .neurons import find_neuron, probe_neuron

LAYOUT_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Tile", "Identity", "Gather",
              "Slice"}


def id_key(node) -> tuple:
    return (node.op_type, tuple(node.input), tuple(node.output))


class Converter:
    def __init__(self, model, options, source: str):
        onnx = _onnx()
        self.onnx = onnx
        self.source = source
        props = {p.key: p.value for p in model.metadata_props}
        self.meta = json.loads(props["spikec"]) if "spikec" in props else {}
        self.options = options
        self.ops: list[O.Op] = []
        self.specs: dict = {}
        self.value: dict[str, str] = {}     # onnx tensor -> IR value
        self.model = model
        for _ in range(4):   # shape inference and constant folding feed each other
            self._index()
            if not self._fold_constants():
                break
            self.model = self._without_folded()

    def _index(self) -> None:
        onnx = self.onnx
        try:
            self.model = onnx.shape_inference.infer_shapes(self.model, strict_mode=False)
        except Exception:
            pass
        self.g = self.model.graph
        self.consts = {i.name: onnx.numpy_helper.to_array(i) for i in self.g.initializer}
        self.shapes = {}
        for vi in list(self.g.value_info) + list(self.g.input) + list(self.g.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        self.producer = {t: n for n in self.g.node for t in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.g.node:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        raw = [i.name for i in self.g.input
               if i.name not in self.consts and not i.name.startswith(STATE_PREFIX)]
        dims = self.shapes.get(raw[0]) if raw else None
        self.batch = dims[0] if dims else -1   # -1: a symbolic batch axis

    def _without_folded(self):
        """The model with every folded node replaced by an initializer."""
        onnx = self.onnx
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        keep = [n for n in m.graph.node if id_key(n) not in self.folded_keys]
        del m.graph.node[:]
        m.graph.node.extend(keep)
        used = {t for n in keep for t in n.input} | {o.name for o in m.graph.output}
        del m.graph.initializer[:]
        m.graph.initializer.extend(onnx.numpy_helper.from_array(np.asarray(v), k)
                                   for k, v in self.consts.items() if k in used)
        del m.graph.value_info[:]
        return m

    def _fold_constants(self) -> set[int]:
        """Evaluate the nodes that compute from constants and static shapes only (exporters'
        shape arithmetic: Shape, Gather, Concat, ConstantOfShape, ...)."""
        from onnx.reference import ReferenceEvaluator

        h = self.onnx.helper
        folded = set()
        for n in self.g.node:
            if n.op_type == "Constant":
                self.consts[n.output[0]] = self.onnx.numpy_helper.to_array(n.attribute[0].t)
                folded.add(id(n))
                continue
            if n.op_type == "Shape":
                dims = self.shapes.get(n.input[0])
                if dims is None or any(d < 0 for d in dims):
                    continue
                start, end = self.attr(n, "start", 0), self.attr(n, "end", None)
                self.consts[n.output[0]] = np.array(dims[start:end], np.int64)
                folded.add(id(n))
                continue
            ins = [t for t in n.input if t]
            if not ins or not all(t in self.consts for t in ins):
                continue
            inits = [self.onnx.numpy_helper.from_array(np.asarray(self.consts[t]), t) for t in ins]
            outs = [h.make_tensor_value_info(o, self.onnx.TensorProto.UNDEFINED, None)
                    for o in n.output]
            m = h.make_model(h.make_graph([n], "fold", [], outs, initializer=inits),
                             opset_imports=list(self.model.opset_import))
            try:
                vals = ReferenceEvaluator(m).run(None, {})
            except Exception:
                continue
            for o, v in zip(n.output, vals):
                self.consts[o] = np.asarray(v)
            folded.add(id(n))
        self.folded_keys = {id_key(n) for n in self.g.node if id(n) in folded}
        return bool(folded)

    # -- helpers --------------------------------------------------------------------------------
    def add(self, op: O.Op) -> str:
        if not isinstance(op, O.Output) and op.name in {o.name for o in self.g.output}:
            op.name = f"{op.name}.value"   # the graph output's own name goes to the output op
        if op.name in self.specs:
            raise UnsupportedOpError(f"ONNX import: value name {op.name!r} used twice")
        self.specs[op.name] = op.infer([self.specs[i] for i in op.inputs])
        self.ops.append(op)
        return op.name

    def fail(self, node, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"ONNX node {node.name or node.output[0]!r} ({node.op_type}): {why}")

    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def sample_shape(self, t: str) -> tuple[int, ...] | None:
        dims = self.shapes.get(t)
        if dims is None:
            return None
        for i, d in enumerate(dims):
            if d == self.batch:
                rest = dims[i + 1:]
                return rest if all(r >= 0 for r in rest) else None
            if d != 1:
                break
        return None

    def lead(self, t: str) -> int:
        dims = self.shapes.get(t)
        s = self.sample_shape(t)
        if dims is None or s is None:
            return 1
        return len(dims) - len(s)

    def ir(self, t: str, node) -> str:
        if t not in self.value:
            raise self.fail(node, f"reads {t!r}, which is not a converted value (a constant where "
                                  "spikec needs a dynamic tensor?)")
        return self.value[t]

    def dyn_inputs(self, node) -> list[str]:
        return [t for t in node.input if t and t not in self.consts]

    # -- driver ---------------------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.g
        outputs = [o.name for o in g.output]
        inputs = [i.name for i in g.input if i.name not in self.consts]
        states = [i for i in inputs if i.startswith(STATE_PREFIX)]
        raw = [i for i in inputs if i not in states]
        if len(raw) != 1:
            raise UnsupportedOpError(f"{self.source}: {len(raw)} non-state inputs ({raw}); the "
                                     "convention has one raw input plus state.<x> inputs")
        skip: set[int] = set()
        blocks = []
        for s in states:
            if s + NEXT_SUFFIX not in outputs:
                raise UnsupportedOpError(f"{self.source}: state input {s!r} has no output "
                                         f"{s + NEXT_SUFFIX!r}")
            blk = find_neuron(self, s, s + NEXT_SUFFIX)
            blocks.append(blk)
            skip.update(id(n) for n in blk.nodes)
        last = {id(b.nodes[-1]): b for b in blocks}
        skip.update(self._input(raw[0]))
        for n in g.node:
            if id(n) in last:
                self._block(last[id(n)])
            if id(n) in skip:
                continue
            fn = getattr(self, f"_n_{n.op_type}", None)
            if n.op_type in LAYOUT_OPS:
                fn = self._layout
            if fn is None:
                raise self.fail(n, "no spikec op for it (supported: Conv, MatMul, Gemm, Add, Mul, "
                                   "Sub(1, a)*s, Transpose, Reshape, Flatten, MaxPool, AveragePool, "
                                   "ReduceMean, BatchNormalization and the neuron steps of state "
                                   "inputs)")
            fn(n)
        for o in outputs:
            if o.startswith(STATE_PREFIX) and o.endswith(NEXT_SUFFIX):
                continue
            v = self.value[o]
            spec = self.specs[v]
            if spec.rate is Rate.STEP and spec.kind is Kind.REAL:
                v = self.add(O.TimeMean(f"{o}.time_mean", (v,)))
            self.add(O.Output(o, (v,)))
        T = getattr(self.options, "timesteps", None) or self.meta.get("timesteps") or DEFAULT_TIMESTEPS
        graph = Graph(self.ops, timesteps=int(T), meta={"source": "onnx", "file": self.source})
        verify(graph)
        return graph

    def _input(self, raw: str) -> set[int]:
        """The input op, absorbing the Pad / Mul / Sub / Div by constants that follow the raw input."""
        shape = self.sample_shape(raw)
        if shape is None:
            raise UnsupportedOpError(f"{self.source}: input {raw!r} needs a static shape")
        pad, scale, mean, std = 0, 1.0, (), ()
        absorbed, t = set(), raw
        while len(self.consumers.get(t, [])) == 1:
            n = self.consumers[t][0]
            c = [self.consts[i] for i in n.input[1:] if i in self.consts]
            if n.op_type == "Identity":
                pass
            elif n.op_type == "Pad" and not pad and c and np.asarray(c[0]).size >= 4:
                p = np.asarray(c[0]).reshape(2, -1)
                if np.any(p[:, :-2]) or len(set(p[:, -2:].ravel().tolist())) != 1:
                    break
                pad = int(p[0, -1])
            elif n.op_type == "Mul" and scale == 1.0 and c and np.asarray(c[0]).size == 1:
                scale = float(np.asarray(c[0]).ravel()[0])
            elif n.op_type == "Sub" and not mean and c and n.input[0] == t:
                mean = tuple(float(v) for v in np.asarray(c[0]).ravel())
            elif n.op_type == "Div" and mean and not std and c and n.input[0] == t:
                std = tuple(float(v) for v in np.asarray(c[0]).ravel())
            else:
                break
            absorbed.add(id(n))
            t = n.output[0]
        if mean and not std:
            std = (1.0,) * len(mean)
        if pad:
            shape = (shape[0], shape[1] - 2 * pad, shape[2] - 2 * pad)
        pre = getattr(self.options, "preprocess", None) or {}
        if not absorbed and pre:
            scale = float(pre.get("pixel_scale", 1.0))
            mean, std = tuple(pre.get("mean") or ()), tuple(pre.get("std") or ())
        v = self.add(O.Input("input", (), shape=tuple(shape), pixel_scale=scale, mean=mean,
                             std=std, pad=pad))
        self.value[t] = v
        self.value[raw] = v
        return absorbed

    def _block(self, blk) -> None:
        x = self.ir(blk.x, blk.nodes[0])
        name = blk.state[len(STATE_PREFIX):]
        if blk.kind == "time_mean":
            v = self.add(O.TimeMean(name, (x,)))
        else:
            params = probe_neuron(self, blk)
            v = self.add(O.LIF(name, (x,), **params))
        self.value[blk.out] = v

    # -- ops ------------------------------------------------------------------------------------
    def _layout(self, n):
        x = self.ir(n.input[0], n)
        want = self.sample_shape(n.output[0])
        have = self.specs[x].shape
        if want is None:
            raise self.fail(n, "needs a static output shape (export with a fixed batch size)")
        if tuple(want) == tuple(have):
            self.value[n.output[0]] = x
        elif math.prod(want) == math.prod(have):
            self.value[n.output[0]] = self.add(O.Reshape(n.output[0], (x,), shape=tuple(want)))
        else:
            raise self.fail(n, f"changes the sample size ({have} -> {want})")

    def _n_Transpose(self, n):
        x = self.ir(n.input[0], n)
        lead = self.lead(n.input[0])
        perm = list(self.attr(n, "perm"))
        if perm[:lead] != list(range(lead)):
            raise self.fail(n, f"permutes the batch/time axes (perm {perm})")
        self.value[n.output[0]] = self.add(O.Transpose(n.output[0], (x,),
                                                       perm=tuple(p - lead for p in perm[lead:])))

    def _n_Conv(self, n):
        x = self.ir(n.input[0], n)
        w = self.consts.get(n.input[1])
        if w is None:
            raise self.fail(n, "dynamic weights")
        b = self.consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        pads = list(self.attr(n, "pads", [0] * (2 * (w.ndim - 2))))
        k = w.ndim - 2
        if pads[:k] != pads[k:]:
            raise self.fail(n, f"asymmetric padding {pads}")
        strides = list(self.attr(n, "strides", [1] * k))
        dil = list(self.attr(n, "dilations", [1] * k))
        group = int(self.attr(n, "group", 1))
        if k == 1:  # Conv1d: only the kernel-1 linear over channels
            if w.shape[2] != 1 or strides != [1] or pads != [0, 0] or group != 1:
                raise self.fail(n, "a Conv1d other than kernel 1, stride 1, unpadded, ungrouped")
            op = O.Linear(n.output[0], (x,), weight=w[:, :, 0].astype(np.float32),
                          bias=None if b is None else b.astype(np.float32), axis=0)
        else:
            op = O.Conv2d(n.output[0], (x,), weight=w.astype(np.float32),
                          bias=None if b is None else b.astype(np.float32), stride=tuple(strides),
                          padding=tuple(pads[:2]), dilation=tuple(dil), groups=group)
        self.value[n.output[0]] = self.add(op)

    def _n_MatMul(self, n):
        a, b = n.input
        if b in self.consts:
            x = self.ir(a, n)
            w = np.asarray(self.consts[b], np.float32)
            self.value[n.output[0]] = self.add(O.Linear(n.output[0], (x,), weight=w.T.copy(), axis=-1))
            return
        if a in self.consts:
            raise self.fail(n, "a constant left factor")
        xa, xb = self.ir(a, n), self.ir(b, n)
        self.value[n.output[0]] = self.add(O.SpikeMatmul(n.output[0], (xa, xb)))

    def _n_Gemm(self, n):
        if self.attr(n, "transA", 0) or self.attr(n, "alpha", 1.0) != 1.0 or \
                self.attr(n, "beta", 1.0) != 1.0 or n.input[1] not in self.consts:
            raise self.fail(n, "only x @ W (+ b) with constant W")
        w = np.asarray(self.consts[n.input[1]], np.float32)
        w = w if self.attr(n, "transB", 0) else w.T.copy()
        b = self.consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        self.value[n.output[0]] = self.add(O.Linear(
            n.output[0], (self.ir(n.input[0], n),), weight=w,
            bias=None if b is None else np.asarray(b, np.float32).ravel(), axis=-1))

    def _n_Add(self, n):
        a, b = n.input
        if a in self.consts or b in self.consts:
            c, t = (a, b) if a in self.consts else (b, a)
            self._bias(n, self.ir(t, n), np.asarray(self.consts[c], np.float32))
            return
        self.value[n.output[0]] = self.add(O.Add(n.output[0], (self.ir(a, n), self.ir(b, n))))

    def _bias(self, n, x: str, c: np.ndarray) -> None:
        """A constant added to a synapse's output with no bias of its own: the bias."""
        i = next(k for k, op in enumerate(self.ops) if op.name == x)
        op = self.ops[i]
        users = [u for u in self.consumers.get(n.input[0] if n.input[1] in self.consts else
                                               n.input[1], [])]
        if not isinstance(op, (O.Linear, O.Conv2d)) or op.bias is not None or len(users) != 1:
            raise self.fail(n, "adds a constant that is not the bias of the linear or conv before it")
        n_out = op.weight.shape[0]
        if c.size != n_out:
            raise self.fail(n, f"a constant of {c.size} values after a synapse of {n_out} outputs")
        self.ops[i] = type(op)(**{**vars(op), "bias": c.ravel().astype(np.float32)})
        self.value[n.output[0]] = x

    def _n_Mul(self, n):
        a, b = n.input
        if a in self.consts or b in self.consts:
            c, t = (a, b) if a in self.consts else (b, a)
            arr = np.asarray(self.consts[c], np.float64)
            if arr.size != 1:
                raise self.fail(n, "multiplies by a non-scalar constant")
            self.value[n.output[0]] = self.add(O.Scale(n.output[0], (self.ir(t, n),),
                                                       factor=float(arr.ravel()[0])))
            return
        # IAND: (1 - a) * s
        for p, q in ((a, b), (b, a)):
            sub = self.producer.get(p)
            if sub is not None and sub.op_type == "Sub" and sub.input[0] in self.consts and \
                    float(np.asarray(self.consts[sub.input[0]]).ravel()[0]) == 1.0 and \
                    np.asarray(self.consts[sub.input[0]]).size == 1:
                self.value[n.output[0]] = self.add(O.IAND(n.output[0], (self.ir(sub.input[1], n),
                                                                        self.ir(q, n))))
                return
        raise self.fail(n, "multiplies two dynamic tensors (only (1 - a) * s, SEW's IAND, is read)")

    def _n_Sub(self, n):
        users = self.consumers.get(n.output[0], [])
        if n.input[0] in self.consts and users and all(u.op_type == "Mul" for u in users):
            return  # (1 - a): read by the IAND in _n_Mul
        raise self.fail(n, "a subtraction outside a neuron step or an IAND")

    def _pool(self, n, cls, **extra):
        x = self.ir(n.input[0], n)
        pads = list(self.attr(n, "pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise self.fail(n, f"asymmetric padding {pads}")
        if self.attr(n, "ceil_mode", 0):
            raise self.fail(n, "ceil_mode")
        k = tuple(self.attr(n, "kernel_shape"))
        s = tuple(self.attr(n, "strides", k))
        self.value[n.output[0]] = self.add(cls(n.output[0], (x,), kernel=k, stride=s,
                                               padding=tuple(pads[:2])))

    def _n_MaxPool(self, n):
        self._pool(n, O.MaxPool2d)

    def _n_AveragePool(self, n):
        if not self.attr(n, "count_include_pad", 0) and any(self.attr(n, "pads", [0])):
            raise self.fail(n, "padding not counted in the divisor")
        self._pool(n, O.AvgPool2d)

    def _n_ReduceMean(self, n):
        x = self.ir(n.input[0], n)
        axes = self.attr(n, "axes")
        if axes is None and len(n.input) > 1:
            axes = self.consts[n.input[1]].tolist()
        lead = self.lead(n.input[0])
        nd = len(self.shapes.get(n.input[0], ())) or (len(self.specs[x].shape) + lead)
        axes = [a % nd for a in axes]
        sample = [a - lead for a in axes if a >= lead]
        lead_axes = [a for a in axes if a < lead]
        dims = self.shapes.get(n.input[0], ())
        if any(dims[a] != 1 for a in lead_axes if dims):
            raise self.fail(n, "averages over the batch axis")
        if not sample:  # a mean over a size-1 time axis: the value itself
            self._layout(n)
            return
        y = self.add(O.Mean(n.output[0] if self.attr(n, "keepdims", 1) == 0 else f"{n.output[0]}.mean",
                            (x,), axes=tuple(sample)))
        self.value[n.output[0]] = y
        if self.attr(n, "keepdims", 1):
            want = self.sample_shape(n.output[0])
            if want is not None and tuple(want) != self.specs[y].shape:
                self.value[n.output[0]] = self.add(O.Reshape(n.output[0], (y,), shape=tuple(want)))

    def _n_BatchNormalization(self, n):
        x = self.ir(n.input[0], n)
        gamma, beta, mean, var = (np.asarray(self.consts[i], np.float32) for i in n.input[1:5])
        self.value[n.output[0]] = self.add(O.BatchNorm(
            n.output[0], (x,), mean=mean, var=var, gamma=gamma, beta=beta,
            eps=float(self.attr(n, "epsilon", 1e-5)), axis=1 - self.lead(n.input[0])))
