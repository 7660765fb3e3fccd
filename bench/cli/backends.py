"""`backends`: list every registered backend (built-in or plugin), whether it runs here, and
whether it trains. Plugins are imported to answer; frameworks are not (backends/registry.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click


@click.command(name="backends")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="table for people, json for machines.")
def command(fmt: str) -> None:
    """List the backends: name, origin (built-in, or the plugin's distribution and version),
    available here or why not, and whether it trains.

    Plugins register through the entry-point group fcn_bench.backends
    (docs/adding_a_backend.md); every name listed is accepted by --backend/--backends.
    `all` runs every available one except reference.

    \b
    Examples:
      python cli.py backends
      python cli.py backends --format json
    """
    from tabulate import tabulate

    from backends import describe_backends

    infos = describe_backends()
    if fmt == "json":
        click.echo(json.dumps([{**asdict(info), "available": info.unavailable is None}
                               for info in infos], indent=2))
        return
    rows = [(info.name, info.origin, "yes" if info.unavailable is None else
             f"no: {info.unavailable}", "yes" if info.trains else "no",
             "yes" if info.in_all else "no (name it)") for info in infos]
    click.echo(tabulate(rows, headers=("backend", "origin", "available", "trains", "in all"),
                        disable_numparse=True))
