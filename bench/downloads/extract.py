"""Safe extraction of downloaded (or user-given) tar and zip archives.

Archives are bytes from the network or from the user: every member is checked before anything is
written (absolute paths, `..`, links and special files are refused by name), tar members also pass
Python's `filter="data"` (PEP 706), and everything lands in a staging folder unique to this call
(`tempfile.mkdtemp` inside the destination, so two processes never share one) that is moved into
place only when the whole archive has been read. Every failure is one DataError line naming the
archive or the path (disk full included), and the staging folder is removed. docs/downloads.md
describes the threat model.

Stdlib only.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from bench.core.errors import DataError

STAGING_PREFIX = ".staging-"

# Extraction is bounded (docs/security.md): a 3 MB gzip holding one 3 GiB member wrote all of it
# before anything refused it. The data sets' archives hold JPEG/PNG/.mat files that compress
# little (VOC's tar is uncompressed; the densest, label .mat files in a .tar.gz, stay well below
# 32:1), so the default bound is 32x the archive's size, at least 1 GiB and at most 64 GiB.
# Each member's declared size is checked against what remains before it is written.
EXPANSION_RATIO = 32
MIN_EXTRACT_BYTES = 1 << 30
MAX_EXTRACT_BYTES = 64 << 30


def extract_limit(archive: Path) -> int:
    """The most bytes `archive` may extract to (see EXPANSION_RATIO)."""
    return min(max(archive.stat().st_size * EXPANSION_RATIO, MIN_EXTRACT_BYTES),
               MAX_EXTRACT_BYTES)


class _Budget:
    """Bytes the archive may still write; refuses a member whose declared size exceeds them."""

    def __init__(self, archive: Path, limit: int):
        self.archive, self.limit, self.used = archive, limit, 0

    def take(self, name: str, size: int) -> None:
        if size < 0 or self.used + size > self.limit:
            raise DataError(self.archive, f"refusing to extract: member {name!r} declares "
                                          f"{size:,} bytes, beyond the {self.limit:,} this "
                                          f"archive may extract to ({self.used:,} so far; at "
                                          f"most {EXPANSION_RATIO}x the archive's size, "
                                          f"docs/security.md); not a data set archive")
        self.used += size


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) folded to one space."""
    return " ".join(str(text).split())


def _member_problem(name: str, kind: str, link: str | None) -> str | None:
    """Why an archive member is refused, or None. Checked before `filter="data"` as well."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive:
        return "has an absolute path"
    if ".." in posix.parts:
        return "contains a '..' component"
    if kind == "symlink":
        return f"is a symbolic link (-> {link})"
    if kind == "hardlink":
        return f"is a hard link (-> {link})"
    if kind not in ("file", "dir"):
        return f"is a {kind}, not a regular file or folder"
    return None


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isdir():
        return "dir"
    if member.isfile():
        return "file"
    return "device or fifo"


def _refuse(archive: Path, name: str, problem: str) -> DataError:
    return DataError(archive, f"refusing to extract: member {name!r} {problem}")


def _extract_tar(archive: Path, staging: Path, budget: _Budget) -> int:
    """One pass over the (possibly compressed) stream: each member checked, then extracted."""
    count = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            problem = _member_problem(member.name, _tar_kind(member), member.linkname or None)
            if problem:
                raise _refuse(archive, member.name, problem)
            budget.take(member.name, member.size if member.isfile() else 0)
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, staging, filter="data")
            else:  # Python without PEP 706: the explicit checks above are the whole defence
                tar.extract(member, staging)
            count += member.isfile()
    return count


def _extract_zip(archive: Path, staging: Path, budget: _Budget) -> int:
    """Every member checked (names, kinds, declared sizes: zipfile reads no more than the
    declared size) before the first is written."""
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            mode = info.external_attr >> 16
            kind = "symlink" if stat.S_ISLNK(mode) else ("dir" if info.is_dir() else "file")
            problem = _member_problem(info.filename, kind, None)
            if problem:
                raise _refuse(archive, info.filename, problem)
            budget.take(info.filename, info.file_size)
        for info in infos:
            zf.extract(info, staging)
        return sum(not info.is_dir() for info in infos)


def _find_root(staging: Path, name: str, max_depth: int = 3) -> Path | None:
    """The shallowest folder called `name` in the staged tree (breadth-first)."""
    level = [staging]
    for _ in range(max_depth + 1):
        for folder in level:
            if folder.name == name and folder != staging:
                return folder
        level = sorted(child for folder in level for child in folder.iterdir() if child.is_dir())
    return None


def _merge_into(src: Path, dst: Path) -> None:
    """Move `src`'s content into `dst`: whole folders are renamed in one step where `dst` has no
    such folder yet (so VOC2011 can join an existing VOCdevkit/ holding VOC2012)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if not dst.is_dir():
        raise DataError(dst, "exists and is not a folder; move it away and extract again")
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge_into(child, target)
        elif child.is_dir() == target.is_dir() or not target.exists():
            os.replace(child, target)
        else:
            raise DataError(target, f"conflicts with {child.name} from the archive (file vs "
                                    "folder); move it away and extract again")


