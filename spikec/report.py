"""``report.json``: what ``spikec compile`` found, in a schema other tools rely on.

Schema (``SCHEMA_VERSION`` 1; keys marked * are the contract of issue 4 and keep their meaning)::

    spikec_version*   str     the compiler's version
    schema_version    int     this schema's version
    target*           str     target name ("loihi2", "loihi")
    profile           str     the hardware profile's name (its file, when --profile was given)
    model*            str     the model file's name (no directory: reports do not depend on paths)
    model_sha256      str     hash of the model file's bytes
    arch              str     architecture recorded by the frontend, or null
    timesteps*        int     T
    residual          str     lowering of integer-valued (count) inputs: "graded" or "fanin"
    data              {spec, samples} or null         the evaluation set
    calib             {spec, samples} or null         the calibration set
    accuracy*         {float, folded, quantized, samples}
                      top-1 fractions in [0, 1] of the traced float model, the folded float graph
                      and the bit-exact simulation on the same samples (null without --data)
    first_divergent_layer  str or null   first spiking layer (graph order) whose spikes differ
                      from the float model's on some sample and step
    event_counts      "per_sample"   counts below are means per inference (one sample, all T steps)
    layers*           list, one entry per op of the quantized graph except layout ops:
        name*, op*        the op (its name is the float model's layer name)
        neurons*          compartments (cuba_lif, readout), 0 for other ops
        spikes*           output spikes (cuba_lif)
        synaptic_events*  input events x fan-out (conv/dense synapses)
        input_events, graded_events   messages received; those with a payload
        neuron_updates, ssa_ops       compartment updates; spike_matmul MACs on nonzero operands
        values_out        nonzero values an add or spike_matmul emits (graded messages)
        firing_rate       spikes / (neurons x T), cuba_lif only
        spike_agreement*  fraction of (sample, step, neuron) entries whose spike equals the float
                          model's (cuba_lif with a float counterpart; else null)
        spike_jaccard     |both spike| / |either spikes| over the same entries (null if neither)
    totals*           {spikes*, synaptic_events*, neuron_updates*, input_events, graded_events,
                       ssa_ops, values_out}: sums over layers, per sample
    notes             the compiler's notes (quantization choices, overflow checks, lowering costs)

Counts are null without --data. The file is written with sorted keys and no timestamps, so the
same inputs give the same bytes.
"""
from __future__ import annotations

import json

from spikec import __version__
from spikec.sim.events import COUNTERS, LayerStats

SCHEMA_VERSION = 1

#: Ops that move data without computing: not listed as layers.
LAYOUT_OPS = ("reshape", "transpose", "output")


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def layer_entries(ops, stats: dict[str, LayerStats] | None, agreement: dict | None,
                  timesteps: int) -> list[dict]:
    """One report entry per non-layout op of a fixed graph (``ops``: (name, opcode, neurons))."""
    out = []
    for name, opcode, neurons in ops:
        if opcode in LAYOUT_OPS:
            continue
        e = {"name": name, "op": opcode, "neurons": int(neurons)}
        s = stats.get(name) if stats else None
        for c in COUNTERS:
            e[c] = _round(s.per_sample(c), 4) if s is not None else None
        rate = s.firing_rate() if s is not None else None
        e["firing_rate"] = _round(rate)
        agr = (agreement or {}).get(name)
        e["spike_agreement"] = _round(agr["agreement"]) if agr else None
        e["spike_jaccard"] = _round(agr["jaccard"]) if agr and agr["jaccard"] is not None else None
        out.append(e)
    return out


def totals(layers: list[dict]) -> dict:
    """Per-sample sums over layers (null when no counts were taken)."""
    if not layers or layers[0]["spikes"] is None:
        return {c: None for c in COUNTERS}
    return {c: _round(sum(e[c] for e in layers if e[c] is not None), 4) for c in COUNTERS}


def first_divergent(layers: list[dict]) -> str | None:
    for e in layers:
        if e["spike_agreement"] is not None and e["spike_agreement"] < 1.0:
            return e["name"]
    return None


def accuracy_block(float_acc, folded_acc, quantized_acc, samples: int) -> dict:
    return {"float": _round(float_acc), "folded": _round(folded_acc),
            "quantized": _round(quantized_acc), "samples": int(samples)}


def dumps(report: dict) -> str:
    """The canonical text of a report: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n"


def base(target: str, profile: str, model: str, model_sha256: str, timesteps: int) -> dict:
    return {"spikec_version": __version__, "schema_version": SCHEMA_VERSION, "target": target,
            "profile": profile, "model": model, "model_sha256": model_sha256,
            "timesteps": int(timesteps), "event_counts": "per_sample"}


REQUIRED_KEYS = ("spikec_version", "target", "model", "timesteps", "accuracy", "layers", "totals")
