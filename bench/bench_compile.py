"""Wall time, CPU time and peak memory of ``spikec compile --target loihi2`` (Lava bundle
included) on the paper-scale Spikformer V2 models, next to the size of their fp32 weights.

Each model of the registry (random weights, ``torch.manual_seed(0)``) is saved once as a spikec
checkpoint under ``--cache``; each compile then runs as its own subprocess
(``spikec compile CKPT --arch NAME --target loihi2 -o OUT``, with ``--data`` a few random 224 px
images saved as an .npz), and its resources are those of that child alone (``os.wait4``: user +
system CPU seconds, ``ru_maxrss``, the peak resident memory from outside). Wall time is noisy
while other jobs use the CPU: ``load_average`` is recorded before and after each run, and
``cpu_s`` is the figure to compare between runs.

Prints one JSON object per line (model x with/without ``--data``): ``name``, ``model``,
``data_samples``, ``wall_s``, ``cpu_s``, ``user_s``, ``sys_s``, ``peak_rss_bytes``,
``fp32_weight_bytes``, ``bundle_bytes`` (``OUT/lava`` on disk), ``out_bytes``, ``exit_code``,
``targets`` (the issue's limits for wall time and peak memory), ``load_average``.

Usage: ``python bench/bench_compile.py [--only MODEL] [--samples N] [--no-data|--data-only]
[--cache DIR]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {  # name -> (wall seconds, peak bytes) the compile must stay within (issue 13)
    "spikformer_v2_8_512": (60, 4 << 30),
    "spikformer_v2_16_768": (150, 8 << 30),
}
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "spikec-bench-compile"

_SAVE = """
import json, sys, torch
from spikec.models import create
from spikec.models.checkpoint import save_checkpoint
torch.manual_seed(0)
model = create(sys.argv[1])
save_checkpoint(model, sys.argv[2])
n = sum(int(p.numel()) for p in model.state_dict().values() if p.is_floating_point())
print(json.dumps({"fp32_weight_bytes": 4 * n}))
"""


def checkpoint(name: str, cache: Path) -> tuple[Path, int]:
    """The model's checkpoint (saved once, in a subprocess) and the bytes of its fp32 tensors."""
    cache.mkdir(parents=True, exist_ok=True)
    path, meta = cache / f"{name}.pt", cache / f"{name}.json"
    if not (path.exists() and meta.exists()):
        out = subprocess.run([sys.executable, "-c", _SAVE, name, str(path)], check=True,
                             capture_output=True, text=True).stdout
        meta.write_text(out.strip().splitlines()[-1])
    return path, int(json.loads(meta.read_text())["fp32_weight_bytes"])


def dataset(cache: Path, n: int) -> Path:
    """``n`` random 3x224x224 uint8 images with labels, as an .npz ``--data`` reads."""
    path = cache / f"random224_{n}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        np.savez(path, images=rng.integers(0, 256, (n, 3, 224, 224), dtype=np.uint8),
                 labels=rng.integers(0, 1000, n), classes=np.int64(1000))
    return path


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(name: str, ckpt: Path, data: Path | None, work: Path) -> dict:
    """One ``spikec compile`` in a child process: wall, CPU, peak RSS, sizes."""
    out = work / f"{name}_{'data' if data else 'nodata'}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", "from spikec.cli import main; main()", "compile", str(ckpt),
           "--arch", name, "--target", "loihi2", "-o", str(out)]
    if data is not None:
        cmd += ["--data", str(data)]
    load_before = _load()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    res = {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
           "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2),
           "peak_rss_bytes": usage.ru_maxrss * 1024, "exit_code": proc.returncode,
           "bundle_bytes": _du(out / "lava"), "out_bytes": _du(out),
           "load_average": {"before": load_before, "after": _load()}}
    if proc.returncode != 0:
        res["error"] = err.decode(errors="replace").strip().splitlines()[-1:]
    shutil.rmtree(out, ignore_errors=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(MODELS), action="append")
    ap.add_argument("--samples", type=int, default=2, help="images for the --data runs")
    ap.add_argument("--no-data", action="store_true", help="only the runs without --data")
    ap.add_argument("--data-only", action="store_true", help="only the runs with --data")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="where checkpoints and the random dataset are kept")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-compile-"))
    failed = False
    try:
        for name in args.only or MODELS:
            ckpt, fp32 = checkpoint(name, args.cache)
            runs = [] if args.data_only else [None]
            if not args.no_data:
                runs.append(dataset(args.cache, args.samples))
            for data in runs:
                res = measure(name, ckpt, data, work)
                wall, peak = MODELS[name]
                print(json.dumps({"name": f"compile_{name}{'_data' if data else ''}",
                                  "model": name, "data_samples": args.samples if data else 0,
                                  "fp32_weight_bytes": fp32,
                                  "targets": {"wall_s": wall, "peak_rss_bytes": peak}, **res},
                                 sort_keys=True), flush=True)
                failed |= res["exit_code"] != 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
