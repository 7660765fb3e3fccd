"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="download")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("download: not implemented yet")
