"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="golden")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("golden: not implemented yet")
