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
import math
import numbers
import os
from pathlib import Path

from spikec import __version__
from spikec.errors import InputFileError, InvalidValueError
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
    """The canonical text of a report: sorted keys, 2-space indent, trailing newline.

    Raises ``InvalidValueError`` naming the first NaN/Inf (JSON has none: a reader would choke)."""
    bad = nonfinite_path(report)
    if bad is not None:
        raise InvalidValueError(f"report field {bad} is not a finite number; refusing to write "
                                "NaN/Inf to JSON")
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False, default=_number) + "\n"


def _number(v):
    """numpy scalars (and anything else ``float`` takes) as JSON numbers."""
    if isinstance(v, numbers.Integral):
        return int(v)
    return float(v)


def nonfinite_path(value, where: str = "") -> str | None:
    """The path (``layers[3].spikes``) of the first NaN/Inf float in ``value``, or None."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return None if math.isfinite(float(value)) else (where or "<value>")
    if isinstance(value, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub, v in items:
        found = nonfinite_path(v, sub)
        if found is not None:
            return found
    return None


# key -> JSON types allowed (None: null allowed) for the fields readers use
_REPORT_TYPES = {"layers": (list,), "accuracy": (dict, type(None)), "totals": (dict, type(None)),
                 "data": (dict, type(None)), "calib": (dict, type(None)),
                 "estimate": (dict, type(None)), "lava": (dict, type(None)),
                 "notes": (dict, list, type(None)), "timesteps": (int, type(None)),
                 "event_counts": (str, type(None)), "target": (str, type(None)),
                 "model": (str, type(None))}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def read_report(path: str | os.PathLike) -> dict:
    """``report.json`` as a dict, with the JSON type of every field a reader uses checked.

    Raises ``InputFileError`` naming the file and the field: not UTF-8, not JSON (NaN included),
    not an object, a field of the wrong type, a layer entry that is not an object with a name or
    whose counts are not numbers."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise InputFileError(f"{p}: cannot read ({e.strerror})") from None
    try:
        rep = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise InputFileError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(rep, dict):
        raise InputFileError(f"{p}: expected a JSON object, got {type(rep).__name__}")
    for key, types in _REPORT_TYPES.items():
        if key in rep and not isinstance(rep[key], types) or isinstance(rep.get(key), bool):
            raise InputFileError(f"{p}: field {key!r} has the wrong type "
                                 f"({type(rep[key]).__name__})")
    for i, e in enumerate(rep.get("layers") or []):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise InputFileError(f"{p}: field layers[{i}]: expected an object with a name")
        for c in (*COUNTERS, "firing_rate", "spike_agreement", "neurons"):
            v = e.get(c)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise InputFileError(f"{p}: field layers[{i}].{c}: expected a number, got {v!r}")
    for block in ("accuracy", "totals"):
        for k, v in (rep.get(block) or {}).items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise InputFileError(f"{p}: field {block}.{k}: expected a number, got {v!r}")
    return rep


def base(target: str, profile: str, model: str, model_sha256: str, timesteps: int) -> dict:
    return {"spikec_version": __version__, "schema_version": SCHEMA_VERSION, "target": target,
            "profile": profile, "model": model, "model_sha256": model_sha256,
            "timesteps": int(timesteps), "event_counts": "per_sample"}


REQUIRED_KEYS = ("spikec_version", "target", "model", "timesteps", "accuracy", "layers", "totals")
