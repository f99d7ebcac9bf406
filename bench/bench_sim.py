"""Throughput of the bit-exact simulator next to the float PyTorch forward of the same model.

For each model: the quantized graph (``spikec.pipeline.compile_graph`` on the traced float graph,
calibrated on the benchmark's own inputs) runs in ``spikec.sim.Simulator`` on raw uint8 images; the
float forward is the PyTorch model on the same images after the model's preprocessing, under
``torch.no_grad()``. Both use the threads torch has (the simulator as a ``SimulatorPool`` of as many
threads, each simulating its part of the batch). Runs
alternate (sim, float, sim, float, ...); ``ratio`` is the median over the pairs of float time / sim
time, so that load from other processes hits both sides of a pair alike (``load_average`` is
recorded before and after; ``cpu_ratio`` is the same ratio of process CPU times).

Models: Spikformer V2-8-512 with random weights (224 px, T = 4, batch 8; BatchNorm statistics set
from one batch so that the layers are active, see ``activate``; ``--only v2_8_512_silent`` runs the
registry initialisation as is, which is silent after the first layer) and, when it exists, the
shipped checkpoint ``examples/checkpoints/spikformer_v2_fmnist.pt`` (Fashion-MNIST test images).

Prints one JSON object per line: ``name``, ``sim_throughput`` and ``float_throughput`` (samples per
second), ``ratio`` (sim / float), and the details of the run.

``--threads N`` limits both sides to N threads (torch's intra-op threads, numpy's BLAS): a ratio
at one thread each is less at the mercy of other processes than one at two threads, where a
descheduled worker stalls the other's barrier. ``--profile`` adds the simulator's seconds per op
kind (``spikec.sim.profile``, from the last timed run) to the details.

Usage: ``python bench/bench_sim.py [--repeats 3] [--only NAME] [--batch N] [--cache DIR]
[--threads N] [--profile]``
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "examples" / "checkpoints" / "spikformer_v2_fmnist.pt"


#: Pause before each timed run: numpy's OpenBLAS and torch's OpenMP workers busy-wait for a
#: while after their last call, which would slow whichever side runs next on 2 cores.
SETTLE_S = 0.5


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _float_forward(model, images: np.ndarray, inp):
    """The PyTorch forward on ``images`` preprocessed as the graph's input op says."""
    import torch

    from spikec.data import Preprocess

    pre = Preprocess(pixel_scale=inp.pixel_scale, mean=inp.mean, std=inp.std, pad=inp.pad)
    x = torch.from_numpy(pre.apply(images))

    def run():
        with torch.no_grad():
            return model(x)
    return run


CACHE: Path | None = None
THREADS: int | None = None
PROFILE = False


def compiled(name: str, graph, calib: np.ndarray):
    """The quantized graph (from ``--cache DIR/<name>.spkc`` when there, else compiled and saved
    there) and the seconds the compilation took (None when cached)."""
    from spikec.ir import load, save
    from spikec.pipeline import CompileOptions, compile_graph

    path = CACHE / f"{name}.spkc" if CACHE else None
    if path is not None and path.exists():
        return load(path), None
    t0 = time.perf_counter()
    fixed = compile_graph(graph, profile="loihi2", calib=calib, options=CompileOptions()).fixed
    seconds = time.perf_counter() - t0
    if path is not None:
        save(fixed, path)
    return fixed, seconds


def bench(name: str, model, graph, images: np.ndarray, calib: np.ndarray, repeats: int) -> dict:
    """Compile ``graph``, then time the simulator and ``model`` on ``images``, in pairs."""
    import torch

    from spikec.sim.threads import SimulatorPool

    fixed, compile_s = compiled(name, graph, calib)
    # the float side's threads (one with --profile: per-op seconds of one thread)
    threads = 1 if PROFILE else min(torch.get_num_threads(), len(images))
    pool = SimulatorPool(fixed, threads)
    parts = np.array_split(images, threads)                 # one part of the batch per thread
    result = {}

    def run_sim():
        r = None
        for part in pool.map(parts):
            if r is None:
                r = part
            else:
                r.merge(part)
        result["r"] = r

    run_float = _float_forward(model, images, graph.inputs[0])
    load_before = os.getloadavg()[0]
    sim_s, float_s, sim_cpu, float_cpu = [], [], [], []
    for _ in range(repeats):
        for fn, wall, cpu in ((run_sim, sim_s, sim_cpu), (run_float, float_s, float_cpu)):
            time.sleep(SETTLE_S)  # the other side's idle BLAS / OpenMP workers stop spinning
            c = time.process_time()
            wall.append(_timed(fn))
            cpu.append(time.process_time() - c)
    r = result["r"]
    n = len(images)
    extra = {}
    if PROFILE:
        from spikec.sim.profile import TimeProfile
        prof = TimeProfile()
        prof.add(fixed, r)
        d = prof.to_dict(top=5)
        extra["time_profile"] = {"kinds": {k["kind"]: k["seconds"] for k in d["kinds"]},
                                 "top_layers": {l["name"]: l["seconds"] for l in d["layers"]}}
    totals = r.totals()
    lif = [s for s in r.stats.values() if s.op == "cuba_lif"]
    rate = (sum(s.total("spikes") for s in lif) /
            max(1, sum(s.neurons for s in lif) * fixed.timesteps * n))
    med = statistics.median
    return {
        "name": name, "batch": n, "timesteps": fixed.timesteps,
        "input_shape": list(images.shape[1:]),
        "sim_throughput": round(n / med(sim_s), 4), "float_throughput": round(n / med(float_s), 4),
        # each pair runs back to back, under about the same load from other processes
        "ratio": round(med([f / s for f, s in zip(float_s, sim_s)]), 3),
        "cpu_ratio": round(med([f / s for f, s in zip(float_cpu, sim_cpu)]), 3),
        "sim_seconds": [round(s, 3) for s in sim_s], "float_seconds": [round(s, 3) for s in float_s],
        "sim_cpu_seconds": [round(s, 3) for s in sim_cpu],
        "float_cpu_seconds": [round(s, 3) for s in float_cpu],
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpu_count": os.cpu_count(), "sim_threads": threads,
        "compile_seconds": None if compile_s is None else round(compile_s, 2),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "spikes_per_sample": totals["spikes"] / n,
        "synaptic_events_per_sample": totals["synaptic_events"] / n,
        "mean_firing_rate": round(rate, 4),
        "threads": THREADS, "int8_gemm": pool.simulators[0].int8,
        **extra,
    }


