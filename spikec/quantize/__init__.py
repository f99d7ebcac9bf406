"""Quantization: a folded float graph becomes a new fixed-point graph for a target.

``quantize(folded, profile, calib=..., options=...) -> (fixed graph, notes)``. The arithmetic it
targets is the profile's (``spikec.target``); the scale of every layer is explained in
docs/compiler.md.
"""
from __future__ import annotations

import numpy as np

from spikec.errors import FormatError, ProfileError
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.types import Domain, Kind
from spikec.quantize.bounds import calibrate
from spikec.quantize.lower import _check_shapes, _Lowering, residual_cost
from spikec.quantize.options import CompileOptions, InputEncoding, ResidualLowering
from spikec.target.profile import HardwareProfile, load_profile

__all__ = ["quantize", "CompileOptions", "resolve_profile", "resolve_input_encoding"]


def resolve_profile(profile: HardwareProfile | str) -> HardwareProfile:
    return load_profile(profile) if isinstance(profile, str) else profile


def resolve_input_encoding(encoding: str, prof: HardwareProfile) -> str:
    """The input encoding ``auto`` stands for on ``prof`` (graded where it has graded spikes, else
    bitplane); refuses ``rate`` (one line). ``graded`` on a chip without graded spikes is refused
    by the quantizer, naming the layer, where the model reads real-valued input."""
    if encoding == InputEncoding.AUTO:
        return InputEncoding.GRADED if prof.formats.graded_spikes else InputEncoding.BITPLANE
    if encoding == InputEncoding.RATE:
        raise FormatError("input_encoding='rate' is refused: a rate code over T steps is not the "
                          "input the model was trained on (not exact); use bitplane or host")
    return encoding


def quantize(graph: Graph, profile: HardwareProfile | str = "loihi2", *,
             calib: np.ndarray | None = None,
             options: CompileOptions | None = None) -> tuple[Graph, dict]:
    """Quantize a folded float graph (``spikec.pipeline.FLOAT_PASSES`` applied) for ``profile``.

    Parameters
    ----------
    graph : Graph
        Float graph after the float passes.
    profile : HardwareProfile or profile name
        Its ``formats`` give every width; only Lava-arithmetic profiles can be quantized for.
    calib : uint8 array [S, *input shape], optional
        A few input samples; their ranges (times ``options.calib_margin``) replace worst-case
        bounds when scales are chosen. Deterministic.
    options : CompileOptions

    Returns
    -------
    (Graph, dict)
        The fixed-point graph (``domain='fixed'``) and JSON-able notes (schema in docs/compiler.md).
    """
    prof = resolve_profile(profile)
    fmt = prof.formats
    if not fmt.is_lava:
        raise ProfileError(f"profile {prof.name!r} describes its arithmetic only "
                           f"({fmt.arithmetic!r}); spikec quantizes for Loihi-arithmetic targets "
                           "(loihi, loihi2 and their systems)")
    if graph.domain != Domain.FLOAT:
        raise FormatError("quantize takes a float graph")
    opts = options or CompileOptions()
    residual = opts.residual
    if residual == ResidualLowering.AUTO:
        residual = "graded" if fmt.graded_spikes else "fanin"
    if residual == ResidualLowering.GRADED and not fmt.graded_spikes:
        counts = [op.name for op in graph.ops if isinstance(op, (O.Conv2d, O.Linear))
                  and graph.spec(op.inputs[0]).kind is Kind.COUNT]
        if counts:
            raise FormatError(f"residual='graded' needs graded spikes, which {prof.name!r} lacks "
                              f"(layers {', '.join(counts[:3])} read counts); use residual='fanin'")
    encoding = resolve_input_encoding(opts.input_encoding, prof)
    cal = None
    if calib is not None and len(calib):
        calib = _check_shapes(graph, calib)
        low0 = _Lowering(graph, fmt, opts, residual, None, encoding)
        cal = calibrate(graph, calib,
                        synapses=[op.name for op in graph.ops if isinstance(op, (O.Conv2d, O.Linear))],
                        readouts={n: tuple(r.mean.axes) if r.mean else ()
                                  for n, r in low0.plan.readouts.items()},
                        values=sorted({lay.count for lay in low0.plan.layers.values() if lay.count}))
    low = _Lowering(graph, fmt, opts, residual, cal, encoding)
    fixed = low.run()
    fixed.meta["target"] = prof.name  # the simulator reads its number formats from here
    if low.real_input is not None and encoding != InputEncoding.GRADED:
        fixed.meta["input_encoding"] = encoding  # graded (the default) leaves the bytes as before
    layers = low.notes_layers
    notes = {
        "target": prof.name,
        "timesteps": graph.timesteps,
        "options": dict(opts.to_dict(), residual=residual, input_encoding=encoding),
        "calibration": None if cal is None else {"samples": cal.samples,
                                                 "margin": opts.calib_margin},
        "real_valued_input": low.real_input,
        "residual": residual_cost(low, fixed),
        "layers": layers,
        "overflow_risks": {name: n["overflow_risks"] for name, n in layers.items()
                           if n.get("overflow_risks")},
        "possible_overflow": {name: n["possible_overflow"] for name, n in layers.items()
                              if n.get("possible_overflow")},
        "exact_layers": [name for name, n in layers.items() if n.get("exact")],
        "inexact_layers": [name for name, n in layers.items() if "exact" in n and not n["exact"]],
        "conv_weight_exp_nonzero": [n["synapse"] for n in layers.values()
                                    if n.get("op") == "conv_synapse" and any(n["weight_exp"])],
    }
    return fixed, notes
