"""Hardware-in-the-loop timing: a chip trace's measured per-step time (and energy) against the
cycle-level timing model's prediction for the same samples (``spikec validate --against trace``).

A trace (docs/lava-backend.md) may carry, besides its spikes:

``timing/step_s``
    float64 ``[samples, T + pipeline_depth]``: the time of every chip step of each sample's
    inference, in seconds, recorded with one sample in the pipeline.
``timing/energy_j``
    optional, the same shape: the energy of each step, in joules, where the chip reports it.

``trace_timing`` predicts the same steps with ``timing_run.run_timing`` on the trace's inputs
(the profile the graph was compiled for, the bundle's SSA lowering and pipeline depth) and
reports measured against predicted per step, per sample and as an error distribution.
"""
from __future__ import annotations

import numpy as np

from spikec.errors import InputFileError
from spikec.estimate.timing import NS, PERCENTILES, PJ

STEP_KEY, ENERGY_KEY = "timing/step_s", "timing/energy_j"


def _errors(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """Relative error (predicted - measured) / measured over every entry with a measurement."""
    ok = measured > 0
    rel = (predicted[ok] - measured[ok]) / measured[ok]
    if not rel.size:
        return {"compared": 0}
    a = np.abs(rel)
    out = {"compared": int(rel.size), "mean": float(rel.mean())}
    out.update({f"abs_p{q}": float(np.percentile(a, q)) for q in PERCENTILES})
    out["abs_max"] = float(a.max())
    return out


def _comparison(predicted: np.ndarray, measured: np.ndarray, unit: str) -> dict:
    per_sample_p, per_sample_m = predicted.sum(axis=1), measured.sum(axis=1)
    return {"per_step": {f"measured_mean_{unit}": measured.mean(axis=0).tolist(),
                         f"predicted_mean_{unit}": predicted.mean(axis=0).tolist(),
                         "rel_error_mean": [_errors(predicted[:, s], measured[:, s]).get("mean")
                                            for s in range(measured.shape[1])]},
            "step_rel_error": _errors(predicted, measured),
            "per_sample": {f"measured_mean_{unit}": float(per_sample_m.mean()),
                           f"predicted_mean_{unit}": float(per_sample_p.mean()),
                           "rel_error": _errors(per_sample_p, per_sample_m)}}


def trace_timing(graph, arrays: dict, inputs: dict, manifest: dict, plan: dict,
                 profile_name: str | None = None, cost: str = "profile") -> dict | None:
    """Measured against predicted timing of a trace, or None when it records no timing.

    Raises ``InputFileError`` when the timing arrays do not have one row per sample and one
    column per chip step."""
    if STEP_KEY not in arrays:
        return None
    from spikec.estimate.costs import cost_model
    from spikec.estimate.mapping import map_network
    from spikec.estimate.network import extract_network
    from spikec.estimate.timing_run import run_timing
    from spikec.target.profile import load_profile

    profile = load_profile(profile_name or graph.meta.get("target") or "loihi2")
    costs = cost_model(profile, cost)
    mapping = map_network(extract_network(graph, manifest.get("ssa") or "host"), profile)
    run = run_timing(graph, mapping, inputs, profile, costs, depth=plan.get("depth"))
    out = {"profile": profile.name, "cost_model": costs.name, "samples": run.step_ns.shape[0],
           "chip_steps": run.step_ns.shape[1]}
    for key, unit, predicted in ((STEP_KEY, "s", run.step_ns * NS),
                                 (ENERGY_KEY, "j", run.energy_pj * PJ)):
        if key not in arrays:
            continue
        measured = np.asarray(arrays[key], dtype=np.float64)
        if measured.shape != predicted.shape:
            raise InputFileError(f"trace array {key!r}: shape {measured.shape}, expected "
                                 f"{predicted.shape} (samples x (T + pipeline depth))")
        out["latency" if unit == "s" else "energy"] = _comparison(predicted, measured, unit)
    return out


def format_trace_timing(t: dict) -> str:
    """One line per quantity for ``spikec validate``'s terminal output."""
    lines = []
    for key, unit in (("latency", "s"), ("energy", "j")):
        if key not in t:
            continue
        e, s = t[key]["step_rel_error"], t[key]["per_sample"]
        lines.append(f"{key} per step, predicted vs measured ({t['profile']}, {t['chip_steps']} "
                     f"steps x {t['samples']} samples): mean error {100 * e['mean']:+.1f}%, "
                     f"|error| p50 {100 * e['abs_p50']:.1f}% p95 {100 * e['abs_p95']:.1f}% "
                     f"max {100 * e['abs_max']:.1f}%; per sample {s[f'predicted_mean_{unit}']:.4g}"
                     f" vs {s[f'measured_mean_{unit}']:.4g} {unit.upper()}")
    return "\n".join(lines)
