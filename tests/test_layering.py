"""Imports run one way: app -> analysis -> coatnet (docs/architecture.md), and inside each package between its
folders, as RULES says; no import circle anywhere, counting imports inside functions, under
``TYPE_CHECKING`` and through a package's ``__init__``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("coatnet", "analysis", "app")
CORE_OF_COATNET = {"coatnet.files", "coatnet.devices", "coatnet.version"}
COATNET = {"coatnet", "coatnet.model", "coatnet.weights", "coatnet.data", "coatnet.training", "coatnet.cli"}
COATNET |= CORE_OF_COATNET
# A unit is a sub-package (coatnet.model), a module at the top of a package (coatnet.files), or a package's
# face (its __init__: coatnet). Each may import itself and what its rule names; nothing else of the project.
RULES: dict[str, set[str]] = {
    "coatnet.files": set(),
    "coatnet.devices": set(),
    "coatnet.version": set(),
    "coatnet.model": set(),
    "coatnet.data": {"coatnet.files"},
    "coatnet.weights": {"coatnet.model", "coatnet.data", "coatnet.files", "coatnet.devices"},
    "coatnet.training": {"coatnet.model", "coatnet.weights", "coatnet.data"} | CORE_OF_COATNET,
    "coatnet.cli": COATNET - {"coatnet"},
    "coatnet.__main__": {"coatnet.cli"},
    "coatnet": COATNET - {"coatnet.cli"},
    "analysis.core": COATNET - {"coatnet.cli"},
    "analysis.maps": {"analysis.core"} | COATNET,
    "analysis.causal": {"analysis.core"} | COATNET,
    "analysis.explain": {"analysis.core", "analysis.maps"} | COATNET,
    "analysis.studies": {"analysis.core", "analysis.maps", "analysis.explain"} | COATNET,
    "analysis.figures": {
        "analysis.core",
        "analysis.maps",
        "analysis.causal",
        "analysis.explain",
        "analysis.studies",
    },
    "analysis.report": {
        "analysis.core",
        "analysis.maps",
        "analysis.causal",
        "analysis.explain",
        "analysis.studies",
        "analysis.figures",
        "coatnet.files",
    },
}
ANALYSIS = {u for u in RULES if u.startswith("analysis")}
RULES["analysis.cli"] = ANALYSIS | COATNET
RULES["analysis"] = ANALYSIS | COATNET
FORBIDDEN_THIRD_PARTY = {
    "coatnet": {"streamlit", "plotly", "captum", "timm", "torchvision"},
    "analysis": {"streamlit", "timm", "torchvision"},
    "app": {"timm", "torchvision"},
}


def modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its own name)."""
    found = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            name = ".".join(path.with_suffix("").relative_to(ROOT).parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported_modules(path: Path) -> list[str]:
    """Every name imported anywhere in the file (in functions and under TYPE_CHECKING too); ``from a
    import b`` gives ``a.b`` (a module, or a name of ``a``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: use absolute imports, not relative ones")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module that ``name`` is or lies in (None for third-party names)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def unit(module: str, known: dict[str, Path]) -> str:
    """``coatnet.model.blocks`` -> ``coatnet.model``; ``coatnet.files`` -> itself; ``app.views.x`` -> app."""
    parts = module.split(".")
    if parts[0] == "app":
        return "app"
    if len(parts) == 1 or (len(parts) == 2 and known[module].name != "__init__.py"):
        return module
    return ".".join(parts[:2])


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        m: {r for name in imported_modules(p) if (r := resolve(name, known)) and r != m}
        for m, p in known.items()
    }


def test_every_unit_has_a_rule() -> None:
    known = modules()
    units = {unit(m, known) for m in known} - {"app"}
    assert units == set(RULES), (
        f"units without a rule: {units - set(RULES)}; rules for nothing: {set(RULES) - units}"
    )


def test_imports_follow_the_rules_between_folders() -> None:
    known, bad = modules(), []
    for module, targets in graph().items():
        mine = unit(module, known)
        for target in targets:
            theirs = unit(target, known)
            if mine == "app":
                allowed = theirs == "app" or theirs.split(".")[0] in ("analysis", "coatnet")
            else:
                allowed = theirs == mine or theirs in RULES[mine]
            if not allowed:
                bad.append(f"{known[module].relative_to(ROOT)} ({mine}) imports {target} ({theirs})")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_front_end_it_must_not(layer: str) -> None:
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in FORBIDDEN_THIRD_PARTY[layer]:
                bad.append(f"{path.relative_to(ROOT)} imports {name} (not a dependency of {layer}/)")
    assert not bad, "\n".join(bad)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere() -> None:
    assert circles(graph()) == []


def test_the_checkers_catch_what_they_guard(tmp_path: Path) -> None:
    """Guards the guards: an upward import is seen, a circle is found, and the walk sees the packages."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import analysis.figures\nfrom app import main\n\ndef f():\n    from coatnet.model import x\n"
    )
    assert imported_modules(bad) == ["analysis.figures", "app.main", "coatnet.model.x"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = modules()
    assert {"coatnet.model.blocks", "analysis.maps.attention", "app.main"} <= set(known)
    assert (
        unit("coatnet.model.blocks", known) == "coatnet.model"
        and unit("coatnet.files", known) == "coatnet.files"
    )


def test_pages_render_and_hold_no_tensors() -> None:
    """app/views/ draws what app/cache.py computed (figures and index arithmetic only): no torch, no model."""
    bad = []
    for path in sorted((ROOT / "app" / "views").glob("*.py")):
        for name in imported_modules(path):
            if name.split(".")[0] == "torch" or name.startswith("coatnet.model"):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_app_imports_only_public_names() -> None:
    """app/ takes from coatnet and analysis only what a package's face (its ``__init__``) lists in
    ``__all__``: never a module's insides."""
    import importlib

    known, bad = modules(), []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                wanted = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in wanted:
                if module.split(".")[0] not in ("coatnet", "analysis"):
                    continue
                face = known.get(module)
                if face is None or face.name != "__init__.py":
                    bad.append(f"{path.relative_to(ROOT)}: {module} is not a package's face")
                elif name is not None and name not in getattr(importlib.import_module(module), "__all__", ()):
                    bad.append(f"{path.relative_to(ROOT)}: {module}.{name} is not in {module}.__all__")
    assert not bad, "\n".join(bad)


def test_no_test_module_is_imported_by_another() -> None:
    """What several tests use lives in tests/support (or a folder's helper module), never in a test module
    that another imports: a test module is collected, not a library."""
    bad = []
    files = [
        p for folder in ("tests", "scripts", "benchmarks") for p in sorted((ROOT / folder).rglob("*.py"))
    ]
    for path in files:
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "tests" and any(part.startswith("test_") for part in parts[1:]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)
