"""Third-party backends: discovery through the entry-point group `fcn_bench.backends`.

A distribution registers `NAME = "package.module:factory"` in that group; the factory has the
built-ins' signature `(spec, options) -> Backend` (docs/adding_a_backend.md). Discovery reads
installed metadata only, once per process; a plugin's module is imported when the plugin is used
or listed, so `--help` and commands that never name a plugin import nothing of it. Every problem
is one line naming the plugin and its distribution.

Optional metadata, read from attributes of the factory once it is loaded:
  framework: str - an import name; the plugin is unavailable (with the reason) without it;
  training: str - a module with `create_trainer(spec, params, plan, recipe, *, device, threads,
      deterministic) -> Trainer` and `scalar_writer(logdir)`; without it the plugin cannot train;
  blob_bytes_per_value: int - bytes per value of `forward_blobs` arrays (default 4, float32).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.core.errors import BackendUnavailable

GROUP = "fcn_bench.backends"
# A backend name is one token of `--backends a,b`: lower-case letters, digits, "_", "-", ".".
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class BackendPluginError(BackendUnavailable):
    """An installed backend plugin that cannot be used as registered (named with its origin)."""


@dataclass(frozen=True)
class PluginEntry:
    """One registered plugin before its module is imported."""

    name: str
    target: str  # "module:attr", the entry point's value
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        return f"plugin from {self.distribution} {self.version}"

    def describe(self) -> str:
        """How messages name it: the plugin and the distribution that registered it."""
        return f"backend plugin {self.name!r} (distribution {self.distribution} {self.version})"


def plugin_entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    """The installed entry points of the group (tests replace this to fake installations)."""
    return importlib.metadata.entry_points(group=GROUP)


def discover(builtin_names: Iterable[str]) -> dict[str, PluginEntry]:
    """Every registered plugin by (lower-case) name; a name that a built-in backend or another
    plugin already has is refused, naming both, rather than silently shadowing one of them."""
    builtins = set(builtin_names)
    found: dict[str, PluginEntry] = {}
    for point in plugin_entry_points():
        dist = getattr(point, "dist", None)
        entry = PluginEntry(point.name.strip().lower(), point.value,
                            getattr(dist, "name", None) or "unknown distribution",
                            getattr(dist, "version", None) or "?")
        if not NAME_PATTERN.fullmatch(entry.name):
            raise BackendPluginError(f"{entry.describe()} has a name that cannot be a backend "
                                     "name (lower-case letters, digits, '_', '-', '.'; at most "
                                     f"64); uninstall {entry.distribution} or rename its entry "
                                     f"point in group {GROUP}")
        if entry.name in builtins:
            raise BackendPluginError(f"{entry.describe()} clashes with the built-in backend "
                                     f"{entry.name!r}; uninstall {entry.distribution} or rename "
                                     f"its entry point in group {GROUP}")
        if entry.name in found:
            raise BackendPluginError(f"{entry.describe()} clashes with "
                                     f"{found[entry.name].describe()}; uninstall one of them")
        found[entry.name] = entry
    return found


def load_factory(entry: PluginEntry) -> Callable:
    """Import the plugin's module and return its factory; a failure is one line."""
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
        factory = module
        for part in filter(None, attr.strip().split(".")):
            factory = getattr(factory, part)
    except Exception as error:  # a plugin's import may fail in any way: report, never crash
        first = (str(error).strip().splitlines() or [""])[0]
        raise BackendPluginError(f"{entry.describe()} failed to load {entry.target}: "
                                 f"{type(error).__name__}: {first}") from error
    if not callable(factory) or not attr:
        raise BackendPluginError(f"{entry.describe()}: {entry.target} is not a factory "
                                 "(spec, options) -> Backend")
    return factory
