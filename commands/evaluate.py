"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="evaluate")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("evaluate: not implemented yet")
