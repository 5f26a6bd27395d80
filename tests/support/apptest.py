"""Helpers for the AppTest tests: a fresh app, its figures, and the checks every run must pass."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"


def fresh() -> AppTest:
    """The app as a new browser session would get it (models stay cached across sessions)."""
    return AppTest.from_file(str(MAIN), default_timeout=180)


def clean(at: AppTest) -> AppTest:
    """Fails on any exception element or error message; returns ``at`` for chaining."""
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def figures(at: AppTest) -> list[dict]:
    """Every Plotly figure on the page, as its JSON spec."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    """Every figure's title, its wrapped lines joined by spaces, a no-break space read as a space."""
    return [
        f["layout"].get("title", {}).get("text", "").replace("<br>", " ").replace("\u00a0", " ")
        for f in figures(at)
    ]


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
