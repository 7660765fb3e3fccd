"""Fetching one file: verified, locked HTTP(S) downloads and trust on first use.

The transfer of one URL is bench.downloads.transfer; hashing is bench.downloads.cache. The policy
and its reasons are in docs/downloads.md:

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

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from bench.core.digests import file_digests
from bench.core.errors import DownloadError
from bench.downloads.cache import (
    downloads_dir,
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
from bench.downloads.transfer import (
    BACKOFF_S,
    RETRIES,
    TIMEOUT_S,
    Log,
    Oversize,
    Permanent,
    fetch_with_retries,
    is_secure,
)

__all__ = ["CATALOG", "DATASETS", "WEIGHTS", "Source", "download_file", "fetch_source",
           "fetch_verified", "forget", "get_source", "safe_extract", "verify_file"]


HTTP_ORIGIN_SUFFIX = ".via-http"  # beside a cached file that came over plain http, unpinned


def _stderr(message: str) -> None:
    # tqdm.write keeps an active progress bar intact.
    tqdm.write(message, file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# One file, from the first URL that works


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
        if not is_secure(url):
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
            fetch_with_retries(url, part, checks["size"], progress=progress, timeout=timeout,
                                retries=retries, backoff_s=backoff_s, log=log)
        except Permanent as error:
            if isinstance(error, Oversize):
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
        if (used is not None and not is_secure(used)) or via_http.exists():
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
