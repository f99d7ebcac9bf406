"""Validation of a Lava bundle: prove that it (or a chip) computes what spikec predicted.

``validate_lava(out, data)`` runs the bundle ``OUT/lava`` in the Lava environment (Python 3.10,
``Loihi2SimCfg(select_tag='fixed_pt')``, a subprocess) and ``validate_trace(out, trace)`` reads a
trace that the bundle's runner wrote (on a chip with ``--hw``, or on the CPU); both compare every
probed layer's spikes (and counts) and the readout's logits with the bit-exact simulator
``spikec.sim`` on the same samples, element for element.

``validate_lava`` runs the runner of the spikec doing the validation (``runtime/runner.py`` of this
package, loaded by file path as the package ``spikec_lava`` so that the Lava environment needs no
spikec of its own) on the bundle's data files (``network.json``, ``network.npz``,
``manifest.json``, each checked against the manifest). It never executes ``OUT/lava/run_lava.py``
or ``OUT/lava/spikec_lava/``: those are for users on a chip, and OUT may come from anywhere.

``rewrite_bundle(out)`` (``spikec lava-bundle OUT``): (re)write ``OUT/lava`` from
``OUT/compiled.spkc`` with a chosen SSA lowering.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from spikec import __version__
from spikec.errors import DataError, InputFileError, MissingEnvironmentError, SpikecError

from . import encodings
from .bundle import BUNDLE_DIR, read_manifest, write_bundle
from .runtime.npzio import load_npz, save_npz

GRAPH_FILE = "compiled.spkc"
LAVA_ENV_VAR = "SPIKEC_LAVA_PYTHON"
TRACE_FORMAT = "spikec-trace"
TRACE_FORMAT_VERSION = 1

_CHECK = ("import sys, json\n"
          "v = sys.version_info[:2]\n"
          "try:\n"
          "    import lava, importlib.metadata as m\n"
          "    lv = m.version('lava-nc')\n"
          "except Exception as e:\n"
          "    lv = None\n"
          "print(json.dumps({'python': '%d.%d' % v, 'lava': lv}))\n")


# ----------------------------------------------------------------------------- environment
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
#: Loads ``RUNTIME_DIR`` (argv[1]) as the package ``spikec_lava`` and runs its runner (argv[2:]).
_RUN = ("import importlib.util, os, sys\n"
        "root = sys.argv[1]\n"
        "spec = importlib.util.spec_from_file_location('spikec_lava', os.path.join(root, "
        "'__init__.py'), submodule_search_locations=[root])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['spikec_lava'] = module\n"
        "spec.loader.exec_module(module)\n"
        "from spikec_lava.runner import main\n"
        "main(sys.argv[2:])\n")


def _candidates() -> list[Path]:
    repo = Path(__file__).resolve().parents[2]
    out = [repo / ".venv-lava" / "bin" / "python"]
    if os.environ.get(LAVA_ENV_VAR):
        out.append(Path(os.environ[LAVA_ENV_VAR]))
    return out


def find_lava_python() -> str:
    """The Lava environment's interpreter: ``.venv-lava`` beside the spikec checkout, else
    ``$SPIKEC_LAVA_PYTHON``. Raises ``MissingEnvironmentError`` when neither is a Python 3.10
    with lava-nc."""
    problems = []
    for py in _candidates():
        if not py.exists():
            problems.append(f"{py} does not exist")
            continue
        try:
            r = subprocess.run([str(py), "-c", _CHECK], capture_output=True, text=True, timeout=120)
            info = json.loads(r.stdout.strip().splitlines()[-1])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            problems.append(f"{py} does not run")
            continue
        if info["python"] != "3.10":
            problems.append(f"{py} is Python {info['python']}, Lava needs 3.10")
        elif not info["lava"]:
            problems.append(f"lava-nc is not installed in {py}")
        else:
            return str(py)
    raise MissingEnvironmentError(
        "no Lava environment: " + "; ".join(problems) + f" (run scripts/setup_lava.sh, or set "
        f"{LAVA_ENV_VAR} to a Python 3.10 with lava-nc 0.10)")


# ----------------------------------------------------------------------------- inputs
def _bundle(out: Path) -> tuple[dict, dict, object]:
    """(manifest, plan, fixed graph) of a compile output; checks version, hashes and graph."""
    from spikec.ir import load

    bdir = out / BUNDLE_DIR
    if not bdir.is_dir():
        raise InputFileError(f"{out}: no Lava bundle ({BUNDLE_DIR}/); write one with "
                             f"'spikec lava-bundle {out}'")
    manifest = read_manifest(bdir)
    if manifest.get("spikec_version") != __version__:
        raise InputFileError(f"{bdir}: bundle written by spikec {manifest.get('spikec_version')}, "
                             f"this is spikec {__version__}; rewrite it with 'spikec lava-bundle "
                             f"{out}'")
    gpath = out / GRAPH_FILE
    try:
        gbytes = gpath.read_bytes()
    except OSError:
        raise InputFileError(f"{out}: no {GRAPH_FILE} (not a spikec compile output)") from None
    if manifest.get("graph_sha256") and hashlib.sha256(gbytes).hexdigest() != manifest["graph_sha256"]:
        raise InputFileError(f"{bdir}: the bundle was built from another {GRAPH_FILE}; rewrite it "
                             f"with 'spikec lava-bundle {out}'")
    plan = json.loads((bdir / "network.json").read_text())
    return manifest, plan, load(gpath)


def _load_inputs(graph, data: str, limit: int | None) -> dict:
    from spikec.data import load as load_data

    ds = load_data(data, limit)
    (inp,) = graph.inputs
    if tuple(ds.shape) != tuple(inp.shape):
        raise DataError(f"{data}: samples of shape {tuple(ds.shape)}, the model's input "
                        f"{inp.name!r} takes {tuple(inp.shape)}")
    if len(ds) == 0:
        raise DataError(f"{data}: no samples")
    return {inp.name: ds.images}


#: samples per simulator run in validate: the shipped V2's CPU per sample, 128 samples, one
#: thread, was 2.18 / 1.52 / 1.40 / 1.56 / 2.19 ms at 4 / 8 / 16 / 32 / 64 (the working set of a
#: larger chunk leaves the cache; a smaller one pays the per-op overhead more often)
_CHUNK = 16
#: warm-up passes over the first chunk per thread, in the set-up: after one, the steady part of a
#: first run still took about 9,000 page faults for 64 samples (the allocator's heap still
#: growing to the run's working set) and cost 1.1-1.25x a later run; after three, about 30.
WARM_UP_PASSES = 3
#: The steady state is timed like ``timeit``: the pass over the samples whose values are compared
#: is followed by more passes over the same samples (their values are discarded) until the passes
#: took ``TIMED_SECONDS`` in all, at most ``MAX_PASSES``; the figure is the median pass. A pass of
#: a few samples lasts milliseconds, and one descheduled thread or a neighbour's burst on a
#: shared machine can double a single pass (shipped V2, 8 samples: 1.1-1.5 ms per sample from
#: one pass to the next). Lava's steady figure is a mean over seconds of steps, which such
#: hiccups do not move.
TIMED_SECONDS = 0.5
MAX_PASSES = 50


def _simulate(graph, plan, inputs: dict) -> tuple[dict, dict]:
    """The simulator's values of the probed layers, and its timing: ``seconds`` (wall: the set-up
    and the pass whose values are compared), ``setup`` seconds, ``steady`` (the median pass's
    wall seconds), ``cpu`` (that pass's CPU seconds, every worker's; beside the wall seconds,
    which other processes on the machine stretch), ``passes`` (wall seconds of every timed
    pass), ``threads`` (the workers) and ``parallel`` (``"processes"`` or ``"threads"``).

    The samples are split so that every worker has a chunk (``_CHUNK`` samples at most). Where
    processes can be forked (``spikec.sim.forked``) the prepared simulator runs in that many
    worker processes, which write the probed values into shared memory; else on the threads of
    ``spikec.sim.threads``. Either way the values are laid out for the comparison after the
    clock stops, as Lava's steady time leaves out writing its trace.

    Set-up: preparing weights, loading the optional accelerators, one pass over the first chunk
    in this process (numba's compiles, the int8 probe: once, before any fork), then
    ``WARM_UP_PASSES`` passes over its first chunk per worker (first touches of fresh memory,
    numpy's first dispatch of each kernel), all excluded from the steady time like Lava's
    start-up and first step. Then the timed passes (``TIMED_SECONDS``, ``MAX_PASSES``). The
    simulator counts no events here (``run(events=False)``): only the values are compared.
    """
    from spikec.memory import require_simulation_memory
    from spikec.sim import forked
    from spikec.sim.threads import threads_for

    n = len(next(iter(inputs.values())))
    data = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    workers = threads_for(graph, min(_CHUNK, n), n)
    size = max(1, min(_CHUNK, -(-n // workers)))    # every worker gets a chunk
    require_simulation_memory(graph, min(size, n), where="validate")
    chunks = [(s, min(s + size, n)) for s in range(0, n, size)]
    run = dict(record=[p["value"] for p in plan["probes"]], events=False, raw=True)
    t0 = time.perf_counter()
    on = _passes_on_processes if workers > 1 and forked.available() else _passes_on_threads
    out, setup, passes, parallel = on(graph, plan, data, chunks, workers, run, t0)
    steady, cpu = sorted(passes)[(len(passes) - 1) // 2]
    return out, {"seconds": setup + passes[0][0], "setup": setup, "steady": steady, "cpu": cpu,
                 "passes": [w for w, _ in passes], "threads": workers, "parallel": parallel}


def _more_passes(passes: list) -> bool:
    """Whether to time another pass (``TIMED_SECONDS``, ``MAX_PASSES``; at least one)."""
    return not passes or (sum(w for w, _ in passes) < TIMED_SECONDS and len(passes) < MAX_PASSES)


def _store(plan, out: dict, res, start: int) -> None:
    """A run's probed values ``[T, b, ...]`` into ``out[name][start:start + b]`` ([n, T, ...])."""
    for p in plan["probes"]:
        v = res.values[p["value"]]
        out[p["value"]][start:start + res.samples] = v if p["kind"] == "readout" else \
            np.moveaxis(v, 0, 1)


def _passes_on_processes(graph, plan, data, chunks, workers, run, t0):
    """``_simulate`` on forked worker processes: ``(values, set-up seconds, [(wall, cpu)
    seconds of each timed pass], "processes")``."""
    from spikec.sim import forked
    from spikec.sim.engine import Simulator

    sim = Simulator(graph)
    sim.prepare()
    s0, e0 = chunks[0]
    sim.run(forked.sample_range(data, s0, e0), **run)   # compiles, probes: once, before the fork
    out = _probe_buffers(graph, plan, sim.bounds, chunks[-1][1], shared=True)
    with forked.ForkedPasses(sim, data, chunks, lambda res, s: _store(plan, out, res, s), workers,
                             WARM_UP_PASSES, **run) as pool:
        setup = time.perf_counter() - t0
        passes = []
        while _more_passes(passes):
            passes.append(pool.run())
        pool.store()              # the values, in the comparison's layout: after the clock
    return out, setup, passes, "processes"


def _passes_on_threads(graph, plan, data, chunks, workers, run, t0):
    """``_simulate`` on the threads of one process (``_passes_on_processes``'s results)."""
    from spikec.sim.forked import sample_range
    from spikec.sim.threads import SimulatorPool

    results, passes = None, []
    with SimulatorPool(graph, workers) as pool:
        s0, e0 = chunks[0]
        list(pool.map([sample_range(data, s0, e0)] * (pool.threads * WARM_UP_PASSES), **run))
        setup = time.perf_counter() - t0
        while _more_passes(passes):
            w0, c0 = time.perf_counter(), time.process_time()
            got = list(pool.map((sample_range(data, s, e) for s, e in chunks), **run))
            passes.append((time.perf_counter() - w0, time.process_time() - c0))
            results = got if results is None else results
            del got
        bounds = pool.simulators[0].bounds
    out = _probe_buffers(graph, plan, bounds, chunks[-1][1] if chunks else 0)
    for (s, _), res in zip(chunks, results):
        _store(plan, out, res, s)
    return out, setup, passes, "threads"


def _probe_buffers(graph, plan, bounds: dict, n: int, shared: bool = False) -> dict:
    """One array per probe for ``n`` samples, ``[n, T, *shape]`` (a readout's logits: ``[n,
    *shape]``), in the narrowest dtype of its values (spikes bool; counts int16 or int32 from the
    simulator's static bound); ``shared``: in shared memory (``spikec.sim.forked``)."""
    from spikec.sim.forked import shared_empty

    out = {}
    for p in plan["probes"]:
        shape = tuple(graph.specs[p["value"]].shape)
        if p["kind"] == "readout":
            dt, full = np.float64, (n,) + shape
        else:
            b = bounds[p["value"]]
            dt = bool if p["kind"] == "spike" else np.int16 if b < 1 << 15 else \
                np.int32 if b < 1 << 31 else np.int64
            full = (n, graph.timesteps) + shape
        out[p["value"]] = shared_empty(full, dt) if shared else np.zeros(full, dt)
    return out


# ----------------------------------------------------------------------------- comparison
def compare(graph, plan, trace: dict, predicted: dict) -> dict:
    """Element-for-element comparison of a trace with the simulator's values.

    Returns ``spikes_compared`` (neuron-steps compared), ``nonzero_compared`` (of which the
    simulator has a spike or a nonzero count), ``mismatches``, ``first_divergence``
    (earliest time step, then earliest layer: layer, sample, neuron index, step, both values;
    None when none) and per-layer counts.
    """
    layers, first = [], None
    compared = mismatches = 0
    for order, p in enumerate(plan["probes"]):
        name = p["value"]
        if p["kind"] == "readout":
            op = graph.op(name)
            acc = trace["readout/" + name].astype(np.float64)
            got = op.scale * acc + np.asarray(op.offset, np.float64)
            want = np.asarray(predicted[name], np.float64)
        else:
            got = trace["spikes/" + name].astype(np.int64)
            want = np.asarray(predicted[name]).astype(np.int64)
        if got.shape != want.shape:
            raise InputFileError(f"trace layer {name!r}: shape {got.shape}, expected {want.shape}")
        bad = got != want
        nbad = int(bad.sum())
        layers.append({"name": name, "kind": p["kind"], "shape": p["shape"],
                       "depth": p["depth"], "compared": int(got.size), "mismatches": nbad,
                       "spikes": int(np.count_nonzero(want)) if p["kind"] != "readout" else None})
        if p["kind"] != "readout":
            compared += int(got.size)
            mismatches += nbad
        if nbad:
            idx = np.argwhere(bad)
            if p["kind"] == "readout":
                k, *neuron = idx[0]
                t = graph.timesteps  # after the last step
            else:
                sel = idx[np.lexsort((idx[:, 0], idx[:, 1]))][0]   # earliest step, then sample
                k, t, *neuron = sel
            key = (int(t), order)
            if first is None or key < first["_key"]:
                flat = int(np.ravel_multi_index(tuple(neuron), tuple(p["shape"]))) if neuron else 0
                first = {"_key": key, "layer": name, "sample": int(k), "time_step": int(t),
                         "neuron": [int(i) for i in neuron], "neuron_flat": flat,
                         "lava": _scalar(got[(k, t, *neuron) if p["kind"] != "readout" else (k, *neuron)]),
                         "spikec": _scalar(want[(k, t, *neuron) if p["kind"] != "readout" else (k, *neuron)])}
    readout = [l for l in layers if l["kind"] == "readout"]
    if first is not None:
        first.pop("_key")
    return {"spikes_compared": compared,
            "nonzero_compared": sum(l["spikes"] or 0 for l in layers),
            "mismatches": mismatches + sum(l["mismatches"] for l in readout),
            "readout_compared": sum(l["compared"] for l in readout), "first_divergence": first,
            "layers": layers}


def _scalar(x):
    x = np.asarray(x).item()
    return float(x) if isinstance(x, float) else int(x)


# ----------------------------------------------------------------------------- the two paths
def run_bundle(out: Path, inputs: dict, *, python: str | None = None, hardware: bool = False,
               trace_path: Path | None = None, batch: int = 0) -> tuple[dict, float]:
    """Run the bundle's data files with this spikec's runner (``RUNTIME_DIR/runner.py``, never a
    script from OUT) in the Lava environment; returns (trace arrays, wall seconds). Call it on a
    bundle whose manifest was checked (``read_manifest``)."""
    py = python or find_lava_python()
    with tempfile.TemporaryDirectory(prefix="spikec-validate-") as tmp:
        inp = Path(tmp) / "inputs.npz"
        save_npz(inp, inputs)
        trace = trace_path or Path(tmp) / "trace.npz"
        cmd = [py, "-c", _RUN, str(RUNTIME_DIR), "--bundle", str(Path(out).resolve() / BUNDLE_DIR),
               "--inputs", str(inp), "--trace", str(trace), "--batch", str(batch)] \
            + (["--hw"] if hardware else [])
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            raise SpikecError(f"the Lava run failed: {lines[-1] if lines else 'exit ' + str(r.returncode)}")
        return load_npz(trace), wall


def read_trace(path, plan: dict, manifest: dict) -> tuple[dict, dict]:
    """A trace file's arrays and meta, checked against the bundle (``spikec.tracefile``: format,
    bundle hash, layer names, shapes and types; one-line ``InputFileError``)."""
    from spikec.tracefile import read_trace as read_checked

    return read_checked(path, plan, manifest)


def _trace_inputs(arrays: dict, plan: dict, path) -> dict:
    out = {}
    for i in plan["inputs"]:
        key = "inputs/" + i["value"]
        if key not in arrays:
            raise InputFileError(f"{path}: the trace lacks its inputs ({key})")
        out[i["value"]] = arrays[key]
    return out


def validate_lava(out, data: str, limit: int | None = None, *, batch: int = 0,
                  python: str | None = None, workers: int = 1, cluster: str | None = None) -> dict:
    """Run the bundle on Lava's CPU models and compare with the simulator (see the module doc).

    ``workers`` / ``cluster``: run shards of the samples (whole ``batch``es) as separate Lava
    runs on local processes or a Dask cluster (``spikec.shards``; each worker needs the Lava
    environment); their traces are joined in sample order, so the comparison is the same."""
    out = Path(out)
    manifest, plan, graph = _bundle(out)
    inputs = _load_inputs(graph, data, limit)
    host = encodings.host_layers(plan)
    # the simulator first: Lava's 270-odd processes leave the machine busy for a while after
    # they exit (load 30-50 on 2 cores), which doubled the simulator's times measured after it;
    # with a host layer its spikes are the bundle's input anyway
    predicted, sim = _simulate(graph, plan, inputs)
    feed = encodings.bundle_inputs(plan, inputs, {k: predicted[k] for k in host} if host else None)
    if workers == 1 and not cluster:
        py = python or find_lava_python()
        trace, lava_wall = run_bundle(out, feed, python=py, batch=batch)
    else:
        trace, lava_wall = _run_sharded(out, feed, python, batch, workers, cluster)
    meta = json.loads(str(trace["meta"]))
    res = compare(graph, plan, trace, predicted)
    return _result("lava", manifest, plan, meta, res, lava_wall, sim, data)


def _lava_shard(out: str, inputs: dict, python: str | None, batch: int) -> tuple[dict, float]:
    """One shard of ``validate_lava`` on a worker: a Lava run of its samples."""
    return run_bundle(Path(out), inputs, python=python or find_lava_python(), batch=batch)


def _run_sharded(out: Path, inputs: dict, python, batch: int, workers: int, cluster):
    from spikec import shards

    n = len(next(iter(inputs.values())))
    plan = shards.plan_shards(n, batch if batch > 0 else n, workers, batches_per_shard=1)
    tasks = [shards.Task(_lava_shard, (str(out.resolve()),
                                       {k: v[sh.start:sh.stop] for k, v in inputs.items()},
                                       python, batch), sh.size) for sh in plan]
    t0 = time.perf_counter()
    with shards.Runner(workers, cluster) as runner:
        parts = runner.run(tasks)
    wall = time.perf_counter() - t0
    return merge_traces([p for p, _ in parts]), wall


def merge_traces(traces: list[dict]) -> dict:
    """Traces of consecutive sample shards as one: arrays joined along the sample axis, the
    meta's counts added (``samples``, ``steps``, seconds) and its steady seconds per step
    averaged over the shards' steps."""
    metas = [json.loads(str(t["meta"])) for t in traces]
    meta = dict(metas[0])
    meta["samples"] = sum(int(m["samples"]) for m in metas)
    meta["steps"] = sum(int(m.get("steps") or 0) for m in metas)
    seconds: dict = {}
    for m in metas:
        for k, v in (m.get("seconds") or {}).items():
            if k not in ("steady_per_step", "steady_per_sample") and v is not None:
                seconds[k] = seconds.get(k, 0.0) + v
    steady = [(m["seconds"].get("steady_per_step"), int(m.get("steps") or 0)) for m in metas
              if (m.get("seconds") or {}).get("steady_per_step") is not None]
    steps = sum(k for _, k in steady)
    if steps:
        seconds["steady_per_step"] = sum(s * k for s, k in steady) / steps
        seconds["steady_per_sample"] = seconds["steady_per_step"] * int(meta["timesteps"]) \
            if meta.get("timesteps") else None
    meta["seconds"] = seconds
    merged = {k: np.concatenate([t[k] for t in traces]) for k in traces[0] if k != "meta"}
    merged["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return merged


def validate_trace(out, trace_file, data: str | None = None, limit: int | None = None) -> dict:
    """Compare a trace written by the bundle's runner (chip or CPU) with the simulator."""
    out = Path(out)
    manifest, plan, graph = _bundle(out)
    arrays, meta = read_trace(trace_file, plan, manifest)
    fed = _trace_inputs(arrays, plan, trace_file)
    inputs = encodings.graph_inputs(plan, fed)   # None: a host layer's spikes, not pixels
    if data is not None:
        given = _load_inputs(graph, data, limit if limit is not None else meta["samples"])
        for k, v in (given.items() if inputs is not None else ()):
            if v.shape != inputs[k].shape or not np.array_equal(v, inputs[k]):
                raise DataError(f"{data}: not the samples the trace {trace_file} was recorded on")
        # a host layer's spikes in the trace are compared with the simulator's as its layer
        inputs = given
    elif inputs is None:
        raise DataError(f"{trace_file}: the bundle's input is the spikes of its first layer, "
                        "computed on the host (--input-encoding host), not the pixels; pass "
                        "--data with the samples the trace was recorded on")
    predicted, sim = _simulate(graph, plan, inputs)
    res = compare(graph, plan, arrays, predicted)
    lava_s = float(meta.get("seconds", {}).get("wall", float("nan")))
    result = _result("trace", manifest, plan, meta, res, lava_s, sim, data, str(trace_file))
    from spikec.estimate.timing_trace import trace_timing  # optional per-step timing (HIL)

    result["timing"] = trace_timing(graph, arrays, inputs, manifest, plan)
    return result


def _result(against, manifest, plan, meta, res, lava_s, sim: dict, data, trace=None) -> dict:
    """The validation's JSON; ``sim`` is ``_simulate``'s timing."""
    n = int(meta["samples"])
    sim_s, setup, steady, cpu = sim["seconds"], sim["setup"], sim["steady"], sim["cpu"]
    passes = sorted(sim["passes"])
    secs = meta.get("seconds", {})
    return {
        "against": against, "trace": trace, "data": data, "samples": n,
        "spikes_compared": res["spikes_compared"], "nonzero_compared": res["nonzero_compared"],
        "mismatches": res["mismatches"],
        "readout_compared": res["readout_compared"], "first_divergence": res["first_divergence"],
        "lava_seconds": lava_s, "spikec_seconds": sim_s,
        "lava_seconds_per_sample": lava_s / n if n else None,
        "spikec_seconds_per_sample": sim_s / n if n else None,
        # the simulator's marginal cost once its weights are prepared (set-up excluded)
        "spikec_setup_seconds": setup,
        "spikec_threads": sim["threads"],
        # the workers are threads of one process or forked processes (``spikec.sim.forked``)
        "spikec_parallel": sim.get("parallel", "threads"),
        # the median of the timed passes over the samples (``_simulate``)
        "spikec_steady_seconds_per_sample": steady / n if n else None,
        # the same pass in process CPU seconds (all threads): the wall figure on an idle machine
        "spikec_steady_cpu_seconds_per_sample": cpu / n if n and cpu is not None else None,
        "spikec_timed_passes": len(passes),
        "spikec_pass_seconds_per_sample": ({"min": passes[0] / n, "median": steady / n,
                                            "max": passes[-1] / n} if n else None),
        # Lava's marginal cost: T steps per sample once the processes run (startup excluded)
        "lava_steady_seconds_per_sample": secs.get("steady_per_sample"),
        "lava_startup_seconds": secs.get("startup"),
        "lava_run": {"run_config": meta.get("run_config"), "steps": meta.get("steps"),
                     "processes": meta.get("processes"), "seconds": secs,
                     "host_traffic": meta.get("host_traffic")},
        "ssa": manifest.get("ssa"), "conv": manifest.get("conv"),
        "bundle_hash": manifest["bundle_hash"], "pipeline_depth": plan["depth"],
        "timesteps": plan["timesteps"], "layers": res["layers"],
    }


# ----------------------------------------------------------------------------- bundles
def rewrite_bundle(out, *, ssa: str = "host", conv: str = "lava") -> dict:
    """(Re)write ``OUT/lava`` from ``OUT/compiled.spkc``; returns the bundle facts. A
    multi-chip profile named in report.json gets its ``placement.json`` again."""
    from spikec.ir import load

    path = Path(out) / GRAPH_FILE
    if not path.exists():
        raise InputFileError(f"{out}: no {GRAPH_FILE} (run spikec compile first)")
    return write_bundle(load(path), out, ssa=ssa, conv=conv, profile=_compiled_profile(out))


def _compiled_profile(out):
    """The profile OUT was compiled for (report.json's ``profile``, by name), or None where
    there is none or it is not found (a ``.toml`` given by path: the bundle then has no
    placement)."""
    from spikec.errors import ProfileError
    from spikec.target.profile import load_profile

    try:
        name = json.loads((Path(out) / "report.json").read_text()).get("profile")
        return load_profile(name) if isinstance(name, str) and name else None
    except (OSError, ValueError, AttributeError, ProfileError):
        return None


def validate(out, *, against: str, data: str | None = None, limit: int | None = None,
             trace_file=None, batch: int = 100, workers: int = 1,
             cluster: str | None = None) -> dict:
    """The backend's ``validate``: ``against='lava'`` runs the bundle on Lava's CPU models
    (``validate_lava``), ``against='trace'`` reads ``trace_file`` (``validate_trace``)."""
    if against == "lava":
        return validate_lava(out, data, limit, batch=batch, workers=workers, cluster=cluster)
    if workers != 1 or cluster:
        raise DataError("--workers/--cluster shard Lava runs (--against lava); a trace is read "
                        "in one process")
    if against == "trace":
        return validate_trace(out, trace_file, data, limit)
    raise DataError(f"--against must be lava or trace, not {against!r}")
