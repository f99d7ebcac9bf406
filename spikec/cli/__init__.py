"""The ``spikec`` command line. Each command is a thin shell over a library function; every
``SpikecError`` becomes one line on stderr and its exit code (2 for bad input), no traceback unless
``--debug``."""
from __future__ import annotations

import json
import sys

import click

from spikec import __version__
from spikec.errors import SpikecError, one_line
from spikec.table import format_table


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(t) for t in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a shape like 3,32,32") from None
    if not shape or any(d <= 0 for d in shape):
        raise click.BadParameter(f"{text!r}: dimensions must be positive")
    return shape


def _parse_sets(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def model_options(fn):
    """Options shared by every command that loads a model file."""
    opts = [
        click.option("--arch", help="Registry architecture of a bare state_dict/checkpoint."),
        click.option("--trust-pickle", is_flag=True,
                     help="Allow full unpickling of the file (only for files you trust)."),
        click.option("--input-shape", help="Per-sample input shape C,H,W."),
        click.option("-T", "--timesteps", type=int, help="Number of time steps."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a model-config entry (repeatable)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def load_options(arch, trust_pickle, input_shape, timesteps, sets):
    from spikec.frontends import LoadOptions

    if timesteps is not None and timesteps < 1:
        raise click.BadParameter("-T must be >= 1")
    return LoadOptions(arch=arch, trust_pickle=trust_pickle, input_shape=_parse_shape(input_shape),
                       timesteps=timesteps, overrides=_parse_sets(sets))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spikec")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx, debug):
    """spikec: compile spiking neural networks (Spikformer V1/V2 and others) to Loihi-class chips."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json):
    """List the reference models of the registry."""
    from spikec import models as registry

    rows = [{"name": n, **registry.config(n), "model_family": registry.model_family(n),
             "paper_params_m": registry.paper_params(n)} for n in registry.names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    headers = ["name", "family", "input", "architecture", "T", "classes", "paper params"]
    table = [[n, r["model_family"], f"{r['in_channels']}x{r['img_size']}x{r['img_size']}",
              registry.summary(n), r["T"], r["num_classes"],
              "" if r["paper_params_m"] is None else f"{r['paper_params_m']}M"]
             for n, r in zip(registry.names(), rows)]
    click.echo(format_table(headers, table))


@cli.command()
@click.argument("model", type=click.Path())
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with a top-level params total).")
@click.option("--dump", is_flag=True, help="Print the IR as text instead of a table.")
def inspect(model, arch, trust_pickle, input_shape, timesteps, sets, as_json, dump):
    """Show the ops of MODEL with shapes, value kinds, parameters and dense op counts."""
    from spikec.frontends import load_model
    from spikec.ir import dump as dump_ir, summary_rows

    graph = load_model(model, load_options(arch, trust_pickle, input_shape, timesteps, sets))
    if dump:
        click.echo(dump_ir(graph))
        return
    rows = summary_rows(graph)
    total_ops = sum(r["dense_ops"] for r in rows)
    if as_json:
        click.echo(json.dumps({"model": str(model), "timesteps": graph.timesteps,
                               "params": graph.param_count(), "dense_ops_per_step": total_ops,
                               "meta": graph.meta, "ops": rows}, indent=2, sort_keys=True))
        return
    headers = ["name", "op", "shape", "kind", "params", "dense ops/step", "attributes"]
    table = [[r["name"], r["op"] + ("*" if r["stateful"] else ""),
              "x".join(map(str, r["shape"])) + ("" if r["rate"] == "step" else " (final)"),
              r["kind"], r["params"], r["dense_ops"], r["attributes"][:60]] for r in rows]
    click.echo(format_table(headers, table))
    click.echo(f"\n{len(rows)} ops (* = stateful), {graph.param_count():,} parameters, "
               f"{total_ops:,} dense ops per step, T = {graph.timesteps}")


def _parse_preprocess(text: str | None) -> dict | None:
    """``--preprocess``: a JSON object, or ``key=value`` pairs separated by commas, with fractions
    (``1/255``) and per-channel lists separated by colons (``mean=0.49:0.48:0.45``)."""
    if not text:
        return None
    from spikec.data import Preprocess

    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"--preprocess: {e}") from None
    else:
        raw = {}
        for item in text.split(","):
            k, sep, v = item.partition("=")
            if not sep:
                raise click.BadParameter(f"--preprocess {item!r}: expected key=value")
            try:
                vals = [_number(x) for x in v.split(":")]
            except (ValueError, ZeroDivisionError):
                raise click.BadParameter(f"--preprocess {item!r}: not a number") from None
            raw[k.strip()] = vals if k.strip() in ("mean", "std") else vals[0]
    return Preprocess.from_dict(raw).to_dict()


def _number(text: str) -> float:
    num, sep, den = text.partition("/")
    return float(num) / float(den) if sep else float(num)


def shard_options(workers_help: str, cluster_help: str):
    """``--workers N`` and ``--cluster ADDRESS`` (``spikec.shards``), as every sharded command
    takes them."""
    def decorate(fn):
        fn = click.option("--cluster", metavar="ADDRESS", help=cluster_help)(fn)
        return click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                            help=workers_help)(fn)
    return decorate


def progress_shown() -> bool:
    """Progress bars are for a person at a terminal: on a pipe or a log file stderr stays free
    for the one-line error (and nothing half-drawn precedes it)."""
    return sys.stderr.isatty()


def _progress(bars: list, label: str = "evaluating"):
    """A ``progress(total) -> update(n)`` factory drawing click progress bars on stderr: samples
    done, samples per second and time left (over all workers of a sharded run). None where
    stderr is not a terminal."""
    import time

    if not progress_shown():
        return None

    def start(total: int):
        t0 = time.monotonic()
        done = [0]

        def rate(_item) -> str:
            dt = time.monotonic() - t0
            return f"{done[0] / dt:,.1f} samples/s" if done[0] and dt > 0 else ""

        bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                                show_eta=True, item_show_func=rate)
        bar.__enter__()
        bars.append(bar)

        def update(n: int) -> None:
            done[0] += n
            bar.update(n, current_item=done[0])
        return update
    return start


def _close(bars: list) -> None:
    for bar in bars:
        bar.__exit__(None, None, None)


def _layers_table(layers: list[dict]) -> str:
    def num(v, fmt="{:,.1f}"):
        return "" if v is None else fmt.format(v)

    headers = ["layer", "op", "neurons", "spikes", "syn. events", "graded", "rate", "agreement"]
    rows = [[e["name"], e["op"], e["neurons"] or "",
             num(e["spikes"]) if e["op"] in ("cuba_lif", "lif") else "",
             num(e["synaptic_events"]) if e["synaptic_events"] else "",
             num(e["graded_events"]) if e["graded_events"] else "",
             num(e["firing_rate"], "{:.4f}"), num(e["spike_agreement"], "{:.4f}")] for e in layers]
    return format_table(headers, rows)


def _accuracy_line(acc: dict) -> str:
    parts = [f"{k} {acc[k]:.4f}" for k in ("float", "folded", "quantized") if acc.get(k) is not None]
    if not parts:
        return "no --data: accuracy not measured"
    return f"top-1 on {acc['samples']} samples: " + ", ".join(parts)


@cli.command(name="compile")
@click.argument("model", type=click.Path())
@model_options
@click.option("--target", default="loihi2", show_default=True,
              help="Target chip (loihi2, loihi) or interchange format (nir, onnx).")
@click.option("-o", "--out", type=click.Path(),
              help="Output directory. Default: MODEL_STEM.spikec beside the model (model.pt -> "
              "model.spikec/). Replaced only when it is empty or an earlier spikec output.")
@click.option("--force", is_flag=True,
              help="Replace -o even when it holds files that spikec did not write (never when the "
              "model or another input lies inside it).")
@click.option("--data", help="Evaluation set: mnist5k:test, fashion-mnist:test, cifar10-foolbox or a .npz.")
@click.option("--calib", help="Calibration set for the quantizer (same forms as --data; first 64 samples).")
@click.option("--limit", type=int, help="Evaluate on the first N samples of --data.")
@click.option("--residual", type=click.Choice(["auto", "graded", "fanin"]), default="auto",
              show_default=True, help="Lowering of integer-valued (count) synapse inputs.")
@click.option("--profile", "profile_path", type=click.Path(),
              help="Hardware profile file (replaces --target's).")
@click.option("--input-encoding", type=click.Choice(["auto", "graded", "bitplane", "rate", "host"]), default="auto",
              show_default=True, help="How raw pixels reach the first layer: graded spikes, 8 "
              "binary bit planes (exact), or the first layer on the host; auto = graded where the "
              "target has graded spikes, else bitplane. rate is refused (not exact).")
@click.option("--preprocess", help="Input preprocessing of a model that records none "
              "(default pixel_scale=1/255; e.g. 'pixel_scale=1/255,mean=0.5,std=0.5').")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Samples per simulated batch.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the summary.")
@click.option("--ssa", type=click.Choice(["decompose", "host"]),
              help="Spiking self-attention lowering: host (the product on the embedded/host CPU; "
              "default for loihi2) or decompose (standard primitives only). --target nir: no "
              "default, a model with attention needs one.")
@click.option("--quantized", is_flag=True, help="--target nir: export the quantized values.")
def compile_cmd(model, arch, trust_pickle, input_shape, timesteps, sets, target, out, force, data,
                calib, limit, residual, profile_path, input_encoding, preprocess, batch_size,
                as_json, ssa, quantized):
    """Compile MODEL for a Loihi target into OUT (compiled.spkc, folded.spkc, float.spkc,
    report.json); with --data, check top-1 of the float model, the folded graph and the bit-exact
    simulation on the same samples, and per-layer spike agreement. --target nir|onnx writes
    OUT/model.nir|model.onnx instead (docs/interchange.md).

    Without -o, OUT is MODEL_STEM.spikec beside MODEL (model.pt -> model.spikec/). OUT is replaced
    only when it is empty or an earlier spikec output (marker .spikec-output.json); otherwise the
    command stops before compiling and names files that would be lost (--force replaces it, except
    when the model or another input lies inside OUT). A second compile into an OUT that another
    run is writing fails at once."""
    from spikec.backend import export_formats
    from spikec.compiler import compile_model, export_model
    from spikec.outputs import default_out

    options = load_options(arch, trust_pickle, input_shape, timesteps, sets)
    options.preprocess = _parse_preprocess(preprocess)
    if out is None:
        out = str(default_out(model))
        if not as_json:
            click.echo(f"no -o given: writing {out}/ (beside the model)")
    if target in export_formats():  # interchange formats: spikec.backend's export capability
        from spikec import backend

        facts = export_model(model, out, target, force=force, load_options=options, ssa=ssa,
                             quantized=quantized, calib=calib, profile=profile_path,
                             residual=residual)
        click.echo(json.dumps(facts, indent=2, sort_keys=True, default=str) if as_json
                   else "\n".join(backend.get(target).summary(facts) + [f"wrote {out}/"]))
        return
    bars: list = []
    try:
        outcome = compile_model(model, out, target=target, profile=profile_path, load_options=options,
                                data=data, calib=calib, limit=limit, residual=residual,
                                batch_size=batch_size, progress=_progress(bars),
                                ssa=ssa or "host", force=force,
                                input_encoding=input_encoding)
    finally:
        _close(bars)
    r = outcome.report
    if as_json:
        from spikec.report import dumps

        click.echo(dumps(r), nl=False)
        return
    click.echo(_layers_table(r["layers"]))
    t = r["totals"]
    click.echo("")
    if t["spikes"] is not None:
        click.echo(f"per sample: {t['spikes']:,.1f} spikes, {t['synaptic_events']:,.1f} synaptic events, "
                   f"{t['neuron_updates']:,.0f} neuron updates, {t['ssa_ops']:,.1f} SSA ops")
    click.echo(_accuracy_line(r["accuracy"]))
    if r.get("first_divergent_layer"):
        click.echo(f"first layer whose spikes differ from the float model: {r['first_divergent_layer']}")
    if r.get("bundle_skipped"):
        click.echo(r["bundle_skipped"])
    if r.get("lava"):
        lv = r["lava"]
        click.echo(f"Lava bundle: {out}/{lv['bundle']}/ ({lv['processes']} processes, SSA lowering "
                   f"'{lv['ssa']}', pipeline depth {lv['pipeline_depth']} steps)")
    click.echo(f"target {r['target']}, T = {r['timesteps']}; wrote {out}/")


@cli.command()
@click.argument("out", type=click.Path())
@click.option("--data", required=True, help="mnist5k:test, fashion-mnist:test, cifar10-foolbox or a .npz.")
@click.option("--limit", type=int, help="Use the first N samples.")
@click.option("--stage", type=click.Choice(["float", "folded", "quantized"]), default="quantized",
              show_default=True, help="Which graph of OUT to run (quantized: bit-exact simulation).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Samples per batch.")
@click.option("--strict", is_flag=True,
              help="Stop with an error at the first state that wraps around its register (names "
              "the layer, quantity, step and neuron) instead of wrapping as the chip does.")
@shard_options("Shard the samples over N local processes (results identical to one process).",
               "Run the shards on an existing Dask cluster (scheduler address, e.g. "
               "tcp://head:8786; needs spikec[cluster] on every worker).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: accuracy, layers, totals, predictions.")
@click.option("--profile-time", is_flag=True,
              help="Also print the simulator's seconds per op kind and its slowest layers.")
def simulate(out, data, limit, stage, batch_size, strict, workers, cluster, as_json, profile_time):
    """Run a compiled OUT directory on a data set: accuracy, spikes and synaptic events per
    layer, firing rates."""
    from spikec.evaluate import simulate_output

    bars: list = []
    try:
        res = simulate_output(out, data, limit=limit, stage=stage, batch_size=batch_size,
                              strict=strict, progress=None if as_json else _progress(bars),
                              workers=workers, cluster=cluster, profile_time=profile_time)
    finally:
        _close(bars)
    if as_json:
        click.echo(json.dumps(res, indent=2, sort_keys=True))
        return
    click.echo(_layers_table(res["layers"]))
    t = res["totals"]
    click.echo(f"\nper sample: {t['spikes']:,.1f} spikes, {t['synaptic_events']:,.1f} synaptic events, "
               f"{t['neuron_updates']:,.0f} neuron updates")
    click.echo(_accuracy_line(res["accuracy"]) + f" ({stage})")
    if "time_profile" in res:
        from spikec.sim.profile import format_time_profile
        click.echo("\n" + format_time_profile(res["time_profile"]))


# Commands defined in other modules register here, one line each (keeps this file small).
_COMMAND_MODULES: list[str] = [
    "spikec.cli.estimate",
    "spikec.cli.report",
    "spikec.cli.validate",
]


def _register_commands() -> None:
    import importlib

    for mod in _COMMAND_MODULES:
        module = importlib.import_module(mod)
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


def main(argv=None):
    """Entry point: run the CLI, turning spikec errors into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    _register_commands()
    try:
        cli.main(args=argv, prog_name="spikec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("spikec: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        if debug:
            raise
        where = e.ctx.command_path if e.ctx is not None else "spikec"
        click.echo(f"spikec: error: {' '.join(e.format_message().split())} (see '{where} "
                   "--help')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"spikec: error: {' '.join(e.format_message().split())}", err=True)
        sys.exit(2)
    except (SpikecError, OSError, MemoryError, UnicodeDecodeError) as e:
        if debug:
            raise
        line, code = one_line(e)
        click.echo(f"spikec: error: {line}", err=True)
        sys.exit(code)
    except Exception as e:  # noqa: BLE001 - a bug in spikec: still one line, details with --debug
        if debug:
            raise
        line, _ = one_line(e)
        click.echo(f"spikec: internal error: {line} (a bug in spikec; --debug shows where)",
                   err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
