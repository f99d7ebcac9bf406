"""The compile driver behind ``spikec compile``.

``compile_model``: load a model -> ``spikec.pipeline.compile_graph`` -> (with data) accuracy of the
float model, the folded float graph and the bit-exact simulation on the same samples, per-layer
spike agreement with the float model and event counts (``spikec.evaluate``) -> an output
directory (``spikec.outputs``)::

    OUT/compiled.spkc   the quantized (fixed-point) graph: what the chip runs
    OUT/folded.spkc     the folded float graph (BN folded, neurons canonical)
    OUT/float.spkc      the traced float graph (so ``simulate --stage float`` needs no model file)
    OUT/report.json     see ``spikec.report``
    OUT/lava/           the bundle of the target's backend (``spikec.backend``), where it has one
    OUT/.spikec-output.json   the marker that makes OUT replaceable by the next compile

OUT is checked and locked before the compile (``spikec.outputs.OutputDir``: user files, the
input inside OUT, unwritable folders are refused first), everything is computed, then written
beside OUT and swapped in: an error leaves no partial OUT and an existing OUT untouched.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spikec import report as rep
from spikec.errors import DataError, InputFileError, ProfileError, UnsupportedOpError
from spikec.evaluate import GRAPH_FILES, STAGES, Evaluation, Progress, batches, fixed_layer_ops, load_data
from spikec.ir.graph import Graph
from spikec.ir import ops as O
from spikec.outputs import OutputDir
from spikec.quantize.options import ResidualLowering
from spikec.sim import Simulator

__all__ = ["TARGETS", "STAGES", "RESIDUAL_MODES", "GRAPH_FILES", "REPORT_FILE", "CompileOutcome",
           "compile_model", "export_model", "resolve_profile", "load_data", "file_sha256", "plain"]

#: Targets ``spikec compile --target`` accepts (profiles with an executable arithmetic).
TARGETS = ("loihi2", "loihi")
RESIDUAL_MODES = ResidualLowering.values()   # the --residual choices
REPORT_FILE = "report.json"
#: Samples of the --calib set handed to the quantizer.
CALIB_SAMPLES = 64


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


# ----------------------------------------------------------------------------- compile
@dataclass
class CompileOutcome:
    """A compiled model: its report, graphs and the files of its output directory.

    ``out`` is where it was written (None while it lives in memory only); ``graph`` the traced
    float graph; ``files`` every file of OUT (relative path -> bytes, or a ``spikec.spool.Spooled``
    temporary file for the large ones: the graphs, the bundle's arrays) except the marker."""

    report: dict
    out: Path | None
    fixed: Graph
    folded: Graph
    graph: Graph | None = None
    files: dict = field(default_factory=dict, repr=False)


def compile_model(model: str | os.PathLike, out: str | os.PathLike, *, target: str = "loihi2",
                  profile: str | None = None, load_options=None, data: str | None = None,
                  calib: str | None = None, limit: int | None = None, residual: str = "auto",
                  batch_size: int = 32, progress: Callable[[int], Progress] | None = None,
                  ssa: str = "host", force: bool = False,
                  input_encoding: str = "auto") -> CompileOutcome:
    """Compile ``model`` for ``target`` into the directory ``out`` (see the module docstring).

    Parameters
    ----------
    model : model file (any format ``spikec.frontends.load_model`` reads).
    out : output directory: created, or replaced when it is empty or an earlier spikec output
        (``spikec.outputs``); checked and locked before the compile starts.
    target, profile : target name, or a profile file that replaces it.
    load_options : ``spikec.frontends.LoadOptions`` (arch, T, preprocessing, ...).
    data : evaluation set spec (``mnist5k:test``, ``fashion-mnist:test``, ``cifar10-foolbox``, .npz).
    calib : calibration set spec (its first ``CALIB_SAMPLES`` samples).
    limit : first N samples of ``data``.
    residual : lowering of count-valued synapse inputs, ``graded`` or ``fanin``.
    input_encoding : how raw pixels reach the first layer (``CompileOptions.input_encoding``).
    ssa : lowering of spiking self-attention in the Lava bundle (``host`` or ``decompose``); the
        bundle (``OUT/lava/``) is written for targets whose arithmetic is Lava's (loihi2).
    progress : ``progress(total)`` returns a callback ``update(n)`` called after each batch.
    force : replace an ``out`` that is not an earlier spikec output (never one that holds an
        input of the run).
    """
    from spikec.frontends import LoadOptions, load_model

    _check_options(residual, batch_size)
    resolve_profile(target, profile)   # a wrong target or profile fails before OUT is touched
    model = Path(model)
    with OutputDir(out, force=force, keep=[model, _file(data), _file(calib), profile]) as target_dir:
        graph = load_model(model, load_options or LoadOptions())
        outcome = compile_loaded(graph, model.name, file_sha256(model), target=target,
                                 profile=profile, data=data, calib=calib, limit=limit,
                                 residual=residual, batch_size=batch_size, progress=progress,
                                 ssa=ssa, input_encoding=input_encoding)
        target_dir.write(outcome.files)
    outcome.out = Path(out)
    return outcome


def _check_options(residual: str, batch_size: int) -> None:
    if not ResidualLowering.has(residual):
        raise ProfileError(f"--residual must be one of {', '.join(RESIDUAL_MODES)}, not {residual!r}")
    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")


def export_model(model: str | os.PathLike, out: str | os.PathLike, target: str, *,
                 force: bool = False, load_options=None, ssa: str | None = None,
                 quantized: bool = False, calib: str | None = None, profile: str | None = None,
                 residual: str = "auto") -> dict:
    """Export ``model`` to the interchange format ``target`` (``nir``, ``onnx``) into ``out``
    (same output rules as ``compile_model``); returns the backend's facts."""
    from spikec import backend

    exporter = backend.get(target)
    if exporter.export is None:
        raise ProfileError(f"--target {target}: not an interchange format")
    with OutputDir(out, force=force, keep=[model, _file(calib), profile], kind=target) as target_dir:
        files, facts = exporter.export(model, load_options=load_options, ssa=ssa,
                                       quantized=quantized, calib=calib, profile=profile,
                                       residual=residual)
        target_dir.write(files)
    return facts


def _file(spec: str | None) -> str | None:
    """The file of a data spec, when it names one (``mnist5k:test`` names none)."""
    return spec if spec is not None and os.path.isfile(spec) else None


def compile_loaded(graph: Graph, model_name: str, model_sha256: str, *, target: str = "loihi2",
                   profile: str | None = None, data=None, calib=None, limit: int | None = None,
                   residual: str = "auto", batch_size: int = 32,
                   progress: Callable[[int], Progress] | None = None,
                   ssa: str = "host", input_encoding: str = "auto") -> CompileOutcome:
    """Compile a loaded float ``graph`` in memory (``compile_model`` without the files): the
    report, the graphs and the files an OUT would hold (``out`` None).

    ``model_name``, ``model_sha256``: what report.json records as the model. ``data`` and
    ``calib``: a data set spec, a ``spikec.data.Dataset`` or ``(images, labels)`` arrays. The
    other parameters are ``compile_model``'s.
    """
    from spikec import backend
    from spikec.data import check_labels
    from spikec.ir.serialize import spooled
    from spikec.pipeline import CompileOptions, compile_graph

    _check_options(residual, batch_size)
    prof = resolve_profile(target, profile)
    inp = _input_op(graph)
    ds = load_data(data, limit, inp) if data is not None else None
    if ds is not None:
        check_labels(ds, graph)
    cal = load_data(calib, CALIB_SAMPLES, inp, "--calib") if calib is not None else None
    result = compile_graph(graph, profile=prof, calib=None if cal is None else cal.images,
                           options=CompileOptions(residual=residual, input_encoding=input_encoding))
    fixed, folded = result.fixed, result.folded

    evaluation = None
    if ds is not None:
        from spikec.memory import require_simulation_memory

        evaluation = Evaluation(graph, folded, fixed, Simulator(fixed, prof.formats))
        require_simulation_memory(fixed, evaluation.batch_size(batch_size), where="--data")
        update = progress(len(ds)) if progress else None
        for sl in batches(len(ds), evaluation.batch_size(batch_size)):
            evaluation.batch(ds.images[sl], ds.labels[sl])
            if update:
                update(sl.stop - sl.start)

    target_name = target if profile is None else prof.name
    report = rep.base(target_name, prof.name, model_name, model_sha256, fixed.timesteps)
    report["arch"] = graph.meta.get("arch")
    report["residual"] = residual
    report["data"] = {"spec": _spec(data, ds), "samples": len(ds)} if ds is not None else None
    report["calib"] = {"spec": _spec(calib, cal), "samples": len(cal)} if cal is not None else None
    report["notes"] = plain(result.notes)
    stats = evaluation.stats if evaluation else None
    agreement = evaluation.agreement() if evaluation else None
    layers = rep.layer_entries(fixed_layer_ops(fixed), stats, agreement, fixed.timesteps)
    report["layers"] = layers
    report["totals"] = rep.totals(layers)
    report["accuracy"] = evaluation.accuracy() if evaluation else rep.accuracy_block(None, None, None, 0)
    report["first_divergent_layer"] = rep.first_divergent(layers)
    if ds is not None and fixed.meta.get("input_encoding") == "bitplane":
        from spikec.estimate.input_encoding import plane_summary

        report["input_planes"] = plane_summary(fixed, ds.images)   # what the planes send
    # the evaluation's simulator (its int8 weights), recordings and data are done with: free
    # them before the graphs are serialised and the bundle is built, the large allocations
    # that follow (V2-16-768 with --data: 9.5 GB peak when the simulator was alive at dumps)
    del evaluation, stats, agreement, ds, cal
    # the graphs go to temporary files, not memory (gigabytes for paper-scale models)
    files = {GRAPH_FILES["quantized"]: spooled(fixed), GRAPH_FILES["folded"]: spooled(folded),
             GRAPH_FILES["float"]: spooled(graph)}
    chip = backend.bundle_backend(prof)
    encoding = fixed.meta.get("input_encoding", "graded")
    if chip is not None:        # the chip's bundle (OUT/lava for Lava's arithmetic)
        try:
            bundle, report[chip.name] = chip.bundle_files(fixed, ssa=ssa, profile=prof)
            files.update(bundle)
        except UnsupportedOpError as e:
            if encoding == "graded":
                raise
            # a first layer the bundle cannot take in this encoding: the graphs and the
            # report are still written, and the report says why there is no bundle
            report["bundle_skipped"] = f"no {chip.name} bundle (--input-encoding {encoding}): {e}"
    files[REPORT_FILE] = rep.dumps(report).encode()
    return CompileOutcome(report, None, fixed, folded, graph, files)


def _spec(given, ds) -> str:
    return given if isinstance(given, str) else ds.name


def plain(v):
    """JSON-able copy of the compiler's notes (numpy scalars and arrays become Python values)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


