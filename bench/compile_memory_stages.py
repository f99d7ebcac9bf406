"""Resident memory of ``spikec compile`` at each of its stages, in one process.

``bench_compile.py`` gives the peak from outside; this says where it is reached. A thread samples
the process's RSS every 20 ms; the stages (functions of the compile driver, the pipeline, the
evaluation, the serialiser and the Lava bundle) are wrapped so that each prints, when it returns,
the RSS it started and ended with and the highest RSS sampled while it ran (GiB, on stderr)::

    python bench/compile_memory_stages.py -- CKPT --arch spikformer_v2_16_768 --target loihi2 -o OUT

Everything after ``--`` is ``spikec compile``'s arguments. ``--stage module:function`` (or
``module.Class:method``) adds a stage; nested stages are indented. Sampling can miss a spike
shorter than 20 ms: the figure of record is ``bench_compile.py``'s ``ru_maxrss``.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import threading
import time

STAGES = [
    "spikec.frontends:load_model",
    "spikec.pipeline:compile_graph",
    "spikec.sim.Simulator:__init__",
    "spikec.evaluate.Evaluation:batch",
    "spikec.interp:run",
    "spikec.sim.Simulator:run",
    "spikec.ir.serialize:spooled",
    "spikec.backends.lava.bundle:bundle_files",
    "spikec.backends.lava.bundle:build_plan",
    "spikec.backends.lava.lower.Lowering:run",
    "spikec.backends.lava.npzspool.NpzSpool:npz",
    "spikec.outputs.OutputDir:write",
]
GIB = float(1 << 30)
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Sampler:
    """The highest RSS seen since ``mark`` was last called (and overall), sampled in a thread."""

    def __init__(self, period: float = 0.02):
        self.period, self.peak, self.window = period, 0, 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            r = rss()
            self.peak, self.window = max(self.peak, r), max(self.window, r)
            time.sleep(self.period)


def _owner(path: str):
    """The module, or the class inside a module, that ``path`` names."""
    try:
        return importlib.import_module(path)
    except ImportError:
        module, cls = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)


def wrap(spec: str, sampler: Sampler, t0: float, depth: list) -> None:
    """Replace ``module[.Class]:name`` by a version that prints its memory on return."""
    path, name = spec.rsplit(":", 1)
    owner = _owner(path)
    f = getattr(owner, name)

    @functools.wraps(f)
    def staged(*args, **kwargs):
        start, outer = rss(), sampler.window
        sampler.window = start
        depth[0] += 1
        try:
            return f(*args, **kwargs)
        finally:
            depth[0] -= 1
            print(f"{time.perf_counter() - t0:7.1f} s {'  ' * depth[0]}{path.rsplit('.', 1)[-1]}."
                  f"{name}: start {start / GIB:.2f}, end {rss() / GIB:.2f}, "
                  f"peak {sampler.window / GIB:.2f} GiB", file=sys.stderr, flush=True)
            sampler.window = max(outer, sampler.window)

    setattr(owner, name, staged)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", action="append", default=[], help="module[.Class]:function")
    ap.add_argument("compile_args", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    compile_args = args.compile_args[1:] if args.compile_args[:1] == ["--"] else args.compile_args
    t0 = time.perf_counter()
    sampler, depth = Sampler(), [0]
    for spec in STAGES + args.stage:
        wrap(spec, sampler, t0, depth)
    from spikec.cli import main as spikec_main

    try:
        spikec_main(["compile", *compile_args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    else:
        code = 0
    print(f"peak {sampler.peak / GIB:.2f} GiB, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
