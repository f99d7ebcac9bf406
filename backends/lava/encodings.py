"""The bundle's input for the non-graded input encodings (``--input-encoding``; docs/compiler.md,
"Input encodings"): the lowering of the raw input, and the arrays the runner is fed.

``bitplane``
    The raw ``payload_bits``-bit input becomes that many binary sources ``NAME.plane0`` ..
    (Lava RingBuffers of the bits ``(x >> k) & 1``). Every synapse reading the input reads each
    plane through the same mantissas with its weight exponents raised by ``k``
    (``LValue.exp_shift``), so the first layer's integer current
    ``sum_k shift(W b_k, e + k) = shift(W x, e)`` is the graded one exactly: the quantizer keeps
    ``e >= 0`` and ``e + 7`` within the target's exponents there, so no plane shifts right.
``host``
    The first layer (the synapses reading the raw input and the LIF they drive) runs on the host;
    the bundle's input is that LIF's spikes, a binary source named like the LIF with one frame
    per time step (encoding ``sequence``) feeding the second layer. ``spikec validate --against
    lava`` takes them from the bit-exact simulator; a user on a chip computes them on the host.

The plan's ``inputs`` say what each source needs: ``plane`` and ``of`` (plane ``k`` of input
``of``), ``host_layer`` and ``reads`` (the LIF's spikes, computed from input ``reads``), else the
raw input itself. ``bundle_inputs`` builds the runner's arrays from the raw pixels;
``graph_inputs`` gets the pixels back from them (for a trace). The runtime is unchanged: it
plays whatever binary arrays it is given.
"""
from __future__ import annotations

import numpy as np

from spikec.errors import DataError, UnsupportedOpError

from .plan import LValue, Part

ENCODINGS = ("graded", "bitplane", "host")


def plane_name(value: str, k: int) -> str:
    """The bundle input carrying bit ``k`` of the raw input ``value``."""
    return f"{value}.plane{k}"


def lower_input(low, op) -> None:
    """A raw (graded) input under a non-graded encoding: ``payload_bits`` plane sources
    (bitplane), or nothing on the chip (host: it is read by the first layer on the host)."""
    if low.encoding not in ENCODINGS:
        raise UnsupportedOpError(f"unknown input encoding {low.encoding!r} in the graph's meta")
    if low.encoding == "host":
        low.on_host[op.name] = op.name
        return
    shape = tuple(low.g.spec(op.name).shape)
    planes = []
    for k in range(int(op.payload_bits)):
        value = plane_name(op.name, k)
        name = low.b.add_process("source", value, shape=list(shape), value=value,
                                 encoding=op.encoding, pad=int(op.pad))
        low.b.inputs.append({"value": value, "process": name, "shape": list(shape),
                             "raw_shape": list(op.shape), "pad": int(op.pad),
                             "encoding": op.encoding, "graded": False, "payload_bits": 1,
                             "plane": k, "of": op.name})
        planes.append(LValue(value, shape, "spike", 1, [Part(name, "s_out", [], shape, None, 0)],
                             exp_shift=k))
    low.planes[op.name] = planes


def relayout(low, op, lower_one) -> bool:
    """A reshape/transpose of the raw input under a non-graded encoding: applied to each plane
    (``lower_one(op, value) -> LValue``), or marked as host-only. False for any other value."""
    src = op.inputs[0]
    if src in low.on_host:
        low.on_host[op.name] = low.on_host[src]
        return True
    if src in low.planes:
        low.planes[op.name] = [lower_one(op, v) for v in low.planes[src]]
        return True
    return False


def check_plane_exponents(op, exps: np.ndarray, values: list, fmt) -> None:
    """A synapse reading bit planes is exact only when no plane shifts right (``e >= 0``) and
    the highest plane's exponent is one the chip has; the quantizer chooses such exponents
    (``--input-encoding bitplane``), a hand-made graph may not."""
    top = max((v.exp_shift for v in values), default=0)
    if top == 0 or exps.size == 0:
        return
    if exps.min() < 0 or exps.max() + top > fmt.weight_exp_max:
        raise UnsupportedOpError(
            f"synapse {op.name!r}: bit-plane input needs weight exponents in [0, "
            f"{fmt.weight_exp_max - top}], it has [{exps.min()}, {exps.max()}] (compile with "
            "--input-encoding bitplane to quantize it so)")


