"""Drop known, unactionable lines that native libraries print on the process's stderr.

Python-level filters (warnings, logging) cannot reach text a C++ library writes to file
descriptor 2, so the block runs with fd 2 redirected to a temporary file; afterwards every line
that does not fully match one of the patterns is written back, in order. Errors are never lost:
the replay happens also when the block raises. Framework-free.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def without_lines(patterns: Iterable[str]) -> Iterator[None]:
    """Run the block with fd 2 captured; replay every line no pattern fully matches."""
    compiled = [re.compile(pattern) for pattern in patterns]
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines(True)
                    if not any(p.fullmatch(line.rstrip("\r\n")) for p in compiled)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
