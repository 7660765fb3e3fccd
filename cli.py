#!/usr/bin/env python
"""fcn-bench command line: thin click commands over bench/ and backends/.

Each command lives in commands/<name>.py. Library code raises bench.errors.FcnBenchError; this
file turns it into one line on stderr and an exit code (1 error, 2 bad usage), no traceback
(set FCN_BENCH_DEBUG=1 to see one). Importing this file imports neither torch nor tensorflow.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from bench import __version__
from bench.errors import FcnBenchError

# Order shown in --help: the user's path from data to results.
COMMAND_MODULES = ("download", "convert", "predict", "parity", "evaluate", "reproduce", "latency",
                   "golden", "compare", "history", "train", "models")


class FcnBenchGroup(click.Group):
    """A click group whose commands report FcnBenchError as one line and a non-zero exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # registration order, not alphabetical

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FcnBenchError as error:
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:
            # Environment problems (disk full, permission denied, a file where a folder should
            # be) are the user's to fix: one line naming the path, like every other user error.
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"error: {where}{error.strerror or error}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted (finished work and checkpoints are kept)", err=True)
            ctx.exit(130)


@click.group(cls=FcnBenchGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                   "max_content_width": 100})
@click.version_option(__version__, prog_name="fcn-bench")
def cli() -> None:
    """Reproduce and benchmark FCN-32s/16s/8s (VGG16) in PyTorch and TensorFlow.

    \b
    Examples:
      python cli.py latency                              # CPU/GPU latency, random weights, no data
      python cli.py reproduce --variant fcn8s --backend torch --data-root data
      python cli.py evaluate --data-root data --split seg11valid --predictions preds/
    """


for _name in COMMAND_MODULES:
    cli.add_command(importlib.import_module(f"commands.{_name}").command)


def main() -> None:
    cli(prog_name="cli.py")


if __name__ == "__main__":
    sys.exit(main())
