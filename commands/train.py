"""PLACEHOLDER: replaced by the module's owner."""

import click

from bench.errors import FcnBenchError


@click.command(name="train")
def command() -> None:
    """(placeholder, not implemented yet)"""
    raise FcnBenchError("train: not implemented yet")
