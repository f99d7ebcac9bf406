"""The compile and simulate drivers behind ``spikec compile`` and ``spikec simulate``.

``compile_model``: load a model -> ``spikec.pipeline.compile_graph`` -> (with data) accuracy of the
float model, the folded float graph and the bit-exact simulation on the same samples, per-layer
spike agreement with the float model and event counts -> an output directory::

    OUT/compiled.spkc   the quantized (fixed-point) graph: what the chip runs
    OUT/folded.spkc     the folded float graph (BN folded, neurons canonical)
    OUT/float.spkc      the traced float graph (so ``simulate --stage float`` needs no model file)
    OUT/report.json     see ``spikec.report``

Everything is computed first, then written into a temporary directory beside OUT and renamed onto
OUT at the end: an error leaves no partial OUT (and an existing OUT untouched).

``simulate_output``: run one stage of a compiled OUT on a data set.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spikec import report as rep
from spikec.errors import DataError, InputFileError, ProfileError
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.sim import Simulator
from spikec.sim import events as ev
from spikec.sim.profile import TimeProfile

#: Targets ``spikec compile --target`` accepts (profiles with an executable arithmetic).
TARGETS = ("loihi2", "loihi")
STAGES = ("float", "folded", "quantized")
RESIDUAL_MODES = ("auto", "graded", "fanin")
GRAPH_FILES = {"quantized": "compiled.spkc", "folded": "folded.spkc", "float": "float.spkc"}
REPORT_FILE = "report.json"
#: Samples of the --calib set handed to the quantizer.
CALIB_SAMPLES = 64
#: Memory for the spikes of one batch recorded for the spike agreement (bytes).
RECORD_BYTES = 2 << 30

Progress = Callable[[int], None]


# ----------------------------------------------------------------------------- inputs
def resolve_profile(target: str, profile_path: str | None):
    """The hardware profile to compile for: ``--profile PATH`` if given, else the named target."""
    from spikec.target import load_profile

    if profile_path is None and target not in TARGETS:
        raise ProfileError(f"unknown target {target!r}: spikec compiles for {', '.join(TARGETS)} "
                           "(or give a profile file with --profile)")
    profile = load_profile(profile_path if profile_path is not None else target)
    if not profile.formats.is_lava:
        raise ProfileError(f"profile {profile.name!r}: its arithmetic ({profile.formats.arithmetic!r}) "
                           f"is descriptive only; compile for {', '.join(TARGETS)}")
    return profile


def load_data(spec: str, limit: int | None, input_op: O.Input, what: str = "--data"):
    """Load a data set and check its sample shape against the model's input."""
    from spikec import data as spk_data

    if limit is not None and limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    ds = spk_data.load(spec, limit)
    if len(ds) == 0:
        raise DataError(f"{what} {spec}: no samples")
    want = tuple(int(d) for d in input_op.shape)
    if ds.images.shape[1:] != want:
        raise DataError(f"{what} {spec}: images have shape {_shape(ds.images.shape[1:])} but the "
                        f"model expects {_shape(want)} (C, H, W)")
    return ds


