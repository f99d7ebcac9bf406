"""``spikec compile MODEL --target nir -o OUT``: the backend's ``export`` capability.

The files of ``OUT``: ``model.nir`` and ``export.json`` (the export facts: nodes, neurons, SSA
sizes, host boundaries); ``spikec.compiler.export_model`` writes them (``spikec.outputs``).
"""
from __future__ import annotations

import json
from pathlib import Path

from spikec.errors import UnsupportedOpError

FACTS_FILE = "export.json"


def export_files(model, *, load_options=None, ssa: str | None = None, quantized: bool = False,
                 calib: str | None = None, profile: str | None = None, residual: str = "auto"
                 ) -> tuple[dict[str, bytes], dict]:
    """Load ``model`` and export it as NIR; returns (files of OUT, facts).

    ``quantized``: compile for ``profile`` (default loihi2) with ``calib`` and export the fixed
    graph's values (``quantized.py``); otherwise the float graph after ``EXPORT_PASSES``.
    """
    from spikec.compiler import plain
    from spikec.evaluate import load_data
    from spikec.frontends import LoadOptions, load_model

    from . import FILE_NAME, to_bytes, to_nir

    graph = load_model(Path(model), load_options or LoadOptions())
    if quantized:
        from spikec.pipeline import CompileOptions, compile_graph

        from .quantized import to_nir_quantized

        cal = load_data(calib, 64, graph.inputs[0], "--calib") if calib else None
        res = compile_graph(graph, profile or "loihi2", calib=None if cal is None else cal.images,
                            options=CompileOptions(residual=residual))
        top, facts = to_nir_quantized(res.fixed, ssa=ssa, notes=plain(res.notes))
    else:
        if calib or profile:
            raise UnsupportedOpError("--calib and --profile apply to --quantized NIR export only")
        top, facts = to_nir(graph, ssa)
    facts = {"target": "nir", "model": Path(model).name, **facts}
    return {FILE_NAME: to_bytes(top),
            FACTS_FILE: (json.dumps(facts, indent=2, sort_keys=True, default=str)
                         + "\n").encode()}, facts


def summary(facts: dict) -> list[str]:
    """Lines the compile command prints."""
    lines = [f"NIR: {facts['nodes']} nodes, {facts['neurons']:,} neuron units, T = "
             f"{facts['timesteps']}" + (" (quantized values)" if facts.get("quantized") else "")]
    if facts.get("ssa") == "decompose":
        lines.append(f"--ssa decompose: {facts['ssa_units']:,} threshold units in "
                     f"{len(facts['regions'])} attention products")
    if facts.get("ssa") == "host":
        lines.append(f"--ssa host: {facts['parts']} NIR parts, {len(facts['boundaries'])} host "
                     "boundaries (see the file's metadata)")
    return lines
