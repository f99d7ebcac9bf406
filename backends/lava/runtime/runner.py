"""The bundle runner: run a spikec Lava bundle's data files (``network.json``, ``network.npz``,
``manifest.json``) on Lava and write a trace (the file ``spikec validate --against trace`` reads).

Imports numpy, scipy and lava only (relative imports), so it runs both as
``spikec.backends.lava.runtime.runner`` from the installed spikec (what ``spikec validate
--against lava`` runs: never code from the bundle) and as ``spikec_lava.runner`` from a bundle's
copy, through the bundle's ``run_lava.py`` on a machine with only Lava.

Usage: ``main(["--bundle", DIR, "--inputs", "samples.npz", "--trace", "trace.npz", ("--hw")])``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

TRACE_FORMAT = "spikec-trace"
TRACE_FORMAT_VERSION = 1


def _inputs(plan, given):
    names = [i["value"] for i in plan["inputs"]]
    if len(names) == 1 and names[0] not in given and "images" in given:
        given = {names[0]: given["images"]}
    missing = [n for n in names if n not in given]
    if missing:
        raise SystemExit(f"spikec Lava runner: the inputs file lacks {missing} (has {sorted(given)})")
    return {n: given[n] for n in names}


def run_bundle(bundle_dir, inputs, *, hardware=False, batch=0):
    """Run the bundle on ``inputs`` (dict name -> array) in batches of ``batch`` samples (0: all
    at once). Returns (values, info)."""
    import numpy as np
    from . import network
    from .npzio import load_npz

    with open(os.path.join(bundle_dir, "network.json")) as f:
        plan = json.load(f)
    arrays = load_npz(os.path.join(bundle_dir, "network.npz"))
    inputs = _inputs(plan, inputs)
    n = int(next(iter(inputs.values())).shape[0])
    batch = n if batch <= 0 else batch
    values, info = {}, {"seconds": {}, "steps": 0, "host_traffic": {}}
    steady = []
    for start in range(0, n, batch):
        chunk = {k: np.asarray(v)[start:start + batch] for k, v in inputs.items()}
        res = network.run(plan, arrays, chunk, hardware=hardware)
        for k, v in res["values"].items():
            values.setdefault(k, []).append(v)
        for k, v in res["seconds"].items():
            if k != "steady_per_step":
                info["seconds"][k] = info["seconds"].get(k, 0.0) + v
        steady.append((res["seconds"]["steady_per_step"], res["steps"] - 1))
        info["steps"] += res["steps"]
        info["processes"] = res["processes"]
        for k, v in res["host_traffic"].items():
            acc = info["host_traffic"].setdefault(k, {"messages_in": 0, "messages_out": 0})
            for kk in acc:
                acc[kk] += v[kk]
    values = {k: np.concatenate(v) for k, v in values.items()}
    later = sum(n for _, n in steady)
    info["seconds"]["steady_per_step"] = sum(s * n for s, n in steady) / later if later else None
    info["seconds"]["steady_per_sample"] = None if later == 0 else \
        info["seconds"]["steady_per_step"] * plan["timesteps"]
    return plan, inputs, values, info


def write_trace(path, bundle_dir, plan, inputs, values, info, *, hardware):
    """The trace: ``meta`` (JSON), ``spikes/NAME`` [n, T, *shape], ``readout/NAME`` [n, *shape],
    ``inputs/NAME``."""
    import numpy as np
    from .npzio import save_npz

    try:
        import importlib.metadata as md
        lava_version = md.version("lava-nc")
    except Exception:  # pragma: no cover - metadata missing
        lava_version = "unknown"
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    arrays, layers = {}, []
    for probe in plan["probes"]:
        v = values[probe["value"]]
        if probe["kind"] == "readout":
            arrays["readout/" + probe["value"]] = v.astype(np.int32)
        elif probe["kind"] == "spike":
            arrays["spikes/" + probe["value"]] = v.astype(np.uint8)
        else:
            arrays["spikes/" + probe["value"]] = v.astype(np.int32)
        layers.append({"name": probe["value"], "kind": probe["kind"], "shape": probe["shape"]})
    for k, v in inputs.items():
        arrays["inputs/" + k] = np.asarray(v)
    n = int(next(iter(inputs.values())).shape[0])
    meta = {"format": TRACE_FORMAT, "format_version": TRACE_FORMAT_VERSION,
            "spikec_version": manifest["spikec_version"], "bundle_hash": manifest["bundle_hash"],
            "run_config": "Loihi2HwCfg" if hardware else "Loihi2SimCfg(select_tag='fixed_pt')",
            "lava_version": lava_version, "python": sys.version.split()[0], "samples": n,
            "timesteps": plan["timesteps"], "pipeline_depth": plan["depth"], "layers": layers,
            "inputs": [{"name": k, "shape": list(np.asarray(v).shape[1:])}
                       for k, v in inputs.items()],
            **info}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    save_npz(path, arrays)
    return meta


def _connect_chip():
    """``--hw``: needs Intel's lava-loihi extension; on a SLURM-managed Loihi 2 system (INRC) the
    job is placed through SLURM. Not available here: refuse instead of silently running the CPU
    models (Loihi2HwCfg would fall back to them)."""
    from lava.utils import loihi, slurm

    if not loihi.is_installed():
        raise SystemExit("spikec Lava runner: --hw needs Intel's lava-loihi extension, which is not "
                         "installed; run without --hw for Lava's CPU models")
    if slurm.is_available():
        loihi.use_slurm_host()


def main(argv=None, default_bundle=None):
    """Command line of the runner (see the module docstring); ``default_bundle``: the bundle
    directory when ``--bundle`` is not given (``run_lava.py`` passes its own)."""
    ap = argparse.ArgumentParser(description="Run a spikec Lava bundle and write a trace.")
    ap.add_argument("--bundle", default=default_bundle, required=default_bundle is None,
                    help="bundle directory (OUT/lava)")
    ap.add_argument("--inputs", required=True, help=".npz with one int array per network input")
    ap.add_argument("--trace", required=True, help="trace file to write (.npz)")
    ap.add_argument("--hw", action="store_true", help="run on a Loihi 2 chip (Loihi2HwCfg)")
    ap.add_argument("--batch", type=int, default=0, help="samples per Lava run (0: all)")
    args = ap.parse_args(argv)
    # Lava imports every module beside a process's file when it looks for process models; the
    # runtime's other modules use relative imports and cannot be imported that way (harmless).
    warnings.filterwarnings("ignore", message="Cannot import module")
    from .npzio import load_npz

    if args.hw:
        _connect_chip()
    t0 = time.perf_counter()
    plan, inputs, values, info = run_bundle(args.bundle, load_npz(args.inputs),
                                            hardware=args.hw, batch=args.batch)
    info["seconds"]["wall"] = time.perf_counter() - t0
    meta = write_trace(args.trace, args.bundle, plan, inputs, values, info, hardware=args.hw)
    print(json.dumps({"trace": args.trace, "samples": meta["samples"],
                      "seconds": meta["seconds"], "steps": meta["steps"],
                      "processes": meta["processes"]}))


if __name__ == "__main__":
    main()
