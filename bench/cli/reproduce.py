"""`reproduce`: score FCN weights on the paper's split in one or every backend, against the paper.

Reads top to bottom like the lab notebook it replaces: resolve backends, load and identify the
weights, resolve the split, run the evaluation loop (bench.evaluation.runner) per backend with
checkpoints,
compare with the published numbers (bench.evaluation.published), print the report, write the record
(bench.evaluation.report) and figures (bench.evaluation.plots). Frameworks are imported only inside
the command, through backends.create_backend.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.options import (
    backend_option,
    data_root_option,
    device_option,
    plural,
    variant_option,
    voc_split_callback,
    weights_option,
)
from bench.core.errors import FcnBenchError
from bench.downloads.cache import checkpoints_dir, default_data_root
from bench.evaluation.published import compare, per_class_iou, reference_split, run_weights_kind
from bench.evaluation.report import (
    BackendRun,
    reproduce_notes,
    results_text,
    run_verdict,
    weights_summary,
)
from bench.model.spec import MODEL_NAMES


def check_outputs(output: Path | None, save_predictions: Path | None,
                  plots_dir: Path | None, inputs: dict[str, Path]) -> None:
    """Refuse, before the run, outputs that cannot be written or would overwrite an input (the
    labels, images, split list or weights) or each other."""
    from bench.core import outputs

    outputs.check_outputs({
        "--output": outputs.Output(output, what="reproduce record") if output else None,
        "--save-predictions": outputs.folder(save_predictions, "predictions"),
        "--plots": outputs.folder(plots_dir, "plots"),
        "checkpoints folder": outputs.folder(checkpoints_dir(), "checkpoints")}, inputs)


@click.command(name="reproduce")
@variant_option(models=MODEL_NAMES)
@backend_option(several=True, default="torch", name="backend_choice",
                extra_help="Several: one column per backend.")
@data_root_option()
@weights_option()
@click.option("--split", default=None, callback=voc_split_callback,
              help="VOC: seg11valid (default, 736 images, the paper's), train, val, trainval or "
                   "a file of ids; other models: their data set's splits [default: NYUD test, "
                   "SIFT Flow test, PASCAL-Context val, ADE20K validation].")
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
@click.option("--keep-checkpoint", is_flag=True,
              help="Keep the checkpoint of a finished run (default: removed once the record and "
                   "figures are written).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=25, show_default=True,
              help="Save the partial confusion matrix every N images.")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Image decoding threads (0 = decode inline).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op CPU threads of the framework [default: its own choice]; 1 is "
                   "often fastest on a busy shared machine.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def command(variant: str, backend_choice: tuple[str, ...], data_root: Path | None,
            weights: Path | None, split: str | None, device: str, limit: int | None,
            output: Path | None,
            save_predictions: Path | None, plots_dir: Path | None, resume: bool,
            keep_checkpoint: bool, checkpoint_every: int, workers: int, threads: int | None,
            progress: bool) -> None:
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
      torchrun --nproc_per_node 4 cli.py reproduce --variant fcn8s --backend torch

    \b
    Under torchrun the N processes share the images round-robin (rank r scores images r, r+N,
    ...), the confusion matrices are summed (identical to one process), and rank 0 alone prints
    and writes the record (with world_size). Each rank checkpoints its own shard; --resume
    needs the same number of processes.
    """
    from backends import RunOptions, create_backend, resolve_backend_choices
    from bench.core.distributed import torchrun_world
    from bench.core.outputs import dataset_inputs, safe_file_part
    from bench.data.model_data import dataset_name, open_model_dataset, reference_variant
    from bench.data.voc import resolve_split_prefix
    from bench.downloads.cached_weights import open_model_weights, open_voc_weights
    from bench.evaluation.checkpoint import Checkpoint, CheckpointMismatch, keyed_path
    from bench.evaluation.runner import data_fingerprint, run_evaluation
    from bench.model.spec import resolve_model

    backends = resolve_backend_choices(backend_choice)
    rank, world_size = torchrun_world()
    lead = rank == 0  # the only process that prints, plots and writes the record
    say = click.echo if lead else _quiet
    entry = resolve_model(variant)
    variant, data_name = entry.key, dataset_name(entry)
    root = data_root if data_root is not None else default_data_root()
    # The archive's header is read once; its tensors are checked before the data is touched.
    archive = (open_voc_weights if data_name == "voc" else open_model_weights)(variant, weights)
    weights_path, spec, metadata = archive.path, archive.spec, archive.metadata
    params = archive.read_tensors()
    if data_name == "voc":
        split = split or "seg11valid"
        dataset, full_count = resolve_split_prefix(root, split, limit)
    else:
        dataset = open_model_dataset(entry, root, split)
        split = split or dataset.name
        full_count = len(dataset)
        if limit is not None:
            dataset.ids = dataset.ids[:limit]
    ref_variant = reference_variant(entry)
    ref_split = reference_split(split, data_name)
    check_outputs(output, save_predictions, plots_dir,
                  {"--weights": weights_path, **dataset_inputs(dataset)})
    subset = len(dataset) < full_count
    run_weights = run_weights_kind(metadata, variant)

    notes = reproduce_notes(variant=ref_variant, split=ref_split, split_name=dataset.name,
                            num_images=len(dataset), full_count=full_count, limit=limit,
                            run_weights=run_weights, metadata=metadata,
                            width_divisor=spec.width_divisor)
    notes += list(getattr(dataset, "metric_notes", list)())
    for note in notes:
        say(f"note: {note}", err=True)

    say(f"hashing weights and data ({plural(len(dataset), 'image')}) for the record and the "
        "checkpoint key ...", err=True)
    weights_sha = archive.sha256
    fingerprint = data_fingerprint(dataset)

    group = _evaluation_group(world_size, device)
    shard = group.shard() if group is not None else None
    if shard is not None:
        say(f"{world_size} processes: rank r scores images r, r+{world_size}, ...; their "
            "confusion matrices are summed", err=True)
    runs: list[BackendRun] = []
    checkpoints: list[Checkpoint] = []
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
        # Keyed by the run's content (weights, split ids and labels, options), not its names.
        stem = f"reproduce-{variant}-{name}-{safe_file_part(dataset.name)}"
        if shard is not None:  # each rank keeps its own shard; the key refuses another world
            run_key.update(rank=shard.rank, world_size=shard.world_size)
            stem = f"{stem}-rank{shard.rank}-of-{shard.world_size}"
        checkpoint = Checkpoint(keyed_path(checkpoints_dir(), stem, run_key), run_key,
                                every=checkpoint_every)
        checkpoints.append(checkpoint)
        if resume and not checkpoint.path.exists():
            others = checkpoint.siblings()
            if others:
                path, differences = others[-1]
                raise CheckpointMismatch(
                    f"no checkpoint of this run to resume; {path} is from another run: "
                    f"{'; '.join(differences)}; run without --resume to start from the first "
                    "image (that checkpoint is kept)")
            say(f"note: no checkpoint of this run at {checkpoint.path}; starting from "
                "the first image", err=True)
        try:
            result = run_evaluation(dataset, backend, checkpoint=checkpoint, resume=resume,
                                    save_predictions=out_dir, progress=progress and lead,
                                    workers=workers, desc=f"{variant} {name}", data=fingerprint,
                                    shard=shard)
        except KeyboardInterrupt:
            if checkpoint.path.exists():
                say(f"\ninterrupted: {name}'s finished images are in the checkpoint "
                           f"{checkpoint.path}; rerun the same command with --resume to "
                           "continue", err=True)
            raise
        summary = (dataset.summarize(result.confusions) if data_name != "voc"
                   else result.confusion.summary())
        comparisons = compare(summary, ref_variant, ref_split, run_weights)
        runs.append(BackendRun(name, backend.device, backend.environment(), result, summary,
                               comparisons, run_verdict(comparisons, subset),
                               precision=backend.options.precision))
        del backend  # free one framework's memory before the next starts
    if group is not None:
        group.close()
    if not lead:
        return

    paper_classes = per_class_iou(ref_variant, ref_split, weights=None)
    # Random weights say so (as the note does), not just "other".
    weights_kind = "random" if metadata.get("kind") == "random" else run_weights
    images = plural(len(dataset), "image")
    click.echo(f"\n{entry.name} on {entry.dataset} '{dataset.name}' ({images}), weights "
               f"{weights_path} ({weights_kind}, sha256 {weights_sha[:12]}...)\n")
    click.echo(results_text(runs, subset, paper_classes))

    if output is not None:
        from bench.core.atomic import write_json
        from bench.core.outputs import writing
        from bench.evaluation.report import build_record

        record = build_record(variant=variant, split=split, dataset=dataset,
                              reference_key=ref_split,
                              full_count=full_count,
                              weights=weights_summary(weights_path, weights_sha, spec,
                                                      run_weights, metadata),
                              data_fingerprint=fingerprint.summary(), runs=runs, notes=notes)
        record["world_size"] = world_size  # processes that shared the images (torchrun)
        with writing(output, "reproduce record"):
            write_json(output, record)
        click.echo(f"wrote {output}")
    if plots_dir is not None:
        from bench.evaluation.plots import write_reproduce_plots

        for path in write_reproduce_plots(plots_dir, variant, dataset.name, runs, paper_classes):
            click.echo(f"wrote {path}")
    for checkpoint in checkpoints:
        if keep_checkpoint:
            click.echo(f"kept checkpoint {checkpoint.path}", err=True)
        else:
            checkpoint.remove()  # the run finished: its record holds the result
    if any(run.verdict == "differs" for run in runs):
        raise FcnBenchError(f"{variant} does not reproduce the published numbers within "
                            "tolerance (see the table above)")


def _quiet(*args: object, **kwargs: object) -> None:
    """click.echo for ranks other than 0: they say nothing (rank 0 speaks for the run)."""


def _evaluation_group(world_size: int, device: str):
    """The torch.distributed group joining torchrun's processes (None for one process)."""
    if world_size == 1:
        return None
    from backends.torch.distributed import EvaluationGroup

    return EvaluationGroup(device)
