"""`reproduce`: score FCN weights on the paper's split in one or every backend, against the paper.

Reads top to bottom like the lab notebook it replaces: resolve backends, load and identify the
weights, resolve the split, run the evaluation loop (bench.runner) per backend with checkpoints,
compare with the published numbers (bench.references), print, write the record and figures.
Frameworks are imported only inside the command, through backends.create_backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench.cache import cache_dir, default_data_root, default_weights_path
from bench.errors import BackendUnavailable, FcnBenchError, WeightsError
from bench.metrics import format_percent
from bench.references import (
    METRIC_LABELS,
    METRICS,
    Comparison,
    compare,
    overall_verdict,
    per_class_iou,
    reference_metrics,
    reference_split,
    run_weights_kind,
)
from bench.spec import VARIANTS
from commands._options import device_option

BACKEND_CHOICES = ("torch", "tensorflow", "tf", "all")
SUBSET_VERDICT = "not comparable (subset)"


@dataclass
class BackendRun:
    """One backend's evaluation and its comparison with the references."""

    name: str
    device: str
    environment: dict[str, Any]
    result: Any  # bench.runner.RunResult
    summary: dict[str, Any]
    comparisons: list[Comparison]
    verdict: str


# ----------------------------------------------------------------------------------------------
# Inputs


def resolve_backends(choice: str) -> list[str]:
    """Backend names to run: one (aliases resolved) or every available one for "all"."""
    from backends import available_backends, canonical_name, unavailable_reason

    if choice == "all":
        names = available_backends()
        if not names:
            raise BackendUnavailable("no backend is available: install torch or tensorflow "
                                     "(pip install 'fcn-bench[all]')")
        return names
    name = canonical_name(choice)
    reason = unavailable_reason(name)
    if reason:
        raise BackendUnavailable(reason)
    return [name]


def resolve_weights(variant: str, weights: Path | None
                    ) -> tuple[Path, Any, dict, dict[str, str]]:
    """(path, spec, params, metadata) of the weights, refusing another variant's."""
    from bench.weights import load_weights

    path = weights if weights is not None else default_weights_path(variant)
    if not path.exists():
        if weights is not None:
            raise WeightsError(path, "no such file")
        raise WeightsError(path, f"no converted {variant} weights in the cache: run `python "
                                 f"cli.py download weights {variant}` (fetches the official "
                                 "caffemodel and converts it here), or convert a caffemodel you "
                                 f"have: `python cli.py convert FILE.caffemodel {path}`; or pass "
                                 "--weights FILE")
    spec, params, metadata = load_weights(path, variant)
    if spec.num_classes != 21:
        raise WeightsError(path, f"has {spec.num_classes} classes; PASCAL VOC needs 21")
    return path, spec, params, metadata


def resolve_dataset(data_root: Path, split: str, limit: int | None) -> tuple[Any, int]:
    """The (possibly truncated) dataset and the full split's size."""
    from bench.voc import VOCDataset, resolve_split

    dataset = resolve_split(data_root, split)
    full = len(dataset)
    if limit is not None and limit < full:
        dataset = VOCDataset(dataset.voc_dir, dataset.ids[:limit], name=dataset.name,
                             source=dataset.source)
    return dataset, full


def check_outputs(output: Path | None, save_predictions: Path | None,
                  plots_dir: Path | None) -> None:
    """Refuse unwritable outputs (and checkpoint folder) before the run, not after it."""
    from bench.outputs import check_writable

    if output is not None:
        check_writable(output, what="reproduce record")
    for folder, what in ((save_predictions, "predictions"), (plots_dir, "plots"),
                         (cache_dir() / "checkpoints", "checkpoints")):
        if folder is not None:
            check_writable(folder, folder=True, what=what)


