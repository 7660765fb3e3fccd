"""The architecture as tests: the import contracts of pyproject.toml hold (import-linter), every
domain package is under them, nothing imports a backend behind the linter's back, and no module
grows past the size limit (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter's own TOML reader
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
# One responsibility per module keeps modules short (docs/architecture.md); none is over this.
MAX_MODULE_LINES = 500
FRAMEWORKS = ("backends", "torch", "tensorflow", "keras")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {contract["id"]: contract for contract in config["tool"]["importlinter"]["contracts"]}


def _bench_domains() -> set[str]:
    return {f"bench.{path.parent.name}" for path in (ROOT / "bench").glob("*/__init__.py")}


def test_import_contracts_hold():
    assert importlib.util.find_spec("importlinter") is not None, (
        "import-linter is missing: pip install -e '.[dev]' -c constraints.txt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as lint; lint()",
         "pyproject.toml", "--no-cache", "--no-logo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_every_domain_package_is_under_the_contracts():
    """A new bench/<domain>/ must be placed in the layers and, below the commands, be kept
    framework-free: otherwise the contracts would silently not see it."""
    contracts = _contracts()
    domains = _bench_domains()
    assert set(contracts["framework-free"]["source_modules"]) == domains - {"bench.cli"}
    assert set(contracts["framework-free"]["forbidden_modules"]) == set(FRAMEWORKS)
    layered = {name.strip() for layer in contracts["layers"]["layers"]
               for name in layer.replace(":", "|").split("|")}
    assert layered == domains | {"backends"}
    assert contracts["layers"]["layers"][0] == "bench.cli"
    assert contracts["layers"]["layers"][1] == "backends"
    assert contracts["layers"]["layers"][-1] == "bench.core"


def _dynamic_imports(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, module name or None when not a literal) of importlib.import_module/__import__."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__"):
            arg = node.args[0]
            found.append((node.lineno, arg.value if isinstance(arg, ast.Constant)
                          and isinstance(arg.value, str) else None))
    return found


def test_no_dynamic_import_of_a_backend_or_framework_below_the_commands():
    """import-linter sees import statements only: a computed import of a backend or framework in
    bench outside bench/cli would bypass the framework-free contract."""
    offenders = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        if path.relative_to(ROOT / "bench").parts[0] == "cli":
            continue
        for line, module in _dynamic_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module is None or module.split(".")[0] in FRAMEWORKS:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module or 'computed'}")
    assert not offenders


def test_the_dynamic_import_check_sees_computed_and_literal_imports():
    tree = ast.parse("import importlib\nimportlib.import_module('backends.torch')\n"
                     "__import__(name)\nimport_module('json')\n")
    assert _dynamic_imports(tree) == [(2, "backends.torch"), (3, None), (4, "json")]


def test_the_bench_package_root_imports_no_backend_or_framework():
    """bench/__init__.py and any module beside it sit outside the domain packages that the
    framework-free contract lists."""
    offenders = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names
                          if name.split(".")[0] in FRAMEWORKS]
    assert not offenders


def _module_sizes() -> dict[str, int]:
    return {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
            for package in ("bench", "backends") for path in (ROOT / package).rglob("*.py")}


def test_no_module_exceeds_the_size_limit():
    sizes = _module_sizes()
    over = {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"split these modules (limit {MAX_MODULE_LINES} lines): {over}"
