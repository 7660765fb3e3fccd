"""Options and helpers shared by several commands (one definition each)."""

from __future__ import annotations

import re

import click

from bench.spec import VARIANTS

variant_option = click.option(
    "--variant", type=click.Choice(VARIANTS), default="fcn8s", show_default=True,
    help="FCN variant.")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="auto = cuda when present, else cpu.")


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'375x500' -> (375, 500): height x width, both >= 1 (click.BadParameter otherwise)."""
    match = _SIZE.match(text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise click.BadParameter(f"{text!r} is not a size; write HEIGHTxWIDTH, e.g. 500x500")
    return int(match[1]), int(match[2])
