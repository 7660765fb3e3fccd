"""One URL into one `.part` file: resumable (HTTP Range), retried with backoff, bounded in size,
never redirected from https to plain http; each failure is one line naming the URL.

Stdlib urllib plus tqdm for the byte bar. Verification, locking and trust are the caller's
(bench.downloads.fetch); the policy and its reasons are in docs/downloads.md.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from bench import __version__
from bench.core.errors import DownloadError
from bench.downloads.cache import CACHE_ENV
from bench.downloads.extract import one_line

Log = Callable[[str], None]

USER_AGENT = f"fcn-bench/{__version__} (python-urllib)"

CHUNK_BYTES = 1 << 20

TIMEOUT_S = 60.0  # per blocking socket operation, not for the whole transfer

RETRIES = 4

MAX_BYTES = 8 << 30  # no catalog file is near 8 GiB (VOC2012: 2 GB); a bound for unsized ones

BACKOFF_S = 2.0  # 2, 4, 8, 16 s between attempts on the same URL

SECURE_SCHEMES = ("https",)  # a first download over these may be trusted (recorded)


class Transient(Exception):
    """A failure worth retrying on the same URL (timeouts, resets, 5xx, truncated transfers)."""


class Permanent(Exception):
    """A failure that retrying the same URL will not fix (404, refused redirect...)."""


class Oversize(Permanent):
    """More bytes than the file can have: the partial file is deleted, not resumed."""


class NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http (urllib would do it silently)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            raise Permanent(f"refusing redirect from https to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


MAX_REDIRECTS = NoDowngradeRedirect.max_redirections
OPENER = urllib.request.build_opener(NoDowngradeRedirect)


def _write_error(part: Path, error: OSError) -> DownloadError:
    """A local write failure (disk full, permissions) as one line naming the file."""
    if error.errno == errno.ENOSPC:
        return DownloadError(f"{part}: disk full after {_size(part):,} bytes (kept: the same "
                             f"command resumes); free space or set {CACHE_ENV} to a bigger disk")
    return DownloadError(f"{part}: cannot write ({error.strerror or one_line(error)})")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from 'bytes 100-199/1000' or 'bytes */1000'."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total = header[6:].partition("/")
    first = span.split("-")[0]
    return (int(first) if first.isdigit() else None, int(total) if total.isdigit() else None)


def _fetch_once(url: str, part: Path, expected_size: int | None, progress: bool,
                timeout: float, log: Log) -> None:
    """One HTTP request appending to (or restarting) `part`; raises Transient/Permanent."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if 300 <= error.code < 400:
            # urllib's own text for this is several lines ("...would lead to an infinite loop.
            # The last 30x error message was: ..."): one line instead.
            raise Permanent(f"redirect loop or too many redirects (HTTP {error.code}; urllib "
                             f"stops at {MAX_REDIRECTS} redirects or the same URL 4 times)"
                             ) from None
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return  # the part already holds the whole file
            part.unlink(missing_ok=True)
            raise Transient("server refused the resume range; restarting from byte 0") from None
        if error.code in (408, 425, 429) or error.code >= 500:
            raise Transient(f"HTTP {error.code} {one_line(error.reason)}") from None
        raise Permanent(f"HTTP {error.code} {one_line(error.reason)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, Permanent):
            raise reason from None
        if isinstance(reason, socket.gaierror) and reason.errno != socket.EAI_AGAIN:
            # The name does not resolve (offline, or a dead host): retrying it only waits.
            raise Permanent(f"cannot resolve {urlparse(url).hostname}: "
                             f"{reason.strerror or reason} (offline?)") from None
        if isinstance(reason, ssl.SSLError):
            # A bad certificate or an interception proxy: retrying gives the same answer.
            raise Permanent(f"TLS failed: {one_line(reason)}") from None
        if isinstance(reason, ConnectionRefusedError):
            raise Permanent(f"connection refused by {urlparse(url).netloc}") from None
        raise Transient(f"cannot connect: {one_line(reason)}") from None

    with response:
        status = response.status
        mode = "wb"
        if offset and status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                part.unlink(missing_ok=True)
                raise Transient(f"server sent bytes from {first}, asked {offset}; restarting")
            mode = "ab"
        elif offset and status == 200:
            log(f"  {urlparse(url).netloc} ignored the resume request (Range); "
                "restarting from byte 0")
            offset = 0
        elif status != 200:
            raise Permanent(f"unexpected HTTP status {status}")
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith(("text/html", "application/xhtml")):
            # An error, login or "moved" page served with status 200: never the file.
            raise Permanent(f"served an HTML page (Content-Type {content_type}), not the file")
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = offset + remaining if remaining is not None else expected_size
        received = 0
        try:  # every local failure (open, write, the final flush) names the file
            with open(part, mode) as handle, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=part.name.removesuffix(".part"), file=sys.stderr, disable=not progress,
                    leave=False) as bar:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as error:
                        raise Transient(f"transfer interrupted after {offset + received:,} "
                                         f"bytes ({type(error).__name__}: {one_line(error)})"
                                         ) from None
                    if not chunk:
                        break
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if offset + received > (expected_size or MAX_BYTES):
                        # A server streaming without end must not fill the disk.
                        raise Oversize(f"sent more than the {expected_size or MAX_BYTES:,} "
                                        "bytes expected; not the file (partial file deleted)")
        except OSError as error:
            raise _write_error(part, error) from None
        if remaining is not None and received < remaining:
            raise Transient(f"connection closed after {offset + received:,} of "
                             f"{offset + remaining:,} bytes")


def fetch_with_retries(url: str, part: Path, expected_size: int | None, *, progress: bool,
                        timeout: float, retries: int, backoff_s: float, log: Log) -> None:
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()  # longer than the real file: not a prefix of it
        if expected_size is not None and have == expected_size:
            return
        try:
            _fetch_once(url, part, expected_size, progress, timeout, log)
            return
        except Transient as error:
            attempt += 1
            if attempt > retries:
                raise Permanent(f"{error} (gave up after {retries} retries)") from None
            delay = backoff_s * 2 ** (attempt - 1)
            kept = " (the .part is kept)" if part.exists() else ""
            log(f"  {error}; retry {attempt}/{retries} in {delay:g} s{kept}")
            time.sleep(delay)


def is_secure(url: str) -> bool:
    return urlparse(url).scheme in SECURE_SCHEMES
