"""The column's width in a real browser: a browser's first visit draws at the default width, then again at
the width its column reports; a reload (a new session of the same browser, as a new tab is) draws its first
run at the width the browser reported before (a cookie the width probe sets)."""

from __future__ import annotations

import pytest

from tests.support.browser import Served, opened_lens
from tests.support.server import SETTLED

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# the width the column's probe says the page was first drawn for, in this document
FIRST_DRAWN_FOR = """window.__lensFirst = null;
new MutationObserver(records => records.forEach(r => {
    if (window.__lensFirst === null) window.__lensFirst = r.target.dataset.lensDrawnFor;
})).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-lens-drawn-for']});"""
# the widths the column's probe holds: what it measured, and what the page was drawn for
PROBE = """() => [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')]
    .map(probe => [probe.dataset.lensWidth, probe.dataset.lensDrawnFor])"""


def test_a_reload_draws_its_first_run_at_the_width_the_browser_reported(served: Served) -> None:
    with opened_lens(served) as lens:
        lens.page.add_init_script(FIRST_DRAWN_FOR)
        lens.open()
        assert lens.page.evaluate("window.__lensFirst") == "560"  # MAX_WIDTH: the browser has not said yet
        [(measured, drawn_for)] = lens.page.evaluate(PROBE)
        assert measured == drawn_for and measured != "560"  # then drawn again for the column's width
        cookies = {c["name"]: c["value"] for c in lens.page.context.cookies()}
        assert cookies["lens_column_width"] == measured
        lens.page.reload()
        lens.page.wait_for_function(SETTLED)
        assert lens.page.evaluate("window.__lensFirst") == measured  # drawn for it from the first run
        assert lens.page.evaluate(PROBE) == [[measured, measured]]
        lens.assert_clean()
