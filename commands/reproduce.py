"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="reproduce")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("reproduce: not implemented yet")
