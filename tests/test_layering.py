"""Imports run one way only: app -> analysis -> coatnet (DESIGN.md). Inside coatnet, the model wing
(config, layers, attention, blocks, model...) imports nothing from the weights or training wings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("coatnet", "analysis", "app")
# what each layer may import, among the project's packages and the heavy front-end libraries
ALLOWED = {"coatnet": {"coatnet"}, "analysis": {"coatnet", "analysis"}, "app": {"coatnet", "analysis", "app"}}
FORBIDDEN_THIRD_PARTY = {
    "coatnet": {"streamlit", "plotly", "captum", "timm", "torchvision"},
    "analysis": {"streamlit", "timm", "torchvision"},
    "app": {"timm", "torchvision"},
}
MODEL_WING = {
    "config", "layers", "attention", "recording", "randomness", "blocks", "model", "variants", "complexity",
}  # fmt: skip
NOT_FOR_MODEL_WING = {
    "batches", "checkpoint", "cli", "cli_training", "data", "datasets", "demos", "distributed", "evaluation",
    "files", "hub", "timm", "timm_import", "train", "train_state", "training",
}  # fmt: skip


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: use absolute imports, not relative ones")
    return names


def python_files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py")) if (ROOT / layer).is_dir() else []


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_only_run_downwards(layer: str) -> None:
    bad = []
    for path in python_files(layer):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in LAYERS and top not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
            if top in FORBIDDEN_THIRD_PARTY[layer]:
                bad.append(f"{path.relative_to(ROOT)} imports {name} (not a dependency of {layer}/)")
    assert not bad, "\n".join(bad)


def test_model_wing_is_free_of_io_and_training() -> None:
    bad = []
    for path in python_files("coatnet"):
        if path.stem not in MODEL_WING:
            continue
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "coatnet" and len(parts) > 1 and parts[1] in NOT_FOR_MODEL_WING:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_the_package() -> None:
    """Guards the guard: the walk finds the model modules, so an empty glob cannot pass silently."""
    stems = {p.stem for p in python_files("coatnet")}
    assert stems >= MODEL_WING


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import analysis.figures.maps\nfrom app import main\n")
    assert imported_modules(bad) == ["analysis.figures.maps", "app"]


def test_pages_render_and_hold_no_tensors() -> None:
    """app/views/ draws what app/cache.py computed (figures and index arithmetic only): no torch, no model."""
    bad = []
    for path in sorted((ROOT / "app" / "views").glob("*.py")):
        for name in imported_modules(path):
            if name.split(".")[0] == "torch" or name.startswith("coatnet.model.network"):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)
