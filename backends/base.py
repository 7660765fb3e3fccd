"""Helpers the built-in backends share (the contracts live in bench/core/contracts.py)."""

from __future__ import annotations

from pathlib import Path

_NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def nvidia_driver_version() -> str | None:
    """The NVIDIA kernel driver version (neither framework exposes it), or None without one.

    Read from the first line of /proc/driver/nvidia/version, e.g. "NVRM version: NVIDIA UNIX
    x86_64 Kernel Module  550.54.15  ...".
    """
    try:
        line = _NVIDIA_DRIVER_FILE.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    words = [word for word in line.split() if word[:1].isdigit() and "." in word]
    return words[0] if words else None
