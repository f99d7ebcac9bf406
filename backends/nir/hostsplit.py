"""Build the NIR parts of ``--ssa host`` (see ``split.py`` for the plan and the host step)."""
from __future__ import annotations

import numpy as np

from spikec.ir.graph import Graph

from .build import Carrier, NIRBuilder
from .split import host_program, layout, plan


def _select(builder, src: str, entry: dict, total: int) -> None:
    """Value ``entry`` out of the packed input node ``src``: a 1x1 Conv2d with 0/1 weights."""
    c = entry["channels"]
    w = np.zeros((c, total, 1, 1), np.float32)
    w[np.arange(c), entry["offset"] + np.arange(c)] = 1
    name = f"{entry['value']}.unpack"
    builder.add(name, builder.nir.Conv2d(
        input_shape=tuple(entry["carrier"][1:]), weight=w, stride=(1, 1), padding=(0, 0),
        dilation=(1, 1), groups=1, bias=np.zeros(c, np.float32)), src)
    builder.values[entry["value"]] = Carrier(name, tuple(entry["carrier"]))


def _pack(builder, entries: list[dict], total: int, hw) -> str:
    names = []
    for e in entries:
        c = e["channels"]
        w = np.zeros((total, c, 1, 1), np.float32)
        w[e["offset"] + np.arange(c), np.arange(c)] = 1
        src = builder.as_shape(e["value"], tuple(e["carrier"]), _Named(e["value"]))
        names.append(builder.add(f"{e['value']}.pack", builder.nir.Conv2d(
            input_shape=tuple(hw), weight=w, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
            groups=1, bias=np.zeros(total, np.float32)), src))
    shape = (total,) + tuple(hw)
    builder.add("packed", builder.nir.Scale(scale=np.ones(shape, np.float32)), *names)
    builder.add("output", builder.nir.Output(output_type={"output": np.array(shape)}), "packed")
    return "packed"


class _Named:
    OPCODE = "boundary"

    def __init__(self, name):
        self.name = name


def split_graph(g: Graph, regions):
    """Top-level NIRGraph of parts ``part0..partK`` (each with its own Input/Output) and facts."""
    parts, crossing, before, stage = plan(g, regions)
    probe = NIRBuilder(g)
    shapes = probe.carrier_shape
    nir = probe.nir
    boundaries, sub, neurons, readouts = [], {}, 0, {}
    prev_in = None
    for k, ops in enumerate(parts):
        b = NIRBuilder(g)
        if k > 0:
            entries = prev_in
            total = sum(e["channels"] for e in entries)
            hw = entries[0]["carrier"][1:]
            b.add("input", nir.Input(input_type={"input": np.array((total, *hw))}))
            for e in entries:
                _select(b, "input", e, total)
        for op in ops:
            b.emit(op)
        if k < len(parts) - 1:
            out_entries = layout(g, shapes, crossing[k])
            total = sum(e["channels"] for e in out_entries)
            _pack(b, out_entries, total, out_entries[0]["carrier"][1:])
            regs = before.get(k + 1, [])
            made = {op.name for r in regs for op in r.ops}
            nxt = [v for v in crossing[k] if any(stage[u.name] > k + 1 or
                                                 (stage[u.name] == k + 1 and u.name not in made)
                                                 for u in g.consumers(v))]
            nxt += [o for r in regs for o in r.outputs]
            prev_in = layout(g, shapes, nxt)
            boundaries.append({"after_part": f"part{k}", "before_part": f"part{k + 1}",
                               "part_output": out_entries, "part_input": prev_in,
                               "host_ops": host_program(regs, g),
                               "products": [r.name for r in regs]})
        neurons += sum(b.neurons.values())
        readouts.update({f"part{k}.{n}": r for n, r in b.readouts.items()})
        sub[f"part{k}"] = nir.NIRGraph(nodes=b.nodes, edges=b.edges, type_check=True)
    nodes, edges = {}, []
    for name, part in sub.items():
        (in_name, in_node), = part.inputs.items()
        nodes[f"{name}.input"] = nir.Input(input_type={"input": np.array(in_node.input_type["input"])})
        nodes[name] = part
        for o, onode in part.outputs.items():
            nodes[f"{name}.{o}"] = nir.Output(output_type={"output": np.array(onode.output_type["output"])})
            edges.append((name, f"{name}.{o}"))
        edges.append((f"{name}.input", name))
    top = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    facts = {"parts": len(sub), "boundaries": boundaries, "neurons": int(neurons),
             "readouts": readouts,
             "regions": [{"name": r.name, "units": 0, "weights": 0, "host_macs_per_step": _macs(g, r)}
                         for r in regions]}
    return top, facts


def _macs(g: Graph, region) -> int:
    from spikec.ir import ops as O
    return int(sum(op.dense_ops([g.spec(i) for i in op.inputs], g.spec(op.name))
                   for op in region.ops if isinstance(op, O.SpikeMatmul)))
