"""What ``spikec estimate`` does, as library functions (the command is in ``spikec.cli.estimate``).

``prepare`` turns MODEL_OR_OUT (a compile output, a ``.spkc`` or a model file) into an
``EstimateInput`` (the network on cores, the profile, event counts); ``estimate_one`` and
``sweep`` cost it; ``save_estimate`` stores the result in ``OUT/report.json``.
"""
from __future__ import annotations


import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from spikec.atomic import write_atomic
from spikec.errors import DataError, InputFileError, MissingEnvironmentError

DEFAULT_PROFILE = "loihi2"

#: ``progress(total, label)`` -> a context manager yielding an object with ``update(n)`` (or None).
ProgressBar = Callable[[int, str], ContextManager[Any]]


def _no_progress(total: int, label: str) -> ContextManager[None]:
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- inputs

def load_input(path: str):
    """``(fixed graph, report dict or None, OUT dir or None)`` from a compiled ``OUT`` directory or
    a ``.spkc`` file; ``(None, None, None)`` for anything else (a model to compile)."""
    from spikec.ir import load

    p = Path(path)
    if p.is_dir():
        spkc = p / "compiled.spkc"
        if not spkc.is_file():
            raise InputFileError(f"{p}: no compiled.spkc (not an output directory of spikec "
                                 "compile)")
        from spikec.report import read_report

        report = read_report(p / "report.json") if (p / "report.json").is_file() else None
        return load(spkc), report, p
    if p.suffix == ".spkc":
        return load(p), None, None
    if not p.exists():
        raise InputFileError(f"{p}: no such file or directory")
    return None, None, None


def compile_model(path: str, profile, opts, input_encoding: str = "auto"):
    """Compile a model file for ``profile`` (``spikec.pipeline.compile_graph``) with the input
    encoding ``input_encoding`` (``CompileOptions.input_encoding``)."""
    try:
        from spikec.pipeline import CompileOptions, compile_graph
    except ImportError:
        raise MissingEnvironmentError(
            "estimating a model file needs spikec.pipeline (the compiler); compile it with "
            "`spikec compile MODEL -o OUT` and pass OUT") from None
    from spikec.frontends import load_model

    graph = load_model(path, opts)
    result = compile_graph(graph, profile, options=CompileOptions(input_encoding=input_encoding))
    return getattr(result, "fixed", result)


def evaluation_data(graph, data_spec, limit: int | None):
    """The samples of ``data_spec`` (a spec, a ``Dataset`` or ``(images, labels)``; the first
    ``limit``) checked against ``graph``'s classes and the memory their simulation needs."""
    from spikec import data as datasets
    from spikec.memory import require_simulation_memory

    if isinstance(data_spec, str):
        ds = datasets.load(data_spec, limit)
    else:
        from spikec.evaluate import as_dataset

        ds = as_dataset(data_spec, "data").subset(limit)
    datasets.check_labels(ds, graph)
    require_simulation_memory(graph, min(32, max(len(ds), 1)), where=ds.name)
    return ds


def simulate_counts(graph, mapping, data_spec: str, limit: int | None,
                    progress: ProgressBar | None = None):
    """Run the bit-exact simulator on ``data_spec`` and return (EventCounts, accuracy).
    ``progress(total, label)``: a context manager giving an object with ``update(n)``."""
    import numpy as np

    from spikec.estimate.events import counts_from_sim
    from spikec.estimate.input_encoding import measure_bitplanes
    from spikec.sim import simulate

    ds = evaluation_data(graph, data_spec, limit)
    with (progress or _no_progress)(len(ds), f"simulating {ds.name}") as bar:
        res = simulate(graph, ds.images, progress=None if bar is None else bar.update)
    acc = float(np.mean(np.argmax(res.logits, axis=-1) == ds.labels)) if len(ds) else None
    counts = counts_from_sim(res, mapping, f"bit-exact simulation of {len(ds)} samples of "
                                           f"{ds.name}")
    measure_bitplanes(counts, mapping, graph, ds.images)   # the planes' own 1-bits
    return counts, acc


