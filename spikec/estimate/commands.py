"""``spikec estimate`` and ``spikec profiles`` (registered in ``spikec.cli._COMMAND_MODULES``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spikec.atomic import write_atomic
from spikec.errors import CapacityError, InputFileError, MissingEnvironmentError
from spikec.table import format_table

DEFAULT_PROFILE = "loihi2"


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
        report = None
        if (p / "report.json").is_file():
            try:
                report = json.loads((p / "report.json").read_text())
            except json.JSONDecodeError as e:
                raise InputFileError(f"{p / 'report.json'}: not valid JSON: {e}") from None
        return load(spkc), report, p
    if p.suffix == ".spkc":
        return load(p), None, None
    if not p.exists():
        raise InputFileError(f"{p}: no such file or directory")
    return None, None, None


def compile_model(path: str, profile, opts):
    """Compile a model file for ``profile`` (``spikec.pipeline.compile_graph``)."""
    try:
        from spikec.pipeline import compile_graph
    except ImportError:
        raise MissingEnvironmentError(
            "estimating a model file needs spikec.pipeline (the compiler); compile it with "
            "`spikec compile MODEL -o OUT` and pass OUT") from None
    from spikec.frontends import load_model

    graph = load_model(path, opts)
    result = compile_graph(graph, profile)
    return getattr(result, "fixed", result)


def simulate_counts(graph, mapping, data_spec: str, limit: int | None):
    """Run the bit-exact simulator on ``data_spec`` and return (EventCounts, accuracy)."""
    import numpy as np

    from spikec import data as datasets
    from spikec.estimate.events import counts_from_sim
    from spikec.sim import simulate

    ds = datasets.load(data_spec, limit)
    with click.progressbar(length=len(ds), label=f"simulating {ds.name}", file=sys.stderr) as bar:
        res = simulate(graph, ds.images, progress=bar.update)
    acc = float(np.mean(np.argmax(res.logits, axis=-1) == ds.labels)) if len(ds) else None
    counts = counts_from_sim(res, mapping, f"bit-exact simulation of {len(ds)} samples of "
                                           f"{ds.name}")
    return counts, acc


# ----------------------------------------------------------------------------- output

def _layer_table(j: dict) -> str:
    headers = ["layer", "kind", "cores", "neurons", "synapses", "memory KiB", "in axons",
               "out axons", "binding limit", "util", "chips"]
    rows = []
    for e in j["layers"]:
        chips = e["chips"]
        rows.append([e["name"], e["kind"] + (f" /{e['fanin_split']}" if e["fanin_split"] > 1
                                              else ""),
                     e["cores"], e["neurons"], e["synapses"],
                     round(e["synaptic_memory_bytes"] / 1024, 1), e["input_axons"],
                     e["output_axons"], e["binding_limit"],
                     f"{100 * (e['utilization'] or 0):.0f}%",
                     f"{chips[0]}" if len(chips) == 1 else f"{chips[0]}-{chips[-1]}"])
    return format_table(headers, rows)


def _summary(j: dict) -> str:
    e, lat = j["energy_per_inference_j"], j["latency"]["parts_s"]
    lines = [
        f"profile {j['profile']}: {'fits' if j['fits'] else 'DOES NOT FIT'} - {j['cores']:,} cores "
        f"on {j['chips']} chip(s) of {j['chips_available']} available "
        f"({j['cores_per_chip']} cores per chip)",
        f"events: {j['events']['source']}; T = {j['timesteps']}, pipeline depth "
        f"{j['pipeline_depth']} "
        f"({'the Lava bundle' if j['pipeline_depth_source'] == 'backend' else 'from the mapping'})",
        f"SSA: {_SSA_WORDS[j['ssa']]}",
        f"energy per inference: paper 45 nm {_fmt(e['paper_45nm'], 'J')}, profile "
        f"{_cost_model_words(j)}{_fmt(e['profile'], 'J')}",
        f"latency per step {_fmt(j['latency_per_step_s'], 's')} (busiest core "
        f"{_fmt(lat['busiest_core'], 's')} in {j['latency']['busiest_layer']}, network "
        f"{_fmt(lat['network'], 's')}, sync {_fmt(lat['barrier_sync'], 's')}); per inference "
        f"{_fmt(j['latency_per_inference_s'], 's')}",
    ]
    if j["energy"]["profile"]["not_counted"]:
        lines.append("not in the profile (counted as 0): "
                     + ", ".join(j["energy"]["profile"]["not_counted"]))
    lines += [f"note: {n}" for n in j["notes"]]
    return "\n".join(lines)


_SSA_WORDS = {"host": "host lowering (products on the embedded CPUs)",
              "decompose": "decompose lowering (term neurons and relays on the cores)"}


def _fmt(v, unit):
    if v is None:
        return "n/a"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(v) >= scale:
            return f"{v / scale:.4g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def _cost_model_words(j: dict) -> str:
    """``"(MODEL) "`` when the energy comes from a cost model other than the profile's own."""
    model = j["energy"]["profile"]["cost_model"]
    return "" if model == "profile" else f"({model}) "


