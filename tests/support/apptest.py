"""Helpers for the AppTest tests: a fresh app, a copy of one already run, its figures found by their names,
and the checks every run must pass.

A test never moves on an app another test sees: a module's session is built once and each test takes a
:func:`copied` one (a few milliseconds, where a first run of the explorer takes about half a second)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Element

from analysis.figures.names import figure_name

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"


def fresh() -> AppTest:
    """The app as a new browser session would get it (models stay cached across sessions), but for the
    column's width: no browser runs the width probe here, so the session is one whose probe has not answered
    its first run, and every run draws at :data:`analysis.figures.MAX_WIDTH` (app.widgets.column_width)."""
    at = AppTest.from_file(str(MAIN), default_timeout=180)
    at.session_state["column_width_waited"] = True
    return at


def copied(at: AppTest) -> AppTest:
    """A session of its own in the state ``at`` is in, as if the same clicks had been made in it: its session
    state (widget values included) copied, the page it is on, and the elements of its last run, so that a test
    reads and sets widgets at once; what is run or set on the copy never reaches ``at`` (read-only for this).

    Streamlit has no public way to copy a session: this copies AppTest's own state, for the pinned version
    (tests/app/test_pages.py proves a copy moves on alone)."""
    new = fresh()
    object.__setattr__(new._session_state, "_state", copy.deepcopy(at._session_state._state))
    for name in ("_page_hash", "_finished_page_script_hash", "_registered_pages", "query_params"):
        setattr(new, name, copy.deepcopy(getattr(at, name)))
    tree = _node_copy(at._tree, None)
    tree._runner = new
    new._tree = tree
    return new


def _node_copy(node: Block | Element, root: Block | None) -> Block | Element:
    """``node`` and its children, each a new object in the new tree (whose root is ``root``, or this node);
    their protos are shared, read-only, as a run leaves them."""
    new = object.__new__(type(node))
    new.__dict__.update(node.__dict__)
    new.__dict__["root"] = root = root or new
    if isinstance(node, Block):
        new.__dict__["children"] = {k: _node_copy(child, root) for k, child in node.children.items()}
    return new


def clean(at: AppTest) -> AppTest:
    """Fails on any exception element or error message; returns ``at`` for chaining."""
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def figures(at: AppTest) -> list[dict]:
    """Every Plotly figure on the page, as its JSON spec."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def title(figure: dict) -> str:
    """A figure's title as a person reads it: its wrapped lines joined by spaces, a no-break space a space."""
    return figure["layout"].get("title", {}).get("text", "").replace("<br>", " ").replace("\u00a0", " ")


def titles(at: AppTest) -> list[str]:
    """Every figure's title (:func:`title`), in the page's order."""
    return [title(f) for f in figures(at)]


def figures_named(at: AppTest, name: str) -> list[dict]:
    """The page's figures that carry the stable ``name`` (:mod:`analysis.figures.names`), in order."""
    return [f for f in figures(at) if figure_name(f) == name]


def figure_named(at: AppTest, name: str) -> dict:
    """The page's one figure named ``name``; fails if there is none or more than one."""
    found = figures_named(at, name)
    assert len(found) == 1, f"{len(found)} figures named {name!r}: {[figure_name(f) for f in figures(at)]}"
    return found[0]


def named_titles(at: AppTest, name: str) -> list[str]:
    """The titles of the page's figures named ``name``."""
    return [title(f) for f in figures_named(at, name)]


def caption(at: AppTest) -> str:
    """The sidebar's one-line description of the model (its caption that names a normalization)."""
    return next(c.value for c in at.sidebar.caption if "normalization" in c.value)


def one_error(at: AppTest) -> str:
    """The page's single error line, with no exception element."""
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    message = at.error[0].value
    assert "\n" not in message.strip() and "Traceback" not in message
    return message
