"""What the product imports is what its pyproject declares, and the set-up of the README's path."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("coatnet", "analysis", "app")
# the distribution that provides an import name, where the two differ
DISTRIBUTION = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}


def declared() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, flags=re.S | re.M).group(1)
    names = re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block, flags=re.M)
    return {name.lower().replace("_", "-") for name in names}


def imported() -> dict[str, Path]:
    """Every third-party top-level module the product imports, with one file that imports it."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES and top != "__future__":
                        found.setdefault(top, path)
    return found


def test_every_runtime_import_is_a_declared_dependency() -> None:
    deps = declared()
    missing = {
        name: str(path.relative_to(ROOT))
        for name, path in imported().items()
        if DISTRIBUTION.get(name, name).lower().replace("_", "-") not in deps
    }
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"


def test_torch_is_a_range_that_keeps_the_users_build() -> None:
    """An exact pin would make `pip install .` replace a user's own CPU (or other) torch with the index's
    build; the lower bound is what the code needs (the GPU image's 2.11) and the Makefile pins 2.13.0."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch>=2\.11"', text)
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_data_file_of_the_packages_is_installed_with_them() -> None:
    """``pip install .`` copies a package's non-Python files only where ``package-data`` names them (the
    globs, from the package's folder, as setuptools reads them): every such file in git is named."""
    globs = _pyproject()["tool"]["setuptools"]["package-data"]
    installed = {
        path.resolve()
        for package, patterns in globs.items()
        for pattern in patterns
        for path in (ROOT / package.replace(".", "/")).glob(pattern)
        if path.is_file()
    }
    names = subprocess.run(
        ["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True
    )
    data = [ROOT / n for n in names.stdout.splitlines() if not n.endswith(".py") and (ROOT / n).exists()]
    left_out = sorted(str(p.relative_to(ROOT)) for p in data if p.resolve() not in installed)
    assert data and not left_out, f"not installed by pip install . (pyproject's package-data): {left_out[:8]}"


def test_the_command_and_every_plug_in_resolve_to_a_function() -> None:
    """The console script and every entry point of the ``coatnet.commands`` group name a real function:
    an installed project has every command, ``coatnet app`` included."""
    project = _pyproject()["project"]
    targets = {"coatnet": project["scripts"]["coatnet"], **project["entry-points"]["coatnet.commands"]}
    assert {"analyze", "study", "probe", "study-layouts", "app"} <= set(targets)
    for name, target in targets.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name


OLDEST_PYTHON = (
    "3.11.2"  # Debian 12's python3: `make` must install every pin with it (the Makefile checks 3.11)
)


def test_every_pin_installs_on_the_oldest_python_make_accepts() -> None:
    """Each pinned requirement, as installed here, admits Debian 12's Python (a pin that asks for 3.11.5,
    as pymdown-extensions 13 does, fails `make` on a fresh Debian machine with no line of ours)."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    pins = [
        re.match(r"^([A-Za-z0-9_.-]+)==", line.strip())
        for name in ("requirements.txt", "requirements-test.txt", "requirements-nodeps.txt")
        for line in (ROOT / name).read_text().splitlines()
    ]
    refused = {}
    for pin in filter(None, pins):
        try:
            wants = metadata.metadata(pin[1]).get("Requires-Python") or ""
        except metadata.PackageNotFoundError:  # an image that lacks a test-only peer
            continue
        if wants and OLDEST_PYTHON not in SpecifierSet(wants):
            refused[pin[1]] = wants
    assert not refused, f"pins that Python {OLDEST_PYTHON} cannot install: {refused}"
    assert "(3, 11)" in (ROOT / "Makefile").read_text()
