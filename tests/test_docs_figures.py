"""Every measured figure of the README and docs/*.md is a span generated from its results file
(scripts/docs_figures.py): each span and table equals what its file gives, every file it names exists, and
no page holds a number with a unit outside the spans.

What the scanner counts as a measured figure: a number followed by s, ms, min, minutes, seconds, hours, x,
%, MB, GB, MiB, GiB, kB, px, images/s, GFLOP/s or core-s. What it leaves out, by rule: code blocks and
code spans; the marked spans and generated tables; HTML comments and link targets; sizes written
``7x7`` (an x followed by a digit); and the one number with its unit that follows
``<!-- not-measured -->``, which a page writes before a value it sets rather than measures (an input
size, a limit, a timeout, a target or a threshold).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import docs_figures  # noqa: E402

PAGES = docs_figures.pages()
PERFORMANCE = ROOT / "docs" / "performance.md"


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_figure_of_the_page_equals_what_its_file_gives(page: Path) -> None:
    text = page.read_text()
    after, problems = docs_figures.regenerate(text, page_id(page))
    problems += docs_figures.differences(text, after, page_id(page))
    assert not problems, "\n".join(map(str, problems)) + "\n(make figures regenerates them)"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_measured_figure_of_the_page_is_left_unmarked(page: Path) -> None:
    problems = docs_figures.unmarked(page.read_text(), page_id(page))
    problems += docs_figures.misplaced(page.read_text(), page_id(page))
    assert not problems, "\n".join(map(str, problems))


def test_every_file_a_page_names_exists() -> None:
    missing = []
    for page in PAGES:
        text = page.read_text()
        aliases = {m["name"]: m["path"] for m in docs_figures.SOURCE.finditer(text)}
        named = list(aliases.values())
        for span in docs_figures.SPAN.finditer(text):
            named += [
                m["src"] for m in docs_figures.REFERENCE.finditer(span["exprs"]) if m["src"] not in aliases
            ]
        for table in docs_figures.TABLE.finditer(text):
            named += [a.split(":")[0] for a in table["args"].split() if a.split(":")[0] not in aliases]
        missing += [f"{page_id(page)}: {path}" for path in named if not (ROOT / path).is_file()]
    assert not missing, "\n".join(missing)


def test_the_pages_hold_their_figures_as_spans_and_tables() -> None:
    """The markers are in use where the figures are: the timm tables and the shipped studies' compute."""
    text = PERFORMANCE.read_text()
    assert text.count("<!-- fig-table ") >= 6 and text.count("<!-- fig ") >= 20
    assert "<!-- fig sp:compute_s" in (ROOT / "docs" / "interventions.md").read_text()


def test_a_figure_edited_by_hand_fails_the_check(tmp_path: Path) -> None:
    text = PERFORMANCE.read_text()
    span = next(m for m in docs_figures.SPAN.finditer(text) if m["text"].endswith("%"))
    edited = text[: span.start("text")] + "99%" + text[span.end("text") :]
    copy = tmp_path / "performance.md"
    copy.write_text(edited)
    problems = docs_figures.check_page(copy)
    assert [p.message for p in problems] == [f"reads '99%', its file gives {span['text']!r}"]
    assert problems[0].line == docs_figures.line_of(text, span.start())
    assert docs_figures.main([str(copy)]) == 0 and copy.read_text() == text  # make figures puts it back


def test_a_table_edited_by_hand_fails_the_check(tmp_path: Path) -> None:
    text = PERFORMANCE.read_text()
    edited = text.replace("| coatnet_0_rw_224 | 1.43x", "| coatnet_0_rw_224 | 1.50x", 1)
    assert edited != text
    copy = tmp_path / "performance.md"
    copy.write_text(edited)
    assert [p.message for p in docs_figures.check_page(copy)] == [
        "the table differs from what its file gives"
    ]
    assert docs_figures.main(["--check", str(copy)]) == 1


def test_a_missing_source_and_a_wrong_path_are_named() -> None:
    text = (
        "<!-- fig-source t = benchmarks/results/timm_speed_cpu.json -->\n"
        'a <!-- fig nowhere.json:x "{}" -->1<!-- /fig -->\n'
        'and <!-- fig t:figures.nothing "{}" -->2<!-- /fig -->\n'
    )
    _, problems = docs_figures.regenerate(text, "page.md")
    assert [p.message.split(":")[0] for p in problems] == [
        "no such file",
        "benchmarks/results/timm_speed_cpu.json",
    ]
    assert "no '.nothing'" in problems[1].message


def test_the_path_language_reads_keys_items_selections_and_sizes(tmp_path: Path) -> None:
    data = {
        "rows": [
            {"arch": "a", "cells": {"bs 1": {"ratio": 1.5}}},
            {"arch": "b", "cells": {"bs 1": {"ratio": 2.0}}},
        ]
    }
    walk = docs_figures.walk
    assert walk(data, "rows[arch=b].cells[bs 1].ratio") == 2.0
    assert walk(data, "rows[-1].arch") == "b" and walk(data, "rows[*].cells[*].ratio") == [1.5, 2.0]
    assert walk(data, "rows[*arch!=a].arch") == ["b"]
    with pytest.raises(docs_figures.FigureError, match="2 items match"):
        walk(data, "rows[arch!=c].arch")
    (tmp_path / "r.json").write_text('{"v": [1, 2, 3]}')
    (tmp_path / "w.bin").write_bytes(b"x" * 2500)
    sources = docs_figures.Sources(tmp_path)
    assert (
        docs_figures.render_span("max(r.json:v) / 2, sum(r.json:v)", "{:.1f}x of {}", sources) == "1.5x of 6"
    )
    assert docs_figures.render_span("w.bin:@size / 1e3", "{:.1f} kB", sources) == "2.5 kB"


def test_the_scanner_finds_measured_figures_and_leaves_the_rest() -> None:
    text = """A run took 533 s and 8.9 minutes; the build runs 1.2-1.3x timm, 91.16% top-1, 4.9 MB, 12 px.
A 7x7 window, a 3x3 conv, `took 5 s` in code, <!-- not-measured -->50 MB at most,
and <!-- fig a:b "{}" -->2 s<!-- /fig --> in a span.

```bash
coatnet probe   # ~5 minutes
```
"""
    found = [p.message.split("'")[1] for p in docs_figures.unmarked(text, "page.md")]
    assert found == ["533 s", "8.9 minutes", "1.3x", "91.16%", "4.9 MB", "12 px"]


def test_a_span_that_begins_a_line_is_refused() -> None:
    text = 'The build runs\n<!-- fig t:x "{}" -->1.4x<!-- /fig --> timm.\n'
    assert [p.line for p in docs_figures.misplaced(text, "page.md")] == [2]
    assert not docs_figures.misplaced(text.replace("runs\n", "runs "), "page.md")


def test_the_markers_render_as_nothing_and_keep_the_paragraph() -> None:
    markdown = pytest.importorskip("markdown")
    html = markdown.markdown(PERFORMANCE.read_text(), extensions=["tables"])
    shown = re.sub(r"<[^>]+>", "", re.sub(r"<!--.*?-->", "", html, flags=re.S))
    assert "fig-source" not in shown and "/fig" not in shown and "not-measured" not in shown
    paragraph = next(p for p in re.findall(r"<p>.*?</p>", html, flags=re.S) if "CoAtNet-0 reaches" in p)
    assert re.search(r"CoAtNet-0 reaches <!--[^>]*-->38%<!-- /fig -->\s+of it\.", paragraph)
    assert html.count("<table>") == PERFORMANCE.read_text().count("<!-- fig-table ")
