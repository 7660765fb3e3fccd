"""The command-line vocabulary: every option that several commands take is defined here, once.

One name, one set of aliases, one help text and one validation per concept (--backend, --variant,
--split, --data-root, --weights, --device, --seed, --size, and every float), so `reproduce`,
`latency`, `predict`, `parity`, `train` and `golden` cannot drift apart again. Bad values are
click usage errors: one line naming the option, exit 2. Imports no framework.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import click

from bench.model.spec import VARIANTS

# -- numbers --------------------------------------------------------------------------------------

SEED_MAX = 2**32 - 1  # numpy's and the frameworks' seeds are unsigned 32-bit
MAX_SIDE = 16384  # pixels per side: far above VOC (500) and below sizes that exhaust memory


class FiniteFloat(click.ParamType):
    """A float that is finite (no nan/inf: `--min-time nan` would never end) within bounds."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, *,
                 min_open: bool = False) -> None:
        self.min, self.max, self.min_open = min, max, min_open

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            self.fail(f"{value!r} must be {'>' if self.min_open else '>='} {self.min:g}",
                      param, ctx)
        if self.max is not None and number > self.max:
            self.fail(f"{value!r} must be <= {self.max:g}", param, ctx)
        return number

    def get_metavar(self, param, ctx=None) -> str:
        low = "" if self.min is None else f"{self.min:g}{'<' if self.min_open else '<='}"
        high = "" if self.max is None else f"<={self.max:g}"
        return f"FLOAT {low}x{high}" if low or high else "FLOAT"


SEED = click.IntRange(0, SEED_MAX)


