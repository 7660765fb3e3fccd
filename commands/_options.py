"""Options and helpers shared by several commands (one definition each)."""

from __future__ import annotations

import click

from bench.spec import VARIANTS

variant_option = click.option(
    "--variant", type=click.Choice(VARIANTS), default="fcn8s", show_default=True,
    help="FCN variant.")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="auto = cuda when present, else cpu.")