def checkpoint_path(variant: str, backend: str, split_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", split_name)
    return cache_dir() / "checkpoints" / f"reproduce-{variant}-{backend}-{safe}.json"


# ----------------------------------------------------------------------------------------------
# Rendering


def _delta(comparison: Comparison) -> str:
    return f"{100.0 * comparison.delta:+.4f}"


def _row_verdict(comparison: Comparison, subset: bool) -> str:
    if subset and comparison.tolerance is not None:
        return "subset only"
    verdict = comparison.verdict
    if comparison.tolerance is not None:
        verdict += f" (±{comparison.tolerance.points:g})"
    return verdict


def comparison_table(runs: list[BackendRun], subset: bool) -> str:
    """metric | paper % (source) | this run % | Δ points | verdict [per backend]."""
    from tabulate import tabulate

    single = len(runs) == 1
    headers = ["metric", "paper % (source)"]
    for run in runs:
        headers += ["this run %", "Δ points", "verdict"] if single else [
            f"{run.name} %", f"Δ {run.name} (points)", f"verdict {run.name}"]
    align = ("left", "left", *(("right", "right", "left") * len(runs)))
    rows = []
    for metric in METRICS:
        # Targets for these weights, and the paper's own tables as context; other
        # re-evaluations of other weights stay in the record only.
        per_run = [[c for c in run.comparisons if c.reference.metric == metric
                    and (c.tolerance is not None or c.reference.kind == "paper")]
                   for run in runs]
        if not per_run[0]:
            row = [METRIC_LABELS[metric], "-"]
            for run in runs:
                row += [format_percent(run.summary[metric], 4), "", ""]
            rows.append(row)
            continue
        for index, comparison in enumerate(per_run[0]):
            ref = comparison.reference
            row = [METRIC_LABELS[metric], f"{ref.percent_text} ({ref.label})"]
            for run_comparisons in per_run:
                mine = run_comparisons[index]
                row += [format_percent(mine.measured, 4), _delta(mine),
                        _row_verdict(mine, subset)]
            rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=align)


def per_class_table(runs: list[BackendRun], paper: dict[str, Any]) -> str:
    from tabulate import tabulate

    headers = ["class", *(f"IU % {run.name}" for run in runs)]
    if paper:
        headers.append("IU % paper")
    rows = []
    for name in runs[0].summary["per_class_iou"]:
        row = [name, *(format_percent(run.summary["per_class_iou"][name]) for run in runs)]
        if paper:
            row.append(paper[name].percent_text if name in paper else "-")
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=("left", *("right",) * (len(headers) - 1)))


def _profile_line(run: BackendRun) -> str:
    timing = run.result.timing
    rate = timing.images_per_s
    shares = timing.as_dict().get("share_of_wall", {})
    parts = ", ".join(f"{label} {100 * shares.get(key, 0.0):.0f}%" for key, label in (
        ("data_wait_s", "data wait"), ("forward_s", "forward+argmax"),
        ("accumulate_s", "accumulate"), ("save_s", "save PNG"), ("checkpoint_s", "checkpoint")))
    resumed = (f", {run.result.resumed_from} images from the checkpoint"
               if run.result.resumed_from else "")
    speed = f"{rate:.2f} images/s" if rate else "no images run"
    return (f"{run.name} ({run.device}): {timing.images} images in {timing.wall_s:.1f} s, "
            f"{speed}{resumed}; {parts}")


def _agreement_line(runs: list[BackendRun]) -> str | None:
    if len(runs) < 2:
        return None
    base = runs[0].result.confusion.matrix
    lines = []
    for run in runs[1:]:
        other = run.result.confusion.matrix
        if (other == base).all():
            lines.append(f"{runs[0].name} and {run.name}: identical confusion matrices")
        else:
            moved = int(abs(other - base).sum()) // 2
            diff = 100.0 * abs(run.summary["mean_iou"] - runs[0].summary["mean_iou"])
            lines.append(f"{runs[0].name} and {run.name}: confusion matrices differ by {moved:,} "
                         f"pixels; mean IU differs by {diff:.4f} points")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Record and figures


def build_record(*, variant: str, split: str, dataset: Any, full_count: int, weights: dict,
                 data_fingerprint: dict, runs: list[BackendRun], notes: list[str]) -> dict:
    """The "reproduce" record: one row per backend, each the evaluate record of bench.metrics
    plus the references, deltas, verdict, images/s and timing profile."""
    from bench.metrics import evaluation_record
    from bench.records import make_record

    rows = []
    for run in runs:
        row = evaluation_record(dataset.name, run.result.confusion, run.result.num_images,
                                backend=run.name, device=run.device, variant=variant)
        for key in ("schema_version", "kind", "provenance"):
            row.pop(key, None)
        row.update(
            precision="fp32",
            verdict=run.verdict,
            references=[{
                "metric": c.reference.metric, "paper_percent": c.reference.percent_text,
                "source": c.reference.source, "location": c.reference.location,
                "evaluated_by": c.reference.evaluated_by, "kind": c.reference.kind,
                "reference_weights": c.reference.weights, "measured": c.measured,
                "delta_points": 100.0 * c.delta,
                "tolerance_points": c.tolerance.points if c.tolerance else None,
                "verdict": c.verdict} for c in run.comparisons],
            images_per_s=run.result.timing.images_per_s,
            timing=run.result.timing.as_dict(),
            resumed_from=run.result.resumed_from,
            environment=run.environment,
            predictions=str(run.result.predictions_dir) if run.result.predictions_dir else None)
        rows.append(row)
    return make_record("reproduce", variant=variant, split=dataset.name,
                       split_requested=split, split_source=str(dataset.source),
                       reference_split=reference_split(split), num_images=len(dataset),
                       split_images=full_count, weights=weights,
                       data_fingerprint=data_fingerprint, notes=notes, rows=rows)


