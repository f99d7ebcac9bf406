"""``write_bundle``: the Lava bundle of a fixed-point graph (the hook ``spikec compile`` calls).

Layout of ``OUT/lava/`` (every file written deterministically)::

    network.json     the plan: processes, connections, inputs, probes, pipeline depth
    network.npz      its arrays (weights, biases, probe indices)
    spikec_lava/     the runtime: builds the Lava processes and runs them (numpy + lava only)
    run_lava.py      starts spikec_lava/runner.py: CPU (Loihi2SimCfg fixed_pt) or chip (--hw) -> trace;
                     for users on a chip. ``spikec validate`` never runs it (it runs the runtime of
                     the installed spikec on the data files)
    netx.h5          lava-dl netx layout, for straight chains of input/conv/dense/flatten only
    placement.json   for a target of several chips only: per chip its cores, per core the layer,
                     neuron slice and synaptic memory, and the inter-chip connections
                     (``partition.py``; the mapping ``spikec estimate`` reports)
    README.md        how to run it
    manifest.json    spikec version, sha256 of every file, bundle hash
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from spikec import __version__
from spikec.errors import InputFileError, UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph, verify
from spikec.outputs import DirLock, recover, replace_dir
from spikec.spool import Spooled
from spikec.target.formats import LAVA_FIXED_PT, NumberFormats
from spikec.target.profile import HardwareProfile, load_profile

from . import ssa as S
from .lower import PROBED_OPS, Lowering
from .plan import PlanBuilder
from .npzspool import NpzSpool

BUNDLE_DIR = "lava"
BUNDLE_FORMAT = "spikec-lava-bundle"
BUNDLE_FORMAT_VERSION = 2
CONV_MODES = ("lava", "sparse")
RUNTIME_FILES = ("__init__.py", "procs.py", "network.py", "npzio.py", "runner.py")
_RUNTIME = Path(__file__).parent / "runtime"


def build_plan(graph: Graph, *, ssa: str = "host", conv: str = "lava",
               fmt: NumberFormats = LAVA_FIXED_PT, arrays=None):
    """Lower a fixed-point graph to a Lava plan.

    ``conv``: ``lava`` lowers conv synapses to Lava's Conv where it can express them exactly
    (shared weights, as on the chip); ``sparse`` unrolls every conv into Lava Sparse synapses
    (same arithmetic, about ten times faster on Lava's CPU models, more synaptic memory).
    ``arrays``: where the plan's arrays go as they are made (default: a new dict; an
    ``NpzSpool`` writes them to disk, as ``bundle_files`` does).

    Returns
    -------
    plan : dict (JSON-able), arrays : dict of str -> np.ndarray (or the given ``arrays``),
    facts : dict (for the report)
    """
    if conv not in CONV_MODES:
        raise UnsupportedOpError(f"unknown conv lowering {conv!r}; choose one of {CONV_MODES}")
    if ssa not in S.LOWERINGS:
        raise UnsupportedOpError(f"unknown SSA lowering {ssa!r}; choose one of {S.LOWERINGS}")
    if graph.domain != "fixed":
        raise UnsupportedOpError("the Lava backend needs a fixed-point graph (spikec compile "
                                 f"--target loihi2 writes one); got a {graph.domain} graph")
    verify(graph)
    b = PlanBuilder(graph.timesteps, fmt, arrays={} if arrays is None else arrays)
    low = Lowering(graph, b, ssa, conv)
    low.run()
    b.category = "probes"
    for op in graph.ops:
        if isinstance(op, PROBED_OPS):
            b.probe(b.values[op.name], "readout" if isinstance(op, F.Readout) else None)
    plan = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION,
            "spikec_version": __version__, "ssa": ssa, "conv": conv, "outputs": low.outputs,
            "formats": {"act_shift": fmt.weight_shift, "state_bits": fmt.state_bits},
            **b.to_json()}
    encoding = graph.meta.get("input_encoding", "graded")
    if encoding != "graded":    # graded (the default) leaves the bytes as before
        plan["input_encoding"] = encoding
    return plan, b.arrays, _facts(graph, plan, b, ssa, conv)


def _facts(graph: Graph, plan: dict, b: PlanBuilder, ssa: str, conv: str) -> dict:
    by_type: dict[str, int] = {}
    for p in plan["processes"]:
        by_type[p["type"]] = by_type.get(p["type"], 0) + 1
    net = {k: v for k, v in b.stats.items() if k != "probes"}
    totals = {key: sum(c.get(key, 0) for c in net.values())
              for key in ("processes", "neurons", "synapses")}
    lowerings, ssa_totals = [], {"host": {}, "decompose": {}}
    for op in graph.ops:
        if isinstance(op, O.SpikeMatmul):
            a, bb = (graph.spec(i) for i in op.inputs)
            kinds = [("spike" if s.kind.value == "spike" else "count") for s in (a, bb)]
            c = S.costs(a.shape, bb.shape, *kinds)
            lowerings.append({"op": op.name, "a_shape": list(a.shape), "b_shape": list(bb.shape),
                              "a_kind": kinds[0], "b_kind": kinds[1], "used": ssa, **c})
            for low, vals in c.items():
                for k, v in vals.items():
                    if isinstance(v, int):
                        ssa_totals[low][k] = ssa_totals[low].get(k, 0) + v
    facts = {
        "ssa": ssa, "conv": conv, "timesteps": graph.timesteps, "pipeline_depth": plan["depth"],
        "run_steps": "n_samples * timesteps + pipeline_depth",
        "processes": totals["processes"], "neurons": totals["neurons"],
        "synapses": totals["synapses"], "process_types": dict(sorted(by_type.items())),
        "by_category": net, "probed_ports": len(b.recorder_ports),
        "ssa_ops": lowerings, "ssa_totals": ssa_totals,
        "probes": [{"value": p["value"], "kind": p["kind"], "shape": p["shape"],
                    "depth": p["depth"]} for p in plan["probes"]],
        "notes": list(b.notes),
    }
    if "input_encoding" in plan:
        facts["input_encoding"] = plan["input_encoding"]
        facts["inputs"] = [i["value"] for i in plan["inputs"]]
    return facts


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def bundle_files(graph: Graph, *, ssa: str = "host", conv: str = "lava", profile=None
                 ) -> tuple[dict[str, bytes], dict]:
    """Every file of the bundle (relative path -> bytes) and the facts. ``profile``: the
    target (a ``HardwareProfile`` or a name); a system of several chips gets ``placement.json``
    (``partition.py``)."""
    from . import netx
    from .partition import PLACEMENT_FILE, placement, placement_bytes, wants_placement

    # the arrays go to disk as they are made, network.npz is assembled there (npzspool.py)
    plan, arrays, facts = build_plan(graph, ssa=ssa, conv=conv, arrays=NpzSpool())
    files = {"network.json": _json_bytes(plan), "network.npz": arrays.npz(),
             "run_lava.py": (_RUNTIME / "run_lava.py").read_bytes()}
    if profile is not None and not isinstance(profile, HardwareProfile):
        profile = load_profile(profile)
    if wants_placement(profile):
        placed = placement(graph, profile, ssa, plan)
        files[PLACEMENT_FILE] = placement_bytes(placed)
        facts["placement"] = {"file": f"{BUNDLE_DIR}/{PLACEMENT_FILE}", "profile": profile.name,
                              "fits": placed["fits"], "chips": placed["chips"],
                              "cores": placed["cores"]}
    for name in RUNTIME_FILES:
        files[f"spikec_lava/{name}"] = (_RUNTIME / name).read_bytes()
    h5, why = netx.netx_bytes(graph)
    facts["netx"] = {"written": h5 is not None, "file": f"{BUNDLE_DIR}/netx.h5" if h5 else None,
                     "reason": why}
    if h5 is not None:
        files["netx.h5"] = h5
    files["README.md"] = _readme(facts).encode()
    digests = {k: v.sha256() if isinstance(v, Spooled) else hashlib.sha256(v).hexdigest()
               for k, v in sorted(files.items())}
    bundle_hash = hashlib.sha256(_json_bytes(digests)).hexdigest()
    from spikec.ir.serialize import graph_sha256

    files["manifest.json"] = _json_bytes({"format": BUNDLE_FORMAT,
                                          "graph_sha256": graph_sha256(graph),
                                          "format_version": BUNDLE_FORMAT_VERSION,
                                          "spikec_version": __version__, "ssa": ssa, "conv": conv,
                                          "bundle_hash": bundle_hash, "files": digests})
    facts["bundle"] = BUNDLE_DIR
    facts["bundle_hash"] = bundle_hash
    return files, facts


def write_bundle(fixed_graph: Graph, out_dir, *, ssa: str = "host", report: dict | None = None,
                 conv: str = "lava", profile=None) -> dict:
    """Write the Lava bundle of ``fixed_graph`` to ``out_dir/lava/`` (replacing an old one).

    Parameters
    ----------
    fixed_graph : Graph
        The quantized graph (``domain == 'fixed'``), as ``spikec compile`` writes to compiled.spkc.
    out_dir : path
        The compile output directory.
    ssa : 'host' | 'decompose'
        Lowering of spiking self-attention's products (see ``spikec.backends.lava.ssa``).
    report : dict, optional
        A report being assembled; the facts are also stored under ``report['lava']``.
    conv : 'lava' | 'sparse'
        Conv synapses as Lava Conv where exact (default) or unrolled into Lava Sparse.
    profile : HardwareProfile or str, optional
        The compile's target; a system of several chips adds ``placement.json``.

    Returns
    -------
    dict
        Facts for report.json: the lowering used, processes/neurons/synapses, SSA sizes of both
        lowerings, pipeline depth, probes, netx status, bundle hash.
    """
    files, facts = bundle_files(fixed_graph, ssa=ssa, conv=conv, profile=profile)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with DirLock(out):              # no compile may swap OUT meanwhile
        recover(out / BUNDLE_DIR)   # leftovers of a killed rewrite
        replace_dir(out / BUNDLE_DIR, files)
    if report is not None:
        report["lava"] = facts
    return facts


def read_manifest(bundle_dir) -> dict:
    """The manifest of a bundle, with every file's hash checked; raises ``InputFileError``."""
    d = Path(bundle_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise InputFileError(f"{d}: not a spikec Lava bundle (manifest.json: {e})") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise InputFileError(f"{d}: not a spikec Lava bundle")
    for rel, digest in manifest.get("files", {}).items():
        try:
            data = (d / rel).read_bytes()
        except OSError:
            raise InputFileError(f"{d}: bundle file {rel} is missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise InputFileError(f"{d}: bundle file {rel} was modified after spikec wrote it; "
                                 "recompile")
    return manifest


def _readme(facts: dict) -> str:
    return f"""# spikec Lava bundle

Written by spikec {__version__}. SSA lowering: `{facts['ssa']}`. T = {facts['timesteps']} time steps,
pipeline depth {facts['pipeline_depth']}: n samples run n * T + {facts['pipeline_depth']} Lava steps
back to back. {facts['processes']} Lava processes, {facts['neurons']} neurons,
{facts['synapses']} synapses, plus one recorder process with {facts['probed_ports']} probed ports.

Run it (Python 3.10, lava-nc 0.10, numpy < 2):

    python run_lava.py --inputs samples.npz --trace trace.npz          # Lava CPU, fixed_pt
    python run_lava.py --inputs samples.npz --trace trace.npz --hw     # Loihi 2 (lava-loihi)

`samples.npz`: one int array per network input (`images` for one input), raw pixels
`[n, C, H, W]`. Then `spikec validate OUT --against trace trace.npz` compares the trace with
spikec's bit-exact simulator.

Trace (`.npz`): `meta` (JSON: format `spikec-trace` 1, spikec_version, bundle_hash, run_config,
samples, timesteps, layers [name, kind, shape], seconds), `spikes/NAME` `[n, T, *shape]` (uint8
spikes, int32 counts), `readout/NAME` `[n, *shape]` int32 accumulators, `inputs/NAME`.
""" + _readme_inputs(facts)


def _readme_inputs(facts: dict) -> str:
    """The README's section on a non-graded input encoding (none for graded input)."""
    enc = facts.get("input_encoding")
    if enc == "bitplane":
        return f"""
## Input: bit planes

Compiled with `--input-encoding bitplane`: the network has no graded input. Each raw 8-bit input
`x` is sent as binary spikes on its bit planes, one input per plane (`{facts['inputs'][0]}` ..
`{facts['inputs'][-1]}`): plane `k` is `(x >> k) & 1`, read by the first layer with its weight
exponent raised by `k`. `samples.npz` holds one uint8 array per plane, `[n, C, H, W]` each.
"""
    if enc == "host":
        return f"""
## Input: the first layer on the host

Compiled with `--input-encoding host`: the first layer (`{', '.join(facts['inputs'])}`) is
computed on the host, and the network's input is its spikes, `[n, T, *shape]` uint8 per input
named above: `spikec.sim.Simulator(load("OUT/compiled.spkc")).run(pixels, record=[NAME])`
computes them bit-exactly (values `[T, n, *shape]`: move the step axis behind the sample axis);
`spikec validate OUT --against lava` does this itself. `spikec validate OUT --against trace`
needs `--data` (the trace holds the spikes, not the pixels).
"""
    return ""
