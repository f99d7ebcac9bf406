"""``spikec validate`` and ``spikec lava-bundle``: the command line over ``spikec.validate`` and
the Lava backend (``spikec.backend``)."""
from __future__ import annotations

import json
import sys

import click

from spikec.cli import shard_options
from spikec.validate import validate_bundle


def _print(res: dict) -> None:
    from spikec.table import format_table

    rows = [[l["name"], l["kind"], "x".join(map(str, l["shape"])), l["depth"], l["compared"],
             l["mismatches"]] for l in res["layers"]]
    click.echo(format_table(["layer", "kind", "shape", "depth", "compared", "mismatches"], rows))
    click.echo("")
    ok = res["mismatches"] == 0
    click.echo(f"{res['samples']} samples against {res['against']}: {res['spikes_compared']:,} "
               f"neuron-steps ({res['nonzero_compared']:,} spikes or nonzero counts) and "
               f"{res['readout_compared']:,} readout values compared, "
               f"{res['mismatches']:,} mismatches" + (" (identical)" if ok else ""))
    fd = res["first_divergence"]
    if fd:
        click.echo(f"first divergence: layer {fd['layer']}, sample {fd['sample']}, neuron "
                   f"{tuple(fd['neuron'])} (flat {fd['neuron_flat']}), time step {fd['time_step']}: "
                   f"Lava {fd['lava']}, spikec {fd['spikec']}")
    steady = res.get("lava_steady_seconds_per_sample")
    extra = "" if steady is None else \
        f"; {res['lava_startup_seconds']:.1f} s start-up, then {steady:.2f} s per sample"
    procs = res["lava_run"].get("processes")
    extra = (f" ({procs} processes" + extra + ")") if procs else ""
    cpu = res.get("spikec_steady_cpu_seconds_per_sample")
    cpu = "" if cpu is None else f", {cpu * 1e3:.2f} ms of CPU"
    threads = res.get("spikec_threads") or 1
    words = ("process", "processes") if res.get("spikec_parallel") == "processes" else \
        ("thread", "threads")
    threads = f"{threads} {words[threads > 1]}; "
    spread = res.get("spikec_pass_seconds_per_sample")
    passes = res.get("spikec_timed_passes") or 1
    spread = "" if not spread or passes < 2 else \
        (f": the median of {passes} passes over the samples, "
         f"{spread['min'] * 1e3:.2f}-{spread['max'] * 1e3:.2f}")
    click.echo(f"wall time: Lava {res['lava_seconds']:.1f} s{extra}, spikec simulator "
               f"{res['spikec_seconds']:.2f} s ({threads}{res['spikec_setup_seconds']:.2f} s "
               f"set-up, then {res['spikec_steady_seconds_per_sample'] * 1e3:.2f} ms per "
               f"sample{spread}{cpu})")
    if steady and res["spikec_steady_seconds_per_sample"]:
        click.echo(f"steady state: spikec {steady / res['spikec_steady_seconds_per_sample']:,.0f}x "
                   f"faster than Lava per sample")
    if res.get("timing"):
        from spikec.estimate.timing_trace import format_trace_timing

        click.echo(format_trace_timing(res["timing"]))


@click.command()
@click.argument("out", type=click.Path())
@click.option("--against", "against", required=True, type=click.Choice(["lava", "trace"]),
              help="lava: run OUT/lava on Lava's CPU models; trace: read a trace file.")
@click.argument("trace_file", required=False, type=click.Path())
@click.option("--data", help="Samples (mnist5k:test, fashion-mnist:test, cifar10-foolbox or .npz); "
              "required with --against lava.")
@click.option("--limit", type=int, help="Use the first N samples.")
@click.option("--batch", type=int, default=100, show_default=True,
              help="Samples per Lava run (each run starts Lava's processes again; the probes of "
              "a run stay in memory until it ends). 0: all in one run.")
@shard_options("Run shards of the samples (whole --batch runs) as N Lava runs in parallel.",
               "Run the Lava shards on an existing Dask cluster (workers need spikec and the "
               "Lava environment).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate(out, against, trace_file, data, limit, batch, workers, cluster, as_json):
    """Check bit for bit that OUT's Lava bundle (--against lava) or a chip trace (--against
    trace FILE) computes the spikes spikec's simulator predicts. Exit 1 on any mismatch."""
    if limit is not None and limit < 1:
        raise click.BadParameter("--limit must be >= 1")
    if against == "lava":
        if trace_file:
            raise click.BadParameter("--against lava takes no trace file")
        if not data:
            raise click.BadParameter("--against lava needs --data")
    elif not trace_file:
        raise click.BadParameter("--against trace needs the trace FILE")
    res = validate_bundle(out, against, data=data, limit=limit, trace_file=trace_file,
                          batch=batch, workers=workers, cluster=cluster)
    if as_json:
        click.echo(json.dumps(res, indent=2, sort_keys=True))
    else:
        _print(res)
    if res["mismatches"]:
        sys.exit(1)


@click.command(name="lava-bundle")
@click.argument("out", type=click.Path())
@click.option("--ssa", type=click.Choice(["host", "decompose"]), default="host", show_default=True,
              help="Lowering of spiking self-attention's products.")
@click.option("--conv", type=click.Choice(["lava", "sparse"]), default="lava", show_default=True,
              help="Conv synapses as Lava Conv (shared weights) or unrolled Lava Sparse.")
@click.option("--json", "as_json", is_flag=True, help="Print the bundle facts as JSON.")
def lava_bundle(out, ssa, conv, as_json):
    """(Re)write OUT/lava, the Lava bundle of OUT/compiled.spkc."""
    from spikec import backend

    facts = backend.get("lava").rewrite_bundle(out, ssa=ssa, conv=conv)
    if as_json:
        click.echo(json.dumps(facts, indent=2, sort_keys=True))
        return
    click.echo(f"wrote {out}/lava: ssa={ssa}, conv={conv}, {facts['processes']} processes, "
               f"{facts['neurons']:,} neurons, {facts['synapses']:,} synapses, pipeline depth "
               f"{facts['pipeline_depth']}; netx: {facts['netx']['reason']}")


COMMANDS = [validate, lava_bundle]
