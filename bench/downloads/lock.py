"""One writer at a time for a download or an extraction: an advisory lock file with its holder.

Two `download` runs into one cache or data root used to share a `.part` file and a staging folder
and report success with half a data set (docs/downloads.md, "Concurrent runs"). Every writer now
holds `<target>.lock` while it works; a second run waits for it (saying who holds it) and then
finds the work done. The lock is `flock(2)` on Linux/macOS and `msvcrt.locking` on Windows, both
released by the kernel when the holder exits or crashes, so a stale lock file is harmless: its
content (PID, host, start time, what) only tells the waiting user who is in the way.

Stdlib only.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import DownloadError
from bench.core.records import utc_now

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


WAIT_S = 6 * 3600.0  # a 2 GB archive on a slow link; the user can always Ctrl-C
POLL_S = 0.5


def lock_path_for(target: str | Path) -> Path:
    """The lock file guarding `target` (a file being downloaded or a data root)."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


UNKNOWN_HOLDER = "another process"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return UNKNOWN_HOLDER
    return " ".join(text.split())[:200] or UNKNOWN_HOLDER


@contextmanager
def exclusive(path: str | Path, what: str, *, log: Callable[[str], None] | None = None,
              wait_s: float = WAIT_S, poll_s: float = POLL_S) -> Iterator[None]:
    """Hold the lock file `path` for `what`; wait (saying who holds it) up to `wait_s`, then
    raise DownloadError naming the lock file and its holder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise DownloadError(f"{path}: cannot create the lock file ({error.strerror})") from None
    try:
        started = time.monotonic()
        deadline = started + wait_s
        announced = False
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise DownloadError(f"{path}: still locked after {wait_s:g} s by "
                                    f"{_holder(path)}; wait for it or stop that process")
            holder = _holder(path)
            # The holder writes its line just after taking the lock: an empty file for a moment
            # is that gap, so wait one more poll before settling for "another process".
            if not announced and log is not None and (
                    holder != UNKNOWN_HOLDER or time.monotonic() - started > poll_s):
                log(f"waiting for {holder} to finish ({path})")
                announced = True
            time.sleep(poll_s)
        stamp = f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}: {what}\n"
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, stamp.encode("utf-8"))
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
