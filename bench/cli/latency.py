"""`latency`: forward-pass latency of every variant x backend, interleaved, with raw samples.

Parses options, builds backends with deterministic random weights, and hands the matrix to
bench.perf.latency (timing) and bench.perf.report (table and files). Frameworks are imported only
through backends.create_backend, inside the command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

import backends
from bench.cli.options import (
    SIZE,
    FiniteFloat,
    backend_option,
    device_option,
    plural,
    seed_option,
    variant_option,
)
from bench.core.contracts import COMPILE_MODES, PRECISIONS, RunOptions
from bench.core.errors import FcnBenchError
from bench.core.host import available_memory_bytes, host_info
from bench.core.outputs import Output, check_outputs
from bench.evaluation.published import paper_latency_ms
from bench.model.budget import check_fits, estimate_cell
from bench.model.init import RANDOM_PARAMS_ID, random_params
from bench.model.spec import MODEL_NAMES, VARIANTS, FcnSpec, build_spec, resolve_model
from bench.perf.cells import (
    MODES,
    CellKey,
    CellResult,
    default_modes,
    nvidia_gpu_visible,
    plan_cells,
)
from bench.perf.latency import METHODOLOGY, LatencyRun, make_row, measure
from bench.perf.policy import DEFAULT_POLICIES
from bench.perf.report import (
    TABLE_FORMATS,
    check_plot_path,
    make_latency_record,
    output_kind,
    render_output,
    render_plot,
    render_text,
    write_all_or_none,
)
from bench.perf.worker import run_in_worker

_CPU, _GPU = DEFAULT_POLICIES["cpu"], DEFAULT_POLICIES["cuda"]


def _sizes(ctx: click.Context, param: click.Parameter, values: tuple[tuple[int, int], ...]):
    return tuple(dict.fromkeys(values))


PAPER_SIZE = (500, 500)  # the default matrix's input: the paper's 500x500 VOC timing (Table 1)


def sizes_for(variant: str, sizes: tuple[tuple[int, int], ...],
              default_matrix: bool) -> tuple[tuple[int, int], ...]:
    """The sizes a variant is timed at: --size when given; else 500x500 for the default matrix
    (the four VOC nets, unchanged) and the data set's typical size from the model catalogue
    (bench/model/zoo.py) for a named --variant."""
    if sizes:
        return sizes
    return (PAPER_SIZE,) if default_matrix else (resolve_model(variant).typical_size,)


def input_shape(spec: FcnSpec) -> tuple[tuple[str, int], ...]:
    """(name, channels) of every network input: one generated input each (bench.perf.latency)."""
    return tuple((item.name, item.channels) for item in spec.inputs)


def paper_of(variant: str) -> dict | None:
    """The published forward time of a model, looked up by its record key (fcn8s for voc-fcn8s,
    voc-fcn-alexnet for CVPR Table 1's FCN-AlexNet); None where none is published."""
    return paper_latency_ms(resolve_model(variant).key)


def resolve_backends(requested: tuple[str, ...]) -> list[str]:
    """The requested backends (each must be installed), or every installed one."""
    return backends.resolve_backend_choices(requested)


def backend_factory(options: RunOptions, width_divisor: int, seed: int, log):
    """(variant, backend) -> a backend with deterministic random weights loaded.

    The random weights of the last variant are kept so its second backend loads the same bytes
    without drawing 134M numbers again (cells are built variant by variant).
    """
    cache: dict[str, dict] = {}

    def build(variant: str, name: str):
        spec = build_spec(variant, width_divisor=width_divisor)
        log(f"building {variant} / {name}")
        backend = backends.create_backend(name, spec, options)
        if variant not in cache:
            cache.clear()
            cache[variant] = random_params(spec, seed)
        backend.load_params(cache[variant])
        return backend

    return build


def check_host_memory(keys: list[CellKey], width_divisor: int, precision: str,
                      on_host: bool) -> None:
    """Refuse, before anything is allocated, a cell whose estimate exceeds the host's memory
    (the whole cell on a CPU run; the input batch and staged weights on a GPU run)."""
    available = available_memory_bytes()
    for key in keys:
        estimate = estimate_cell(build_spec(key.variant, width_divisor=width_divisor),
                                 key.height, key.width, key.batch, precision)
        needed = estimate.device_bytes + estimate.input_bytes if on_host else estimate.host_bytes
        check_fits(f"{key.variant} at {key.size} x batch {key.batch} ({precision})", needed,
                   available, "host")


def _measure_job(job: dict[str, Any]) -> LatencyRun:
    """One worker process's share of the matrix (bench.perf.worker): plain data in and out."""
    return _measure(**job, progress=None, log=lambda message: None)


def _measure(*, keys: list[CellKey], options: RunOptions, width_divisor: int, seed: int,
             precision: str, compile_mode: str | None, channels_last: bool, warmup: int | None,
             iters: int | None, min_time: float | None, device: str,
             progress: Callable[[float, float, str], None] | None,
             log: Callable[[str], None]) -> LatencyRun:
    """The matrix in this process (bench.perf.latency.measure) with random weights per variant."""
    specs = {k.variant: build_spec(k.variant, width_divisor=width_divisor) for k in keys}
    return measure(
        keys, backend_factory(options, width_divisor, seed, log), precision=precision,
        gflops_of=lambda k: specs[k.variant].flops(k.height, k.width) * k.batch / 1e9,
        # fp32 weights, counted twice: the framework's copy and transient staging.
        instance_bytes={v: 8 * spec.num_parameters() for v, spec in specs.items()},
        paper_of=paper_of, requested_device=device, compile=compile_mode,
        channels_last=channels_last, warmup=warmup, iters=iters, min_time_s=min_time, seed=seed,
        progress=progress,
        memory_of=lambda k: estimate_cell(specs[k.variant], k.height, k.width, k.batch,
                                          precision).device_bytes,
        inputs_of=lambda variant: input_shape(specs[variant]))


def measure_isolated(job: dict[str, Any], log: Callable[[str], None],
                     progress: Callable[[float, float, str], None] | None = None) -> LatencyRun:
    """Each variant x backend in its own spawned worker (bench.perf.worker): a worker that
    crashes (an illegal memory access in a compiled kernel) makes its cells FAILED rows and the
    rest of the matrix still runs. Cells of one worker are interleaved with each other only."""
    keys: list[CellKey] = job["keys"]
    groups: dict[tuple[str, str], list[CellKey]] = {}
    for key in keys:
        groups.setdefault((key.variant, key.backend), []).append(key)
    rows: dict[CellKey, dict[str, Any]] = {}
    environments: dict[str, dict[str, Any]] = {}
    policies: dict = {}
    before = host_info()
    started = time.monotonic()
    for number, ((variant, name), group) in enumerate(groups.items(), start=1):
        log(f"worker {number}/{len(groups)}: {variant} / {name} ({plural(len(group), 'cell')})")
        if progress:  # workers report nothing until they finish: estimate per worker
            spent = time.monotonic() - started
            per_worker = spent / (number - 1) if number > 1 else 0.0
            progress(spent, per_worker * (len(groups) - number + 1),
                     f"worker {number}/{len(groups)}: {variant}/{name}")
        run, error = run_in_worker(_measure_job, {**job, "keys": group},
                                   what=f"{variant}/{name} worker")
        if run is None:
            spec = build_spec(variant, width_divisor=job["width_divisor"])
            for key in group:
                rows[key] = make_row(
                    key, CellResult(error=error), device=job["device"],
                    precision=job["precision"], compile=job["compile_mode"],
                    channels_last=job["channels_last"],
                    gflops=spec.flops(key.height, key.width) * key.batch / 1e9)
            continue
        rows.update({CellKey(r["variant"], r["backend"], r["mode"], r["height"], r["width"],
                             r["batch"]): r for r in run.rows})
        for backend_name, environment in run.environments.items():
            environments.setdefault(backend_name, environment)
        policies.update(run.policies)
    return LatencyRun([rows[k] for k in keys], environments,
                      "one worker process per variant x backend (isolated cells)", policies,
                      before, host_info())


class ProgressBar:
    """tqdm over seconds of work: elapsed, the estimated remainder, and what is running now."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1.0, unit="s", file=sys.stderr, dynamic_ncols=True, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, "
                                    "~{remaining} left{postfix}", desc="latency")

    def __call__(self, done_s: float, left_s: float, text: str) -> None:
        self._bar.total = max(done_s + left_s, 1e-9)
        self._bar.n = done_s
        self._bar.set_postfix_str(text, refresh=False)
        self._bar.refresh()

    def write(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


_EPILOG = ("\b\nMethod:\n" + METHODOLOGY.replace("\n\n", "\n\n\b\n") + "\n\n\b\nDefault policies:\n"
           + "\n".join(f"  {device}: {policy.describe()}"
                       for device, policy in DEFAULT_POLICIES.items()))


@click.command(name="latency", epilog=_EPILOG)
@variant_option(multiple=True, models=MODEL_NAMES,
                default_help="the four VOC VGG16 nets")
@backend_option(several=True, name="backend_names")
@device_option
@click.option("--size", "sizes", type=SIZE, multiple=True, callback=_sizes, metavar="HxW",
              help="Input height x width (repeatable).  [default: 500x500, the paper's input, "
              "for the default matrix; the data set's typical size for a named --variant]")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per call (latency is per call).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32 (TF32 off); tf32; bf16/fp16: model and inputs cast once; "
              "amp-bf16/amp-fp16: fp32 weights under autocast (TF: mixed-precision compute).")
@click.option("--compile", "compile_", type=click.Choice(COMPILE_MODES), is_flag=False,
              flag_value="default", default=None,
              help="torch.compile mode (default, reduce-overhead = CUDA graphs, max-autotune) "
              "or xla (TensorFlow jit_compile; 'default' means xla there). A bare --compile "
              "is 'default'. Its cost is the first call.")
@click.option("--channels-last", is_flag=True, help="torch NHWC memory format (TF is NHWC).")
@click.option("--mode", type=click.Choice(["model", "end-to-end", "both"]), default=None,
              help="model: device input -> device scores; end-to-end: host images -> host "
              "labels.  [default: both with a GPU, model on a CPU]")
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help=f"Minimum warm-up calls per cell (0: none).  [default: "
              f"{_CPU.warmup.min_samples} on cpu, {_GPU.warmup.min_samples} on cuda]")
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help=f"Minimum timed calls per cell.  [default: {_CPU.min_iters} on cpu, "
              f"{_GPU.min_iters} on cuda]")
@click.option("--min-time", type=FiniteFloat(min=0), default=None, metavar="SECONDS",
              help=f"Minimum summed timed seconds per cell.  [default: {_CPU.min_time_s:g} on "
              f"cpu, {_GPU.min_time_s:g} on cuda]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op CPU threads.  [default: the framework's own]")
@seed_option("--seed", help="Seed of the random weights, input and round order.")
@click.option("--isolate/--no-isolate", default=None,
              help="Run each variant x backend in its own worker process, so a crash is a "
              "FAILED row.  [default: on for compiled cells on a GPU]")
@click.option("--output", "outputs", type=click.Path(dir_okay=False), multiple=True,
              help="Write the results: .json (record with raw samples), .csv or .md "
              "(repeatable: one run, several files; all are written or none).")
@click.option("--format", "table_format", type=click.Choice(list(TABLE_FORMATS)),
              default="plain", show_default=True, help="Console table style.")
@click.option("--wide", is_flag=True,
              help="Every column and full notes on the console (the default table fits 120 "
              "columns; the .md and .json files always have everything).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Latency distribution per cell (.png, .svg or .pdf).")
@click.option("--width-divisor", type=click.IntRange(min=1), default=1, hidden=True,
              help="Test-only narrow network (channels // N).")
@click.pass_context
def command(ctx, variants, backend_names, device, sizes, batch, precision, compile_,
            channels_last, mode, warmup, iters, min_time, threads, seed, isolate, outputs,
            table_format, wide, plot, width_divisor) -> None:
    """Time the FCN forward pass in every installed backend (no data needed).

    With no options: all four variants x every installed backend, 500x500, batch 1, fp32,
    deterministic random weights, on the best device. Defaults are sized per device: on a CPU
    (seconds per VGG16 forward at 500x500: 363 GFLOPs) model mode only and a few calls per
    cell, so the whole matrix takes a few minutes; on a GPU both modes and MLPerf-like counts
    (>= 100 calls and >= 10 s per cell). A failed cell (unsupported precision, compilation,
    out of memory) stays in the table as FAILED, the others still run, and the exit code is 1.
    Each row also gives the compute floor and the % of the device's peak, measured once per run.

    \b
    Examples:
      python cli.py latency
      python cli.py latency --variant fcn8s --backend torch       # one variant: a quick answer
      python cli.py latency --variant siftflow-fcn8s              # any zoo model, at 256x256
      python cli.py latency --variant fcn8s --backend tf --size 375x500 --mode both --plot lat.png
      python cli.py latency --device cuda --precision bf16 --compile max-autotune --output lat.json
    """
    # Option-level checks first: nothing runs if the command line is wrong (exit 2).
    for output in outputs:
        output_kind(output)
    if plot:
        check_plot_path(plot)
    check_outputs({**{"--output" + (f" ({index + 1})" if index else ""):
                      Output(path, what="latency results") for index, path in enumerate(outputs)},
                   "--plot": Output(plot, what="plot") if plot else None})
    names = resolve_backends(backend_names)
    modes = default_modes(device) if mode is None else MODES if mode == "both" else (mode,)
    default_matrix = not variants
    variants = tuple(dict.fromkeys(variants)) or VARIANTS
    keys = [key for variant in variants
            for key in plan_cells((variant,), names, sizes_for(variant, sizes, default_matrix),
                                  modes, batch)]
    all_sizes = tuple(dict.fromkeys((key.height, key.width) for key in keys))
    gpu = device == "cuda" or (device == "auto" and nvidia_gpu_visible())
    # Refuse what cannot fit before the first byte is allocated (one line with the estimate).
    check_host_memory(keys, width_divisor, precision, on_host=not gpu)
    if isolate is None:
        isolate = bool(compile_) and gpu
    options = RunOptions(device=device, precision=precision, compile=compile_,
                         channels_last=channels_last, threads=threads, seed=seed)

    started = time.monotonic()
    bar = ProgressBar()

    def log(message: str) -> None:
        bar.write(f"[{time.monotonic() - started:6.1f} s] {message}")

    log(f"latency: {plural(len(keys), 'cell')} ({plural(len(variants), 'variant')} x "
        f"{plural(len(names), 'backend')} x {plural(len(modes), 'mode')}; "
        f"{'size' if len(all_sizes) == 1 else 'sizes'} "
        f"{', '.join(f'{h}x{w}' for h, w in all_sizes)}), precision {precision}"
        + (f", compile {compile_}" if compile_ else ""))
    job = {"keys": keys, "options": options, "width_divisor": width_divisor, "seed": seed,
           "precision": precision, "compile_mode": compile_, "channels_last": channels_last,
           "warmup": warmup, "iters": iters, "min_time": min_time, "device": device}
    try:
        run = (measure_isolated(job, log, bar) if isolate else
               _measure(**job, progress=bar, log=log))
    except KeyboardInterrupt:
        bar.close()
        click.echo("interrupted: no results were written (the records are written only once "
                   "every cell has finished; cells are timed in interleaved rounds)", err=True)
        ctx.exit(130)
    bar.close()

    click.echo(render_text(run, table_format, wide=wide), nl=False)
    record = make_latency_record(run, {
        "variants": list(variants), "backends": names, "device": device,
        "sizes": [f"{h}x{w}" for h, w in all_sizes], "batch": batch, "precision": precision,
        "compile": compile_, "channels_last": channels_last, "modes": list(modes),
        "warmup": warmup, "iters": iters, "min_time_s": min_time, "threads": threads,
        "seed": seed, "isolate": isolate, "width_divisor": width_divisor,
        "weights": f"{RANDOM_PARAMS_ID}(seed={seed})", "command": " ".join(sys.argv)})
    contents = {output: render_output(output, record, run) for output in outputs}
    if plot and len(run.failed) < len(run.rows):
        contents[plot] = render_plot(plot, run.rows)
    write_all_or_none(contents)
    for path in contents:
        log(f"wrote {path}")
    if run.failed:
        cells = plural(len(run.rows), "cell")
        raise FcnBenchError(f"{len(run.failed)} of {cells} failed (FAILED rows "
                            f"above); first: {run.failed[0]['error']}")
