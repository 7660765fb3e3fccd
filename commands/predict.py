"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="predict")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("predict: not implemented yet")