def _shape(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


def _input_op(graph: Graph) -> O.Input:
    inputs = graph.inputs
    if len(inputs) != 1:
        raise InputFileError(f"the model has {len(inputs)} inputs; spikec compile takes one image "
                             "input")
    return inputs[0]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        tb = interp.run(self.folded, images)
        sim = self.simulator.run(images, record=self.pairs)
        for stage, logits in (("float", tf.logits), ("folded", tb.logits),
                              ("quantized", sim.logits)):
            self.correct[stage] += int((np.argmax(logits, axis=1) == labels).sum())
        for n in self.pairs:
            q, f = sim.values[n], tf.values[n] != 0
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


def _batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield slice(s, min(n, s + batch_size))


def _fixed_layer_ops(graph: Graph):
    return [(op.name, op.OPCODE, int(np.prod(graph.spec(op.name).shape))
             if op.OPCODE in ("cuba_lif", "readout") else 0) for op in graph.ops]


# ----------------------------------------------------------------------------- compile
@dataclass
class CompileOutcome:
    report: dict
    out: Path
    fixed: Graph
    folded: Graph


def compile_model(model: str | os.PathLike, out: str | os.PathLike, *, target: str = "loihi2",
                  profile: str | None = None, load_options=None, data: str | None = None,
                  calib: str | None = None, limit: int | None = None, residual: str = "auto",
                  batch_size: int = 32, progress: Callable[[int], Progress] | None = None,
                  ssa: str = "host") -> CompileOutcome:
    """Compile ``model`` for ``target`` into the directory ``out`` (see the module docstring).

    Parameters
    ----------
    model : model file (any format ``spikec.frontends.load_model`` reads).
    out : output directory (replaced atomically when it exists).
    target, profile : target name, or a profile file that replaces it.
    load_options : ``spikec.frontends.LoadOptions`` (arch, T, preprocessing, ...).
    data : evaluation set spec (``mnist5k:test``, ``fashion-mnist:test``, ``cifar10-foolbox``, .npz).
    calib : calibration set spec (its first ``CALIB_SAMPLES`` samples).
    limit : first N samples of ``data``.
    residual : lowering of count-valued synapse inputs, ``graded`` or ``fanin``.
    ssa : lowering of spiking self-attention in the Lava bundle (``host`` or ``decompose``); the
        bundle (``OUT/lava/``) is written for targets whose arithmetic is Lava's (loihi2).
    progress : ``progress(total)`` returns a callback ``update(n)`` called after each batch.
    """
    from spikec.frontends import LoadOptions, load_model
    from spikec.ir import dumps
    from spikec.pipeline import CompileOptions, compile_graph

    if residual not in RESIDUAL_MODES:
        raise ProfileError(f"--residual must be one of {', '.join(RESIDUAL_MODES)}, not {residual!r}")
    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out)
    _check_out(out)
    prof = resolve_profile(target, profile)
    model = Path(model)
    graph = load_model(model, load_options or LoadOptions())
    inp = _input_op(graph)
    ds = load_data(data, limit, inp) if data else None
    cal = load_data(calib, CALIB_SAMPLES, inp, "--calib") if calib else None
    result = compile_graph(graph, profile=prof, calib=None if cal is None else cal.images,
                           options=CompileOptions(residual=residual))
    fixed, folded = result.fixed, result.folded

    evaluation = None
    if ds is not None:
        evaluation = Evaluation(graph, folded, fixed, Simulator(fixed, prof.formats))
        update = progress(len(ds)) if progress else None
        for sl in _batches(len(ds), evaluation.batch_size(batch_size)):
            evaluation.batch(ds.images[sl], ds.labels[sl])
            if update:
                update(sl.stop - sl.start)

    report = rep.base(prof.name if profile else target, prof.name, model.name,
                      file_sha256(model), fixed.timesteps)
    report["arch"] = graph.meta.get("arch")
    report["residual"] = residual
    report["data"] = {"spec": data, "samples": len(ds)} if ds is not None else None
    report["calib"] = {"spec": calib, "samples": len(cal)} if cal is not None else None
    report["notes"] = _plain(result.notes)
    stats = evaluation.stats if evaluation else None
    agreement = evaluation.agreement() if evaluation else None
    layers = rep.layer_entries(_fixed_layer_ops(fixed), stats, agreement, fixed.timesteps)
    report["layers"] = layers
    report["totals"] = rep.totals(layers)
    report["accuracy"] = evaluation.accuracy() if evaluation else rep.accuracy_block(None, None, None, 0)
    report["first_divergent_layer"] = rep.first_divergent(layers)
    files = {GRAPH_FILES["quantized"]: dumps(fixed), GRAPH_FILES["folded"]: dumps(folded),
             GRAPH_FILES["float"]: dumps(graph)}
    if prof.formats.is_lava:
        from spikec.backends.lava.bundle import BUNDLE_DIR, bundle_files

        bundle, report["lava"] = bundle_files(fixed, ssa=ssa)
        files.update({f"{BUNDLE_DIR}/{name}": data for name, data in bundle.items()})
    files[REPORT_FILE] = rep.dumps(report).encode()
    write_dir(out, files)
    return CompileOutcome(report, out, fixed, folded)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a directory; choose another -o")


