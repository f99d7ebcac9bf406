"""lava-dl's netx HDF5 layout for networks that are straight chains of input/conv/dense/flatten.

netx (``lava.lib.dl.netx.hdf5.Network``) builds only such chains, so only they are written; any
other network gets a reason instead (``netx_bytes`` returns ``(None, reason)``). Written with h5py
(no lava-dl: it pins torch 2.3). Layout, one group per layer ``layer/<i>``::

    type      'input' | 'conv' | 'flatten' | 'dense'          (ASCII string)
    shape     output shape, C, H, W order (dense: [out])
    weight    conv: [C_out, C_in/groups, kH, kW] (PyTorch layout); dense: [out, in]; the
              effective integer weights ``mantissa << weight_exp`` (netx picks its own exponent)
    bias      effective bias / 2**6 per neuron (netx uses bias_exp = 6), C, H, W order
    stride, padding, dilation   [H, W];  groups
    neuron/   type 'CUBA', iDecay = du + 1, vDecay = dv, vThMant = vth, refDelay = 1

A chain qualifies when every weight exponent is >= 0 (netx stores integer effective weights), every
layer has one threshold, and every effective bias is a multiple of 2**6.
"""
from __future__ import annotations

import io

import numpy as np

from spikec.ir import fixed as F
from spikec.ir import ops as O

NETX_BIAS_EXP = 6  # netx builds every LIF with bias_exp = 6


def _chain(graph):
    """The netx layers of ``graph`` or a reason why it is not a netx chain."""
    encoding = graph.meta.get("input_encoding", "graded")
    if encoding != "graded":
        return None, (f"the input is encoded as {encoding} (--input-encoding); a netx input "
                      "layer takes the graded input")
    layers, prev, problems = [], None, []
    ops = [op for op in graph.ops if not isinstance(op, O.Output)]
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, F.GradedInput):
            if prev is not None:
                return None, "not a straight chain of input/conv/dense/flatten: two inputs"
            layers.append({"type": "input", "shape": list(graph.spec(op.name).shape)})
            prev, i = op.name, i + 1
            continue
        if isinstance(op, O.Reshape) and op.inputs == (prev,) and len(op.shape) == 1:
            layers.append({"type": "flatten", "shape": list(op.shape)})
            prev, i = op.name, i + 1
            continue
        if isinstance(op, (F.ConvSynapse, F.DenseSynapse)) and i + 1 < len(ops) and \
                isinstance(ops[i + 1], F.CubaLIF) and ops[i + 1].inputs == (op.name,) and \
                op.inputs == (prev,):
            lif = ops[i + 1]
            if isinstance(op, F.DenseSynapse) and len(graph.spec(op.inputs[0]).shape) != 1:
                return None, (f"not a straight chain of input/conv/dense/flatten: {op.name}: "
                              "token-wise dense synapses are not a netx dense layer")
            if np.any(op.weight_exp < 0):
                problems.append(f"{op.name}: negative weight exponent (netx stores integer weights)")
            if lif.v_subtract is not None:
                problems.append(f"{lif.name}: soft reset (netx's CUBA neuron resets v to 0)")
            vth = np.unique(lif.vth)
            if vth.size != 1:
                problems.append(f"{lif.name}: {vth.size} thresholds (netx has one per layer)")
            bias = np.where(lif.bias_exp >= 0, lif.bias_mant.astype(np.int64) << np.maximum(lif.bias_exp, 0),
                            lif.bias_mant.astype(np.int64) >> np.maximum(-lif.bias_exp, 0))
            if np.any(bias % (1 << NETX_BIAS_EXP)):
                problems.append(f"{lif.name}: bias not a multiple of 2**{NETX_BIAS_EXP}")
            shape = [1] * (op.weight.ndim - 1)
            w = op.weight.astype(np.int64) << op.weight_exp.astype(np.int64).reshape([-1] + shape)
            layer = {"type": "conv" if isinstance(op, F.ConvSynapse) else "dense",
                     "shape": list(graph.spec(lif.name).shape), "weight": w,
                     "bias": bias >> NETX_BIAS_EXP,
                     "neuron": {"type": "CUBA", "iDecay": int(lif.du) + 1, "vDecay": int(lif.dv),
                                "vThMant": int(vth[0]), "refDelay": 1}}
            if isinstance(op, F.ConvSynapse):
                layer.update(stride=list(op.stride), padding=list(op.padding),
                             dilation=list(op.dilation), groups=int(op.groups))
            layers.append(layer)
            prev, i = lif.name, i + 2
            continue
        return None, ("not a straight chain of input/conv/dense/flatten: op "
                      f"{op.name!r} ({op.OPCODE})")
    if not layers or layers[0]["type"] != "input":
        return None, "not a straight chain of input/conv/dense/flatten: no graded input"
    if problems:
        return None, "a chain netx cannot express exactly: " + problems[0]
    return layers, None


def netx_bytes(graph) -> tuple[bytes | None, str]:
    """The netx HDF5 file of ``graph`` (deterministic bytes), or ``(None, reason)``."""
    layers, why = _chain(graph)
    if layers is None:
        return None, why
    try:
        import h5py
    except ImportError:
        return None, "h5py is not installed"
    buf = io.BytesIO()
    with h5py.File(buf, "w", libver="earliest", track_order=False) as f:
        root = f.create_group("layer")
        for i, layer in enumerate(layers):
            g = root.create_group(str(i))
            _write_group(g, layer)
    return buf.getvalue(), "written"


def _write_group(g, items: dict) -> None:
    for key, val in items.items():
        if isinstance(val, dict):
            _write_group(g.create_group(key), val)
        elif isinstance(val, str):
            g.create_dataset(key, data=np.bytes_(val.encode("ascii")), track_times=False)
        else:
            g.create_dataset(key, data=np.asarray(val), track_times=False)


def read_netx(path_or_bytes) -> list[dict]:
    """Read a netx file back the way netx's ``NetDict`` does: ``type`` as an ASCII string, the
    other fields as arrays, ``neuron`` as a dict. Returns one dict per layer, in order."""
    import h5py

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    out = []
    with h5py.File(src, "r") as f:
        lay = f["layer"]
        for i in range(len(lay)):
            g = lay[str(i)]
            out.append(_read_group(g))
    return out


def _read_group(g) -> dict:
    import h5py

    d = {}
    for key in g.keys():
        item = g[key]
        if isinstance(item, h5py.Group):
            d[key] = _read_group(item)
        elif key == "type":
            v = item[()]
            d[key] = (v[0] if getattr(v, "shape", ()) else v).decode("ascii")
        else:
            d[key] = item[()]
    return d
