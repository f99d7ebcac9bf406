"""NIR export (``spikec compile --target nir``): spikec's float IR as a NIR graph (nir >= 1.0.8).

Public API
----------
``prepare(graph) -> Graph``                 the float passes run before export (``EXPORT_PASSES``)
``to_nir(graph, ssa=None) -> (NIRGraph, facts)``
``export(graph, out_dir, ssa=None, quantized=None) -> facts``   writes ``OUT/model.nir`` atomically
``export_quantized`` (``quantized.py``)    a fixed-point graph's values, exactly, in NIR floats

The mapping of every op, the neuron discretization and what NIR cannot carry are in
docs/interchange.md; ``build.py`` holds the op mapping, ``ssa.py`` and ``split.py`` the two
lowerings of spiking self-attention.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from spikec import __version__
from spikec.errors import UnsupportedOpError, require
from spikec.ir.types import Domain
from spikec.target.ssa import SSALowering
from spikec.ir.graph import Graph
from spikec.atomic import write_atomic
from spikec.passes import eliminate_dead_ops, fold_batchnorm, fold_readout, simplify_layout

from .build import META_KEY, NIRBuilder, nudged_threshold
from .ssa import MODES as SSA_MODES
from .ssa import decompose, find_regions

#: Float passes run before export, in order. Not ``canonicalize_lif``: NIR's LIF is the
#: decay_input form, which maps bit for bit (see build.py); not the input-normalization fold: the
#: NIR input is the normalized image and the preprocessing is recorded in the metadata.
EXPORT_PASSES = (eliminate_dead_ops, simplify_layout, fold_batchnorm, fold_readout)
FILE_NAME = "model.nir"

#: How every IR op type is carried (tests/test_nir.py checks this covers spikec.ir.OP_TYPES and
#: that each entry does what it says). "export": NIR nodes; "ssa": needs --ssa; "quantized": with
#: --quantized; "refuse": an UnsupportedOpError naming the op, for the reason given.
COVERAGE = {
    "input": ("export", "Input (the normalized image; preprocessing in metadata)"),
    "output": ("export", "Output (a final time mean stays on the host, in metadata)"),
    "conv2d": ("export", "Conv2d (grouped: dense weights with zero blocks)"),
    "linear": ("export", "Affine/Linear on 1-d; 1x1 Conv2d or Conv1d over token channels; "
                         "refused over the last axis of (N, C) tokens"),
    "batchnorm": ("export", "1x1 Conv2d with diagonal weights (normally folded first)"),
    "lif": ("export", "LIF (Euler, threshold nudged for >=), IF (tau inf), Threshold (tau 1); "
                      "soft reset refused"),
    "maxpool2d": ("export", "SumPool2d + Threshold(0.5) on spikes; refused on counts"),
    "avgpool2d": ("export", "AvgPool2d"),
    "mean": ("export", "AvgPool2d over the token grid"),
    "time_mean": ("export", "host read-out (metadata) when last; refused elsewhere"),
    "add": ("export", "two edges into a Scale(1) junction"),
    "iand": ("export", "Scale(-1) + Threshold(0.5): [s - a > 0.5]"),
    "and": ("export", "Threshold(1.5) of both inputs: [a + s > 1.5]; refused when broadcasting"),
    "reduce_sum": ("export", "SumPool2d over the token grid; refused over other axes"),
    "scale": ("export", "Scale"),
    "spike_matmul": ("ssa", "--ssa decompose (threshold units) or --ssa host (split)"),
    "reshape": ("export", "nothing (same carrier) or Flatten; an unflatten is refused"),
    "transpose": ("refuse", "NIR has no transpose node (inside attention: --ssa)"),
    "graded_input": ("quantized", "Input of raw integers"),
    "conv_synapse": ("quantized", "Conv2d with weights W * 2**weight_exp"),
    "dense_synapse": ("quantized", "Affine/1x1 Conv2d with weights W * 2**weight_exp"),
    "cuba_lif": ("quantized", "CubaLIF in chip units (decay truncation not carried); "
                             "several inputs (membrane shortcut): one edge each"),
    "readout": ("quantized", "Output of its synapse; host sum, scale and offset in metadata; "
                           "several synapses (a head over a membrane-shortcut sum) refused"),
}

__all__ = ["export", "to_nir", "prepare", "EXPORT_PASSES", "SSA_MODES", "FILE_NAME", "read", "COVERAGE",
           "nudged_threshold", "META_KEY"]


def _nir():
    return require("nir", "NIR export")


def prepare(graph: Graph) -> Graph:
    """The export form of a float graph: ``EXPORT_PASSES`` in order."""
    if graph.domain != Domain.FLOAT:
        raise UnsupportedOpError("NIR export reads the float graph; use export_quantized for a "
                                 "fixed-point one")
    for p in EXPORT_PASSES:
        graph = p(graph)
    return graph


def to_nir(graph: Graph, ssa: str | None = None, *, prepared: bool = False):
    """The NIR graph of a float IR graph, and facts about it (neurons, SSA sizes).

    Parameters
    ----------
    ssa : None, 'decompose' or 'host'. None refuses a graph with spiking self-attention.
    prepared : the graph already went through ``prepare``.
    """
    nir = _nir()
    g = graph if prepared else prepare(graph)
    regions = find_regions(g)
    if regions and ssa is None:
        raise UnsupportedOpError(
            f"the model has spiking self-attention ({len(regions)} products of dynamic tensors, "
            f"first at {regions[0].name!r}) and NIR has no node for it; choose --ssa decompose "
            "(exact, in NIR threshold units and static weights) or --ssa host (split graph, the host "
            "computes the products)")
    if ssa is not None and ssa not in SSA_MODES:
        raise UnsupportedOpError(f"unknown --ssa {ssa!r}; choose one of {', '.join(SSA_MODES)}")
    facts = {"ssa": ssa if regions else None, "timesteps": g.timesteps, "regions": []}
    if regions and ssa == SSALowering.HOST:
        from .hostsplit import split_graph
        top, part_facts = split_graph(g, regions)
        facts.update(part_facts)
    else:
        b = NIRBuilder(g)
        owner = {op.name: r for r in regions for op in r.ops}
        for op in g.ops:
            r = owner.get(op.name)
            if r is None:
                b.emit(op)
            elif op is r.ops[-1]:  # every input of the region exists by its last op
                before = set(b.nodes)
                f = decompose(r, g, b)
                facts["regions"].append({"name": r.name, "units": f.units, "weights": f.weights,
                                         "and_kv_units": f.and_kv_units,
                                         "gate_units": f.gate_units, "heads": f.heads,
                                         "head_width": f.width, "tokens": f.tokens,
                                         **region_record(r, g, b, [n for n in b.nodes
                                                                   if n not in before])})
        flat = nir.NIRGraph(nodes=b.nodes, edges=b.edges, type_check=True)
        top = nest_blocks(flat)
        facts["neurons"] = int(sum(b.neurons.values()))
        facts["readouts"] = b.readouts
    facts["ssa_units"] = int(sum(r["units"] for r in facts["regions"]))
    facts["nodes"] = count_nodes(top)
    top.metadata = {META_KEY: json.dumps(graph_metadata(g, facts), sort_keys=True)}
    return top, facts


def region_record(region, g: Graph, builder, nodes: list[str]) -> dict:
    """What an importer needs to read a decomposed region back as the region's own IR ops: the
    ops (layout, products, scale), the values they read (with their IR shapes), the value they
    give and its carrier, and the NIR nodes of the decomposition (the last one carries the
    result)."""
    from .split import _op_json

    out = region.outputs[0]
    return {"ir_ops": [_op_json(op) for op in region.ops],
            "inputs": [{"value": v, "ir_shape": list(g.spec(v).shape)} for v in region.inputs],
            "output": out, "carrier": list(builder.values[out].shape),
            "exit": builder.values[out].node, "nodes": nodes}


def graph_metadata(g: Graph, facts: dict) -> dict:
    return {"producer": f"spikec {__version__}", "timesteps": g.timesteps, "dt": 1.0,
            "discretization": "forward Euler, dt = 1 time step: v += (dt/tau)((v_leak - v) + r I)",
            "fire_on": "spikingjelly's H >= v_th is exported as v_threshold = the float32 just "
                       "below v_th (NIR fires on v > v_threshold)",
            "source": {k: v for k, v in g.meta.items() if isinstance(v, (str, int, float, bool))},
            **{k: v for k, v in facts.items() if k in ("ssa", "regions", "readouts",
                                                        "boundaries", "neurons")}}


def count_nodes(graph) -> int:
    nir = _nir()
    return sum(count_nodes(n) if isinstance(n, nir.NIRGraph) else 1 for n in graph.nodes.values())


def _group_key(name: str) -> str | None:
    """``block.0.attn.q_conv`` -> ``block.0``: the name up to its first numeric component."""
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p.isdigit():
            return ".".join(parts[:i + 1])
    return None


def nest_blocks(flat):
    """Wrap every block (nodes sharing a prefix up to a numeric component, e.g. ``block.0``) that
    has one entry node and one exit node into a nested NIRGraph."""
    nir = _nir()
    nodes, edges = dict(flat.nodes), list(flat.edges)
    groups: dict[str, set[str]] = {}
    for name, node in nodes.items():
        key = _group_key(name)
        if key and not isinstance(node, (nir.Input, nir.Output)) and key not in nodes:
            groups.setdefault(key, set()).add(name)
    for key, members in groups.items():
        ins = [(s, t) for s, t in edges if s not in members and t in members]
        outs = [(s, t) for s, t in edges if s in members and t not in members]
        if len({s for s, _ in ins}) != 1 or len({s for s, _ in outs}) != 1 or len(members) < 2:
            continue
        src, exit_ = ins[0][0], outs[0][0]
        inner = {n: nodes[n] for n in nodes if n in members}
        in_type = nodes[src].output_type["output"]
        out_type = nodes[exit_].output_type["output"]
        inner["input"] = nir.Input(input_type={"input": np.array(in_type)})
        inner["output"] = nir.Output(output_type={"output": np.array(out_type)})
        inner_edges = [(s, t) for s, t in edges if s in members and t in members]
        inner_edges += [("input", t) for _, t in ins] + [(exit_, "output")]
        sub = nir.NIRGraph(nodes=inner, edges=inner_edges, type_check=True)
        for n in members:
            del nodes[n]
        nodes[key] = sub
        rest = [(s, t) for s, t in edges if s not in members and t not in members]
        consumers = list(dict.fromkeys(t for _, t in outs))
        edges = rest + [(src, key)] + [(key, t) for t in consumers]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)


def to_bytes(graph) -> bytes:
    nir = _nir()
    buf = io.BytesIO()
    nir.write(buf, graph)
    return buf.getvalue()


def export(graph: Graph | None, out_dir, *, ssa: str | None = None,
           quantized: Graph | None = None, notes: dict | None = None) -> dict:
    """Write ``out_dir/model.nir`` (atomically) and return the export facts.

    Parameters
    ----------
    graph : the float graph (as loaded; ``prepare`` runs here).
    ssa : None | 'decompose' | 'host' (see ``ssa.py``); None refuses attention.
    quantized : a fixed-point graph of ``graph``: export its values instead (``quantized.py``).
    notes : the compiler's notes (per-layer scales), recorded with ``quantized``.
    """
    if quantized is not None:
        from .quantized import to_nir_quantized
        top, facts = to_nir_quantized(quantized, ssa=ssa, notes=notes)
    else:
        top, facts = to_nir(graph, ssa)
    path = Path(out_dir) / FILE_NAME
    write_atomic(path, to_bytes(top))
    facts["path"] = str(path)
    return facts


def read(path):
    """``nir.read`` (with type checks) of an exported file."""
    return _nir().read(str(path))
