"""Backend plugins (entry-point group fcn_bench.backends): discovery, the CLI, and every way a
plugin can be broken, each reported in one line naming the plugin and its distribution.

Installed plugins are faked by replacing `backends.plugins.plugin_entry_points`; the example
package (examples/plugin-backend) is really installed by test_example_plugin.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import backends
from backends import plugins, registry
from bench.cli.app import cli
from bench.core.contracts import RunOptions
from bench.core.errors import BackendUnavailable, UsageError
from bench.core.records import REPO_ROOT as ROOT
from bench.model.init import random_params
from bench.model.spec import build_spec

NARROW = ["--variant", "fcn8s", "--width-divisor", "16", "--size", "9x11"]


def not_a_backend(spec, options=None) -> int:
    """A factory that breaks the contract: it returns no Backend."""
    return 42


def needs_a_missing_framework(spec, options=None):  # metadata only: never called
    raise AssertionError("an unavailable plugin must not be built")


needs_a_missing_framework.framework = "no_such_framework_fcn_bench"


def fake_point(name: str, value: str, dist: str = "fcn-bench-fake", version: str = "1.2"):
    """What importlib.metadata gives for one entry point of an installed distribution."""
    return SimpleNamespace(name=name, value=value, group=plugins.GROUP,
                           dist=SimpleNamespace(name=dist, version=version))


@pytest.fixture
def installed(monkeypatch):
    """Install fake plugins for one test: installed(point, ...); forgotten afterwards."""

    def install(*points) -> None:
        monkeypatch.setattr(plugins, "plugin_entry_points", lambda: list(points))
        registry.reset()

    yield install
    registry.reset()  # the monkeypatch is undone after this: the next lookup rediscovers


def test_a_plugin_is_a_backend_name_everywhere(installed):
    installed(fake_point("numref", "backends.reference:create_backend"))
    assert backends.canonical_name("NumRef") == "numref"
    assert backends.registered_backends() == ["torch", "tensorflow", "reference", "numref"]
    assert "numref" in backends.available_backends()  # `all` runs plugins, not reference
    assert "reference" not in backends.available_backends()
    spec = build_spec("fcn32s", width_divisor=16)
    backend = backends.create_backend("numref", spec, RunOptions(device="cpu"))
    backend.load_params(random_params(spec, 0))
    assert backend.predict(np.zeros((1, 3, 5, 6), np.float32)).shape == (1, 21, 5, 6)
    info = {item.name: item for item in backends.describe_backends()}["numref"]
    assert info.origin == "plugin from fcn-bench-fake 1.2" and info.unavailable is None
    assert info.trains is False and info.in_all is True


def test_parity_and_backends_commands_take_a_plugin(installed):
    installed(fake_point("numref", "backends.reference:create_backend"))
    result = CliRunner().invoke(cli, ["parity", "--backends", "numref,reference", *NARROW])
    assert result.exit_code == 0, result.output
    assert "numref vs reference" in result.output and "PASS" in result.output
    listing = CliRunner().invoke(cli, ["backends", "--format", "json"])
    assert listing.exit_code == 0, listing.output
    rows = {row["name"]: row for row in json.loads(listing.output)}
    assert rows["numref"]["origin"] == "plugin from fcn-bench-fake 1.2"
    assert rows["reference"] == {"name": "reference", "origin": "built-in", "unavailable": None,
                                 "trains": False, "in_all": False, "available": True}


def test_a_backend_without_a_trainer_is_refused_by_train(installed, tmp_path):
    installed(fake_point("numref", "backends.reference:create_backend"))
    for name in ("numref", "reference"):
        result = CliRunner().invoke(cli, ["train", "--variant", "fcn32s", "--backend", name,
                                          "--data-root", str(tmp_path), "--init", "random"])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            f"error: backend {name!r} has no trainer; train with torch or tensorflow"]


def test_a_plugin_named_like_a_built_in_is_refused(installed):
    installed(fake_point("torch", "backends.reference:create_backend", "evil-torch", "6.6"))
    with pytest.raises(plugins.BackendPluginError) as error:
        backends.canonical_name("reference")
    assert str(error.value) == (
        "backend plugin 'torch' (distribution evil-torch 6.6) clashes with the built-in backend "
        "'torch'; uninstall evil-torch or rename its entry point in group fcn_bench.backends")
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "evil-torch 6.6" in result.output


@pytest.mark.parametrize("name", ["all", "a,b", "x\x1b[31m", "", "-dash"])
def test_a_plugin_name_that_no_option_could_select_is_refused(installed, name):
    """"all" is the every-backend choice and "," separates `--backends`: such a plugin would be
    shadowed or split, never selected; control characters would reach the terminal."""
    installed(fake_point(name, "backends.reference:create_backend", "odd-dist", "1"))
    with pytest.raises(plugins.BackendPluginError, match="odd-dist 1"):
        backends.registered_backends()


def test_two_plugins_of_one_name_are_refused(installed):
    installed(fake_point("dup", "backends.reference:create_backend", "first", "1"),
              fake_point("dup", "backends.reference:create_backend", "second", "2"))
    with pytest.raises(BackendUnavailable, match=r"'dup' \(distribution second 2\) clashes with "
                                                 r"backend plugin 'dup' \(distribution first 1\)"):
        backends.registered_backends()


def test_a_plugin_whose_module_fails_to_import_is_unavailable_with_the_reason(installed):
    installed(fake_point("broken", "fcn_bench_no_such_module:create_backend", "broken-dist", "0.1"))
    reason = backends.unavailable_reason("broken")
    assert reason == ("backend plugin 'broken' (distribution broken-dist 0.1) failed to load "
                      "fcn_bench_no_such_module:create_backend: ModuleNotFoundError: No module "
                      "named 'fcn_bench_no_such_module'")
    assert "broken" not in backends.available_backends()  # `all` skips it, the others run
    with pytest.raises(BackendUnavailable, match="failed to load"):
        backends.create_backend("broken", build_spec("fcn32s", width_divisor=16))
    result = CliRunner().invoke(cli, ["latency", "--backend", "broken", "--variant", "fcn32s"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {reason}"]
    listing = CliRunner().invoke(cli, ["backends"])
    assert listing.exit_code == 0 and f"no: {reason}" in listing.output


def test_a_plugin_entry_point_that_is_no_factory_is_refused(installed):
    installed(fake_point("nofactory", "tests.backends.test_plugins:NARROW", "nf", "1"))
    assert backends.unavailable_reason("nofactory") == (
        "backend plugin 'nofactory' (distribution nf 1): tests.backends.test_plugins:NARROW is "
        "not a factory (spec, options) -> Backend")


def test_a_factory_that_returns_no_backend_is_refused(installed):
    installed(fake_point("bad", "tests.backends.test_plugins:not_a_backend", "bad-dist", "2.0"))
    assert backends.unavailable_reason("bad") is None  # it loads; what it builds is wrong
    with pytest.raises(plugins.BackendPluginError) as error:
        backends.create_backend("bad", build_spec("fcn32s", width_divisor=16))
    assert str(error.value) == ("backend plugin 'bad' (distribution bad-dist 2.0): its factory "
                                "returned int, not a bench.core.contracts.Backend")
    result = CliRunner().invoke(cli, ["parity", "--backends", "bad,reference", *NARROW])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"error: {error.value}"


def test_a_plugin_framework_that_is_missing_makes_it_unavailable(installed):
    installed(fake_point("nofw", "tests.backends.test_plugins:needs_a_missing_framework",
                         "nofw-dist", "3"))
    assert backends.unavailable_reason("nofw") == (
        "backend 'nofw' is unavailable: no_such_framework_fcn_bench is not installed (see "
        "nofw-dist's documentation)")
    assert "nofw" not in backends.available_backends()


def test_unknown_names_list_plugins_and_reference(installed):
    installed(fake_point("numref", "backends.reference:create_backend"))
    with pytest.raises(UsageError, match="choose from torch, tensorflow, reference, numref, tf, "
                                         "pytorch"):
        backends.canonical_name("jax")


def test_listing_the_backends_imports_no_framework():
    code = ("import sys\nimport cli\nsys.argv = ['cli.py', 'backends']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "assert not [m for m in ('torch', 'tensorflow') if m in sys.modules]\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "reference" in result.stdout


def test_help_imports_no_plugin_and_discovery_is_lazy():
    """`--help` and option parsing of built-in names read no entry points."""
    code = ("import sys\nfrom backends import plugins\ncalls = []\n"
            "real = plugins.plugin_entry_points\n"
            "plugins.plugin_entry_points = lambda: calls.append(1) or real()\n"
            "import cli\nsys.argv = ['cli.py', 'parity', '--help']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "assert not calls, calls\n"
            "assert not [m for m in ('torch', 'tensorflow') if m in sys.modules]\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                   timeout=120)