def write_dir(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary directory beside ``out``, then rename it onto ``out``.

    An existing ``out`` is moved aside first and removed after the rename; on any error the
    temporary directory is removed and ``out`` is as it was.
    """
    out = Path(out)
    _check_out(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tmp-"))
    old = None
    try:
        os.chmod(tmp, 0o755)
        for name, data in sorted(files.items()):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "dir")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "dir").exists() and not out.exists():
            os.replace(old / "dir", out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _plain(v):
    """JSON-able copy of the compiler's notes (numpy scalars and arrays become Python values)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


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


def simulate_output(out: str | os.PathLike, data: str, *, limit: int | None = None,
                    stage: str = "quantized", batch_size: int = 32, strict: bool = False,
                    progress: Callable[[int], Progress] | None = None,
                    profile_time: bool = False) -> dict:
    """Run one stage of a compiled model on a data set.

    Returns ``{stage, data, accuracy {float, folded, quantized, samples} (only ``stage`` filled),
    layers, totals, predictions}`` with the layer entries and totals of ``spikec.report``
    (``spike_agreement`` is null: it needs the float run next to this one; see report.json).
    ``strict``: raise ``StateOverflowError`` where a state would wrap (bit-exact stage only).
    ``profile_time``: add ``time_profile`` (``spikec.sim.profile``; bit-exact stage only).
    """
    from spikec import interp

    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")
    if strict and stage != "quantized":
        raise DataError(f"--strict applies to the bit-exact stage only, not --stage {stage}")
    graph = load_stage(out, stage)
    ds = load_data(data, limit, _graph_input(graph))
    update = progress(len(ds)) if progress else None
    preds = []
    stats: dict[str, ev.LayerStats] = {}
    sim = Simulator(graph, strict=strict) if stage == "quantized" else None
    record = ev.float_graph_record(graph) if sim is None else None
    timing = TimeProfile() if profile_time and sim is not None else None
    for sl in _batches(len(ds), batch_size):
        images = ds.images[sl]
        if sim is not None:
            r = sim.run(images)
            logits, batch_stats = r.logits, r.stats
            if timing is not None:
                timing.add(graph, r)
        else:
            tr = interp.run(graph, images, record=record)
            logits = tr.logits
            batch_stats = ev.float_graph_stats(graph, tr.values, len(images))
        preds.append(np.argmax(logits, axis=1))
        for name, s in batch_stats.items():
            if name in stats:
                stats[name].merge(s)
            else:
                stats[name] = s
        if update:
            update(len(images))
    predictions = np.concatenate(preds).astype(np.int64)
    acc = float((predictions == ds.labels).mean())
    ops = [(op.name, op.OPCODE, stats[op.name].neurons) for op in graph.ops]
    layers = rep.layer_entries(ops, stats, None, graph.timesteps)
    return {"stage": stage, "data": {"spec": data, "samples": len(ds)},
            "timesteps": graph.timesteps,
            "accuracy": rep.accuracy_block(*(acc if s == stage else None for s in STAGES), len(ds)),
            "layers": layers, "totals": rep.totals(layers),
            "predictions": [int(p) for p in predictions],
            **({"time_profile": timing.to_dict()} if timing is not None else {})}


def _graph_input(graph: Graph):
    inputs = graph.inputs
    if len(inputs) != 1:
        raise InputFileError(f"the graph has {len(inputs)} inputs; simulate takes one image input")
    return inputs[0]
