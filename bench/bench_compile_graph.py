"""Time trace + float passes + quantize (``compile_graph``, no Lava bundle) of a registry model.

Prints one JSON line: arch, seconds for trace / float passes / quantize, peak resident MB.
Usage: ``python bench/bench_compile_graph.py [ARCH]`` (default spikformer_v2_16_768, random weights).
"""
from __future__ import annotations

import json
import resource
import sys
import time

import torch

from spikec.frontends.torch.loader import input_op
from spikec.frontends.torch.tracer import trace
from spikec import models
from spikec.pipeline import run_float_passes
from spikec.quantize import quantize, resolve_profile


def main(arch: str = "spikformer_v2_16_768") -> None:
    torch.manual_seed(0)
    model = models.create(arch).eval()
    cfg = model.spikec_config
    op = input_op((cfg["in_channels"], cfg["img_size"], cfg["img_size"]), {})
    t0 = time.perf_counter()
    graph = trace(model, op, timesteps=cfg["T"])
    t1 = time.perf_counter()
    folded = run_float_passes(graph)
    t2 = time.perf_counter()
    quantize(folded, resolve_profile("loihi2"))
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"arch": arch, "ops": len(graph.ops), "trace_s": round(t1 - t0, 2),
                      "float_passes_s": round(t2 - t1, 2), "quantize_s": round(t3 - t2, 2),
                      "total_s": round(t3 - t0, 2), "peak_rss_mb": round(rss)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
