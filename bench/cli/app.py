"""fcn-bench command line: the click group over bench/ and backends/.

Each command lives in bench/cli/<name>.py. Library code raises bench.core.errors.FcnBenchError; this
file turns it into one line on stderr and an exit code (1 error, 2 bad usage), no traceback
(set FCN_BENCH_DEBUG=1 to see one). Importing this file imports neither torch nor tensorflow.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from bench import __version__
from bench.core.errors import FcnBenchError, printable

# Order shown in --help: the user's path from data to results.
COMMAND_MODULES = ("demo", "download", "convert", "predict", "parity", "evaluate", "reproduce",
                   "latency", "golden", "compare", "history", "train", "models", "backends")


class FcnBenchGroup(click.Group):
    """A click group whose commands report FcnBenchError as one line and a non-zero exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # registration order, not alphabetical

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            # click's own parse errors (an unknown choice, a missing option) are one line too,
            # naming the command whose --help explains it, instead of a four-line usage block.
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            where = error.ctx.command_path if error.ctx is not None else ctx.command_path
            _fail(ctx, f"{error.format_message()} (see `{where} --help`)", error.exit_code)
        except FcnBenchError as error:
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            _fail(ctx, str(error), error.exit_code)
        except OSError as error:
            # Environment problems (disk full, permission denied, a file where a folder should
            # be) are the user's to fix: one line naming the path, like every other user error.
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            where = f"{error.filename}: " if error.filename else ""
            _fail(ctx, f"{where}{error.strerror or error}", 1)
        except KeyboardInterrupt:
            click.echo("interrupted (finished work and checkpoints are kept)", err=True)
            ctx.exit(130)
        except (RecursionError, MemoryError) as error:
            # Last resort: library code bounds depth and memory itself (docs/security.md), so
            # reaching here is a bug, but the user still gets one line, not a traceback.
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            what = ("input nested too deeply to parse" if isinstance(error, RecursionError)
                    else "out of memory")
            _fail(ctx, f"{what}{_file_of(error)} (please report this; FCN_BENCH_DEBUG=1 shows "
                       "the traceback)", 1)
        except Exception as error:
            if os.environ.get("FCN_BENCH_DEBUG"):
                raise
            if _is_allocation_failure(error):
                # Commands estimate memory before allocating (bench/model/memory.py); this catches
                # what the estimate missed: one line, not a framework traceback.
                _fail(ctx, f"out of memory{_file_of(error)}: the framework could not allocate "
                           f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
                           "; use a smaller image, --size or --batch", 1)
            if not _is_library_error(error):
                raise
            _fail(ctx, f"{type(error).__name__}{_file_of(error)}: {error} (FCN_BENCH_DEBUG=1 "
                       "shows the traceback)", 1)


# Exceptions of third-party readers (safetensors, h5py, zip) that can escape with a message a
# user can act on; anything else is a bug in fcn-bench and keeps its traceback.
_LIBRARY_ERRORS = ("SafetensorError", "BadZipFile", "LargeZipFile")


# A framework's failure to allocate: torch raises RuntimeError (CPU: "can't allocate memory",
# CUDA: torch.OutOfMemoryError, a RuntimeError), TensorFlow ResourceExhaustedError.
_ALLOCATION_TYPES = ("OutOfMemoryError", "ResourceExhaustedError")
_ALLOCATION_MESSAGES = ("can't allocate memory", "out of memory", "failed to allocate")


def _is_allocation_failure(error: BaseException) -> bool:
    if type(error).__name__ in _ALLOCATION_TYPES:
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(m in text for m in _ALLOCATION_MESSAGES)


def _is_library_error(error: BaseException) -> bool:
    return type(error).__name__ in _LIBRARY_ERRORS


def _file_of(error: BaseException) -> str:
    """' in FILE' when the exception (or one it was raised from) names a file."""
    seen = 0
    while error is not None and seen < 10:
        filename = getattr(error, "filename", None) or getattr(error, "path", None)
        if filename:
            return f" in {filename}"
        error = error.__cause__ or error.__context__
        seen += 1
    return ""


def _fail(ctx: click.Context, message: str, code: int) -> None:
    """Print one line (control characters escaped: file contents end up in messages)."""
    click.echo(f"error: {printable(message)}", err=True)
    ctx.exit(code)


@click.group(cls=FcnBenchGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                   "max_content_width": 100})
@click.version_option(__version__, prog_name="fcn-bench")
def cli() -> None:
    """Reproduce and benchmark every released FCN in PyTorch and TensorFlow.

    \b
    Examples:
      python cli.py latency                              # CPU/GPU latency, random weights, no data
      python cli.py reproduce --variant fcn8s --backend torch --data-root data
      python cli.py evaluate --data-root data --split seg11valid --predictions preds/
    """


for _name in COMMAND_MODULES:
    cli.add_command(importlib.import_module(f"bench.cli.{_name}").command)


def main() -> None:
    """Run the group under the name the user typed: `fcn-bench` (console script) or `cli.py`."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    cli(prog_name="fcn-bench" if invoked == "fcn-bench" else "cli.py")

