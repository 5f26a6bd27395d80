"""The notebooks of docs/notebooks run, offline, on the built-in models, and are stored with their outputs so
that a code host shows them (``make notebooks``, scripts/run_notebooks.py, makes them): what a fresh run
prints, and a PNG beside each interactive figure where the file was made with Chromium. Their text names
what their cells compute: a class or a block that a markdown cell names is one the cells after it print or
use, and no duration stands in their prose.

Each notebook is executed once for the whole module (:func:`fresh_run`), in a fresh kernel started in the
repository's root, in a process group of its own that is killed with the kernel (jupyter_client's way).
"""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from coatnet.data.datasets import FASHION_MNIST_CLASSES
from tests.support.notebooks import (
    NOTEBOOKS,
    OURS,
    PNG,
    ROOT,
    code_cells,
    durations,
    execute,
    figure_key,
    figure_outputs,
    printout,
    same_printout,
    unbacked_claims,
)

RERUN = "run `make notebooks` and commit the notebooks"


@pytest.fixture(scope="module")
def fresh_run():
    """``fresh_run(path)``: the notebook executed and tidied as ``make notebooks`` does, once per path for
    the whole module (the tests share it: read it, never change it). A notebook that raised fails every
    test that asks for it, with the error."""
    runs: dict[Path, NotebookNode | Exception] = {}

    def run(path: Path) -> NotebookNode:
        if path not in runs:
            try:
                runs[path] = execute(path)
            except Exception as error:  # CellExecutionError names the cell; a kernel that died, itself
                runs[path] = error
                raise
        if isinstance(runs[path], Exception):
            pytest.fail(f"{path.name} did not run: {runs[path]}", pytrace=False)
        return runs[path]

    return run


def stored(path: Path) -> NotebookNode:
    return nbformat.read(path, as_version=4)


def test_there_are_the_three_notebooks_and_the_readme_links_them():
    assert [n.name for n in NOTEBOOKS] == ["01-tour.ipynb", "02-explanations.ipynb",
                                           "03-tracing-patching-probes.ipynb"]  # fmt: skip
    assert "docs/notebooks" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_offline_and_every_cell_gives_its_output_and_no_warning(path: Path, fresh_run):
    book = fresh_run(path)  # raises CellExecutionError, naming the cell, on any error
    code = code_cells(book)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert all(c.outputs for c in code), [c.source[:40] for c in code if not c.outputs]
    stderr = [o.text for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], f"{path.name}: a reader would see this on stderr: {stderr}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_stored_outputs_are_what_a_fresh_run_prints(path: Path, fresh_run):
    """Every code cell is stored with its outputs, numbered as in a fresh run, without the kernel's timing;
    each output is of the kind a fresh run gives and prints the same words and numbers (to within the last
    printed digit): a caption, a prediction, a table, a figure's title."""
    book, fresh = stored(path), fresh_run(path)
    code = code_cells(book)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), RERUN
    assert not [c.id for c in code if "execution" in c.metadata], f"timing metadata is stored: {RERUN}"
    assert book.metadata.get("language_info") == {"name": "python"}, f"the kernel's version is kept: {RERUN}"
    was, now = printout(book), printout(fresh)
    assert list(was) == list(now), f"{path.name}: the stored cells are not the notebook's cells: {RERUN}"
    differ = [
        f"{cell}: stored {was[cell]!r}, a fresh run prints {now[cell]!r}"
        for cell in now
        if [kind for kind, _ in was[cell]] != [kind for kind, _ in now[cell]]
        or not all(same_printout(a, b) for (_, a), (_, b) in zip(was[cell], now[cell], strict=True))
    ]
    assert not differ, f"{path.name} ({RERUN}):\n" + "\n".join(differ)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_is_stored_with_a_png_of_itself(path: Path):
    """Where the notebook was made with Chromium (its metadata says so), every Plotly figure carries a PNG
    beside its interactive output, made from that very figure JSON (its SHA-256 is recorded with it)."""
    book = stored(path)
    figures = list(figure_outputs(book))
    assert figures, f"{path.name} shows no figure"
    with_pngs = book.metadata.get(OURS, {}).get("figures_as_png")
    assert with_pngs in (True, False), f"{path.name} does not say whether its figures have PNGs: {RERUN}"
    if not with_pngs:
        assert not [o for o in figures if PNG in o.data]
        pytest.skip(f"{path.name} was made where Chromium was missing: its figures have no PNG ({RERUN})")
    for output in figures:
        assert base64.b64decode(output.data[PNG])[:8] == b"\x89PNG\r\n\x1a\n"
        assert output.metadata[OURS]["png_of"] == figure_key(output), f"a PNG of another figure: {RERUN}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_markdown_names_only_classes_and_blocks_that_its_cells_show(path: Path, fresh_run):
    """A class a markdown cell names ("a Pullover") is printed by the code cells after it, up to the next
    markdown cell; a block it names ("S3.0") is one they use or print."""
    assert unbacked_claims(fresh_run(path), FASHION_MNIST_CLASSES) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_markdown_cell_states_a_duration(path: Path):
    """A measured time stands in the prose with no file behind it; a cell prints it from a shipped result."""
    assert durations(stored(path)) == []


def test_the_claim_check_catches_classes_and_blocks_the_cells_do_not_show():
    """Known answer: notebook 03 once said 'a T-shirt' and 'a sneaker' where its cells take a Pullover and
    an Ankle boot."""
    cells = [
        nbformat.v4.new_markdown_cell("Clean (a T-shirt) into corrupted (a sneaker), at S3.0", id="claim"),
        nbformat.v4.new_code_cell('analysis.position_patching(model, image, other, block="S3.1")', id="run"),
    ]
    printed = "clean: Pullover (test #16) | corrupted: Ankle boot (test #39)"
    cells[1].outputs = [nbformat.v4.new_output("stream", text=printed)]
    book = nbformat.v4.new_notebook(cells=cells)
    assert unbacked_claims(book, FASHION_MNIST_CLASSES) == [
        "claim names the block S3.0, which the cells after it do not use or print",
        "claim names the class 'Sneaker', which the cells after it do not print",
        "claim names the class 'T-shirt/top', which the cells after it do not print",
    ]
    cells[0].source = "Clean (a Pullover) into corrupted (an Ankle boot), at S3.1; CoAtNet, a T-shirt's top"
    assert unbacked_claims(book, FASHION_MNIST_CLASSES) == ["claim names the class 'T-shirt/top', which the "
                                                            "cells after it do not print"]  # fmt: skip


def test_a_stored_printout_may_differ_from_a_fresh_one_only_in_the_last_printed_digit():
    assert same_printout("deletion 0.281, ROAD -0.029", "deletion 0.282, ROAD -0.030")
    assert same_printout("Pullover: 92.2%", "Pullover: 92.3%")
    assert not same_printout("deletion 0.281", "deletion 0.284")
    assert not same_printout("Pullover: 92.2%", "Shirt: 92.2%")
    assert not same_printout("target 2 foil 9", "target 2 foil 8")  # an integer is exact
    assert not same_printout("S3.0 (T)", "S3.1 (T)")  # a block's name is a word, not a number
    assert not same_printout("(1, 7, 7)", "(1, 7, 7, 1)")
