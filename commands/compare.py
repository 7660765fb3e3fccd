"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="compare")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("compare: not implemented yet")
