"""`evaluate`: score a folder of predicted label PNGs (from any framework) against the ground truth
of VOC, NYUDv2, SIFT Flow (two heads: two folders), PASCAL-Context or ADE20K.

The options and the printing; the scoring itself is bench/evaluation/predictions.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.options import data_root_option, plural, voc_split_callback
from bench.core.atomic import write_json
from bench.core.outputs import Output, check_outputs, dataset_inputs, writing
from bench.data.voc import resolve_split
from bench.downloads.cache import default_data_root
from bench.evaluation.metrics import metrics_table
from bench.evaluation.predictions import (
    check_predictions,
    score_dataset_predictions,
    score_voc_predictions,
)

DATASET_CHOICES = ("voc", "nyud", "siftflow", "pascalcontext", "ade20k")


def _check_model(model: str, dataset_name: str) -> None:
    """Refuse a --model that is not a catalogue model of this data set, listing those that are."""
    from bench.core.errors import UsageError
    from bench.data.model_data import dataset_name as dataset_of
    from bench.model.spec import MODEL_NAMES, resolve_model

    known = [name for name in MODEL_NAMES if dataset_of(name) == dataset_name]
    try:
        entry = resolve_model(model)
    except UsageError:
        entry = None
    if entry is None or dataset_of(entry) != dataset_name:
        raise UsageError(f"--model {model!r} is not a {dataset_name} model; choose from "
                         f"{', '.join(known) or 'none'}")


def reference_table(record: dict, model: str, run_weights: str, tablefmt: str) -> str:
    """The published numbers for `model` on this split beside this run's, with the verdict
    (a reference point where the paper's model is not the released one)."""
    from tabulate import tabulate

    from bench.evaluation import published as refs
    from bench.evaluation.metrics import format_percent

    key = refs.reference_split(record["split"], record["dataset"])
    comparisons = refs.compare(record["metrics"], model, key, run_weights)
    if not comparisons:
        return f"no published numbers for {model!r} on {key} (reference_results/accuracy.csv)"
    rows = [[refs.METRIC_LABELS[c.reference.metric],
             f"{c.reference.percent_text} ({c.reference.source})",
             format_percent(c.measured), f"{100 * c.delta:+.2f}", c.verdict]
            for c in comparisons]
    table = tabulate(rows, headers=["metric", "paper % (source)", "this run %", "Δ points",
                                    "verdict"], tablefmt=tablefmt, disable_numparse=True)
    return f"{table}\n\nverdict: {refs.overall_verdict(comparisons)} ({run_weights} weights)"


def print_other(record: dict, table_format: str) -> None:
    from bench.evaluation.metrics import heads_table

    metrics = record["metrics"]
    click.echo(metrics_table(metrics, tablefmt=table_format))
    click.echo("")
    click.echo(heads_table(metrics, tablefmt=table_format))
    if "benchmark_score" in metrics:
        click.echo(f"\nScene Parsing benchmark score (pixel acc. + mean IoU) / 2: "
                   f"{100 * metrics['benchmark_score']:.2f} %")
    published = record["published_split"]
    state = {True: "the published list", False: "NOT the published list: not comparable to "
             "the papers' numbers", None: "a user list"}[published]
    click.echo(f"\n{record['num_images']} images, split '{record['split']}' "
               f"({record['split_source']}; {state})")
    for head, summary in metrics["heads"].items():
        if summary["absent_from_ground_truth"]:
            click.echo(f"{head}: classes without ground-truth pixels: "
                       + ", ".join(summary["absent_from_ground_truth"]))
    for note in metrics["notes"]:
        click.echo(f"note: {note}")


@click.command(name="evaluate")
@click.option("--dataset", "dataset_name", type=click.Choice(DATASET_CHOICES), default="voc",
              show_default=True, help="Which data set's ground truth to score against.")
@data_root_option()
@click.option("--split", default=None, callback=voc_split_callback,
              help="VOC: seg11valid (default, 736 images), train, val, trainval or a file of ids. "
                   "nyud: test (default), train, val, trainval. siftflow: test (default), "
                   "trainval. pascalcontext: val (default), train. ade20k: validation "
                   "(default), training.")
@click.option("--predictions", "predictions_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder of <id>.png label maps holding class indices (palette or grey); for "
                   "siftflow the semantic head's.")
@click.option("--geo-predictions", "geo_dir", default=None,
              type=click.Path(path_type=Path, file_okay=False),
              help="siftflow only: folder of the geometric head's <id>.png (0 sky, 1 horizontal, "
                   "2 vertical).")
@click.option("--model", default=None,
              help="Non-VOC data sets: print the published numbers of this model beside the "
                   "run (e.g. nyud-fcn32s-color-hha, siftflow-fcn16s, pascalcontext-fcn8s, "
                   "ade20k-fcn8s).")
@click.option("--weights", "run_weights", default=None,
              type=click.Choice(["released-heavy", "released-csail", "other"]),
              help="What produced the predictions, for the tolerance policy [default: "
                   "released-csail for ade20k, else released-heavy].")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the 'evaluate' JSON record here (atomically).")
@click.option("--format", "table_format", type=click.Choice(["github", "plain"]),
              default="github", show_default=True, help="Table style printed to stdout.")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Decoding threads (0 = decode inline).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def command(dataset_name: str, data_root: Path | None, split: str | None, predictions_dir: Path,
            geo_dir: Path | None, model: str | None, run_weights: str | None,
            output: Path | None, table_format: str, workers: int, progress: bool) -> None:
    """Score predicted label PNGs against a data set's ground truth (FCN score.py metrics).

    One confusion matrix per head over the whole split (void ignored; ADE20K also ignores 0);
    prints pixel accuracy, mean accuracy, mean IU, frequency-weighted IU and per-class IU in
    percent, plus each data set's own figures (docs/datasets.md).

    \b
    Example:
      python cli.py evaluate --data-root data --split seg11valid --predictions preds/ \\
          --output results/fcn8s-eval.json
      python cli.py evaluate --dataset siftflow --predictions sem/ --geo-predictions geo/
      python cli.py evaluate --dataset nyud --predictions preds/ --model nyud-fcn32s-color
    """
    from bench.core.errors import UsageError

    data_root = data_root if data_root is not None else default_data_root()
    if (geo_dir is not None) != (dataset_name == "siftflow"):
        raise UsageError("--geo-predictions is required with --dataset siftflow and only "
                         "accepted there (SIFT Flow has a semantic and a geometric head)")
    if dataset_name != "voc":
        if model is not None:
            _check_model(model, dataset_name)  # before the evaluation, not after it
        check_outputs({"--output": Output(output, what="record") if output else None},
                      {"--predictions": predictions_dir, "--geo-predictions": geo_dir,
                       "--data-root": data_root})
        folders = {"semantic": predictions_dir}
        if geo_dir is not None:
            folders["geometric"] = geo_dir
        record = score_dataset_predictions(dataset_name, data_root, split, folders, workers,
                                           progress)
        print_other(record, table_format)
        if model is not None:
            weights = run_weights or ("released-csail" if dataset_name == "ade20k"
                                      else "released-heavy")
            click.echo("\n" + reference_table(record, model, weights, table_format))
        if output is not None:
            with writing(output, "record"):
                write_json(output, record)
            click.echo(f"wrote {output}")
        return
    if model is not None or run_weights is not None:
        raise UsageError("--model/--weights compare non-VOC data sets only; for VOC use "
                         "`python cli.py reproduce`")
    dataset = resolve_split(data_root, split or "seg11valid")
    check_predictions(dataset, predictions_dir)
    check_outputs({"--output": Output(output, what="record") if output else None},
                  {"--predictions": predictions_dir, **dataset_inputs(dataset)})

    record = score_voc_predictions(dataset, predictions_dir, data_root, workers, progress)
    metrics = record["metrics"]
    click.echo(metrics_table(metrics, tablefmt=table_format))
    click.echo(f"\n{plural(len(dataset), 'image')}, "
               f"{plural(metrics['num_pixels'], 'scored pixel')}, "
               f"split '{dataset.name}' ({dataset.source})")
    if metrics["absent_from_ground_truth"]:
        click.echo("classes without ground-truth pixels (excluded from mean acc.; mean IU counts "
                   "them only if predicted): " + ", ".join(metrics["absent_from_ground_truth"]))
    if output is not None:
        with writing(output, "record"):
            write_json(output, record)
        click.echo(f"wrote {output}")
