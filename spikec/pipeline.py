"""The compiler pipeline: float passes, then quantization for a target.

``FLOAT_PASSES`` is the one list of passes the compiler runs, in order; each is a plain
``Graph -> Graph`` function and the IR verifier checks its result. ``compile_graph`` is the entry
point the CLI and the simulator call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from spikec.ir.graph import Graph, verify
from spikec.passes import (canonicalize_lif, compose_convs, eliminate_dead_ops, fold_avgpool,
                           fold_batchnorm, fold_input_normalization, fold_mean_of_currents,
                           fold_readout, fold_scale, pool_after_neuron, simplify_layout)
from spikec.quantize import CompileOptions, quantize, resolve_profile
from spikec.target.profile import HardwareProfile

__all__ = ["FLOAT_PASSES", "CompileOptions", "CompileResult", "run_float_passes", "compile_graph"]

FLOAT_PASSES: list[Callable[[Graph], Graph]] = [
    eliminate_dead_ops,         # unused branches (e.g. LayerNorms the model never calls)
    fold_batchnorm,             # BN into the conv/linear before it (through CIFAR's transposes)
    compose_convs,              # conv -> conv with no neuron between (SepConv, RepConv): one conv
    pool_after_neuron,          # T = 1: lif(maxpool(currents)) -> maxpool(lif(currents)), exact
    fold_avgpool,               # average pooling into the synapse after it
    fold_input_normalization,   # pixel scale / std (and mean where exact) into the first synapses
    fold_mean_of_currents,      # a LIF reading a token mean of currents: dense synapses (SDT head)
    fold_scale,                 # power-of-two constants (SSA's 0.125) into the next LIF's threshold
    canonicalize_lif,           # spikingjelly's decay_input LIF -> the CUBA form (1/tau in vth)
    fold_readout,               # head in front of the token/time means: an accumulating read-out
    simplify_layout,            # no-op reshapes/transposes left by the folds
    eliminate_dead_ops,
]


@dataclass
class CompileResult:
    """What ``compile_graph`` produces.

    Attributes
    ----------
    folded : Graph
        The float graph after ``FLOAT_PASSES`` (runs in ``spikec.interp``).
    fixed : Graph
        The quantized graph (``domain='fixed'``) for the target.
    notes : dict
        JSON-able facts about the quantization (schema in docs/compiler.md): per-layer weight
        exponents and scales, threshold groups, a_in / u / v bounds against their limits, overflow
        risks, the layer that consumes real values, the residual lowering and its cost.
    """

    folded: Graph
    fixed: Graph
    notes: dict = field(default_factory=dict)


def run_float_passes(graph: Graph, passes: list[Callable[[Graph], Graph]] | None = None) -> Graph:
    """Apply ``passes`` (default ``FLOAT_PASSES``) in order, verifying the IR after each."""
    for p in FLOAT_PASSES if passes is None else passes:
        graph = p(graph)
        verify(graph)
    return graph


def compile_graph(graph: Graph, profile: HardwareProfile | str = "loihi2", *,
                  calib: np.ndarray | None = None,
                  options: CompileOptions | None = None) -> CompileResult:
    """Compile a float graph (from a frontend) for ``profile``.

    Parameters
    ----------
    graph : Graph
        Float graph as traced.
    profile : HardwareProfile or str
        Target profile or its name (``"loihi2"``, ``"loihi"``, a system profile, a ``.toml`` path).
    calib : uint8 array [S, *input shape], optional
        Calibration samples (raw, like the data the model is run on); bounds the ranges the
        quantizer must cover. Without it the quantizer covers the worst case.
    options : CompileOptions, optional

    Raises
    ------
    FormatError
        A layer does not fit the target's formats (naming the layer), or, with ``strict``, can
        overflow. ``UnsupportedOpError`` for ops with no fixed-point form.
    """
    prof = resolve_profile(profile)
    folded = run_float_passes(graph)
    fixed, notes = quantize(folded, prof, calib=calib, options=options)
    notes["passes"] = [p.__name__ for p in FLOAT_PASSES]
    return CompileResult(folded=folded, fixed=fixed, notes=notes)
