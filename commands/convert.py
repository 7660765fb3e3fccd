"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="convert")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("convert: not implemented yet")
