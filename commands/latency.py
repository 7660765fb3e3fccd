"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="latency")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("latency: not implemented yet")
