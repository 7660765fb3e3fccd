"""`latency`: forward-pass latency of every variant x backend, interleaved, with raw samples.

Parses options, builds backends with deterministic random weights, and hands the matrix to
bench.latency (timing) and bench.latency_report (table and files). Frameworks are imported only
through backends.create_backend, inside the command.
"""

from __future__ import annotations

import sys
import time

import click

import backends
from backends.base import PRECISIONS, RunOptions
from bench.errors import FcnBenchError
from bench.init import random_params
from bench.latency import (
    DEFAULT_POLICIES,
    METHODOLOGY,
    MODES,
    default_modes,
    measure,
    plan_cells,
)
from bench.latency_report import (
    TABLE_FORMATS,
    check_plot_path,
    make_latency_record,
    output_kind,
    render_text,
    write_output,
    write_plot,
)
from bench.outputs import Output, check_outputs
from bench.references import paper_latency_ms
from bench.spec import VARIANTS, build_spec
from commands._options import (
    SIZE,
    FiniteFloat,
    backend_option,
    device_option,
    plural,
    seed_option,
    variant_option,
)

_CPU, _GPU = DEFAULT_POLICIES["cpu"], DEFAULT_POLICIES["cuda"]


def _sizes(ctx: click.Context, param: click.Parameter, values: tuple[tuple[int, int], ...]):
    return tuple(dict.fromkeys(values)) or ((500, 500),)


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


_EPILOG = ("\b\nMethod:\n" + METHODOLOGY.replace("\n\n", "\n\n\b\n") + "\n\n\b\nDefault policies:\n"
           + "\n".join(f"  {device}: {policy.describe()}"
                       for device, policy in DEFAULT_POLICIES.items()))


@click.command(name="latency", epilog=_EPILOG)
@variant_option(multiple=True, default_help="all four")
@backend_option(several=True, name="backend_names")
@device_option
@click.option("--size", "sizes", type=SIZE, multiple=True, callback=_sizes, metavar="HxW",
              help="Input height x width (repeatable).  [default: 500x500, the paper's input]")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per call (latency is per call).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32 (TF32 off), tf32, or fp16/bf16 autocast.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile / tf.function(jit_compile=True); its cost is the first call.")
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
@click.option("--output", "outputs", type=click.Path(dir_okay=False), multiple=True,
              help="Write the results: .json (record with raw samples), .csv or .md "
              "(repeatable: one run, several files).")
@click.option("--format", "table_format", type=click.Choice(list(TABLE_FORMATS)),
              default="plain", show_default=True, help="Console table style.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Latency distribution per cell (.png, .svg or .pdf).")
@click.option("--width-divisor", type=click.IntRange(min=1), default=1, hidden=True,
              help="Test-only narrow network (channels // N).")
def command(variants, backend_names, device, sizes, batch, precision, compile_, channels_last,
            mode, warmup, iters, min_time, threads, seed, outputs, table_format, plot,
            width_divisor) -> None:
    """Time the FCN forward pass in every installed backend (no data needed).

    With no options: all four variants x every installed backend, 500x500, batch 1, fp32,
    deterministic random weights, on the best device. Defaults are sized per device: on a CPU
    (seconds per VGG16 forward at 500x500: 363 GFLOPs) model mode only and a few calls per
    cell, so the whole matrix takes a few minutes; on a GPU both modes and MLPerf-like counts
    (>= 100 calls and >= 10 s per cell). A failed cell (unsupported precision, compilation,
    out of memory) stays in the table as FAILED, the others still run, and the exit code is 1.

    \b
    Examples:
      python cli.py latency
      python cli.py latency --variant fcn8s --backend tf --size 375x500 --mode both --plot lat.png
      python cli.py latency --device cuda --precision fp16 --output lat.json --output lat.md
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
    variants = tuple(dict.fromkeys(variants)) or VARIANTS
    keys = plan_cells(variants, names, sizes, modes, batch)
    options = RunOptions(device=device, precision=precision, compile=compile_,
                         channels_last=channels_last, threads=threads, seed=seed)

    started = time.monotonic()

    def log(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f} s] {message}", err=True)

    def progress(phase: str, round_index: int, active: int) -> None:
        log(f"{phase} round {round_index}: {active} cell{'s' if active != 1 else ''}")

    specs = {v: build_spec(v, width_divisor=width_divisor) for v in variants}
    log(f"latency: {plural(len(keys), 'cell')} ({plural(len(specs), 'variant')} x "
        f"{plural(len(names), 'backend')} x {plural(len(sizes), 'size')} x "
        f"{plural(len(modes), 'mode')}), precision {precision}")
    run = measure(
        keys, backend_factory(options, width_divisor, seed, log), precision=precision,
        gflops_of=lambda k: specs[k.variant].flops(k.height, k.width) * k.batch / 1e9,
        # fp32 weights, counted twice: the framework's copy and transient staging.
        instance_bytes={v: 8 * spec.num_parameters() for v, spec in specs.items()},
        paper_of=paper_latency_ms, requested_device=device, compile=compile_,
        channels_last=channels_last, warmup=warmup, iters=iters, min_time_s=min_time, seed=seed,
        progress=progress)

    click.echo(render_text(run, table_format), nl=False)
    record = make_latency_record(run, {
        "variants": list(specs), "backends": names, "device": device,
        "sizes": [f"{h}x{w}" for h, w in sizes], "batch": batch, "precision": precision,
        "compile": compile_, "channels_last": channels_last, "modes": list(modes), "warmup": warmup,
        "iters": iters, "min_time_s": min_time, "threads": threads, "seed": seed,
        "width_divisor": width_divisor, "weights": f"bench.init.random_params(seed={seed})",
        "command": " ".join(sys.argv)})
    for output in outputs:
        write_output(output, record, run)
        log(f"wrote {output}")
    if plot and len(run.failed) < len(run.rows):
        write_plot(plot, run.rows)
        log(f"wrote {plot}")
    if run.failed:
        cells = plural(len(run.rows), "cell")
        raise FcnBenchError(f"{len(run.failed)} of {cells} failed (FAILED rows "
                            f"above); first: {run.failed[0]['error']}")
