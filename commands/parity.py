"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="parity")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("parity: not implemented yet")