def write_plots(plots_dir: Path, variant: str, split_name: str, runs: list[BackendRun],
                paper: dict[str, Any]) -> list[Path]:
    from bench.labels import VOC_CLASSES
    from bench.plots import confusion_heatmap, per_class_iou_bars

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", split_name)
    paper_values = {name: ref.value for name, ref in paper.items()}
    paper_label = f"paper ({next(iter(paper.values())).source})" if paper else "paper"
    written = [per_class_iou_bars(
        plots_dir / f"{variant}-{safe}-per-class-iou.png",
        {run.name: run.summary["per_class_iou"] for run in runs}, VOC_CLASSES,
        paper=paper_values or None, paper_label=paper_label,
        title=f"{variant} on {split_name}: per-class IU")]
    for run in runs:
        written.append(confusion_heatmap(
            plots_dir / f"{variant}-{safe}-{run.name}-confusion.png",
            run.result.confusion.matrix, VOC_CLASSES,
            title=f"{variant} on {split_name} ({run.name}), row-normalised"))
    return written


# ----------------------------------------------------------------------------------------------
# The command


@click.command(name="reproduce")
@click.option("--variant", type=click.Choice(VARIANTS), default="fcn8s", show_default=True,
              help="FCN variant; the weights must hold this variant (detected, not guessed).")
@click.option("--backend", "backend_choice", type=click.Choice(BACKEND_CHOICES),
              default="torch", show_default=True,
              help="Framework, or `all` for every available backend side by side.")
@click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder holding VOCdevkit/ (and splits/) [default: $FCN_BENCH_DATA or ./data].")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="fcn-bench weights archive [default: the converted official weights of the "
                   "variant in the cache, from `download weights VARIANT`].")
@click.option("--split", default="seg11valid", show_default=True,
              help="seg11valid (736 images, the paper's), train, val, trainval (VOC2012 lists) "
                   "or a path to a file of image ids.")
