"""The notebooks as the tests read them: executed as ``make notebooks`` executes them (owned by
scripts/run_notebooks.py), what their outputs print, and what their markdown claims.

- :func:`printout`: each code cell's outputs as (kind, text) pairs: a stream's text, a result's
  ``text/plain``, a figure's title; :func:`same_printout` compares two texts word for word and each number
  to within its last printed digit (another machine's floating point may round the other way).
- :func:`unbacked_claims`: a markdown cell's class names that the code cells after it (up to the next
  markdown cell) do not print, and its block names (``S3.0``, ``S4``) that they neither use nor print.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("run_notebooks", run_notebooks)
_spec.loader.exec_module(run_notebooks)

from run_notebooks import NOTEBOOKS, OURS, PLOTLY, PNG, execute, figure_key, figure_outputs  # noqa: E402

__all__ = ["NOTEBOOKS", "OURS", "PLOTLY", "PNG", "execute", "figure_key", "figure_outputs"]

# a number that is not part of a name ("S3.0", "top-1" hold none that counts as one)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.(\d+))?(?:e([-+]?\d+))?")
BLOCK = re.compile(r"(?<![\w.])S\d(?:\.\d+)?(?!\w)")
# a duration in prose: "(about 5 minutes)", "in a few seconds", "a computation of an hour"
DURATION = re.compile(r"\b(?:\d+(?:\.\d+)?|a few|an?|several)\s+(?:s|seconds?|min|minutes?|h|hours?)\b", re.I)


def code_cells(book: NotebookNode) -> list[NotebookNode]:
    return [cell for cell in book.cells if cell.cell_type == "code"]


def output_text(output: NotebookNode) -> str:
    """What an output prints: a stream's text, a result's ``text/plain``, a figure's title, an error's name
    and message."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return f"{output.ename}: {output.evalue}"
    data = output.get("data", {})
    if PLOTLY in data:
        title = data[PLOTLY].get("layout", {}).get("title", {})
        return title.get("text", "") if isinstance(title, dict) else str(title)
    return data.get("text/plain", "")


def output_kind(output: NotebookNode) -> str:
    """``stream:stdout``, ``display_data:application/vnd.plotly.v1+json``...: the stream's name or the
    output's mimetypes, the PNG left out (a run without Chromium makes none)."""
    if output.output_type == "stream":
        return f"stream:{output.name}"
    return ":".join([output.output_type, *sorted(m for m in output.get("data", {}) if m != PNG)])


def printout(book: NotebookNode) -> dict[str, list[tuple[str, str]]]:
    """{cell id: [(kind, text) of each output]} for every code cell."""
    return {cell.id: [(output_kind(o), output_text(o)) for o in cell.outputs] for cell in code_cells(book)}


def same_printout(a: str, b: str) -> bool:
    """The same words, and the same numbers to within 1.5 units of their last printed digit (an integer
    exactly)."""
    if NUMBER.split(a)[::3] != NUMBER.split(b)[::3]:  # split() keeps the groups: text, fraction, exponent
        return False
    numbers_a, numbers_b = list(NUMBER.finditer(a)), list(NUMBER.finditer(b))
    if len(numbers_a) != len(numbers_b):
        return False
    for x, y in zip(numbers_a, numbers_b, strict=True):
        if _integer(x) or _integer(y):
            if x.group() != y.group():
                return False
            continue
        digits = min(len(x.group(1) or ""), len(y.group(1) or ""))
        exponent = int(x.group(2) or 0)
        if abs(float(x.group()) - float(y.group())) > 1.5 * 10.0 ** (exponent - digits):
            return False
    return True


def _integer(number: re.Match) -> bool:
    return number.group(1) is None and number.group(2) is None


def mentioned_classes(text: str, class_names: Iterable[str]) -> set[str]:
    """The classes ``text`` names, each by its name or the part before a slash ("a T-shirt" names
    "T-shirt/top"), in any case, plural or not; a name inside a longer word does not count ("Shirt" in
    "T-shirt", "Coat" in "CoAtNet")."""
    found = set()
    for name in class_names:
        word = re.escape(name.split("/")[0])
        if re.search(rf"(?<![\w-]){word}s?(?![\w-])", text, flags=re.I):
            found.add(name)
    return found


def unbacked_claims(book: NotebookNode, class_names: Iterable[str]) -> list[str]:
    """What a markdown cell names that the code cells after it (up to the next markdown cell) do not show:
    a class their outputs do not print, a block their code does not use and their outputs do not print."""
    sections: list[tuple[NotebookNode, list[NotebookNode]]] = []
    for cell in book.cells:
        if cell.cell_type == "markdown":
            sections.append((cell, []))
        elif cell.cell_type == "code" and sections:
            sections[-1][1].append(cell)
    problems = []
    for markdown, code in sections:
        printed = "\n".join(output_text(o) for cell in code for o in cell.outputs)
        written = "\n".join(cell.source for cell in code)
        classes = mentioned_classes(markdown.source, class_names) - mentioned_classes(printed, class_names)
        problems += [
            f"{markdown.id} names the class {c!r}, which the cells after it do not print" for c in classes
        ]
        blocks = set(BLOCK.findall(markdown.source)) - set(BLOCK.findall(written + "\n" + printed))
        problems += [
            f"{markdown.id} names the block {b}, which the cells after it do not use or print" for b in blocks
        ]
    return sorted(problems)


def durations(book: NotebookNode) -> list[str]:
    """The durations the markdown states ("about 5 minutes"): a time belongs in a cell that reads it from a
    shipped result, never in prose that no file backs."""
    prose = [cell for cell in book.cells if cell.cell_type == "markdown"]
    return [f"{cell.id}: {m.group()!r}" for cell in prose for m in DURATION.finditer(cell.source)]