def seed_option(*names: str, default: int | None = 0, help: str) -> callable:
    """A seed: an integer 0..2**32-1 (what numpy and both frameworks accept)."""
    return click.option(*names, type=SEED, default=default, show_default=default is not None,
                        metavar="SEED", help=help)


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'375x500' -> (375, 500): height x width, each 1..MAX_SIDE (click.BadParameter otherwise)."""
    match = _SIZE.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size; write HEIGHTxWIDTH, e.g. 500x500")
    height, width = int(match[1]), int(match[2])  # \d+ only: int() cannot fail or go negative
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise click.BadParameter(f"{text!r} is not a size: each side must be 1 to {MAX_SIDE} "
                                 "pixels")
    return height, width


class SizeType(click.ParamType):
    """HEIGHTxWIDTH, bounded per side."""

    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(value)
        except click.BadParameter as error:
            self.fail(error.message, param, ctx)


SIZE = SizeType()

# -- variants -------------------------------------------------------------------------------------


def variant_choices() -> tuple[str, ...]:
    """Every model name a --variant accepts (one place to widen when the spec grows)."""
    return VARIANTS


def variant_option(*, default: str | None = "fcn8s", multiple: bool = False,
                   required: bool = False, default_help: str | None = None,
                   models: tuple[str, ...] | None = None) -> callable:
    """--variant NAME; `multiple` makes it repeatable (default_help then says what none means).
    `models` widens the choices to other model names (parity runs every model of the zoo)."""
    text = "FCN variant" + (" (repeatable)" if multiple else "")
    text += " (or any model `cli.py models` lists)." if models else "."
    if default_help:
        text += f"  [default: {default_help}]"
    return click.option("--variant", "variants" if multiple else "variant",
                        type=click.Choice(models or variant_choices()), multiple=multiple,
                        default=None if multiple else default, required=required,
                        metavar="MODEL" if models else None,
                        show_default=default is not None and not multiple and not default_help,
                        help=text)


# -- backends -------------------------------------------------------------------------------------

ALL = "all"


class BackendType(click.ParamType):
    """A registered backend name or alias (torch/pytorch, tensorflow/tf, reference, a plugin),
    canonicalised through the registry (backends/registry.py); `all` where allowed.

    With `several`, one value may also list names separated by commas ("torch,tf"); the result
    is then a tuple.
    """

    name = "backend"

    def __init__(self, *, several: bool) -> None:
        self.several = several

    def _one(self, text: str, param, ctx) -> str:
        from backends import ALIASES, canonical_name, registered_backends
        from bench.core.errors import UsageError

        key = text.strip().lower()
        if key == ALL:
            if self.several:
                return ALL
            self.fail("'all' needs a command that runs several backends; this one runs one: "
                      f"choose one of {', '.join(registered_backends())}", param, ctx)
        try:
            return canonical_name(key)
        except UsageError:
            names = [*registered_backends(), *ALIASES] + ([ALL] if self.several else [])
            self.fail(f"unknown backend {text!r}; choose from {', '.join(names)}", param, ctx)

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        if not self.several:
            return self._one(value, param, ctx)
        parts = [part for part in str(value).split(",") if part.strip()]
        if not parts:
            self.fail(f"{value!r} names no backend", param, ctx)
        return tuple(self._one(part, param, ctx) for part in parts)


BACKEND_HELP = ("torch (alias pytorch), tensorflow (alias tf), reference (float64 numpy, slow) "
                "or a plugin (`cli.py backends` lists them)")


def _flatten_backends(ctx: click.Context, param: click.Parameter, values) -> tuple[str, ...]:
    """Repeated and comma-separated values -> one ordered tuple without repeats."""
    flat = [name for value in values for name in value]
    return tuple(dict.fromkeys(flat))


def backend_option(*, several: bool, default: str | None = None, name: str = "backend",
                   extra_help: str = "") -> callable:
    """--backend: one backend for commands that run one (refuses `all`), or several (repeatable,
    comma-separated, `all`) for commands that run a matrix. Several with no value = `default`
    if given, else every installed backend except reference (the body resolves the empty
    tuple)."""
    if several:
        none_means = default or "every installed backend but reference"
        text = " ".join(part for part in (
            f"{BACKEND_HELP}, or all (every installed one but reference); repeatable or "
            "comma-separated (torch,tf).", extra_help, f" [default: {none_means}]") if part)
        return click.option("--backend", name, type=BackendType(several=True), multiple=True,
                            default=(default,) if default else (), callback=_flatten_backends,
                            metavar="NAME[,NAME]", show_default=False, help=text)
    return click.option("--backend", name, type=BackendType(several=False),
                        default=default or "torch", show_default=True, metavar="NAME",
                        help=f"{BACKEND_HELP}. {extra_help}".strip())


def backend_pair_option(*names: str, default: str) -> callable:
    """Two sides to compare (parity), as NAME,NAME; returned canonical and comma-joined."""

    def check(ctx: click.Context, param: click.Parameter, value) -> str:
        sides = value if isinstance(value, tuple) else BackendType(
            several=True).convert(value, param, ctx)
        if ALL in sides or len(sides) != 2:
            raise click.BadParameter(f"needs exactly two names, got {value!r}", ctx, param)
        return ",".join(sides)

    return click.option(*names, default=default, show_default=True, callback=check,
                        metavar="NAME,NAME",
                        help=f"Two of: {BACKEND_HELP} (reference: small inputs only).")


# -- devices --------------------------------------------------------------------------------------

device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="auto = cuda when the framework sees one, else cpu.")

# -- data -----------------------------------------------------------------------------------------


def _data_root(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    from bench.downloads.cache import default_data_root

    return value if value is not None else default_data_root()


def data_root_option(*, required: bool = False) -> callable:
    """--data-root, defaulting to $FCN_BENCH_DATA or ./data (the body always gets a Path)."""
    return click.option(
        "--data-root", type=click.Path(path_type=Path, file_okay=False), default=None,
        callback=_data_root, metavar="DIR", required=required,
        help="Folder of the data sets, as `download` or `demo` write them: VOCdevkit/ (VOC2011, "
             "VOC2012), benchmark_RELEASE/ (SBD), splits/; nyud/, SiftFlow/, pascal-context/, "
             "ADEChallengeData2016/ for evaluate --dataset"
             + ("." if required else " [default: $FCN_BENCH_DATA or ./data]."))


SPLIT_HELP = ("seg11valid (736 images, the paper's), train, val, trainval (VOC2012 lists) or a "
              "path to a file of image ids.")


def check_split(value: str, option: str = "--split") -> str:
    """A split name, or an existing id-list file; anything else is a usage error (exit 2), so a
    folder, a missing list and an unknown name fail the same way (one line naming the option)."""
    from bench.core.errors import UsageError
    from bench.data.voc import SEG11VALID, VOC_SPLITS

    if value in (SEG11VALID, *VOC_SPLITS):
        return value
    path = Path(value)
    if path.is_file():
        return value
    if path.is_dir():
        problem = (f"{value} is a folder; give {SEG11VALID}, {', '.join(VOC_SPLITS)} or a file "
                   "of image ids")
    elif path.suffix or "/" in value or "\\" in value:
        problem = f"{value}: split list file not found"
    else:
        problem = (f"unknown split {value!r}; choose {SEG11VALID}, {', '.join(VOC_SPLITS)} or a "
                   "path to a file of image ids")
    raise UsageError(f"{option}: {problem}")


def voc_split_callback(ctx: click.Context, param: click.Parameter, value: str | None
                       ) -> str | None:
    """--split of a command that also handles other data sets (evaluate --dataset, the zoo's
    models in reproduce and train): VOC values are checked here; other data sets check their
    own split names. Runs after --dataset / --variant (declared first)."""
    variant = ctx.params.get("variant")
    if (value is None or ctx.params.get("dataset_name", "voc") != "voc"
            or (variant is not None and variant not in VARIANTS)):
        return value
    return check_split(value, param.opts[0])


def split_option(*names: str, default: str = "seg11valid", help: str = SPLIT_HELP) -> callable:
    names = names or ("--split",)
    return click.option(*names, default=default, show_default=True, metavar="SPLIT",
                        callback=lambda ctx, param, value: check_split(value, param.opts[0]),
                        help=help)


# -- weights --------------------------------------------------------------------------------------

WEIGHTS_HELP = ("fcn-bench weights archive (.safetensors, from `download weights`, `convert` or "
                "`demo`)")


def _cached_weights(ctx: click.Context) -> Path:
    """The converted official weights of the command's variant in the cache (reproduce's default).

    Runs after --variant (declared first): click processes options given on the command line
    first, then the rest in declaration order, and --weights is only defaulted when not given.
    """
    from bench.downloads.cache import default_weights_path

    return default_weights_path(ctx.params.get("variant") or "fcn8s")


def weights_option(*, random_fallback: bool = False) -> callable:
    """--weights FILE, defaulting to the cached converted official weights of --variant.

    With `random_fallback` (parity), a missing cache file means seeded random weights (None);
    otherwise the body's loader names the file and the command that fetches it.
    """

    def default(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None:
            return value
        if random_fallback and (ctx.params.get("random_seed") is not None
                                or ctx.params.get("width_divisor", 1) != 1):
            return None  # random weights were asked for
        path = _cached_weights(ctx)
        if path.exists():
            return path
        if random_fallback:
            return None
        from bench.core.errors import WeightsError

        variant = path.stem
        raise WeightsError(path, f"no converted {variant} weights in the cache: run `python cli.py "
                                 f"download weights {variant}`, or pass --weights FILE (e.g. from "
                                 "`python cli.py demo`)")

    fallback = "; without them: seeded random weights" if random_fallback else ""
    return click.option(
        "--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
        callback=default, metavar="FILE",
        help=f"{WEIGHTS_HELP} [default: the converted official weights of the variant in the "
             f"cache, from `download weights VARIANT`{fallback}].")


# -- wording --------------------------------------------------------------------------------------

def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 variant', '2 variants', '1 batch', '3 batches' (give `many` for irregular nouns)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
