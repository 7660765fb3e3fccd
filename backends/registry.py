"""Backend registry: names -> factories, resolved lazily; built-ins beside entry-point plugins.

Every backend is reached the same way: a factory `(spec, options) -> Backend` named as
"module:attr" (built-ins here, plugins through backends/plugins.py). Nothing is imported until a
backend is used, so listing names, checking options and `--help` import no framework.
`all` means every available backend except those marked explicit-only (`reference`: float64
numpy, far too slow for the latency or golden matrices); those run only when named.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from backends import plugins
from bench.core.contracts import Backend, RunOptions, Trainer
from bench.core.errors import BackendUnavailable, UsageError
from bench.model.spec import FcnSpec

if TYPE_CHECKING:  # annotations only: the training loop is not needed to run a backend
    from bench.train.plan import TensorHyper
    from bench.train.recipes import Recipe


@dataclass(frozen=True)
class BuiltinBackend:
    """A backend shipped with fcn-bench."""

    factory: str  # "module:attr" of the (spec, options) -> Backend factory
    framework: str | None  # import name that must be installed (None: numpy only)
    extra: str | None  # the pip extra that installs it
    training: str | None  # module with create_trainer and scalar_writer (None: cannot train)
    in_all: bool = True  # run by `all` (and by default)


BUILTINS: dict[str, BuiltinBackend] = {
    "torch": BuiltinBackend("backends.torch:create_backend", "torch", "torch",
                            "backends.torch.train"),
    "tensorflow": BuiltinBackend("backends.tensorflow:create_backend", "tensorflow",
                                 "tensorflow", "backends.tensorflow.train"),
    "reference": BuiltinBackend("backends.reference:create_backend", None, None, None,
                                in_all=False),
}
ALIASES = {"tf": "tensorflow", "pytorch": "torch"}
# The built-in backends `all` runs: the golden baseline holds exactly these.
BACKEND_NAMES = tuple(name for name, entry in BUILTINS.items() if entry.in_all)


@dataclass(frozen=True)
class BackendInfo:
    """What `cli.py backends` lists about one registered backend."""

    name: str
    origin: str  # "built-in" or "plugin from DIST VERSION"
    unavailable: str | None  # None when it can run here, else the one-line reason
    trains: bool
    in_all: bool


@functools.cache
def _plugins() -> dict[str, plugins.PluginEntry]:
    """Installed plugins, discovered once per process (clashes refused: plugins.discover)."""
    return plugins.discover([*BUILTINS, *ALIASES, "all"])  # "all" is the --backend choice


def reset() -> None:
    """Forget discovered and loaded plugins (tests that fake installations)."""
    _plugins.cache_clear()
    _factory.cache_clear()


def registered_backends() -> list[str]:
    """Every backend name: built-ins first, then plugins in discovery order."""
    return [*BUILTINS, *_plugins()]


def canonical_name(name: str) -> str:
    """Resolve aliases ("tf" -> "tensorflow"); unknown names get an error listing the choices."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    installed = _plugins()  # always: a plugin clashing with a built-in is refused, not hidden
    if key not in BUILTINS and key not in installed:
        choices = ", ".join([*registered_backends(), *ALIASES])
        raise UsageError(f"unknown backend {name!r}; choose from {choices}")
    return key


@functools.cache
def _factory(key: str) -> Callable[..., Backend]:
    """The loaded factory of a canonical name (a plugin's module is imported here)."""
    if key in BUILTINS:
        module, _, attr = BUILTINS[key].factory.partition(":")
        return getattr(importlib.import_module(module), attr)
    return plugins.load_factory(_plugins()[key])


def _framework(key: str) -> tuple[str | None, str]:
    """(import name that must be installed, how to install it) of a canonical name."""
    if key in BUILTINS:
        entry = BUILTINS[key]
        return entry.framework, f"pip install 'fcn-bench[{entry.extra}]'"
    framework = getattr(_factory(key), "framework", None)
    return framework, f"see {_plugins()[key].distribution}'s documentation"


def unavailable_reason(name: str) -> str | None:
    """None if the backend can run here, else a one-line reason with the fix. Built-ins are
    checked without importing their framework; a plugin's module is imported."""
    key = canonical_name(name)
    try:
        framework, fix = _framework(key)
    except BackendUnavailable as error:  # a plugin that fails to load
        return str(error)
    if framework and importlib.util.find_spec(framework) is None:
        return f"backend {key!r} is unavailable: {framework} is not installed ({fix})"
    return None