def _save_estimate(out_dir: Path, report: dict | None, j: dict) -> None:
    report = dict(report or {})
    report["estimate"] = j
    text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False, default=float) + "\n"
    write_atomic(out_dir / "report.json", text.encode("utf-8"))


# ----------------------------------------------------------------------------- commands

@click.command()
@click.argument("model_or_out", type=click.Path())
@click.option("--profile", "profile_name", default=DEFAULT_PROFILE, show_default=True,
              help="Hardware profile name or TOML path.")
@click.option("--chips", type=int, help="Chips available (overrides the profile's system).")
@click.option("--data", "data_spec", help="Measure event counts by simulating this data set.")
@click.option("--limit", type=int, help="First N samples of --data.")
@click.option("--cost", default="profile", show_default=True,
              help="Cost model: the profile's [energy]/[latency], or an [alternatives] name "
                   "(e.g. sanafe).")
@click.option("--rate", type=float, default=0.1, show_default=True,
              help="Firing rate assumed when no event counts are available.")
@click.option("--ssa", type=click.Choice(["host", "decompose"]),
              help="Lowering of spiking self-attention's product to cost: host (embedded CPUs) "
                   "or decompose (term neurons on cores). Default: the one of OUT's Lava bundle "
                   "(report.json), else host.")
@click.option("--sweep", "sweeps", multiple=True, metavar="FIELD=V1,V2",
              help="Design-space sweep of a numeric profile field (repeatable).")
@click.option("--plot", "plot_path", type=click.Path(), help="PNG for the sweep's plot.")
@click.option("--timing", type=click.Choice(["analytic", "cycle"]), default="analytic",
              show_default=True, help="Latency model: analytic (mean events) or cycle (every "
              "sample and step of --data through the cycle-level timing simulator).")
@click.option("--no-save", is_flag=True, help="Do not store the estimate in OUT/report.json.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--arch", help="Registry architecture of a bare state_dict (model files).")
@click.option("-T", "--timesteps", type=int, help="Time steps (model files).")
def estimate(model_or_out, profile_name, chips, data_spec, limit, cost, rate, ssa, sweeps,
             plot_path, timing, no_save, as_json, arch, timesteps):
    """Map MODEL_OR_OUT onto a chip's cores; estimate energy and latency per inference.

    MODEL_OR_OUT is a compiled output directory (compiled.spkc, report.json), a .spkc file, or a
    model file (compiled first). Exits 3 when the network does not fit.
    """
    from spikec.estimate.estimator import estimate as run_estimate
    from spikec.estimate.events import counts_from_report
    from spikec.estimate.mapping import map_network
    from spikec.estimate.network import extract_network
    from spikec.target.profile import load_profile

    if chips is not None and chips < 1:
        raise click.BadParameter("--chips must be >= 1")
    profile = load_profile(profile_name)
    graph, report, out_dir = load_input(model_or_out)
    model_path = None
    if graph is None:
        from spikec.frontends import LoadOptions

        model_path = model_or_out
        graph = compile_model(model_or_out, profile, LoadOptions(arch=arch, timesteps=timesteps))
    lava = (report or {}).get("lava") or {}
    if ssa is None:
        ssa = lava.get("ssa") or "host"
    # the Lava bundle's delay when it was built with this lowering (it knows its gather relays)
    depth = lava.get("pipeline_depth") if lava.get("ssa") == ssa else None
    net = extract_network(graph, ssa)
    accuracy = None
    counts = None
    timing_j = None
    if timing == "cycle" and not data_spec:
        raise click.UsageError("--timing cycle needs --data SET (it times every sample)")
    if data_spec and timing == "cycle":
        from spikec.estimate.timing_run import simulate_timing
        mapping = map_network(net, profile, chips)
        counts, accuracy, timing_j = simulate_timing(graph, mapping, profile, cost, data_spec,
                                                     limit, depth)
    elif data_spec:
        mapping = map_network(net, profile, chips)
        counts, accuracy = simulate_counts(graph, mapping, data_spec, limit)
    elif report is not None:
        def counts(mapping, _r=report):  # noqa: E306 - counts depend on the mapping (relays)
            return counts_from_report(_r, mapping)

    if sweeps:
        _run_sweeps(net, profile, sweeps, counts, chips, cost, rate, plot_path, out_dir,
                    as_json, model_path, data_spec, limit, (arch, timesteps), accuracy)
        return
    try:
        est = run_estimate(net, profile, counts=counts, chips=chips, cost=cost, rate=rate,
                           depth=depth)
    except CapacityError as e:
        if as_json:  # the JSON still says why, then the exit code 3
            click.echo(json.dumps({"profile": profile.name, "fits": False, "reason": str(e),
                                   "ssa": ssa, "chips": None, "cores": None, "layers": [],
                                   "energy_per_inference_j": {"paper_45nm": None, "profile": None},
                                   "latency_per_step_s": None, "timesteps": graph.timesteps},
                                  indent=2, sort_keys=True))
        raise
    j = est.to_json()
    if accuracy is not None:
        j["accuracy"] = accuracy
    if timing_j is not None:
        j["timing"] = timing_j
    if out_dir is not None and not no_save:
        _save_estimate(out_dir, report, j)
    if as_json:
        click.echo(json.dumps(j, indent=2, sort_keys=True, default=float))
    else:
        click.echo(_layer_table(j))
        click.echo("")
        click.echo(_summary(j))
        if timing_j is not None:
            from spikec.estimate.timing_run import timing_table
            click.echo("\n" + timing_table(timing_j))
    if not j["fits"]:
        raise CapacityError(j["reason"])


