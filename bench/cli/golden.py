"""`golden`: run the deterministic golden suite and gate it against the committed baseline.

Thin click wrapper over bench.ci.golden*; the backends (and so torch / tensorflow) are imported
only inside the command.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from bench.ci.gates import DEFAULT_TOLERANCES, Tolerances, load_tolerances
from bench.ci.golden import (
    GOLDEN_BASELINE,
    GoldenConfig,
    check_baseline_config,
    check_golden,
    default_spec_factory,
    make_golden_images,
    run_golden,
)
from bench.ci.golden_faults import fault_sweep, render_faults
from bench.ci.golden_half import half_precision_rows
from bench.ci.golden_render import render_golden, render_half_precision
from bench.ci.judge import OK, CompareOptions, compare_rows
from bench.ci.record_files import read_json
from bench.ci.record_rows import rows_from_document, rows_from_record
from bench.ci.regression_table import render
from bench.cli.options import backend_option, plural, variant_option
from bench.core.atomic import atomic_write_text, write_json
from bench.core.errors import DataError, FcnBenchError, UsageError
from bench.core.outputs import Output, check_outputs
from bench.evaluation.parity import HALF_PRECISIONS
from bench.model.spec import MODEL_NAMES, VARIANTS, resolve_model


def _backends(requested: tuple[str, ...]) -> list[str]:
    """The requested backends (all installed ones by default), each checked to be available."""
    from backends import resolve_backend_choices

    return resolve_backend_choices(requested)


def _read_baseline(path: Path) -> dict:
    """The committed golden record, checked to be one (and of a schema this version reads)."""
    record = read_json(path)
    if not isinstance(record, dict) or record.get("kind") != "golden":
        raise DataError(path, "not a golden record (kind must be \"golden\"); rebuild it with "
                              "`python cli.py golden --update`")
    rows_from_document(record, path)  # schema_version check
    return record


@click.command(name="golden")
@click.option("--update", is_flag=True,
              help="Rewrite the baseline with this run (atomically) and print what changed.")
@click.option("--format", "fmt", type=click.Choice(["github", "plain"]), default="plain",
              show_default=True, help="github = markdown for $GITHUB_STEP_SUMMARY.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the tables to this file (atomically).")
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path),
              default=GOLDEN_BASELINE, show_default="reference_results/ci/golden.json",
              help="The committed golden record.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Write this run's golden record here (e.g. a CI artifact).")
@backend_option(several=True, name="backend_names")
@variant_option(multiple=True, models=MODEL_NAMES,
                default_help="the four VOC nets and one model per other family, see "
                             "bench/ci/golden_zoo.py")
@click.option("--full-width/--no-full-width", default=True, show_default=True,
              help="Also run the full-width (real VGG16 channels) FCN-8s check.")
@click.option("--check-faults", is_flag=True,
              help="Instead of the check: inject every geometry fault (crop offset +-1, skip "
                   "or fused stream dropped, each stream's first-conv pad 99) into the narrow "
                   "nets (VOC and every family, or the --variant ones) on the first backend "
                   "and show that each one fails the golden comparison (exit 1 if one is "
                   "missed).")
@click.option("--precision", "precisions", type=click.Choice(HALF_PRECISIONS), multiple=True,
              help="After the fp32 suite, also gate this half precision (repeatable): labels "
                   "must agree with fp32 (same backend and weights) on >= 99.5% of the decided "
                   "pixels, for every selected network and backend (docs/ci.md).")
@click.option("--tolerances-file", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_TOLERANCES, show_default="reference_results/ci/tolerances.json",
              help="Gate lists; the \"golden\" section applies here.")
def command(update: bool, fmt: str, output: Path | None, baseline: Path, record: Path | None,
            backend_names: tuple[str, ...], variants: tuple[str, ...], full_width: bool,
            check_faults: bool, precisions: tuple[str, ...], tolerances_file: Path) -> None:
    """Deterministic CPU check of every variant x backend against a committed baseline.

    A seeded VOC-format data set (8 images, 24-48 px) and seeded random weights give label maps,
    a confusion matrix and metrics per network (narrow nets, plus one full-width FCN-8s), and a
    parity summary between backends. Exit 1 if any moved beyond the "golden" gates in
    reference_results/ci/tolerances.json (docs/ci.md explains them). No downloads, no GPU.

    \b
    Examples:
      python cli.py golden                               # check (CI)
      python cli.py golden --format github --output golden.md
      python cli.py golden --update                      # accept a deliberate change
      python cli.py golden --check-faults --backend torch  # prove the gate bites
      python cli.py golden --precision bf16 --precision fp16  # + the half-precision gate
    """
    from backends import BACKEND_NAMES, RunOptions, create_backend

    # --update writes the baseline; otherwise it is an input no output may replace.
    check_outputs({"--output": Output(output, what="golden tables") if output else None,
                   "--record": Output(record, what="golden record") if record else None,
                   **({"--baseline": Output(baseline, what="golden baseline")} if update
                      else {})},
                  {"--tolerances-file": tolerances_file,
                   **({} if update else {"--baseline": baseline})})
    names = _backends(backend_names)
    keys = [resolve_model(v).key for v in variants]
    selected = [k for k in keys if k in VARIANTS] if keys else list(VARIANTS)
    models = [k for k in keys if k not in VARIANTS] if keys else None  # None: every family
    tolerances = load_tolerances(tolerances_file)
    if update and check_faults:
        raise UsageError("--update and --check-faults do different things: use one at a time")
    if precisions and (update or check_faults):
        raise UsageError("--precision gates a checking run against fp32: use it without "
                         "--update and --check-faults")
    if update:
        partial = [n for n in BACKEND_NAMES if n not in names]
        if partial or variants or not full_width:
            raise UsageError("golden --update rewrites the whole baseline: run it with every "
                             "variant, --full-width and every backend installed"
                             + (f" (missing: {', '.join(partial)})" if partial else ""))

    if not update and not check_faults and not baseline.exists():
        raise DataError(baseline, "no golden baseline; create it with "
                                  "`python cli.py golden --update`")
    base_record = None
    if not update and not check_faults:
        # Before any work: a deep, foreign or mismatched baseline fails now, not after the run.
        base_record = _read_baseline(baseline)
        check_baseline_config(base_record, str(baseline))

    def backend_factory(name, spec):
        return create_backend(name, spec, RunOptions(device="cpu", precision="fp32"))

    def progress(step: str) -> None:
        click.echo(f"golden: {step}", err=True)

    if check_faults:
        results = fault_sweep(backend_factory, names[0], tolerances, variants=selected,
                              models=models, progress=progress)
        _emit(render_faults(results, fmt), output)
        missed = [r for r in results if not r.caught]
        if missed:
            raise FcnBenchError(f"{plural(len(missed), 'injected fault')} not caught by the golden "
                                f"gates (first: {missed[0].variant} {missed[0].fault})")
        return

    started = time.perf_counter()
    current = run_golden(default_spec_factory, backend_factory, names, variants=selected,
                         full_width=full_width, progress=progress, models=models)
    elapsed = time.perf_counter() - started
    half_rows = _half_precision(create_backend, RunOptions, names, precisions, selected, models,
                                progress)
    if half_rows:
        current["half_precision"] = half_rows  # beside the fp32 rows, never compared with them
    if record is not None:
        write_json(record, current)

    if update:
        _emit(_update(current, baseline, tolerances, fmt, elapsed), output)
        return
    comparison = check_golden(current, base_record, tolerances,
                              baseline_name=str(baseline))
    text = render_golden(comparison, current, fmt, elapsed_s=elapsed)
    if half_rows:
        text += "\n" + render_half_precision(half_rows, fmt)
    _emit(text, output)
    if comparison.failed:
        failing = plural(len(comparison.failures), "failing check")
        raise FcnBenchError(f"golden suite: {failing} (see the "
                            f"tables above); if the change is intended, run "
                            f"`python cli.py golden --update` and commit {baseline}")
    half_failed = [row for row in half_rows if row.get("passed") is False]
    if half_failed:
        first = half_failed[0]
        raise FcnBenchError(f"half-precision gate: {plural(len(half_failed), 'failing row')} "
                            f"(labels off fp32's on over 0.5% of the decided pixels, or a "
                            f"crash; first: {first['variant']} {first['backend']} "
                            f"{first['precision']}; see the table above)")


def _half_precision(create_backend, run_options, names: list[str], precisions: tuple[str, ...],
                    variants: list[str], models: list[str] | None, progress) -> list[dict]:
    """The half-precision gate's rows for every backend x precision (none when not asked)."""
    if not precisions:
        return []
    config = GoldenConfig()
    with tempfile.TemporaryDirectory(prefix="fcn-golden-") as workdir:
        images = make_golden_images(workdir, config)

    def factory(name, spec, precision):
        return create_backend(name, spec, run_options(device="cpu", precision=precision))

    return [row for name in names for precision in dict.fromkeys(precisions)
            for row in half_precision_rows(factory, name, precision, images, variants=variants,
                                           models=config.zoo_models if models is None
                                           else models, config=config, progress=progress)]


def _emit(text: str, output: Path | None) -> None:
    if output is not None:
        atomic_write_text(output, text)
    click.echo(text, nl=False)


def _update(current: dict, baseline: Path, tolerances: Tolerances, fmt: str,
            elapsed: float) -> str:
    """Write the new baseline atomically; describe what changed against the old one."""
    old, problem = None, None
    if baseline.exists():
        try:
            old = _read_baseline(baseline)
        except FcnBenchError as error:  # a broken baseline is what --update repairs
            problem = str(error)
    write_json(baseline, current)
    header = f"golden: wrote {baseline} in {elapsed:.1f} s"
    if old is None:
        reason = f"; the old one was unreadable: {problem}" if problem else ""
        return f"{header} (new baseline, {plural(len(current['rows']), 'row')}{reason})\n"
    comparison = compare_rows(rows_from_record(old, baseline),
                              rows_from_record(current, Path("this run")), tolerances,
                              CompareOptions(all_metrics=False),
                              baseline_name=f"{baseline} (old)", current_name="new")
    comparison.findings = [f for f in comparison.findings if f.verdict != OK]
    if not comparison.findings:
        return f"{header}: no gated value changed\n"
    return f"{header}; changes against the old baseline:\n\n" + render(comparison, fmt)