def available_backends() -> list[str]:
    """What `all` runs: every available backend that is not explicit-only."""
    return [name for name in registered_backends()
            if _in_all(name) and unavailable_reason(name) is None]


def _in_all(key: str) -> bool:
    return BUILTINS[key].in_all if key in BUILTINS else True


def resolve_backend_choice(choice: str) -> list[str]:
    """Backend names to run for a `--backend` choice: one (aliases resolved, refused with the
    reason when not installed) or every available one for "all"."""
    if choice == "all":
        names = available_backends()
        if not names:
            raise BackendUnavailable("no backend is installed; pip install 'fcn-bench[torch]' "
                                     "and/or 'fcn-bench[tensorflow]'")
        return names
    name = canonical_name(choice)
    reason = unavailable_reason(name)
    if reason:
        raise BackendUnavailable(reason)
    return [name]


def resolve_backend_choices(choices: Iterable[str]) -> list[str]:
    """Canonical backend names for several `--backend` values (none = every available one),
    in order, without repeats; each must be installed."""
    names = (name for choice in (tuple(choices) or ("all",))
             for name in resolve_backend_choice(choice))
    return list(dict.fromkeys(names))


def _usable(name: str) -> str:
    """The canonical name of a backend that can run here (else BackendUnavailable)."""
    key = canonical_name(name)
    reason = unavailable_reason(key)
    if reason:
        raise BackendUnavailable(reason)
    return key


def create_backend(name: str, spec: FcnSpec, options: RunOptions | None = None) -> Backend:
    """A backend by name, built by its factory (its framework imported now)."""
    key = _usable(name)
    backend = _factory(key)(spec, options)
    if not isinstance(backend, Backend):
        raise plugins.BackendPluginError(
            f"{_describe(key)}: its factory returned {type(backend).__name__}, not a "
            "bench.core.contracts.Backend")
    return backend


def blob_bytes_per_value(name: str) -> int:
    """Bytes per value of the arrays a backend's `forward_blobs` returns (factory metadata;
    4 = float32 unless the factory says otherwise, e.g. `reference` keeps float64)."""
    return int(getattr(_factory(_usable(name)), "blob_bytes_per_value", 4))


def _describe(key: str) -> str:
    return f"backend {key!r}" if key in BUILTINS else _plugins()[key].describe()


# -- training --------------------------------------------------------------------------------


def _training_module_name(key: str) -> str | None:
    if key in BUILTINS:
        return BUILTINS[key].training
    return getattr(_factory(key), "training", None)


def trains(name: str) -> bool:
    """Whether the backend has a trainer (built-ins are answered without importing anything)."""
    return _training_module_name(canonical_name(name)) is not None


def check_trains(name: str) -> str:
    """The canonical name of a backend that can train; one line naming the ones that can if
    it cannot (the framework is not checked here: see `create_trainer`)."""
    key = canonical_name(name)
    if not trains(key):
        able = [other for other in registered_backends() if _trains_quietly(other)]
        raise UsageError(f"backend {key!r} has no trainer; train with {' or '.join(able)}")
    return key


def _trains_quietly(key: str) -> bool:
    try:
        return trains(key)
    except BackendUnavailable:  # a broken plugin trains nothing
        return False


def _training_module(name: str) -> ModuleType:
    key = _usable(check_trains(name))
    return importlib.import_module(_training_module_name(key))


def create_trainer(name: str, spec: FcnSpec, params: Mapping[str, np.ndarray],
                   plan: Sequence[TensorHyper], recipe: Recipe, *, device: str = "auto",
                   threads: int | None = None, deterministic: bool = True) -> Trainer:
    """The backend's trainer (bench.core.contracts.Trainer), its framework imported now."""
    return _training_module(name).create_trainer(spec, params, plan, recipe, device=device,
                                                 threads=threads, deterministic=deterministic)


def scalar_writer(name: str, logdir: str) -> tuple[Callable[[str, float, int], None],
                                                   Callable[[], None]]:
    """(add_scalar, close) writing TensorBoard scalars with the backend's own library."""
    return _training_module(name).scalar_writer(logdir)


# -- listing ---------------------------------------------------------------------------------


def describe_backends() -> list[BackendInfo]:
    """Every registered backend, its origin, availability and whether it trains."""
    return [BackendInfo(name, "built-in" if name in BUILTINS else _plugins()[name].origin,
                        unavailable_reason(name), _trains_quietly(name), _in_all(name))
            for name in registered_backends()]
