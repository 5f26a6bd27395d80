"""Re-execute the notebooks of docs/notebooks and store them with their outputs (``make notebooks``).

Each notebook runs in a fresh kernel (``python3``) started in the repository's root, offline
(``HF_HUB_OFFLINE=1``); jupyter_client starts the kernel in a process group of its own and kills the group
with it. The outputs are stored so that a code host shows them and a re-run gives a small diff:

- every Plotly figure keeps its interactive output (``application/vnd.plotly.v1+json``, which JupyterLab
  and VS Code draw) and gets a PNG beside it in the same output (``image/png``, which GitHub draws), made
  with kaleido and Chromium at the figure's own size (900 px wide where it sets none). The output's
  ``metadata.coatnet_lens.png_of`` holds the SHA-256 of the figure's JSON, and a re-run keeps the stored
  PNG of a figure whose JSON did not change. Where Chromium is missing, one line says so and the figures
  keep their interactive output only; the notebook's ``metadata.coatnet_lens.figures_as_png`` says which.
- the kernel's timing metadata is dropped, and so is its version information; execution counts are those
  of a fresh run (1, 2, ...).

The suite (tests/test_notebooks.py) executes the notebooks the same way (:func:`execute`) and checks the
stored outputs against that run.

Usage: ``python scripts/run_notebooks.py [NOTEBOOK ...]`` (default: every notebook of docs/notebooks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120  # a hung cell fails the run instead of hanging it
PLOTLY = "application/vnd.plotly.v1+json"
PNG = "image/png"
OURS = "coatnet_lens"  # our key in a notebook's and an output's metadata
# tqdm warns, in every kernel without ipywidgets, that its notebook progress bars cannot show (the hub
# client imports tqdm.auto): a line about the reader's Jupyter, carrying this machine's paths, in the
# first cell of every notebook. Nothing here draws a progress bar.
KERNEL_WARNINGS = "ignore:IProgress not found"


def execute(path: Path, *, timeout: int = CELL_TIMEOUT_S) -> NotebookNode:
    """The notebook at ``path`` executed in a fresh kernel in the repository's root, offline, and tidied
    (:func:`tidy`); the file is left as it is.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message names the cell and the error.
    """
    book = nbformat.read(path, as_version=4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": KERNEL_WARNINGS}
    client = NotebookClient(book, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})  # fmt: skip
    client.execute(env=env)
    return tidy(book)


def tidy(book: NotebookNode) -> NotebookNode:
    """Drop what changes from run to run or machine to machine: the cells' timing metadata, the kernel's
    version information (``language_info`` keeps the language's name), and where a cell's printing was cut
    into stream outputs (the kernel sends what it has when it flushes: one stream output per run of
    prints)."""
    book.metadata["language_info"] = {"name": book.metadata.get("language_info", {}).get("name", "python")}
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)
            cell.outputs = _joined_streams(cell.outputs)
    return book


def _joined_streams(outputs: list[NotebookNode]) -> list[NotebookNode]:
    joined: list[NotebookNode] = []
    for output in outputs:
        last = joined[-1] if joined else {}
        if output.output_type == last.get("output_type") == "stream" and output.name == last.get("name"):
            last.text += output.text
        else:
            joined.append(output)
    return joined


def figure_outputs(book: NotebookNode) -> Iterator[NotebookNode]:
    """Every output that holds a Plotly figure, in order."""
    for cell in book.cells:
        if cell.cell_type == "code":
            for output in cell.outputs:
                if PLOTLY in output.get("data", {}):
                    yield output


def figure_key(output: NotebookNode) -> str:
    """The SHA-256 of the figure's JSON (keys sorted): the PNG stored beside it was made from this."""
    return hashlib.sha256(json.dumps(output.data[PLOTLY], sort_keys=True).encode()).hexdigest()


def add_pngs(book: NotebookNode, stored: NotebookNode | None = None) -> tuple[int, int]:
    """Put a PNG beside every Plotly figure of ``book``: the one ``stored`` holds for the same figure JSON,
    else a new one. Returns (PNGs made, PNGs kept)."""
    import plotly.graph_objects as go

    from analysis.report import figure_png

    kept_pngs = {}
    for output in figure_outputs(stored) if stored is not None else ():
        key = output.get("metadata", {}).get(OURS, {}).get("png_of")
        if key == figure_key(output) and PNG in output.data:
            kept_pngs[key] = output.data[PNG]
    made = kept = 0
    for output in figure_outputs(book):
        key = figure_key(output)
        if key in kept_pngs:
            output.data[PNG], kept = kept_pngs[key], kept + 1
        else:
            png = figure_png(go.Figure(output.data[PLOTLY]), scale=1)  # its own size, 900 px wide if unset
            output.data[PNG], made = base64.b64encode(png).decode(), made + 1
        output.metadata = {**output.get("metadata", {}), OURS: {"png_of": key}}
    return made, kept


def store(path: Path, *, with_pngs: bool) -> str:
    """Execute the notebook at ``path`` and write it back with its outputs; returns one line about it."""
    stored = nbformat.read(path, as_version=4)
    book = execute(path)
    book.metadata[OURS] = {"figures_as_png": with_pngs}
    pngs = ""
    if with_pngs:
        made, kept = add_pngs(book, stored)
        pngs = f", {made} PNG(s) made, {kept} kept"
    nbformat.write(book, path)
    return f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KiB{pngs}"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))  # analysis, coatnet and app, as the kernel finds them from the root
    from system_packages import PARTS, missing_line

    paths = [Path(a).resolve() for a in argv] or NOTEBOOKS
    chromium = PARTS["chromium"]
    if not chromium.present():
        print(missing_line([chromium]) + " (the notebooks keep their interactive figures only)", flush=True)
    for path in paths:
        print(store(path, with_pngs=chromium.present()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
