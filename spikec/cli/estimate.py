"""``spikec estimate`` and ``spikec profiles``: the command line over ``spikec.estimate.driver``."""
from __future__ import annotations

import json
import sys

import click

from spikec.cli import progress_shown, shard_options
from spikec.errors import CapacityError
from spikec.estimate.driver import DEFAULT_PROFILE
from spikec.table import format_table


def _bar(total: int, label: str):
    """A progress bar on stderr where it is a terminal, else nothing (``progress_shown``)."""
    from contextlib import nullcontext

    if not progress_shown():
        return nullcontext()
    return click.progressbar(length=total, label=label, file=sys.stderr)


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
@click.option("--timing", type=click.Choice(["analytic", "cycle", "cycle-buffered"]),
              default="analytic", show_default=True,
              help="Latency model: analytic (mean events) or cycle (every sample and step of "
              "--data through the cycle-level timing simulator); cycle-buffered: cycle with a "
              "message-level NoC (router buffers, back-pressure; slow, for small sets).")
@shard_options("Evaluate --sweep points on N local processes (rows identical to one process).",
               "Evaluate --sweep points on an existing Dask cluster (scheduler address).")
@click.option("--no-save", is_flag=True, help="Do not store the estimate in OUT/report.json.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--arch", help="Registry architecture of a bare state_dict (model files).")
@click.option("-T", "--timesteps", type=int, help="Time steps (model files).")
@click.option("--input-encoding", type=click.Choice(["auto", "graded", "bitplane", "rate", "host"]),
              help="How raw pixels reach the first layer of a model file (spikec compile "
                   "--input-encoding; default auto: graded where the profile has graded spikes, "
                   "else bitplane). host: the first layer on the host, its spikes sent in.")
def estimate(model_or_out, profile_name, chips, data_spec, limit, cost, rate, ssa, sweeps,
             plot_path, timing, workers, cluster, no_save, as_json, arch, timesteps,
             input_encoding):
    """Map MODEL_OR_OUT onto a chip's cores; estimate energy and latency per inference.

    MODEL_OR_OUT is a compiled output directory (compiled.spkc, report.json), a .spkc file, or a
    model file (compiled first). Exits 3 when the network does not fit.
    """
    from spikec.estimate import driver

    if chips is not None and chips < 1:
        raise click.BadParameter("--chips must be >= 1")
    if timing != "analytic" and not data_spec:
        raise click.UsageError(f"--timing {timing} needs --data SET (it times every sample "
                               "and step)")
    inp = driver.prepare(model_or_out, profile_name, chips=chips, data_spec=data_spec,
                         limit=limit, ssa=ssa, arch=arch, timesteps=timesteps, progress=_bar,
                         timing=timing, cost=cost, input_encoding=input_encoding)
    if sweeps:
        _print_sweep(*driver.sweep(inp, sweeps, chips=chips, cost=cost, rate=rate,
                                   plot_path=plot_path, data_spec=data_spec, limit=limit,
                                   load_args=(arch, timesteps), progress=_bar, workers=workers,
                                   cluster=cluster),
                     inp, as_json)
        return
    try:
        j = driver.estimate_one(inp, chips=chips, cost=cost, rate=rate)
    except CapacityError as e:
        if as_json:  # the JSON still says why, then the exit code 3
            click.echo(json.dumps({"profile": inp.profile.name, "fits": False, "reason": str(e),
                                   "ssa": inp.net.ssa, "chips": None, "cores": None, "layers": [],
                                   "energy_per_inference_j": {"paper_45nm": None, "profile": None},
                                   "latency_per_step_s": None, "timesteps": inp.graph.timesteps},
                                  indent=2, sort_keys=True))
        raise
    if inp.out_dir is not None and not no_save:
        driver.save_estimate(inp.out_dir, inp.report, j)
    if as_json:
        click.echo(json.dumps(j, indent=2, sort_keys=True, default=float))
    else:
        click.echo(_layer_table(j))
        click.echo("")
        click.echo(_summary(j))
        if j.get("timing") is not None:
            from spikec.estimate.timing_run import timing_table

            click.echo("\n" + timing_table(j["timing"]))
    if not j["fits"]:
        raise CapacityError(j["reason"])


def _print_sweep(rows, plot_path, inp, as_json) -> None:
    from spikec.estimate.dse import sweep_table_rows

    ssa = inp.net.ssa
    if as_json:
        click.echo(json.dumps({"profile": inp.profile.name, "ssa": ssa, "sweep": rows,
                               "plot": plot_path}, indent=2, sort_keys=True, default=float))
        return
    headers, cells = sweep_table_rows(rows)
    click.echo(format_table(headers, cells))
    click.echo(f"\nSSA: {_SSA_WORDS[ssa]}")
    if plot_path:
        click.echo(f"\nplot: {plot_path}")
    if any(r.get("note") for r in rows):
        click.echo("note: " + next(r["note"] for r in rows if r.get("note")))


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