# ----------------------------------------------------------------------------- estimate
@dataclass
class EstimateInput:
    """What ``prepare`` found: the network on cores and how to count its events.

    ``counts``: EventCounts, a function of the mapping (counts read from report.json), or None
    (an assumed rate); ``depth``: the Lava bundle's pipeline depth when it used this SSA
    lowering, else None; ``model_path``: the model file when MODEL_OR_OUT was one."""

    net: Any
    profile: Any
    graph: Any
    report: dict | None
    out_dir: Path | None
    counts: Any
    accuracy: float | None
    depth: int | None
    model_path: str | None
    timing: dict | None = None


def prepare(model_or_out: str, profile_name: str = DEFAULT_PROFILE, *, chips: int | None = None,
            data_spec: str | None = None, limit: int | None = None, ssa: str | None = None,
            arch: str | None = None, timesteps: int | None = None,
            progress: ProgressBar | None = None, timing: str = "analytic",
            cost: str = "profile", input_encoding: str | None = None) -> EstimateInput:
    """Load or compile MODEL_OR_OUT for ``profile_name`` and gather its event counts.
    ``input_encoding``: how a model file's first layer gets its input (default ``auto``); for a
    compiled input it must be the one it was compiled with."""
    from spikec.target.profile import load_profile

    profile = load_profile(profile_name)
    graph, report, out_dir = load_input(model_or_out)
    model_path = None
    if graph is None:
        from spikec.frontends import LoadOptions

        model_path = model_or_out
        graph = compile_model(model_or_out, profile, LoadOptions(arch=arch, timesteps=timesteps),
                              input_encoding or "auto")
    elif input_encoding not in (None, "auto", graph.meta.get("input_encoding", "graded")):
        raise DataError(f"{model_or_out}: compiled with input encoding "
                        f"{graph.meta.get('input_encoding', 'graded')!r}, not {input_encoding!r}; "
                        "recompile it with spikec compile --input-encoding, or pass the model file")
    return prepare_graph(graph, profile, report=report, out_dir=out_dir, model_path=model_path,
                         chips=chips, data_spec=data_spec, limit=limit, ssa=ssa,
                         progress=progress, timing=timing, cost=cost)


def prepare_graph(graph, profile, *, report: dict | None = None, out_dir: Path | None = None,
                  model_path: str | None = None, chips: int | None = None, data_spec=None,
                  limit: int | None = None, ssa: str | None = None,
                  progress: ProgressBar | None = None, timing: str = "analytic",
                  cost: str = "profile") -> EstimateInput:
    """``prepare`` for a fixed graph already in memory (with its compile report, if any).
    ``timing``: ``analytic`` (mean events) or ``cycle`` (every sample and step of ``data_spec``
    through the cycle-level timing simulator, ``spikec.estimate.timing``; ``cycle-buffered``
    with the message-level NoC model of ``spikec.estimate.timing_noc``)."""
    from spikec.estimate.events import counts_from_report
    from spikec.estimate.mapping import map_network
    from spikec.estimate.network import extract_network
    from spikec.target.profile import load_profile

    if isinstance(profile, str):
        profile = load_profile(profile)
    lava = (report or {}).get("lava") or {}
    if ssa is None:
        ssa = lava.get("ssa") or "host"
    # the Lava bundle's delay when it was built with this lowering (it knows its gather relays)
    depth = lava.get("pipeline_depth") if lava.get("ssa") == ssa else None
    net = extract_network(graph, ssa)
    accuracy = None
    counts = None
    timing_j = None
    if timing not in ("analytic", "cycle", "cycle-buffered"):
        raise DataError(f"--timing must be analytic, cycle or cycle-buffered, not {timing!r}")
    if timing != "analytic" and data_spec is None:
        raise DataError(f"--timing {timing} needs --data SET (it times every sample and step)")
    if timing != "analytic":
        from spikec.estimate.timing_run import simulate_timing

        mapping = map_network(net, profile, chips)
        counts, accuracy, timing_j = simulate_timing(
            graph, mapping, profile, cost, data_spec, limit, depth, progress,
            noc_model="buffered" if timing == "cycle-buffered" else "fluid")
    elif data_spec is not None:
        mapping = map_network(net, profile, chips)
        counts, accuracy = simulate_counts(graph, mapping, data_spec, limit, progress)
    elif report is not None:   # counts depend on the mapping (relays); a partial pickles
        counts = functools.partial(counts_from_report, report)
    return EstimateInput(net, profile, graph, report, out_dir, counts, accuracy, depth,
                         model_path, timing_j)