def _run_sweeps(net, profile, sweeps, counts, chips, cost, rate, plot_path, out_dir, as_json,
                model_path, data_spec, limit, load_args=(None, None), accuracy=None):
    from spikec.estimate.dse import parse_sweeps, plot_sweep, run_sweep, sweep_table_rows

    grid = parse_sweeps(sweeps)
    requantize = None
    if model_path is not None and data_spec:
        requantize = _requantizer(model_path, data_spec, limit, load_args, net.ssa)
    n = 1
    for _, v in grid:
        n *= len(v)
    with click.progressbar(length=n, label="sweep", file=sys.stderr) as bar:
        rows = run_sweep(net, profile, grid, counts=counts, chips=chips, cost=cost, rate=rate,
                         ssa=net.ssa, requantize=requantize, base_accuracy=accuracy,
                         progress=bar.update)
    if plot_path is None and out_dir is not None:
        plot_path = str(out_dir / "sweep.png")
    if plot_path:
        plot_sweep(rows, plot_path)
    if as_json:
        click.echo(json.dumps({"profile": profile.name, "ssa": net.ssa, "sweep": rows,
                               "plot": plot_path}, indent=2, sort_keys=True, default=float))
        return
    headers, cells = sweep_table_rows(rows)
    click.echo(format_table(headers, cells))
    click.echo(f"\nSSA: {_SSA_WORDS[net.ssa]}")
    if plot_path:
        click.echo(f"\nplot: {plot_path}")
    if any(r.get("note") for r in rows):
        click.echo("note: " + next(r["note"] for r in rows if r.get("note")))


def _requantizer(model_path, data_spec, limit, load_args, ssa):
    """Compile the model again for a point's formats, simulate it, and return its accuracy."""
    arch, timesteps = load_args

    def run(prof):
        from spikec.estimate.mapping import map_network
        from spikec.estimate.network import extract_network
        from spikec.frontends import LoadOptions

        graph = compile_model(model_path, prof, LoadOptions(arch=arch, timesteps=timesteps))
        mapping = map_network(extract_network(graph, ssa), prof)
        counts, acc = simulate_counts(graph, mapping, data_spec, limit)
        return graph, counts, acc
    return run


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profiles(as_json):
    """List the shipped hardware profiles (use --profile NAME or a path to your own TOML)."""
    from spikec.target.profile import list_profiles, load_profile

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        c = p.capacity
        rows.append({"name": p.name, "kind": p.kind, "chips": p.system.chips,
                     "cores_per_chip": c.cores_per_chip, "neurons_per_core": c.neurons_per_core,
                     "synaptic_memory_bits_per_core": c.synaptic_memory_bits_per_core,
                     "weight_bits": p.formats.weight_bits,
                     "graded_spikes": p.formats.graded_spikes,
                     "conv_weight_sharing": c.conv_weight_sharing,
                     "synaptic_op_pj": p.energy.synaptic_op, "path": str(p.path),
                     "description": p.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    headers = ["name", "kind", "chips", "cores/chip", "neurons/core", "syn. memory/core",
               "weight bits", "graded", "pJ/synop", "description"]
    click.echo(format_table(headers, [[
        r["name"], r["kind"], r["chips"], r["cores_per_chip"], r["neurons_per_core"],
        "-" if r["synaptic_memory_bits_per_core"] is None
        else f"{r['synaptic_memory_bits_per_core'] // 8192} KiB",
        _dash(r["weight_bits"]), "yes" if r["graded_spikes"] else "no",
        _dash(r["synaptic_op_pj"]), r["description"][:60]] for r in rows]))


def _dash(v):
    return "-" if v is None else v


COMMANDS = [estimate, profiles]
