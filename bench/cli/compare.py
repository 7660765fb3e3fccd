"""`compare`: delta table between two sets of records, exit 1 on a regression (CI gate).

Thin click wrapper over bench/ci: gates.py (tolerances), judge.py (verdicts) and
regression_table.py (rendering); imports no framework.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.ci.gates import DEFAULT_TOLERANCES, load_tolerances
from bench.ci.judge import CompareOptions, compare_paths
from bench.ci.regression_table import TABLE_FORMATS, render
from bench.cli.options import FiniteFloat, plural, seed_option
from bench.core.atomic import atomic_write_text
from bench.core.errors import FcnBenchError
from bench.core.outputs import Output, check_outputs


@click.command(name="compare")
@click.argument("baseline", type=click.Path(exists=True, path_type=Path))
@click.argument("current", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS), default="plain",
              show_default=True, help="github = markdown for a PR or $GITHUB_STEP_SUMMARY.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="EXPR",
              help="Extra gate METRIC:BOUND, overriding the file (repeatable): "
                   "mean_iou:-0.001 (may drop at most 0.001), p50_ms:+10% (may grow at most "
                   "10%), confusion_matrix:40, status:exact, label_digest:info. METRIC may be a "
                   "glob (per_class_iou.*).")
@click.option("--tolerances-file", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_TOLERANCES, show_default="reference_results/ci/tolerances.json",
              help="Gate lists per record kind (JSON).")
@click.option("--normalize-by", metavar="FIELD",
              help="Divide every *_ms value and sample by this per-record field (e.g. "
                   "calibration_ms) so speeds become ratios to a calibration kernel.")
@click.option("--allow-missing", is_flag=True,
              help="Rows missing in CURRENT are reported but do not fail.")
@click.option("--all-metrics", is_flag=True, help="Also list metrics without a gate (info).")
@click.option("--failures-only", is_flag=True,
              help="Show only failing and inconclusive lines (the summary counts everything).")
@click.option("--confidence", type=FiniteFloat(0.5, 0.999), default=0.95,
              show_default=True, help="Bootstrap interval level for noise-aware speed gates.")
@seed_option("--seed", help="Bootstrap seed.")
@click.option("--title", help="Heading printed above the table.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table to this file (atomically), e.g. for a PR comment.")
def command(baseline: Path, current: Path, fmt: str, tolerances: tuple[str, ...],
            tolerances_file: Path, normalize_by: str | None, allow_missing: bool,
            all_metrics: bool, failures_only: bool, confidence: float, seed: int,
            title: str | None, output: Path | None) -> None:
    """Compare CURRENT records against BASELINE: one delta table, exit 1 on a regression.

    BASELINE and CURRENT are record files (evaluate, reproduce, latency, golden),
    pytest-benchmark JSON files, or folders of them. Rows are matched on variant, backend,
    device, precision, mode, size, batch, split, ...; every gated metric gets a verdict
    (ok, improved, REGRESSION, inconclusive, missing). Exit 0 = no regression, 1 = regression
    or missing row, 2 = bad usage (bad gate, unreadable file, schema mismatch).

    \b
    Examples:
      python cli.py compare baseline/latency.json results/latency.json --format github
      python cli.py compare base/ cand/ --tolerance p50_ms:+5% --tolerance mean_iou:-0.0005
      python cli.py compare .benchmarks/Linux-CPython-3.11-64bit/0001_a.json \\
          .benchmarks/Linux-CPython-3.11-64bit/0002_b.json
    """
    check_outputs({"--output": Output(output, what="table") if output else None},
                  {"BASELINE": baseline, "CURRENT": current, "--tolerances-file": tolerances_file})
    gates = load_tolerances(tolerances_file).with_overrides(tolerances)
    options = CompareOptions(allow_missing=allow_missing, all_metrics=all_metrics,
                             confidence=confidence, seed=seed)
    comparison = compare_paths(baseline, current, gates, options, normalize_by=normalize_by)
    table = render(comparison, fmt, title=title, failures_only=failures_only)
    if output is not None:
        atomic_write_text(output, table)
    click.echo(table, nl=False)
    if comparison.failed:
        raise FcnBenchError(f"{plural(len(comparison.failures), 'failing check')} (see the table "
                            "above)")
