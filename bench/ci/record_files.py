"""Record files on disk: one JSON file read within bounds, the record files under a folder, and
which kind of document each is. The first step of the regression table (`compare`) and `history`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.core.errors import DataError
from bench.core.json_text import loads_bounded


class RecordError(DataError):
    """An input file is unreadable or not a record: bad usage of `compare`, so exit 2."""

    exit_code = 2


MAX_RECORD_BYTES = 32 * 2**20  # the largest records (golden, with label maps) are under 1 MB


def read_json(path: Path) -> Any:
    """A record file parsed as JSON: size and nesting depth bounded (docs/security.md)."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise RecordError(path, "is a folder, expected a JSON file")
        if size > MAX_RECORD_BYTES:
            raise RecordError(path, f"{size / 2**20:.0f} MiB is too large for a record (limit "
                                    f"{MAX_RECORD_BYTES // 2**20} MiB)")
        return loads_bounded(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(path, f"cannot read: {error}") from None
    except json.JSONDecodeError as error:
        raise RecordError(path, f"not valid JSON (line {error.lineno}: {error.msg})") from None
    except ValueError as error:  # JsonTooDeep, or an integer beyond Python's digit limit
        raise RecordError(path, f"not a usable JSON file ({error})") from None


def document_kind(doc: Any) -> str | None:
    """"fcn-bench", "pytest-benchmark", or None for any other JSON."""
    if isinstance(doc, dict) and "schema_version" in doc and "kind" in doc:
        return "fcn-bench"
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) and (
            "machine_info" in doc or "commit_info" in doc):
        return "pytest-benchmark"
    return None


def json_files(path: Path) -> list[Path]:
    """A file, or every *.json under a folder (recursively, sorted)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    if not path.exists():
        raise RecordError(path, "no such file or folder")
    return [path]
