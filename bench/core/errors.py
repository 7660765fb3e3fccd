"""User-facing errors: library code raises them; only cli.py turns them into a line and exit code.

Every message names the offending value or file and, where one exists, the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FcnBenchError(Exception):
    """A problem with the user's input or environment (not a bug): printed as one line, exit 1."""

    exit_code = 1


class UsageError(FcnBenchError):
    """Bad option values that click itself cannot catch (exit 2, like click's own usage errors)."""

    exit_code = 2


class DataError(FcnBenchError):
    """A data file is missing, unreadable or inconsistent. The message starts with the path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class WeightsError(DataError):
    """A weights file is truncated, corrupt, unsafe or does not match the variant."""


class BackendUnavailable(FcnBenchError):
    """A backend's framework is not installed, or the requested device is not present."""


class DownloadError(FcnBenchError):
    """A download failed, was refused, or its checksum did not match."""


# C0 controls (tab and newline too: a message is one line), DEL and C1 controls.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


# The longest piece of a message kept whole: a 10-million-character split id or path quoted in
# an error made a 10 MB "line". Longer runs of non-space text keep both ends (docs/security.md).
MAX_PIECE = 200
MAX_MESSAGE = 2000


def shorten(text: str, limit: int = MAX_PIECE) -> str:
    """`text` cut to about `limit` characters, keeping its start and end around an ellipsis."""
    if len(text) <= limit:
        return text
    keep = max(limit - 3, 2) // 2
    return f"{text[:keep]}...{text[-keep:]}"


def escape_controls(text: object) -> str:
    """`text` with control characters escaped, nothing shortened (to test for them)."""
    return str(text).translate(_CONTROL)


def printable(text: object) -> str:
    """`text` with control characters escaped (ESC, BEL, NUL, newline... as \\x1b etc.) and
    over-long values shortened (each word to MAX_PIECE characters, the whole to MAX_MESSAGE).

    File contents (split ids, tensor names, metadata) end up in messages; printed raw, an ESC
    could rewrite the user's terminal. cli.py passes every message through this.
    """
    words = escape_controls(text).split(" ")
    return shorten(" ".join(shorten(word) for word in words), MAX_MESSAGE)


def not_a_file(path: str | Path, what: str = "file") -> str:
    """Why `path` is not a readable regular file: "file not found", "is a folder", or "not a
    regular file (a device)" (a symlink to /dev/zero said "file not found")."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks: what would be read
    except FileNotFoundError:
        return f"{what} not found" if not os.path.islink(path) else f"{what} not found (a " \
                                                                     f"broken symbolic link)"
    except OSError as error:
        return f"cannot read {what}: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        return f"is a folder, expected a {what}"
    if stat.S_ISREG(mode):
        return f"{what} exists"  # callers ask only about paths that are not regular files
    kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a pipe"
            if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    return f"not a regular {what} ({kind})"


def describe_error(error: BaseException) -> str:
    """One line: the exception type (unless it is ours) and the first line of its message."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, FcnBenchError) and text:
        return text[:300]
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
