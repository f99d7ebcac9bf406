"""Time the torch frontend's clean-up and the float passes of a saved raw traced graph.

``python bench/bench_rewrite.py save ARCH OUT.spkc``: trace ``ARCH`` (random weights) without the
clean-up and save the raw graph. ``python bench/bench_rewrite.py time OUT.spkc [REPEATS]``: print
one JSON line with the best-of-REPEATS seconds of ``simplify`` and ``run_float_passes`` on it.
Run ``time`` under two checkouts (``PYTHONPATH=old-tree``) to compare rewrite drivers.
"""
from __future__ import annotations

import json
import sys
import time


def save(arch: str, out: str) -> None:
    import torch

    import spikec.frontends.torch.simplify as simplify_module
    from spikec import models
    from spikec.frontends.torch.loader import input_op
    from spikec.frontends.torch.tracer import trace
    from spikec.ir import save as save_graph

    torch.manual_seed(0)
    model = models.create(arch).eval()
    cfg = model.spikec_config
    simplify_module.simplify = lambda ops: list(ops)          # keep the raw op list
    g = trace(model, input_op((cfg["in_channels"], cfg["img_size"], cfg["img_size"]), {}),
              timesteps=cfg["T"])
    save_graph(g, out)


def timed(path: str, repeats: int = 3) -> None:
    from spikec.frontends.torch.simplify import simplify
    from spikec.ir import load
    from spikec.pipeline import run_float_passes

    raw = load(path)
    best_s, best_p = float("inf"), float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ops = simplify(list(raw.ops))
        t1 = time.perf_counter()
        g = raw.with_ops(ops)
        t2 = time.perf_counter()
        run_float_passes(g)
        t3 = time.perf_counter()
        best_s, best_p = min(best_s, t1 - t0), min(best_p, t3 - t2)
    print(json.dumps({"graph": path, "raw_ops": len(raw.ops), "ops": len(ops),
                      "simplify_s": round(best_s, 3), "float_passes_s": round(best_p, 3)}))


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2], sys.argv[3])
    else:
        timed(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
