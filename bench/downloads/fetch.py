"""Fetching one file: resumable, verified, locked HTTP(S) downloads and trust on first use.

Stdlib (urllib; hashing via bench.downloads.cache) plus tqdm for the progress bar; never imports
torch or tensorflow. The policy and its reasons are in docs/downloads.md:

* https first. A mirror listed as plain http is tried only after https failed, and the log says
  why https failed before falling back; for a file without a published checksum the http
  fallback is refused unless the caller allows it, and even then its hash is never recorded.
  An https URL that redirects to http is refused.
* One writer per file: `<dest>.lock` (bench.downloads.lock) is held while downloading, validating
and recording, so a second process waits and then finds the verified file.
* Downloads go to `<dest>.part`, resume with an HTTP Range request, retry with backoff, and are
  renamed into place only once the size and checksums match. An HTML page served instead of the
  file, a truncated transfer and a redirect loop are each one line naming the URL.
* Files without a published checksum (catalog `content` set) are parsed and shape-checked
  (bench.downloads.checks) before their SHA-256 is recorded; `forget` drops a recorded hash.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from bench import __version__
from bench.core.errors import DownloadError
from bench.downloads.cache import (
    CACHE_ENV,
    downloads_dir,
    file_digests,
    forget_sha256,
    record_sha256,
    recorded_hashes,
    recorded_sha256,
)
from bench.downloads.catalog import (
    CATALOG,
    DATASETS,
    WEIGHTS,
    Source,
    get_source,
    pinned_checksums,
    verify_file,
)
from bench.downloads.extract import one_line, safe_extract
from bench.downloads.lock import exclusive, lock_path_for

__all__ = ["CATALOG", "DATASETS", "WEIGHTS", "Source", "download_file", "fetch_source",
           "fetch_verified", "forget", "get_source", "safe_extract", "verify_file"]

Log = Callable[[str], None]

USER_AGENT = f"fcn-bench/{__version__} (python-urllib)"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per blocking socket operation, not for the whole transfer
RETRIES = 4
MAX_BYTES = 8 << 30  # no catalog file is near 8 GiB (VOC2012: 2 GB); a bound for unsized ones
BACKOFF_S = 2.0  # 2, 4, 8, 16 s between attempts on the same URL
SECURE_SCHEMES = ("https",)  # a first download over these may be trusted (recorded)
HTTP_ORIGIN_SUFFIX = ".via-http"  # beside a cached file that came over plain http, unpinned


def _stderr(message: str) -> None:
    # tqdm.write keeps an active progress bar intact.
    tqdm.write(message, file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# One URL


class _Transient(Exception):
    """A failure worth retrying on the same URL (timeouts, resets, 5xx, truncated transfers)."""


class _Permanent(Exception):
    """A failure that retrying the same URL will not fix (404, refused redirect...)."""


class _Oversize(_Permanent):
    """More bytes than the file can have: the partial file is deleted, not resumed."""


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http (urllib would do it silently)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            raise _Permanent(f"refusing redirect from https to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_MAX_REDIRECTS = _NoDowngradeRedirect.max_redirections
_OPENER = urllib.request.build_opener(_NoDowngradeRedirect)


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
    """One HTTP request appending to (or restarting) `part`; raises _Transient/_Permanent."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if 300 <= error.code < 400:
            # urllib's own text for this is several lines ("...would lead to an infinite loop.
            # The last 30x error message was: ..."): one line instead.
            raise _Permanent(f"redirect loop or too many redirects (HTTP {error.code}; urllib "
                             f"stops at {_MAX_REDIRECTS} redirects or the same URL 4 times)"
                             ) from None
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return  # the part already holds the whole file
            part.unlink(missing_ok=True)
            raise _Transient("server refused the resume range; restarting from byte 0") from None
        if error.code in (408, 425, 429) or error.code >= 500:
            raise _Transient(f"HTTP {error.code} {one_line(error.reason)}") from None
        raise _Permanent(f"HTTP {error.code} {one_line(error.reason)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, _Permanent):
            raise reason from None
        if isinstance(reason, socket.gaierror) and reason.errno != socket.EAI_AGAIN:
            # The name does not resolve (offline, or a dead host): retrying it only waits.
            raise _Permanent(f"cannot resolve {urlparse(url).hostname}: "
                             f"{reason.strerror or reason} (offline?)") from None
        if isinstance(reason, ssl.SSLError):
            # A bad certificate or an interception proxy: retrying gives the same answer.
            raise _Permanent(f"TLS failed: {one_line(reason)}") from None
        if isinstance(reason, ConnectionRefusedError):
            raise _Permanent(f"connection refused by {urlparse(url).netloc}") from None
        raise _Transient(f"cannot connect: {one_line(reason)}") from None

    with response:
        status = response.status
        mode = "wb"
        if offset and status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"server sent bytes from {first}, asked {offset}; restarting")
            mode = "ab"
        elif offset and status == 200:
            log(f"  {urlparse(url).netloc} ignored the resume request (Range); "
                "restarting from byte 0")
            offset = 0
        elif status != 200:
            raise _Permanent(f"unexpected HTTP status {status}")
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith(("text/html", "application/xhtml")):
            # An error, login or "moved" page served with status 200: never the file.
            raise _Permanent(f"served an HTML page (Content-Type {content_type}), not the file")
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
                        raise _Transient(f"transfer interrupted after {offset + received:,} "
                                         f"bytes ({type(error).__name__}: {one_line(error)})"
                                         ) from None
                    if not chunk:
                        break
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if offset + received > (expected_size or MAX_BYTES):
                        # A server streaming without end must not fill the disk.
                        raise _Oversize(f"sent more than the {expected_size or MAX_BYTES:,} "
                                        "bytes expected; not the file (partial file deleted)")
        except OSError as error:
            raise _write_error(part, error) from None
        if remaining is not None and received < remaining:
            raise _Transient(f"connection closed after {offset + received:,} of "
                             f"{offset + remaining:,} bytes")


