"""``spikec compile MODEL --target onnx -o OUT``: the backend's ``export`` capability.

The files of ``OUT``: ``model.onnx`` and ``export.json``; ``spikec.compiler.export_model`` writes
them (``spikec.outputs``).
"""
from __future__ import annotations

import json
from pathlib import Path

from spikec.errors import UnsupportedOpError

FACTS_FILE = "export.json"


def export_files(model, *, load_options=None, ssa: str | None = None, quantized: bool = False,
                 calib: str | None = None, profile: str | None = None, residual: str = "auto"
                 ) -> tuple[dict[str, bytes], dict]:
    """Load ``model`` and export its single-step ONNX model; returns (files of OUT, facts).

    ONNX carries spiking self-attention as MatMul, so ``ssa`` is not needed (and ignored).
    ``quantized`` is refused: Loihi's integer arithmetic has no ONNX form here.
    """
    from spikec.frontends import LoadOptions, load_model

    from . import FILE_NAME, to_onnx

    if quantized or calib or profile:
        raise UnsupportedOpError("--target onnx exports the float network; --quantized, --calib "
                                 "and --profile apply to Loihi targets and --target nir")
    graph = load_model(Path(model), load_options or LoadOptions())
    proto, facts = to_onnx(graph)
    facts = {"target": "onnx", "model": Path(model).name, **facts}
    return {FILE_NAME: proto.SerializeToString(),
            FACTS_FILE: (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode()}, facts


def summary(facts: dict) -> list[str]:
    return [f"ONNX: {facts['nodes']} nodes, {facts['neurons']} LIF layers, {facts['states']} "
            f"state tensors; step it T = {facts['timesteps']} times feeding state.<op>.next back"]
