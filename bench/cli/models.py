"""`models`: every catalogued FCN model (bench/model/zoo.py), figures computed from its spec."""

from __future__ import annotations

import csv
import io
import json

import click


@click.command(name="models")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people, json or csv for machines.")
def command(fmt: str) -> None:
    """List the released FCN models: data set, inputs, heads, classes, size, weights.

    Parameters and GFLOPs (2 per multiply-add, convolutions and deconvolutions) are computed from
    each model's spec at its data set's typical image size. Every name listed (and the aliases
    fcn32s, fcn16s, fcn8s, fcn8s-atonce) is accepted wherever a command takes --variant.

    \b
    Examples:
      python cli.py models
      python cli.py models --format json > models.json
    """
    from tabulate import tabulate

    from bench.model.listing import TABLE_HEADERS, catalogue, flat_row, table_row

    rows = catalogue()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        flat = [flat_row(row) for row in rows]
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        click.echo(buffer.getvalue(), nl=False)
        return
    click.echo(tabulate([table_row(row) for row in rows], headers=TABLE_HEADERS,
                        disable_numparse=True))
    aliases = ", ".join(f"{alias} = {row['model']}" for row in rows for alias in row["aliases"])
    click.echo(f"\ninputs: + concatenated (early fusion), | one trunk each (late fusion); "
               f"classes: one number per head\naliases: {aliases}\nweights: URLs and checksum "
               "status with --format json")