def _fetch_with_retries(url: str, part: Path, expected_size: int | None, *, progress: bool,
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
        except _Transient as error:
            attempt += 1
            if attempt > retries:
                raise _Permanent(f"{error} (gave up after {retries} retries)") from None
            delay = backoff_s * 2 ** (attempt - 1)
            kept = " (the .part is kept)" if part.exists() else ""
            log(f"  {error}; retry {attempt}/{retries} in {delay:g} s{kept}")
            time.sleep(delay)



def _secure(url: str) -> bool:
    return urlparse(url).scheme in SECURE_SCHEMES


def _offline_hint(dest: Path, checks: str, archive_option: bool) -> str:
    local = f"put a copy obtained elsewhere at {dest} (it is verified against {checks})"
    if archive_option:
        return f"to proceed offline, pass --archive FILE or {local}"
    return f"to proceed offline, {local}"


def _download(urls: Sequence[str], dest: Path, checks: dict, *, http_ok: bool,
              archive_option: bool, progress: bool, log: Log, timeout: float = TIMEOUT_S,
              retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> tuple[str | None, str]:
    """The unlocked body of download_file: (the URL used or None if `dest` was kept, what
    matched)."""
    if dest.exists():
        try:
            matched = verify_file(dest, **checks)
            log(f"{dest}: already present ({matched})")
            return None, matched
        except DownloadError as error:
            log(f"{dest}: existing file fails verification ({str(error).split(': ', 1)[-1]});"
                " downloading it again")
            dest.unlink()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{dest.parent}: cannot create ({error.strerror})") from None
    part = dest.with_name(dest.name + ".part")
    pinned = " and ".join(k for k in ("md5", "sha1", "sha256") if checks[k]) or ""
    failures: list[str] = []
    for url in urls:
        if not _secure(url):
            why = ("https failed (the reason is above)" if failures
                   else f"{urlparse(url).netloc} is listed as http-only")
            if not http_ok:
                failures.append(f"{url}: not tried: plain http for a file with no published "
                                "checksum would let whoever blocks https choose the file "
                                "(--allow-http uses it once, unrecorded)")
                log(f"note: {why}; NOT falling back to plain http ({dest.name} has no "
                    "published checksum)")
                continue
            guard = f"the pinned {pinned}" if pinned else "the content check only (not recorded)"
            log(f"note: {why}; falling back to plain http: integrity rests on {guard}")
        if part.exists():
            log(f"resuming {part.name} at {part.stat().st_size:,} bytes from {url}")
        else:
            log(f"downloading {url}")
        try:
            _fetch_with_retries(url, part, checks["size"], progress=progress, timeout=timeout,
                                retries=retries, backoff_s=backoff_s, log=log)
        except _Permanent as error:
            if isinstance(error, _Oversize):
                part.unlink(missing_ok=True)
            failures.append(f"{url}: {one_line(error)}")
            log(f"  {url} failed: {one_line(error)}")
            continue
        try:
            matched = verify_file(part, **checks)
        except DownloadError as error:
            part.unlink(missing_ok=True)  # a wrong file is not worth resuming
            failures.append(f"{url}: {str(error).split(': ', 1)[-1]} (partial file deleted)")
            log(f"  {url}: {failures[-1].split(': ', 1)[-1]}")
            continue
        os.replace(part, dest)
        log(f"{dest}: verified ({matched})")
        return url, matched
    checks_text = ", ".join(f"{k} {v if isinstance(v, str) else ' or '.join(v)}"
                            for k, v in checks.items() if v and k != "size") or (
        "its content, then its SHA-256 is recorded")
    raise DownloadError(f"{dest.name}: download failed: " + "; ".join(failures) + "; "
                        + _offline_hint(dest, checks_text, archive_option))


def _checks(sha256: str | None, md5: str | Sequence[str] | None, sha1: str | None,
            size: int | None) -> dict:
    md5s = () if md5 is None else ((md5,) if isinstance(md5, str) else tuple(md5))
    return {"size": size, "md5": md5s, "sha1": sha1, "sha256": sha256}


def _check_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    if not urls:
        raise ValueError("download_file needs at least one URL")
    for url in urls:
        if urlparse(url).scheme not in ("https", "http"):
            raise DownloadError(f"{url}: only https and http URLs are fetched")
    return urls


def download_file(urls: str | Sequence[str], dest: str | Path, *, sha256: str | None = None,
                  md5: str | Sequence[str] | None = None, sha1: str | None = None,
                  size: int | None = None, progress: bool = True, log: Log = _stderr,
                  timeout: float = TIMEOUT_S, retries: int = RETRIES,
                  backoff_s: float = BACKOFF_S, archive_option: bool = False) -> Path:
    """Download the first URL that works into `dest`, resumable and verified; returns `dest`.

    `md5` may list several accepted values (the log says which matched). An existing `dest`
    that verifies is kept without any request. `<dest>.lock` is held throughout, so concurrent
    callers take turns. Raises DownloadError listing every URL's failure and the offline way.
    """
    urls = _check_urls(urls)
    dest = Path(dest)
    with exclusive(lock_path_for(dest), f"download of {dest.name}", log=log):
        _download(urls, dest, _checks(sha256, md5, sha1, size), http_ok=True,
                  archive_option=archive_option, progress=progress, log=log, timeout=timeout,
                  retries=retries, backoff_s=backoff_s)
    return dest


# ----------------------------------------------------------------------------------------------
# Catalog files: pinned checksums, or trust on first use after validation


def _forget_hint(source: Source) -> str:
    return f"python cli.py download forget {source.name}"


def fetch_source(source: Source, dest_dir: str | Path | None = None, **options) -> Path:
    """Download a catalog file into `dest_dir` (default: the cache's downloads/), verified
    (see fetch_verified, which also says what matched)."""
    return fetch_verified(source, dest_dir, **options)[0]


def fetch_verified(source: Source, dest_dir: str | Path | None = None, *, progress: bool = True,
                   log: Log = _stderr, allow_http: bool = False, archive_option: bool = False,
                   **options) -> tuple[Path, str]:
    """Download a catalog file into `dest_dir` (default: the cache's downloads/), verified;
    returns the path and what was verified (e.g. "md5 ... (published value 2 of 2)").

    A pinned file is verified against its published checksums. An unpinned one is checked
    against the SHA-256 recorded earlier, or, on first use, its content is validated
    (bench.downloads.checks) and only then its SHA-256 recorded, and never for a copy that came
    over plain http (allowed only with `allow_http`).
    """
    from bench.downloads.checks import check_content

    _check_urls(source.urls)
    dest = Path(dest_dir or downloads_dir()) / source.filename
    via_http = dest.with_name(dest.name + HTTP_ORIGIN_SUFFIX)
    with exclusive(lock_path_for(dest), f"download of {source.filename}", log=log):
        recorded = None if source.pinned else recorded_sha256(source.filename)
        if recorded:
            log(f"{source.filename}: no published checksum; using the SHA-256 recorded on first "
                f"download ({recorded[:12]}...)")
        checks = _checks(source.sha256 or recorded, source.md5, source.sha1, source.size)
        try:
            used, matched = _download(source.urls, dest, checks,
                             http_ok=bool(source.pinned or recorded or allow_http),
                             archive_option=archive_option, progress=progress, log=log,
                             **options)
        except DownloadError as error:
            if recorded and "sha256 is" in str(error):
                raise DownloadError(f"{error}; the file differs from the SHA-256 recorded on "
                                    f"first download: if that record is the wrong one, run "
                                    f"`{_forget_hint(source)}` and download again") from None
            raise
        if source.pinned or recorded:
            return dest, matched
        if used is not None:
            via_http.unlink(missing_ok=True)
        try:
            checked = check_content(source, dest)
        except DownloadError as error:
            dest.unlink(missing_ok=True)
            via_http.unlink(missing_ok=True)
            origin = f" from {used}" if used else " (found in the cache)"
            raise DownloadError(f"{error}{origin}; deleted, no checksum recorded; try again "
                                "later or " + _offline_hint(dest, "its content", False)
                                ) from None
        log(f"{dest.name}: {checked}")
        if (used is not None and not _secure(used)) or via_http.exists():
            via_http.write_text(f"{used or 'an earlier run'}\n", encoding="utf-8")
            log(f"{source.filename}: fetched over plain http with no published checksum: used "
                "as it is, but its SHA-256 is NOT recorded (to record one, run "
                f"`{_forget_hint(source)}` and download again over https)")
            return dest, f"{checked}; not recorded (plain http)"
        digest = file_digests(dest, ["sha256"])["sha256"]
        where = record_sha256(source.filename, digest, dest.stat().st_size,
                              used or f"local file {dest}")
        log(f"{source.filename}: no published checksum; recorded SHA-256 {digest} in {where} "
            f"(trust on first use, after the content check; `{_forget_hint(source)}` undoes "
            "it)")
    return dest, f"{checked}; sha256 {digest} recorded"


def forget(name: str, *, log: Log = _stderr) -> list[str]:
    """Forget a recorded SHA-256 and delete the cached copy it vouched for; returns what was
    done. For a file whose first download was wrong (or whose host legitimately changed it)."""
    source = get_source(name)
    dest = downloads_dir() / source.filename
    done = []
    with exclusive(lock_path_for(dest), f"forgetting {source.filename}", log=log):
        entry = recorded_hashes().get(source.filename)
        if entry is not None:
            forget_sha256(source.filename)
            sha = entry.get("sha256", "?") if isinstance(entry, dict) else "?"
            done.append(f"forgot the recorded SHA-256 {sha}")
        for path in (dest, dest.with_name(dest.name + ".part"),
                     dest.with_name(dest.name + HTTP_ORIGIN_SUFFIX)):
            if path.exists():
                path.unlink()
                done.append(f"deleted {path}")
    if source.pinned:
        done.append(f"its checksum is pinned ({', '.join(pinned_checksums(source))}): nothing "
                    "recorded to forget")
    return done or ["nothing recorded and nothing cached"]