def host_layer_input(low, op) -> str | None:
    """The raw input a LIF reads when it is the first layer computed on the host, else None.
    Raises ``UnsupportedOpError`` for a LIF that reads the host input and anything else."""
    if not low.on_host:
        return None
    reads = []
    for src in op.inputs:
        reads += list(low.pending[src].op.inputs) if src in low.pending else [src]
    host = [low.on_host.get(r) for r in reads]
    if not any(host):
        return None
    if not all(host) or any(src not in low.pending for src in op.inputs):
        raise UnsupportedOpError(f"layer {op.name!r}: the host input encoding runs the first "
                                 "synapse and LIF on the host; this layer reads more than the "
                                 "input")
    return host[0]


def lower_host_layer(low, op, reads: str) -> None:
    """The first LIF, computed on the host: a binary source of its spikes at depth 0."""
    shape = tuple(low.g.spec(op.name).shape)
    name = low.b.add_process("source", op.name, shape=list(shape), value=op.name,
                             encoding="sequence", pad=0)
    low.b.inputs.append({"value": op.name, "process": name, "shape": list(shape),
                         "raw_shape": list(shape), "pad": 0, "encoding": "sequence",
                         "graded": False, "payload_bits": 1, "host_layer": True, "reads": reads})
    low.b.notes.append(f"{op.name}: computed on the host (--input-encoding host); its spikes "
                       "are the bundle's input")
    low._set(op.name, "spike", 1, [Part(name, "s_out", [], shape, None, 0)])


def bundle_inputs(plan: dict, pixels: dict, host_spikes: dict | None = None) -> dict:
    """The runner's arrays (plan input value -> array) from the raw ``pixels`` (graph input
    name -> ``[n, ...]``) and, for a host layer, its spikes ``[n, T, *shape]`` (the simulator's:
    ``host_spikes``)."""
    out = {}
    for i in plan["inputs"]:
        v = i["value"]
        if "plane" in i:
            x = np.asarray(pixels[i["of"]])
            out[v] = ((x.astype(np.int64) >> int(i["plane"])) & 1).astype(np.uint8)
        elif i.get("host_layer"):
            if host_spikes is None or v not in host_spikes:
                raise DataError(f"bundle input {v!r}: the spikes of the first layer, computed on "
                                "the host (--input-encoding host), are missing")
            out[v] = np.asarray(host_spikes[v]).astype(np.uint8)
        else:
            out[v] = pixels[v]
    return out


def host_layers(plan: dict) -> list[str]:
    """The LIFs whose spikes the bundle takes as input (``--input-encoding host``)."""
    return [i["value"] for i in plan["inputs"] if i.get("host_layer")]


def graph_inputs(plan: dict, given: dict) -> dict | None:
    """The raw pixels (graph input name -> array) behind the runner's arrays ``given``: bit
    planes summed back, graded inputs as they are; None when a host layer's spikes stand for
    them (the pixels are not in the bundle's input)."""
    if host_layers(plan):
        return None
    out: dict = {}
    for i in plan["inputs"]:
        x = np.asarray(given[i["value"]])
        if "plane" in i:
            acc = out.setdefault(i["of"], np.zeros(x.shape, np.int64))
            acc += (x.astype(np.int64) & 1) << int(i["plane"])
        else:
            out[i["value"]] = x
    bits = {}
    for i in plan["inputs"]:
        if "plane" in i:
            bits[i["of"]] = bits.get(i["of"], 0) + 1
    for name, n in bits.items():
        out[name] = out[name].astype(np.uint8 if n <= 8 else np.int32)
    return out
