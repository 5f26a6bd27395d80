"""The column's width in a real browser: a browser's first visit draws no figure until its column has reported
its width, then draws the page once, for it; a reload (a new session of the same browser, as a new tab is)
draws its first run at the width the browser reported before (a cookie the width probe sets)."""

from __future__ import annotations

import pytest

from tests.support.browser import Served, opened_lens
from tests.support.server import SETTLED

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# the width the column's probe says the page was first drawn for, in this document ("null": for none yet),
# and whether a figure was ever on the page while the probe said so
FIRST_DRAWN_FOR = """window.__lensFirst = null; window.__lensEarly = false;
new MutationObserver(records => records.forEach(r => {
    if (window.__lensFirst === null) window.__lensFirst = r.target.dataset.lensDrawnFor;
})).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-lens-drawn-for']});
new MutationObserver(() => {
    if (document.querySelector('[data-lens-drawn-for="null"]') && document.querySelector('.js-plotly-plot'))
        window.__lensEarly = true;
}).observe(document, {subtree: true, childList: true, attributes: true});"""
# the widths the column's probe holds: what it measured, and what the page was drawn for
PROBE = """() => [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')]
    .map(probe => [probe.dataset.lensWidth, probe.dataset.lensDrawnFor])"""


def test_a_reload_draws_its_first_run_at_the_width_the_browser_reported(served: Served) -> None:
    with opened_lens(served) as lens:
        lens.page.add_init_script(FIRST_DRAWN_FOR)
        lens.open()
        assert lens.page.evaluate("window.__lensFirst") == "null"  # the browser has not said yet
        assert not lens.page.evaluate("window.__lensEarly")  # and no figure was drawn for a guess
        [(measured, drawn_for)] = lens.page.evaluate(PROBE)
        assert measured == drawn_for and measured != "560"  # then drawn for the column's width
        cookies = {c["name"]: c["value"] for c in lens.page.context.cookies()}
        assert cookies["lens_column_width"] == measured
        lens.page.reload()
        lens.page.wait_for_function(SETTLED)
        assert lens.page.evaluate("window.__lensFirst") == measured  # drawn for it from the first run
        assert lens.page.evaluate(PROBE) == [[measured, measured]]
        lens.assert_clean()
