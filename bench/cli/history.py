"""`history`: a folder of records as one table over commits, optionally plotted and saved as CSV.

Thin click wrapper over bench.ci.history; imports no framework.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.ci.history import (
    DEFAULT_METRICS,
    HISTORY_FORMATS,
    load_history,
    plot_history,
    render_history,
    write_csv,
)
from bench.core.outputs import Output, check_outputs


@click.command(name="history")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(HISTORY_FORMATS), default="plain",
              show_default=True, help="How to print the table.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help=f"Metric to tabulate (repeatable; default: {', '.join(DEFAULT_METRICS)}). "
                   f"Any record field works, e.g. fw_iou, p90_ms, images_per_s.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG: accuracy and latency against the record sequence.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as CSV (atomically).")
def command(directory: Path, fmt: str, metrics: tuple[str, ...], plot: Path | None,
            csv_path: Path | None) -> None:
    """Tabulate every record under DIRECTORY over time: one table per record kind.

    Rows are records sorted by UTC time, then commit (* marks a tree with uncommitted changes).
    Columns are short labels, metric plus a cell letter ("p50 ms A"); the legend under each table
    says which cell (variant/backend/...) a letter is, the title what all cells share. Tables fit
    in 120 columns (wider ones are split). The plot gives every record its own x position,
    labelled with its time and commit, and one marker shape per backend.

    \b
    Examples:
      python cli.py history results/ --format github
      python cli.py history results/ --plot history.png --csv history.csv --metric p90_ms
    """
    check_outputs({"--plot": Output(plot, what="plot") if plot else None,
                   "--csv": Output(csv_path, what="CSV") if csv_path else None},
                  {"DIRECTORY": directory})
    frame = load_history(directory, metrics or DEFAULT_METRICS, require=bool(metrics))
    if csv_path is not None:
        write_csv(frame, csv_path)
    if plot is not None:
        plot_history(frame, plot)
    click.echo(render_history(frame, fmt), nl=False)
    if plot is not None:
        click.echo(f"plot: {plot}", err=True)
