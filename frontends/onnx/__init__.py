"""The ONNX frontend: single-time-step ONNX models with explicit neuron state become float IR.

The convention (``spikec.backends.onnx`` writes it; a ``torch.onnx.export`` of a model stepped
once with its neurons' membranes as inputs follows it too, see docs/interchange.md): one raw input,
state inputs ``state.<x>`` with outputs ``state.<x>.next``, all other outputs per step.

Neurons are found from the state pairs, not from names: the ONNX nodes between ``state.<x>`` and
``state.<x>.next`` form one neuron step with one outside input ``X`` and one outside output (the
spikes). Its parameters are read by running that subgraph (``onnx.reference``) on probe inputs:
``v_reset`` (a firing input), ``tau`` (``x = 0``), ``decay_input`` (``v = 0``) and the threshold and
``>=``/``>`` from its comparison node; then the LIF so found must reproduce the subgraph bit for
bit on 4,096 random ``(x, v)`` pairs, or the import fails naming the state. A state whose step is
``acc + x`` read through ``/ T`` is a time mean.

Other ops: Conv, MatMul/Gemm (constant weights: linear; two dynamic operands: spike_matmul), Add
(a constant after a linear or conv is its bias), Mul by a scalar (scale), Sub(1, a)*s (iand),
Transpose, Reshape, Flatten, MaxPool, AveragePool, ReduceMean, BatchNormalization, Identity; the
raw input's Pad/Mul/Sub/Div by constants become the input op's pad, pixel scale, mean and std. A
per-step real-valued output is averaged over the T steps (a time mean is appended): that is what
spikec's read-out computes. Any other op raises ``UnsupportedOpError`` naming the node.
"""
from __future__ import annotations

from pathlib import Path

from spikec.errors import InputFileError, require
from spikec.ir.graph import Graph

STATE_PREFIX = "state."
NEXT_SUFFIX = ".next"
DEFAULT_TIMESTEPS = 4

__all__ = ["load", "from_onnx", "STATE_PREFIX", "NEXT_SUFFIX"]


def _onnx():
    return require("onnx", "reading .onnx files")


def load(path, options=None) -> Graph:
    onnx = _onnx()
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise InputFileError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    return from_onnx(model, options, source=Path(path).name)


def from_onnx(model, options=None, source: str = "<onnx>") -> Graph:
    """Convert an ``onnx.ModelProto`` following the convention into a verified float graph."""
    from .convert import Converter

    return Converter(model, options, source).run()
