"""Evaluation of compiled graphs: top-1 and spike agreement of the three stages on a data set
(``Evaluation``, used by ``spikec compile --data``) and ``simulate_output``, one stage of a compile
output run on a data set (``spikec simulate``).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spikec import report as rep
from spikec.errors import DataError, InputFileError
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.sim import Simulator
from spikec.sim import events as ev
from spikec.sim.profile import TimeProfile
from spikec.sim.threads import SimulatorPool, threads_for

STAGES = ("float", "folded", "quantized")
GRAPH_FILES = {"quantized": "compiled.spkc", "folded": "folded.spkc", "float": "float.spkc"}
#: Memory for the spikes of one batch recorded for the spike agreement (bytes).
RECORD_BYTES = 2 << 30

Progress = Callable[[int], None]


# ----------------------------------------------------------------------------- inputs
def load_data(spec, limit: int | None, input_op: O.Input, what: str = "--data"):
    """Load a data set and check its sample shape against the model's input.

    ``spec``: a spec for ``spikec.data.load`` (``mnist5k:test``, a ``.npz``), a
    ``spikec.data.Dataset``, or ``(images, labels)`` arrays (uint8 ``[N, C, H, W]``, ``[N]``).
    """
    from spikec import data as spk_data

    if limit is not None and limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    if isinstance(spec, str):
        ds = spk_data.load(spec, limit)
    else:
        ds = as_dataset(spec, what).subset(limit)
        spec = ds.name
    if len(ds) == 0:
        raise DataError(f"{what} {spec}: no samples")
    want = tuple(int(d) for d in input_op.shape)
    if ds.images.shape[1:] != want:
        raise DataError(f"{what} {spec}: images have shape {_shape(ds.images.shape[1:])} but the "
                        f"model expects {_shape(want)} (C, H, W)")
    return ds


def as_dataset(data, what: str):
    """A ``Dataset`` from a ``Dataset`` or an ``(images, labels)`` pair of arrays."""
    from spikec.data import Dataset

    if isinstance(data, Dataset):
        return data
    try:
        images, labels = data
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected a data set spec, a spikec.data.Dataset or (images, "
                        f"labels), got {type(data).__name__}") from None
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f"{what}: images must be uint8 [N, C, H, W] raw pixels, got "
                        f"{images.dtype} {_shape(images.shape)}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{what}: labels must be integers [N] with N = {len(images)}, got "
                        f"{labels.dtype} {_shape(labels.shape)}")
    classes = int(labels.max()) + 1 if len(labels) else 0
    return Dataset(images, labels.astype(np.int64), "in-memory", classes)


def _shape(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


# ----------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Accumulates top-1 and spike agreement over batches.

    ``pairs`` maps a ``cuba_lif`` of the fixed graph to the float model's ``lif`` of the same name
    and shape (the passes keep names).
    """

    float_graph: Graph
    folded: Graph
    fixed: Graph
    simulator: Simulator
    correct: dict = field(default_factory=lambda: {s: 0 for s in STAGES})
    samples: int = 0
    agree: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        fl = {op.name: op for op in self.float_graph.ops if isinstance(op, O.LIF)}
        self.pairs = [op.name for op in self.fixed.ops
                      if op.OPCODE == "cuba_lif" and op.name in fl
                      and self.float_graph.spec(op.name).shape == self.fixed.spec(op.name).shape]
        self.agree = {n: np.zeros(4, dtype=np.int64) for n in self.pairs}  # equal, total, both, either

    def batch_size(self, requested: int) -> int:
        """``requested``, capped so that the spikes recorded for the agreement (float32 from the
        interpreter, bool from the simulator, all compared layers, all steps) stay within
        ``RECORD_BYTES``."""
        per_sample = sum(int(np.prod(self.fixed.spec(n).shape)) for n in self.pairs) \
            * self.fixed.timesteps * 5
        return max(1, min(requested, RECORD_BYTES // max(per_sample, 1)))

    def batch(self, images: np.ndarray, labels: np.ndarray) -> None:
        from spikec import interp

        tf = interp.run(self.float_graph, images, record=self.pairs)
        # the float spikes packed 8 to a byte (not float32's 4 bytes) before the next two runs:
        # at 224 px the float recordings alone are gigabytes
        float_logits = tf.logits
        float_spikes = {n: np.packbits(tf.values.pop(n) != 0, axis=None) for n in self.pairs}
        del tf
        folded_logits = interp.run(self.folded, images).logits
        sim = self.simulator.run(images, record=self.pairs)
        for stage, logits in (("float", float_logits), ("folded", folded_logits),
                              ("quantized", sim.logits)):
            self.correct[stage] += int((np.argmax(logits, axis=1) == labels).sum())
        for n in self.pairs:
            q = sim.values[n]
            f = np.unpackbits(float_spikes.pop(n), count=q.size).reshape(q.shape).view(bool)
            self.agree[n] += [int((q == f).sum()), q.size, int((q & f).sum()), int((q | f).sum())]
        for name, s in sim.stats.items():
            if name in self.stats:
                self.stats[name].merge(s)
            else:
                self.stats[name] = s
        self.samples += len(labels)

    def accuracy(self) -> dict:
        n = self.samples
        return rep.accuracy_block(*(self.correct[s] / n if n else None for s in STAGES), n)

    def agreement(self) -> dict:
        return {n: {"agreement": int(a[0]) / int(a[1]) if a[1] else None,
                    "jaccard": int(a[2]) / int(a[3]) if a[3] else None}
                for n, a in self.agree.items()}


def batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield slice(s, min(n, s + batch_size))


def fixed_layer_ops(graph: Graph):
    return [(op.name, op.OPCODE, int(np.prod(graph.spec(op.name).shape))
             if op.OPCODE in ("cuba_lif", "readout") else 0) for op in graph.ops]


# ----------------------------------------------------------------------------- simulate
def load_stage(out: str | os.PathLike, stage: str) -> Graph:
    """The graph of ``stage`` from a compile output directory."""
    from spikec.ir import load

    if stage not in STAGES:
        raise DataError(f"--stage must be one of {', '.join(STAGES)}, not {stage!r}")
    out = Path(out)
    if not out.is_dir():
        raise InputFileError(f"{out}: not a directory; give the -o directory of spikec compile")
    path = out / GRAPH_FILES[stage]
    if not path.is_file():
        raise InputFileError(f"{path}: missing; recompile with spikec compile -o {out}")
    return load(path)


def simulate_output(out: str | os.PathLike, data, *, limit: int | None = None,
                    stage: str = "quantized", batch_size: int = 32, strict: bool = False,
                    progress: Callable[[int], Progress] | None = None, workers: int = 1,
                    cluster: str | None = None, profile_time: bool = False) -> dict:
    """Run one stage of a compiled model on a data set.

    Returns ``{stage, data, accuracy {float, folded, quantized, samples} (only ``stage`` filled),
    layers, totals, predictions}`` with the layer entries and totals of ``spikec.report``
    (``spike_agreement`` is null: it needs the float run next to this one; see report.json).
    ``strict``: raise ``StateOverflowError`` where a state would wrap (bit-exact stage only).
    ``workers`` / ``cluster``: shard the samples over local processes or a Dask cluster
    (``spikec.shards``, docs/scale-out.md); the result equals one process's, byte for byte.
    ``profile_time``: add ``time_profile`` (``spikec.sim.profile``; bit-exact stage, one process).
    """
    _check_simulate(stage, batch_size, strict)
    graph = load_stage(out, stage)
    return simulate_graph(graph, data, limit=limit, stage=stage, batch_size=batch_size,
                          strict=strict, progress=progress, workers=workers, cluster=cluster,
                          graph_file=Path(out) / GRAPH_FILES[stage], profile_time=profile_time)


def _check_simulate(stage: str, batch_size: int, strict: bool) -> None:
    if stage not in STAGES:
        raise DataError(f"--stage must be one of {', '.join(STAGES)}, not {stage!r}")
    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")
    if strict and stage != "quantized":
        raise DataError(f"--strict applies to the bit-exact stage only, not --stage {stage}")


def simulate_graph(graph: Graph, data, *, limit: int | None = None, stage: str = "quantized",
                   batch_size: int = 32, strict: bool = False,
                   progress: Callable[[int], Progress] | None = None, workers: int = 1,
                   cluster: str | None = None, graph_file: str | os.PathLike | None = None,
                   profile_time: bool = False) -> dict:
    """``simulate_output`` on a graph in memory: ``graph`` is the ``stage`` graph (the fixed
    graph for ``quantized``); ``data`` a spec, a ``Dataset`` or ``(images, labels)``;
    ``graph_file``: where ``graph`` is saved, for the workers of a sharded run (else they get
    its bytes)."""
    from spikec import shards

    from spikec.data import check_labels
    from spikec.memory import require_simulation_memory

    _check_simulate(stage, batch_size, strict)
    if profile_time and (stage != "quantized" or workers != 1 or cluster):
        raise DataError("--profile-time times the bit-exact stage in one process (no --stage "
                        "float/folded, --workers or --cluster)")
    ds = load_data(data, limit, _graph_input(graph))
    check_labels(ds, graph)
    require_simulation_memory(graph, min(batch_size, max(len(ds), 1)),
                              where=str(graph_file) if graph_file else stage)
    if workers == 1 and not cluster:
        update = progress(len(ds)) if progress else None
        timing = TimeProfile() if profile_time else None
        predictions, stats = simulate_batches(graph, stage, ds.images, batch_size, strict, update,
                                              timing)
    else:
        ref = (shards.GraphFile.of(graph_file) if graph_file is not None
               else shards.GraphFile.in_memory(graph))
        plan = shards.plan_shards(len(ds), batch_size, workers)
        tasks = [shards.Task(_simulate_shard, (ref, stage, ds.images[sh.start:sh.stop], batch_size,
                                               strict), sh.size) for sh in plan]
        with shards.Runner(workers, cluster) as runner:   # connects before the bar starts
            parts = runner.run(tasks, progress(len(ds)) if progress else None)
        predictions = np.concatenate([p for p, _ in parts]) if parts else np.zeros(0, np.int64)
        stats = {}
        for _, part in parts:       # integer counts: the sum in shard order is exact
            _merge_stats(stats, part)
    acc = float((predictions == ds.labels).mean())
    ops = [(op.name, op.OPCODE, stats[op.name].neurons) for op in graph.ops]
    layers = rep.layer_entries(ops, stats, None, graph.timesteps)
    return {"stage": stage, "data": {"spec": data if isinstance(data, str) else ds.name,
                                     "samples": len(ds)},
            "timesteps": graph.timesteps,
            "accuracy": rep.accuracy_block(*(acc if s == stage else None for s in STAGES), len(ds)),
            "layers": layers, "totals": rep.totals(layers),
            "predictions": [int(p) for p in predictions],
            **({"time_profile": timing.to_dict()} if profile_time else {})}


def simulate_batches(graph: Graph, stage: str, images: np.ndarray, batch_size: int,
                     strict: bool = False, update: Callable[[int], None] | None = None,
                     timing=None, threads: int | None = None,
                     ) -> tuple[np.ndarray, dict[str, ev.LayerStats]]:
    """Predictions (int64 [n]) and per-op event counts of ``graph`` on ``images``, batch by batch
    (the bit-exact simulator for a fixed graph, on ``threads`` threads (default: the cores; one
    when ``timing`` times its ops), the reference interpreter for a float one)."""
    from spikec import interp

    preds = [np.zeros(0, np.int64)]
    stats: dict[str, ev.LayerStats] = {}
    slices = list(batches(len(images), batch_size))
    pool = None
    if stage == "quantized":    # the bit-exact simulator, on the cores (one thread when timed)
        threads = 1 if timing is not None else threads_for(graph, batch_size, len(slices), threads)
        pool = SimulatorPool(graph, threads, strict=strict)
        results = pool.map(images[sl] for sl in slices)
    else:
        record = ev.float_graph_record(graph)
        results = (interp.run(graph, images[sl], record=record) for sl in slices)
    with pool or contextlib.nullcontext():
        for sl, r in zip(slices, results):
            n = sl.stop - sl.start
            if pool is not None:
                batch_stats = r.stats
                if timing is not None:      # ``spikec.sim.profile.TimeProfile``
                    timing.add(graph, r)
            else:
                batch_stats = ev.float_graph_stats(graph, r.values, n)
            preds.append(np.argmax(r.logits, axis=1))
            _merge_stats(stats, batch_stats)
            if update:
                update(n)
    return np.concatenate(preds).astype(np.int64), stats


def _simulate_shard(ref, stage, images, batch_size, strict):
    """One shard of ``simulate_graph`` on a worker (module level: pickled by reference)."""
    from spikec.shards import load_graph

    return simulate_batches(load_graph(ref), stage, images, batch_size, strict,
                            threads=1)     # the workers are the parallelism


def _merge_stats(into: dict, part: dict) -> None:
    for name, s in part.items():
        if name in into:
            into[name].merge(s)
        else:
            into[name] = s


def _graph_input(graph: Graph):
    inputs = graph.inputs
    if len(inputs) != 1:
        raise InputFileError(f"the graph has {len(inputs)} inputs; simulate takes one image input")
    return inputs[0]