def activate(model, images: np.ndarray) -> None:
    """Give a random-weight model realistic activity: every BatchNorm's running statistics are set
    to the batch statistics of one forward pass on ``images`` (pixels / 255), so each layer's
    pre-activation is about N(0, 1) per channel and its LIF fires ~10-20% of the time. With the
    registry's initialisation alone the network is silent after its first layer (the float model
    too), which would benchmark nothing but empty layers."""
    import torch

    from spikec.models.activity import batchnorm_from_batch

    batchnorm_from_batch(model, torch.from_numpy(images.astype(np.float32) / 255.0))


def spikformer_v2_8_512(batch: int, repeats: int, silent: bool = False) -> dict:
    import torch

    from spikec import models
    from spikec.frontends.torch import input_op, trace

    torch.manual_seed(0)
    model = models.create("spikformer_v2_8_512").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 3, 224, 224), dtype=np.uint8)
    calib = rng.integers(0, 256, (4, 3, 224, 224), dtype=np.uint8)
    if not silent:
        activate(model, calib[:2])
    graph = trace(model, input_op((3, 224, 224), None), timesteps=4,
                  meta={"arch": "spikformer_v2_8_512"})
    name = "sim_spikformer_v2_8_512_random" + ("_silent" if silent else "")
    return bench(name, model, graph, images, calib, repeats)


def shipped_checkpoint(batch: int, repeats: int) -> dict | None:
    if not CHECKPOINT.exists():
        return None
    from spikec import data
    from spikec.frontends import LoadOptions, load_model
    from spikec.models.checkpoint import load_model as load_torch

    graph = load_model(CHECKPOINT, LoadOptions())
    model, _ = load_torch(CHECKPOINT)
    model.eval()
    ds = data.load("fashion-mnist:test", batch + 64)
    return bench(f"sim_{CHECKPOINT.stem}", model, graph, ds.images[:batch], ds.images[batch:],
                 repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["v2_8_512", "v2_8_512_silent", "checkpoint"])
    ap.add_argument("--cache", type=Path, help="directory to keep compiled graphs in between runs")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size (default: 8 for V2-8-512, 64 for the checkpoint)")
    ap.add_argument("--threads", type=int, help="threads for both sides (default: all)")
    ap.add_argument("--profile", action="store_true", help="add the simulator's time per op kind")
    args = ap.parse_args(argv)
    global CACHE, THREADS, PROFILE
    CACHE, PROFILE = args.cache, args.profile
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits
        THREADS = args.threads
        torch.set_num_threads(THREADS)
        threadpool_limits(THREADS)
    if CACHE is not None:
        CACHE.mkdir(parents=True, exist_ok=True)
    runs = [("v2_8_512", lambda: spikformer_v2_8_512(args.batch or 8, args.repeats)),
            ("v2_8_512_silent", lambda: spikformer_v2_8_512(args.batch or 8, args.repeats, True)),
            ("checkpoint", lambda: shipped_checkpoint(args.batch or 64, args.repeats))]
    selected = [args.only] if args.only else ["v2_8_512", "checkpoint"]
    for key, fn in runs:
        if key not in selected:
            continue
        res = fn()
        if res is None:
            print(json.dumps({"name": f"sim_{CHECKPOINT.stem}", "skipped": f"{CHECKPOINT} not found"}))
        else:
            print(json.dumps(res, sort_keys=True))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
