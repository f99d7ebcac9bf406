"""``spikec compile MODEL --target onnx -o OUT``: the driver behind the compile command's hook.

Writes ``OUT/model.onnx`` and ``OUT/export.json`` atomically (``spikec.compiler.write_dir``).
"""
from __future__ import annotations

import json
from pathlib import Path

from spikec.errors import UnsupportedOpError

FACTS_FILE = "export.json"


def compile_to(model, out, *, load_options=None, ssa: str | None = None, quantized: bool = False,
               calib: str | None = None, profile: str | None = None, residual: str = "auto") -> dict:
    """Load ``model`` and write its single-step ONNX model into the directory ``out``.

    ONNX carries spiking self-attention as MatMul, so ``ssa`` is not needed (and ignored).
    ``quantized`` is refused: Loihi's integer arithmetic has no ONNX form here.
    """
    from spikec.compiler import write_dir
    from spikec.frontends import LoadOptions, load_model

    from . import FILE_NAME, to_onnx

    if quantized or calib or profile:
        raise UnsupportedOpError("--target onnx exports the float network; --quantized, --calib "
                                 "and --profile apply to Loihi targets and --target nir")
    graph = load_model(Path(model), load_options or LoadOptions())
    proto, facts = to_onnx(graph)
    facts = {"target": "onnx", "model": Path(model).name, **facts}
    write_dir(Path(out), {FILE_NAME: proto.SerializeToString(),
                          FACTS_FILE: (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode()})
    return facts


def summary(facts: dict) -> list[str]:
    return [f"ONNX: {facts['nodes']} nodes, {facts['neurons']} LIF layers, {facts['states']} "
            f"state tensors; step it T = {facts['timesteps']} times feeding state.<op>.next back"]
