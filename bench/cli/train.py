"""`train`: the reference FCN training recipe (or the CVPR one) in PyTorch or TensorFlow.

Parses options, loads data and the init archive, and hands a backend trainer to the training
loop in bench/train/loop.py. Frameworks are imported only inside the command function.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from bench.cli.options import (
    FiniteFloat,
    backend_option,
    data_root_option,
    device_option,
    plural,
    seed_option,
    variant_option,
    voc_split_callback,
)
from bench.core.errors import UsageError
from bench.model.spec import MODEL_NAMES, build_spec, resolve_model
from bench.train.init_weights import RANDOM_INIT, load_init
from bench.train.loop import run_training
from bench.train.plan import solver_plan
from bench.train.recipes import RECIPES, default_recipe, get_recipe, recipe_for
from bench.train.resume import load_resume_state
from bench.train.run_config import (
    DEFAULT_KEEP_SNAPSHOTS,
    TrainConfig,
    id_lists_fingerprint,
    require_tensorboard,
)
from bench.train.sampler import DEFAULT_SEED
from bench.train.snapshots import list_snapshots


@click.command(name="train")
@variant_option(default=None, required=True, models=MODEL_NAMES)
@backend_option(several=False, extra_help="torchrun runs torch data-parallel.")
@data_root_option()
@click.option("--init", "init", default=None,
              help="Init archive: VGG16 (convert output) for 32s and at-once nets, the 32s "
                   "snapshot for 16s, 16s for 8s, an AlexNet trunk for voc-fcn-alexnet, "
                   "COLOR,HHA (two nyud FCN-32s) for nyud-fcn32s-color-hha "
                   "(docs/training_recipes.md); 'random' for smoke tests. Ignored with --resume.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Run folder (default runs/train/VARIANT-RECIPE-BACKEND): snapshots/, "
                   "train_log.csv, eval/, train_record.json, curves.png.")
@click.option("--recipe", "recipe_name", type=click.Choice(list(RECIPES)), default=None,
              help="heavy: REF/PAMI (batch 1, momentum 0.99, summed loss); cvpr: 20-image "
                   "accumulated batches, momentum 0.9, per-pixel-mean loss (VOC); alexnet: "
                   "REF FCN-AlexNet's (cvpr-like, lr 1e-4) [default: the model's own: alexnet "
                   "for voc-fcn-alexnet, heavy otherwise].")
@click.option("--resume", is_flag=True,
              help="Continue the newest complete snapshot in --out exactly (same samples, "
                   "momentum and dropout stream).")
@click.option("--iters", type=click.IntRange(0), default=None,
              help="Solver updates in total [recipe: 100000; fcn8s-atonce 300000; cvpr 5000].")
@click.option("--eval-every", type=click.IntRange(1), default=None,
              help="Validate every N updates [heavy 4000, cvpr 200].")
@click.option("--snapshot-every", type=click.IntRange(1), default=None,
              help="Snapshot every N updates [heavy 4000, cvpr 200].")
@click.option("--val-split", default=None, callback=voc_split_callback,
              help="Validation split: VOC seg11valid (default), train/val/trainval or an id "
                   "list; other models: their data set's [default: its scored split].")
@click.option("--val-limit", type=click.IntRange(0), default=None,
              help="Validate on the first N images only (0 = no validation).")
@click.option("--train-split", default=None,
              help="VOC: SBD train (default, 8498 images, REF), val or an id list; NYUD "
                   "trainval, SIFT Flow trainval, Context train, ADE20K training by default.")
@click.option("--lr", "base_lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Override the recipe's base learning rate (lr_mult still applies).")
@seed_option("--seed", default=DEFAULT_SEED,
             help="Sampler seed (REF: 1337); rank r of torchrun uses seed + r.")
@click.option("--log-every", type=click.IntRange(1), default=20, show_default=True,
              help="Write the mean training loss to the CSV every N updates.")
@click.option("--keep-snapshots", type=click.IntRange(1), default=DEFAULT_KEEP_SNAPSHOTS,
              show_default=True, help="Keep the newest N snapshots and the best one (by "
                                      "validation mean IU); older ones are deleted.")
@click.option("--keep-all-snapshots", is_flag=True,
              help="Keep every snapshot (REF; ~1.1 GB each for fcn32s).")
@click.option("--plots", is_flag=True, help="Write curves.png (loss and validation metrics).")
@click.option("--tensorboard", "tensorboard_dir", type=click.Path(path_type=Path),
              default=None, help="Also write TensorBoard scalars to this folder.")
@device_option
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Intra-op CPU threads (default: the framework's).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: only on a terminal].")
@click.option("--nondeterministic", is_flag=True,
              help="Allow CUDA's faster nondeterministic kernels (cuDNN backward, TF ops): runs "
                   "and --resume are then equal only to float noise. Default: deterministic.")
@click.option("--width-divisor", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Narrow network (channels // N) for demos and tests; 1 = VGG16. Needs "
                   "--init random or an archive of the same width.")
def command(variant: str, backend: str, data_root: Path, init: str | None, out_dir: Path | None,
            recipe_name: str | None, resume: bool, iters: int | None, eval_every: int | None,
            snapshot_every: int | None, val_split: str | None, val_limit: int | None,
            train_split: str | None,
            base_lr: float | None, seed: int, log_every: int, keep_snapshots: int,
            keep_all_snapshots: bool, plots: bool,
            tensorboard_dir: Path | None, device: str, threads: int | None,
            progress: bool | None, nondeterministic: bool, width_divisor: int) -> None:
    """Train an FCN with its released recipe (SGD, Caffe update) on its own data set.

    \b
    Examples:
      python cli.py train --variant fcn8s --data-root demo --init random --width-divisor 8 \\
          --lr 1e-9 --iters 200 --val-split val --out demo/runs/train-fcn8s   # after `demo`
      python cli.py convert VGG_ILSVRC_16_layers.caffemodel vgg16-fcn32s.safetensors
      python cli.py train --variant fcn32s --backend torch --data-root data \\
          --init vgg16-fcn32s.safetensors --out runs/fcn32s
      python cli.py train --variant fcn16s --backend tf --data-root data \\
          --init runs/fcn32s/snapshots/fcn32s_iter_0100000.safetensors --out runs/fcn16s
      python cli.py train --variant fcn32s --data-root data --out runs/fcn32s --resume
      python cli.py train --variant siftflow-fcn32s --data-root data \
          --init weights/vgg16-fcn32s-init.safetensors --out runs/siftflow-fcn32s
      torchrun --nproc_per_node 4 cli.py train --variant fcn32s --backend torch ...

    \b
    heavy (default): momentum 0.99, fixed lr 1e-10/1e-12/1e-14 (32s/16s/8s; at-once 1e-10),
    weight decay 5e-4 on weights, biases 2x lr, upsampling and at-once scales frozen, loss
    SUMMED over non-void pixels, batch 1 at the image's own size, SBD train sampled with
    replacement (seed 1337), dropout on, no augmentation. With torchrun on N processes each
    update averages N images' gradients (DDP) at the same lr: Caffe's batch-N semantics.
    TensorFlow does the same on N workers: python -m bench.core.distributed --workers N cli.py
    train --backend tf ... (or TF_CONFIG per worker). Deterministic kernels by default, so
    --resume is bitwise exact on GPUs too; --nondeterministic trades that for speed.
    """
    import backends

    backend = backends.check_trains(backend)  # reference and most plugins cannot train
    # Before any work: a run of no updates, or a learning rate that climbs the loss (negative),
    # does nothing or diverges; NaN/inf never trains (the option type refuses those too).
    if iters == 0:  # meaningful only as "score the initial weights" (bench/train/loop.py)
        if val_limit == 0:
            raise UsageError("--iters 0 trains nothing and --val-limit 0 scores nothing: give "
                             "--iters N to train, or drop --val-limit 0 to score the initial "
                             "weights")
        click.echo("note: --iters 0: no update; the initial weights are scored on the "
                   "validation split", err=True)
    if base_lr is not None and not (math.isfinite(base_lr) and base_lr > 0):
        raise UsageError(f"--lr {base_lr}: the learning rate must be a finite number > 0")
    entry = resolve_model(variant)
    variant = entry.key
    recipe = get_recipe(recipe_name) if recipe_name else default_recipe(variant)
    if base_lr is None or iters is None:  # the recipe must know this model
        recipe = recipe_for(recipe, variant)
    if resume and init:
        click.echo("note: --resume continues the snapshot's weights; --init is ignored", err=True)
        init = None
    if not resume and not init:
        raise UsageError(f"--init is required: a VGG16 archive for fcn32s/fcn8s-atonce, the "
                         f"previous stage's snapshot for fcn16s/fcn8s, or '{RANDOM_INIT}'")
    if tensorboard_dir is not None:
        require_tensorboard()  # before any work, not after building the model
    spec = build_spec(variant, None, width_divisor)
    out_dir = out_dir or Path("runs", "train", f"{variant}-{recipe.name}-{backend}")
    if not resume and list_snapshots(out_dir, variant):
        raise UsageError(f"{out_dir} already holds {variant} snapshots; continue them with "
                         "--resume or choose another --out")
    config = TrainConfig(
        variant=variant, backend=backend, recipe=recipe,
        base_lr=base_lr if base_lr is not None else recipe.base_lr[variant],
        iters=iters if iters is not None else recipe.max_iter[variant],
        eval_every=eval_every or recipe.eval_every,
        snapshot_every=snapshot_every or recipe.snapshot_every, seed=seed,
        num_classes=spec.num_classes, width_divisor=width_divisor, log_every=log_every,
        val_split=val_split or _default_val_split(entry), val_limit=val_limit,
        keep_snapshots=0 if keep_all_snapshots else keep_snapshots, plots=plots,
        init=init or "", deterministic=not nondeterministic)

    world_size = _world_size(backend)
    train_set, val_set, val_ids = _datasets(entry, data_root, train_split, config.val_split,
                                            val_limit)
    _check_outputs(out_dir, tensorboard_dir, init, train_set, val_set)
    fingerprint = id_lists_fingerprint(train_set.ids, val_ids)
    # Weights before frameworks: a bad archive is one line, without waiting for an import.
    resume_state = (load_resume_state(out_dir, config, spec, fingerprint, world_size)
                    if resume else None)
    if resume_state:
        params = resume_state.params
        init_info = {"resumed_from_snapshot": str(resume_state.paths.weights)}
        previous = resume_state.record["config"]["backend"]
        if previous != backend:
            click.echo(f"note: resuming a {previous} run in {backend}: weights, momentum and "
                       f"the sample order carry over; dropout masks (each framework's RNG) and "
                       f"float rounding differ from continuing in {previous}", err=True)
    else:
        params, init_info = load_init(spec, config.init, seed, recipe)
        if (variant in ("fcn16s", "fcn8s") and init_info["init_kind"] == variant
                and init_info.get("init_archive_kind") == "init"):
            click.echo(f"note: {variant} starts from VGG16 surgery, not from the coarser stage's "
                       "snapshot as in REF's staged recipe", err=True)
    _check_disk(out_dir, config, spec, resume_state.iteration if resume_state else 0)
    plan = solver_plan(spec, recipe, config.base_lr)
    # Through the registry: a missing framework is one clear line.
    trainer = backends.create_trainer(backend, spec, params, plan, recipe, device=device,
                                      threads=threads, deterministic=config.deterministic)
    close_writer = None
    try:
        if resume_state:
            trainer.load_momentum(resume_state.momentum)
        writer = None
        if tensorboard_dir is not None and trainer.rank == 0:
            writer, close_writer = backends.scalar_writer(backend, str(tensorboard_dir))
        if trainer.rank == 0:
            click.echo(f"train {variant} ({recipe.name}, {backend}, {trainer.world_size} "
                       f"process{'es' if trainer.world_size > 1 else ''}): base_lr "
                       f"{config.base_lr:g}, momentum {recipe.momentum}, {config.iters} updates "
                       f"x {recipe.iter_size * trainer.world_size} image(s); "
                       f"{plural(len(train_set.ids), 'training image')}, "
                       f"{len(val_ids)} validation; "
                       f"{init_info.get('init') or init_info.get('resumed_from_snapshot')} -> "
                       f"{out_dir}; "
                       f"{'deterministic' if config.deterministic else 'NONDETERMINISTIC'} "
                       "kernels",
                       err=True)
        record = run_training(trainer, config, spec, train_set, val_set, val_ids, out_dir,
                              fingerprint=fingerprint, resume=resume_state, progress=progress,
                              scalar_writer=writer, extra={**init_info,
                                                           "environment": trainer.environment()})
    finally:
        if close_writer:
            close_writer()
        trainer.close()
    if trainer.rank == 0:
        _report(record, out_dir)


def _world_size(backend: str) -> int:
    """Processes in this run: torchrun's WORLD_SIZE (torch) or TF_CONFIG's workers (tensorflow)."""
    from bench.core.distributed import tf_config_world, torchrun_world

    _, torch_world = torchrun_world()
    if backend == "tensorflow":
        if torch_world > 1:
            raise UsageError("torchrun starts torch workers; for data-parallel tensorflow "
                             "training use `python -m bench.core.distributed --workers N cli.py "
                             "train --backend tf ...` (or TF_CONFIG per worker)")
        return tf_config_world()[1]
    return torch_world


def _check_outputs(out_dir: Path, tensorboard_dir: Path | None, init: str | None,
                   train_set, val_set) -> None:
    """The run folder must not hold, or sit inside, the data or the init archive."""
    from bench.core.outputs import check_outputs, dataset_inputs, folder

    inputs = dataset_inputs(train_set, "training ")
    if val_set is not None:
        inputs.update(dataset_inputs(val_set, "validation "))
    if init and init != RANDOM_INIT:
        inputs["--init"] = Path(init)
    check_outputs({"--out": folder(out_dir, "run folder"),
                   "--tensorboard": folder(tensorboard_dir, "TensorBoard folder")}, inputs)


def _check_disk(out_dir: Path, config: TrainConfig, spec, start: int) -> None:
    """Print the disk the snapshots need; refuse to start when the disk cannot hold them."""
    from bench.train.disk import check_disk, plan_disk

    plan = plan_disk(out_dir, spec, [hyper.name for hyper in solver_plan(spec, config.recipe,
                                                                          config.base_lr)],
                     iters=config.iters, snapshot_every=config.snapshot_every, start=start,
                     keep=config.keep_snapshots,
                     existing=len(list_snapshots(out_dir, config.variant)))
    from bench.core.distributed import torchrun_world

    if torchrun_world()[0] == 0:
        click.echo(plan.summary(), err=True)
    check_disk(plan)


def _default_val_split(entry) -> str:
    from bench.data.model_data import default_split

    return default_split(entry)


def _datasets(entry, data_root: Path, train_split: str | None, val_split: str,
              val_limit: int | None):
    """Training set, validation set (None when --val-limit 0) and the validated ids: SBD and
    VOC for the VOC models, else the model's own data set (bench.data.model_data)."""
    from bench.data.model_data import TRAIN_SPLITS, dataset_name, open_model_dataset

    name = dataset_name(entry)
    if name != "voc":
        from bench.train.data import TrainingView

        train_set = TrainingView(open_model_dataset(entry, data_root,
                                                    train_split or TRAIN_SPLITS[name]))
        if val_limit == 0:
            return train_set, None, []
        val_set = TrainingView(open_model_dataset(entry, data_root, val_split))
        val_ids = val_set.ids if val_limit is None else val_set.ids[:val_limit]
        return train_set, val_set, list(val_ids)
    from bench.data.voc import SBDDataset, resolve_split, sbd_dir

    train_set = SBDDataset(sbd_dir(data_root), train_split or "train")
    if val_limit == 0:
        return train_set, None, []
    val_set = resolve_split(data_root, val_split)
    val_ids = val_set.ids if val_limit is None else val_set.ids[:val_limit]
    return train_set, val_set, list(val_ids)


def _report(record: dict, out_dir: Path) -> None:
    """Where things are, and the headline numbers (stdout)."""
    rate = record.get("images_per_s")
    lines = [f"done: {record['iterations']} updates"
             + (f", {rate:.3g} training images/s" if rate else "")]
    best = record.get("best") or {}
    if best.get("mean_iou") is not None and not math.isnan(best["mean_iou"]):
        lines.append(f"best mean IU {100 * best['mean_iou']:.2f}% at iteration "
                     f"{best['iteration']}")
    if record.get("final_snapshot"):
        lines.append(f"last snapshot {record['final_snapshot']}")
    lines.append(f"log {out_dir / 'train_log.csv'}, record {out_dir / 'train_record.json'}")
    click.echo("\n".join(lines))
