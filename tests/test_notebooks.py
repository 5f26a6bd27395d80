"""The notebooks of docs/notebooks run, offline, on the built-in models, and are kept in git without their
outputs (issue 26): each is executed in a fresh kernel started in the repository's root, in its own
process group, which is killed with the kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120  # a hung cell fails the test instead of the suite


def test_there_are_the_three_notebooks_and_the_readme_links_them():
    assert [n.name for n in NOTEBOOKS] == ["01-tour.ipynb", "02-explanations.ipynb",
                                           "03-tracing-patching-probes.ipynb"]  # fmt: skip
    assert "docs/notebooks" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_is_stored_without_outputs(path: Path):
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_offline_and_every_cell_gives_its_output(path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})  # fmt: skip
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert all(c.outputs for c in code), [c.source[:40] for c in code if not c.outputs]
