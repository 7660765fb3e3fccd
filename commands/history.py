"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="history")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("history: not implemented yet")
