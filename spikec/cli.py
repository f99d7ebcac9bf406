"""The ``spikec`` command line. Each command is a thin shell over a library function; every
``SpikecError`` becomes one line on stderr and its exit code (2 for bad input), no traceback unless
``--debug``."""
from __future__ import annotations

import json
import sys

import click

from spikec import __version__
from spikec.errors import SpikecError
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

    rows = [{"name": n, **registry.config(n)} for n in registry.names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    keys = ["name", "variant", "img_size", "embed_dim", "depth", "num_heads", "T", "num_classes"]
    click.echo(format_table(keys, [[r.get(k, "") for k in keys] for r in rows]))


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


# Commands defined in other modules register here, one line each (keeps this file small).
_COMMAND_MODULES: list[str] = [
    "spikec.estimate.commands",
    "spikec.htmlreport",
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
    except SpikecError as e:
        if debug:
            raise
        click.echo(f"spikec: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("spikec: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
