"""Ranges the quantizer needs: static bounds of integer values, worst-case and calibrated bounds of
every synapse's weighted sum (in float weight units, before any scale is chosen)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikec import interp
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.types import Encoding, Kind


def integer_bounds(graph: Graph, pixel_max: float) -> dict[str, float]:
    """Largest value each integer-valued (or raw-pixel) value can take, from the graph alone.

    Spikes: 1. Raw pixels (an input with ``pixel_scale`` 1): ``pixel_max``. ``add``: the sum of its
    inputs' bounds; ``spike_matmul``: inner size x the product; ``reduce_sum``: the number of
    terms x its input's; max-pool and layout ops keep the
    bound; ``scale``: ``|c|`` times it. Real values that are none of these are absent.
    """
    specs = graph.specs
    out: dict[str, float] = {}
    for op in graph.ops:
        spec = specs[op.name]
        if isinstance(op, O.Input):
            out[op.name] = 1.0 if spec.kind is Kind.SPIKE else pixel_max * op.pixel_scale
        elif spec.kind is Kind.SPIKE:
            out[op.name] = 1.0
        elif isinstance(op, O.Add) and all(i in out for i in op.inputs):
            out[op.name] = out[op.inputs[0]] + out[op.inputs[1]]
        elif isinstance(op, O.SpikeMatmul):
            a, b = op.inputs
            out[op.name] = specs[a].shape[-1] * out[a] * out[b]
        elif isinstance(op, O.ReduceSum) and op.inputs[0] in out:
            x = specs[op.inputs[0]].shape
            out[op.name] = float(np.prod([x[a] for a in op.axes])) * out[op.inputs[0]]
        elif isinstance(op, (O.MaxPool2d, O.Reshape, O.Transpose)) and op.inputs[0] in out:
            out[op.name] = out[op.inputs[0]]
        elif isinstance(op, O.Scale) and op.inputs[0] in out:
            out[op.name] = abs(op.factor) * out[op.inputs[0]]
    return out


def _out_channel_axis(op: O.Op, ndim: int) -> int:
    return 0 if isinstance(op, O.Conv2d) else op.axis % ndim


def worst_case_sums(op: O.Op, x_max: float) -> np.ndarray:
    """Per output channel, the largest ``|sum_i w_i x_i|`` for inputs in ``[0, x_max]``."""
    w = op.weight.astype(np.float64).reshape(op.weight.shape[0], -1)
    pos = np.clip(w, 0, None).sum(axis=1)
    neg = -np.clip(w, None, 0).sum(axis=1)
    return np.maximum(pos, neg) * x_max


@dataclass
class Calibration:
    """Per-channel ranges observed on calibration samples (all in float units of the folded graph).

    Attributes
    ----------
    sums : dict
        synapse name -> ``[C_out]``: max ``|sum_i w_i x_i|`` (no bias) over samples, steps and
        positions, with ``x`` the value the chip's synapse receives (raw pixels for the first layer).
    accumulated : dict
        read-out synapse name -> ``[C_out]``: max over samples and steps of
        ``|sum_{t' <= t} sum_tokens sum_i w_i x_i|`` (what a read-out accumulator holds).
    values : dict
        integer value name -> its largest observed value.
    samples : int
    """

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    accumulated: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    samples: int = 0


def _max_into(store: dict, key: str, arr: np.ndarray) -> None:
    store[key] = arr if key not in store else np.maximum(store[key], arr)


def calibrate(graph: Graph, calib: np.ndarray, *, synapses: list[str], readouts: dict[str, tuple],
              values: list[str], chunk: int = 2) -> Calibration:
    """Run the folded float graph on ``calib`` (float64) and record the ranges above.

    ``readouts``: read-out synapse name -> token axes (of the synapse's output) summed on chip.
    Deterministic: the samples are processed in order, in chunks of ``chunk``.
    """
    cal = Calibration(samples=int(len(calib)))
    specs = graph.specs
    ops = {op.name: op for op in graph.ops}
    record = sorted(set(synapses) | set(values))
    for s in range(0, len(calib), chunk):
        batch = calib[s:s + chunk]
        run = interp.run(graph, batch, dtype=np.float64, record=record)
        for name in synapses:
            op = ops[name]
            src = ops[op.inputs[0]]
            if isinstance(src, O.Input):
                y = _raw_synapse(op, src, batch, graph.timesteps)
            else:
                y = run.values[name]
                if op.bias is not None:
                    ax = _out_channel_axis(op, len(specs[name].shape)) + 2
                    shape = [1] * y.ndim
                    shape[ax] = -1
                    y = y - op.bias.astype(np.float64).reshape(shape)
            ax = _out_channel_axis(op, len(specs[name].shape)) + 2
            other = tuple(i for i in range(y.ndim) if i != ax)
            _max_into(cal.sums, name, np.abs(y).max(axis=other))
            if name in readouts:
                tok = tuple(a % (y.ndim - 2) + 2 for a in readouts[name])
                acc = np.cumsum(y.sum(axis=tok), axis=0)  # [T, B, C...]
                ax2 = ax - sum(1 for t in tok if t < ax)
                other2 = tuple(i for i in range(acc.ndim) if i != ax2)
                _max_into(cal.accumulated, name, np.abs(acc).max(axis=other2))
        for name in values:
            v = float(np.max(run.values[name])) if run.values[name].size else 0.0
            cal.values[name] = max(cal.values.get(name, 0.0), v)
    return cal


def _raw_synapse(op: O.Op, src: O.Input, batch: np.ndarray, T: int) -> np.ndarray:
    """The synapse's weighted sum of the raw input (what the chip computes from graded pixels),
    ``[T, B, *out]`` (a static image is computed once and repeated)."""
    raw = np.asarray(batch, np.float64)
    seq = src.encoding == Encoding.SEQUENCE
    x = raw.reshape((-1,) + raw.shape[2:]) if seq else raw
    if src.pad:
        p = src.pad
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
    if isinstance(op, O.Conv2d):
        y = interp.conv2d(x, op.weight.astype(np.float64), None, op.stride, op.padding,
                          op.dilation, op.groups)
    else:
        y = interp.linear(x, op.weight.astype(np.float64), None, op.axis)
    if seq:
        return y.reshape(raw.shape[:2] + y.shape[1:]).swapaxes(0, 1)
    return np.broadcast_to(y, (T,) + y.shape)
