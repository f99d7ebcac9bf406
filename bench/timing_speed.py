"""Cost of the cycle-level timing simulator next to the bit-exact simulation it replays.

The shipped V2 checkpoint (``examples/checkpoints/spikformer_v2_fmnist.pt``) is compiled for
``loihi2`` (or ``--out`` names an existing ``spikec compile`` output), then, alternately:
``spikec.sim.simulate`` on N Fashion-MNIST test images (the bit-exact simulation alone), and
``spikec.estimate.timing_run.run_timing`` on the same images (the same simulation, recording every
sending unit, plus the per-sample, per-step timing). ``ratio`` = timing / simulation wall time
(median over the repeats; the issue's target is at most 2). ``load_average`` is recorded: the
machine is shared, so compare ratios measured in one run.

Also prints the per-sample latency distribution and the per-step p99 of the run (``--cost``).

Usage: ``python bench/timing_speed.py [--samples 1000] [--repeats 1] [--out OUT] [--json]``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "examples" / "checkpoints" / "spikformer_v2_fmnist.pt"


def compiled(out: str | None):
    """(fixed graph, Lava pipeline depth) of ``out`` or of the shipped checkpoint."""
    from spikec.ir import load

    if out is None:
        out = tempfile.mkdtemp(prefix="spikec-timing-")
        from spikec.cli import main
        try:
            main(["compile", str(CHECKPOINT), "-o", out, "--target", "loihi2"])
        except SystemExit as e:
            if e.code:
                raise
    report = json.loads((Path(out) / "report.json").read_text())
    return load(Path(out) / "compiled.spkc"), (report.get("lava") or {}).get("pipeline_depth")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", help="an existing `spikec compile` output of the checkpoint")
    ap.add_argument("--profile", default="loihi2")
    ap.add_argument("--cost", default="profile")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from spikec import data as datasets
    from spikec.estimate.costs import cost_model
    from spikec.estimate.mapping import map_network
    from spikec.estimate.network import extract_network
    from spikec.estimate.timing_run import run_timing, timing_json
    from spikec.sim import simulate
    from spikec.target.profile import load_profile

    graph, depth = compiled(args.out)
    profile = load_profile(args.profile)
    costs = cost_model(profile, args.cost)
    mapping = map_network(extract_network(graph, "host"), profile)
    images = datasets.load("fashion-mnist:test", args.samples).images
    load_before = os.getloadavg()[0]
    sims, timings, run = [], [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        simulate(graph, images, batch_size=64)
        sims.append(time.perf_counter() - t)
        t = time.perf_counter()
        run = run_timing(graph, mapping, images, profile, costs, depth, batch_size=64)
        timings.append(time.perf_counter() - t)
    j = timing_json(run, mapping, costs)
    row = {"name": "timing_speed", "samples": args.samples, "profile": args.profile,
           "cost_model": costs.name, "simulation_s": statistics.median(sims),
           "timing_s": statistics.median(timings),
           "ratio": statistics.median(t / s for t, s in zip(timings, sims)),
           "load_average": [load_before, os.getloadavg()[0]],
           "latency_per_sample_s": j["latency_per_sample_s"],
           "energy_per_sample_j": j["energy_per_sample_j"],
           "latency_per_step_s": {k: j["latency_per_step_s"][k] for k in ("p50", "p99", "max")},
           "critical": [(c["step"], c["layer"], c["cause"]) for c in j["critical"]],
           "chip_steps": j["chip_steps"]}
    if args.json:
        print(json.dumps(row, sort_keys=True))
        return 0
    print(f"{args.samples} samples: simulation {row['simulation_s']:.1f} s, timing (simulation "
          f"included) {row['timing_s']:.1f} s, ratio {row['ratio']:.2f} (load "
          f"{load_before:.1f} -> {row['load_average'][1]:.1f})")
    lat = row["latency_per_sample_s"]
    print("latency per sample: " + ", ".join(f"{k} {lat[k] * 1e3:.3f} ms"
                                             for k in ("p50", "p95", "p99", "max")))
    p99 = np.array(row["latency_per_step_s"]["p99"]) * 1e6
    print("per-step p99 (us): " + " ".join(f"{v:.0f}" for v in p99))
    return 0


if __name__ == "__main__":
    sys.exit(main())