def estimate_one(inp: EstimateInput, *, chips: int | None = None, cost: str = "profile",
                 rate: float = 0.1) -> dict:
    """The estimate's JSON (``spikec.estimate.SCHEMA``); raises ``CapacityError`` when the
    network cannot be mapped at all."""
    from spikec.estimate.estimator import estimate as run_estimate

    est = run_estimate(inp.net, inp.profile, counts=inp.counts, chips=chips, cost=cost, rate=rate,
                       depth=inp.depth)
    j = est.to_json()
    if inp.accuracy is not None:
        j["accuracy"] = inp.accuracy
    if inp.timing is not None:
        j["timing"] = inp.timing
    return j


def sweep(inp: EstimateInput, sweeps, *, chips: int | None = None, cost: str = "profile",
          rate: float = 0.1, plot_path: str | None = None, data_spec: str | None = None,
          limit: int | None = None, load_args=(None, None),
          progress: ProgressBar | None = None, workers: int = 1,
          cluster: str | None = None) -> tuple[list[dict], str | None]:
    """A design-space sweep (``--sweep FIELD=V1,V2``): (rows, plot path or None); ``workers`` /
    ``cluster``: evaluate the points on local processes or a Dask cluster (``spikec.shards``)."""
    from spikec.shards import Runner

    from spikec.estimate.dse import check_sweeps, parse_sweeps, plot_sweep, run_sweep

    grid = parse_sweeps(sweeps)
    check_sweeps(inp.profile, grid, rate)   # every value, before the sweep starts
    if plot_path is not None:               # and where its plot goes
        parent = Path(plot_path).resolve().parent
        if not parent.is_dir():
            raise InputFileError(f"--plot {plot_path}: {parent} is not a directory")
    requantize = None
    if inp.model_path is not None and data_spec:
        requantize = requantizer(inp.model_path, data_spec, limit, load_args, inp.net.ssa)
    n = 1
    for _, v in grid:
        n *= len(v)
    with Runner(workers, cluster) as runner, (progress or _no_progress)(n, "sweep") as bar:
        rows = run_sweep(inp.net, inp.profile, grid, counts=inp.counts, chips=chips, cost=cost,
                         rate=rate, ssa=inp.net.ssa, requantize=requantize,
                         base_accuracy=inp.accuracy, progress=None if bar is None else bar.update,
                         runner=None if workers == 1 and not cluster else runner)
    if plot_path is None and inp.out_dir is not None:
        plot_path = str(inp.out_dir / "sweep.png")
    if plot_path:
        plot_sweep(rows, plot_path)
    return rows, plot_path


def save_estimate(out_dir: Path, report: dict | None, j: dict) -> None:
    """Store ``j`` under ``estimate`` in ``OUT/report.json`` (atomically, holding OUT's lock so
    that a compile cannot swap OUT away under it)."""
    from spikec.outputs import DirLock

    from spikec.report import dumps

    report = dict(report or {})
    report["estimate"] = j
    text = dumps(report)   # names the first NaN/Inf field instead of writing it
    with DirLock(out_dir):
        write_atomic(out_dir / "report.json", text.encode("utf-8"))


def requantizer(model_path, data_spec, limit, load_args, ssa):
    """``requantize(profile) -> (graph, counts, accuracy)``: compile the model again for a point's
    formats and simulate it (a partial of a module-level function, so sweep workers can run it)."""
    arch, timesteps = load_args
    return functools.partial(_requantize, model_path, data_spec, limit, arch, timesteps, ssa)


def _requantize(model_path, data_spec, limit, arch, timesteps, ssa, prof):
    from spikec.estimate.mapping import map_network
    from spikec.estimate.network import extract_network
    from spikec.frontends import LoadOptions

    graph = compile_model(model_path, prof, LoadOptions(arch=arch, timesteps=timesteps))
    mapping = map_network(extract_network(graph, ssa), prof)
    counts, acc = simulate_counts(graph, mapping, data_spec, limit)
    return graph, counts, acc
