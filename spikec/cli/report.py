"""``spikec report``: the command line over ``spikec.htmlreport``."""
from __future__ import annotations

import click


@click.command()
@click.argument("out", type=click.Path())
def report(out):
    """Render OUT/report.json (compile, simulate and estimate results) as OUT/report.html."""
    from spikec.htmlreport import write_report

    click.echo(str(write_report(out)))


COMMANDS = [report]