def _os_problem(error: OSError, archive: Path, dest: Path) -> DataError:
    """An OSError while extracting, as one line naming the path (and the fix for disk full)."""
    where = Path(error.filename) if error.filename else dest
    if error.errno == errno.ENOSPC:
        size = archive.stat().st_size if archive.exists() else 0
        return DataError(where, f"disk full while extracting {archive.name} into {dest} (the "
                                f"archive alone is {size:,} bytes); free space or choose "
                                "another --data-root, then run the same command again")
    return DataError(where, f"cannot extract {archive.name} into {dest}: "
                            f"{error.strerror or one_line(error)}")


def safe_extract(archive: str | Path, dest: str | Path, *, root: str | None = None,
                 max_bytes: int | None = None) -> Path:
    """Extract a tar (any compression) or zip archive into `dest` safely; returns the result path.

    Absolute paths, `..`, symbolic and hard links and special files are refused (naming the
    member) before anything reaches `dest`; tar members additionally pass `filter="data"`.
    Everything is extracted into a staging folder of this call's own inside `dest` first and
    moved in only when complete. With `root`, only the folder of that name (wherever it sits in
    the archive, e.g. TrainVal/VOCdevkit) is kept, as `dest/<root>`. At most `max_bytes`
    (default: extract_limit) are written; a member declaring more is refused before writing.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(archive, "archive not found")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{archive.name}-", dir=dest))
    except OSError as error:
        raise _os_problem(error, archive, dest) from None
    budget = _Budget(archive, max_bytes if max_bytes is not None else extract_limit(archive))
    try:
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, staging, budget)
            else:
                _extract_tar(archive, staging, budget)
        except (tarfile.ReadError, tarfile.CompressionError) as error:
            if "unexpected end of data" in str(error) or "truncated" in str(error).lower():
                raise DataError(archive, "archive is truncated; delete it and download again"
                                ) from None
            raise DataError(archive, "not a tar or zip archive (or an unsupported "
                                     "compression); is it the right file?") from None
        except tarfile.TarError as error:
            raise DataError(archive, f"unreadable archive ({one_line(error)})") from None
        except (EOFError, zipfile.BadZipFile) as error:
            detail = "truncated" if isinstance(error, EOFError) else one_line(error)
            raise DataError(archive, f"archive is damaged ({detail}); delete it and download "
                                     "again") from None
        if root is None:
            _merge_into(staging, dest)  # dest exists: moves staging's children into it
            return dest
        found = _find_root(staging, root)
        if found is None:
            raise DataError(archive, f"has no {root}/ folder; is it the right archive?")
        _merge_into(found, dest / root)
        return dest / root
    except OSError as error:
        raise _os_problem(error, archive, dest) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def leftover_staging(dest: str | Path) -> list[Path]:
    """Staging folders in `dest` (left by interrupted extractions: only call under the lock)."""
    dest = Path(dest)
    if not dest.is_dir():
        return []
    return sorted(p for p in dest.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir())