@device_option
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N images of the split (quick check; no verdict).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the 'reproduce' JSON record here (atomically).")
@click.option("--save-predictions", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Write <id>.png VOC-palette predictions here (per backend in "
                                 "a sub-folder with --backend all); `evaluate` re-scores them.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Write per-class IU and confusion-matrix PNG figures here.")
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint of an interrupted run with the same weights, "
                   "data and options (refused otherwise, with the reason). Checkpoints live in "
                   "$FCN_BENCH_CACHE/checkpoints (default ~/.cache/fcn-bench).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=25, show_default=True,
              help="Save the partial confusion matrix every N images.")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Image decoding threads (0 = decode inline).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op CPU threads of the framework [default: its own choice]; 1 is "
                   "often fastest on a busy shared machine.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def command(variant: str, backend_choice: str, data_root: Path | None, weights: Path | None,
            split: str, device: str, limit: int | None, output: Path | None,
            save_predictions: Path | None, plots_dir: Path | None, resume: bool,
            checkpoint_every: int, workers: int, threads: int | None, progress: bool) -> None:
    """Reproduce the paper's segmentation scores with one or every backend.

    Scores the weights on the split image by image (batch 1, each image at its own size, argmax
    on the device), accumulates one confusion matrix (FCN score.py metrics) and compares pixel
    accuracy, mean accuracy, mean IU and f.w. IU with the published numbers. Converted official
    weights must match the Chainer/PyTorch re-evaluations within 0.05 points on all four.
    Exit status 1 when a verdict is "differs".

    \b
    Examples:
      python cli.py download weights fcn8s
      python cli.py download voc2012 --data-root data
      python cli.py download seg11valid --data-root data
      python cli.py reproduce --variant fcn8s --backend torch --data-root data
      python cli.py reproduce --variant fcn32s --backend all --output fcn32s.json --plots figs/
      python cli.py reproduce --variant fcn8s --backend tf --resume --save-predictions preds/
    """
    from backends import RunOptions, create_backend
    from bench.checkpoint import Checkpoint
    from bench.runner import data_fingerprint, run_evaluation
    from bench.weights import sha256_file

    backends = resolve_backends(backend_choice)
    weights_path, spec, params, metadata = resolve_weights(variant, weights)
    root = data_root if data_root is not None else default_data_root()
    dataset, full_count = resolve_dataset(root, split, limit)
    check_outputs(output, save_predictions, plots_dir)
    subset = len(dataset) < full_count
    run_weights = run_weights_kind(metadata, variant)

    notes: list[str] = []
    if not reference_metrics(variant, split):
        notes.append(f"split '{dataset.name}' has no published reference numbers: metrics are "
                     "reported without a verdict")
    if subset:
        notes.append(f"--limit {limit}: {len(dataset)} of the {full_count} images of "
                     f"'{dataset.name}'" + ("; the comparison with the paper is indicative only"
                                            if reference_metrics(variant, split) else ""))
    if run_weights == "other":
        notes.append(f"weights are not a conversion of the official {variant} caffemodel "
                     f"(kind {metadata.get('kind')!r}, origin {metadata.get('origin')!r})"
                     + (": judged on the README mean IU with the re-training tolerance"
                        if reference_metrics(variant, split) else ""))
    if spec.width_divisor > 1:
        notes.append(f"narrow test-only network (width_divisor {spec.width_divisor}): not the "
                     "FCN of the paper")
    for note in notes:
        click.echo(f"note: {note}", err=True)

    click.echo(f"hashing weights and data ({len(dataset)} images) for the record and the "
               "checkpoint key ...", err=True)
    weights_sha = sha256_file(weights_path)
    fingerprint = data_fingerprint(dataset)
    weights_info = {"path": str(weights_path), "sha256": weights_sha, "variant": spec.variant,
                    "run_weights": run_weights, "width_divisor": spec.width_divisor,
                    **{k: metadata.get(k) for k in ("kind", "origin", "source_sha256",
                                                    "source_name", "converter_version")}}

    runs: list[BackendRun] = []
    for name in backends:
        backend = create_backend(name, spec, RunOptions(device=device, threads=threads))
        backend.load_params(params)
        out_dir = None
        if save_predictions is not None:
            out_dir = save_predictions / name if len(backends) > 1 else save_predictions
        run_key = {"variant": variant, "backend": name, "device": backend.device,
                   "precision": backend.options.precision, "split": dataset.name,
                   "weights_sha256": weights_sha, "data": fingerprint.checkpoint_key(),
                   "width_divisor": spec.width_divisor,
                   "save_predictions": str(out_dir.resolve()) if out_dir else None}
        checkpoint = Checkpoint(checkpoint_path(variant, name, dataset.name), run_key,
                                every=checkpoint_every)
        if resume and not checkpoint.path.exists():
            click.echo(f"note: no checkpoint at {checkpoint.path}; starting from the first "
                       "image", err=True)
        try:
            result = run_evaluation(dataset, backend, checkpoint=checkpoint, resume=resume,
                                    save_predictions=out_dir, progress=progress,
                                    workers=workers, desc=f"{variant} {name}", data=fingerprint)
        except KeyboardInterrupt:
            if checkpoint.path.exists():
                click.echo(f"\ninterrupted: {name}'s finished images are in the checkpoint "
                           f"{checkpoint.path}; rerun the same command with --resume to "
                           "continue", err=True)
            raise
        summary = result.confusion.summary()
        comparisons = compare(summary, variant, split, run_weights)
        verdict = SUBSET_VERDICT if subset else overall_verdict(comparisons)
        runs.append(BackendRun(name, backend.device, backend.environment(), result, summary,
                               comparisons, verdict))
        del backend  # free one framework's memory before the next starts

    paper_classes = per_class_iou(variant, split, weights=None)
    click.echo(f"\n{variant} on '{dataset.name}' ({len(dataset)} images), weights "
               f"{weights_path} ({run_weights}, sha256 {weights_sha[:12]}...)\n")
    click.echo(comparison_table(runs, subset))
    click.echo("")
    for run in runs:
        click.echo(f"verdict {run.name}: {run.verdict}")
    agreement = _agreement_line(runs)
    if agreement:
        click.echo(agreement)
    click.echo("")
    click.echo(per_class_table(runs, paper_classes))
    click.echo("")
    for run in runs:
        click.echo(_profile_line(run))

    if output is not None:
        from bench.outputs import writing
        from bench.records import write_json

        record = build_record(variant=variant, split=split, dataset=dataset,
                              full_count=full_count, weights=weights_info,
                              data_fingerprint=fingerprint.summary(), runs=runs, notes=notes)
        with writing(output, "reproduce record"):
            write_json(output, record)
        click.echo(f"wrote {output}")
    if plots_dir is not None:
        for path in write_plots(plots_dir, variant, dataset.name, runs, paper_classes):
            click.echo(f"wrote {path}")
    if any(run.verdict == "differs" for run in runs):
        raise FcnBenchError(f"{variant} does not reproduce the published numbers within "
                            "tolerance (see the table above)")
