"""A click on the explorer's map reruns the query's views alone, in a real browser: nothing else on the page
is redrawn (the top-5 predictions and the class relevance are never marked stale) and the URL's query names
the clicked cell (what "Download this view" then holds: tests/app/test_view_download.py). On Pre vs post, a
click on the second model's map moves the query of both, as one on the first does."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from analysis import Query
from tests.support.browser import CELL, QUERY_IS, WAIT_MS, Served, opened_lens

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# the elements Streamlit marks stale while a run redraws them, by the chart names they hold (or their
# test id): every element marked since the observer started
WATCH_STALE = """() => {
    window.__lensStale = new Set();
    new MutationObserver(records => records.forEach(r => {
        if (r.target.getAttribute('data-stale') !== 'true') return;
        const charts = [...r.target.querySelectorAll('.js-plotly-plot')].map(gd =>
            ((gd.layout || {}).meta || {}).name || gd.querySelector('.gtitle')?.textContent || '?');
        const what = charts.length ? charts.join('+') : r.target.dataset.testid || r.target.className;
        window.__lensStale.add(what);
    })).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-stale']});
}"""


def test_a_click_reruns_the_querys_views_alone_and_the_link_follows(served: Served) -> None:
    with opened_lens(served) as lens:
        lens.open()
        lens.page.get_by_text("Explain a class", exact=True).wait_for()
        lens.page.evaluate(WATCH_STALE)
        target = lens.page.evaluate(CELL, [1, 5])
        lens.page.mouse.click(target["x"], target["y"])
        lens.page.wait_for_function(QUERY_IS, arg=[1, 5], timeout=WAIT_MS)
        lens.settle()
        lens.assert_clean()
        stale = lens.page.evaluate("[...window.__lensStale]")
        assert stale, "the query's views were redrawn"
        assert not [s for s in stale if "top-5" in s.lower() or "relevance" in s.lower()], stale
        # the URL's query point is the clicked cell's centre (on S3.0's 7 x 7 grid of the 28 px image)
        [q] = parse_qs(urlsplit(lens.page.url).query)["q"]
        point = Query.from_text(q)
        assert point is not None and (round(point.fy * 7 - 0.5), round(point.fx * 7 - 0.5)) == (1, 5)


def test_a_click_on_the_second_map_of_a_comparison_moves_the_query_of_both(served: Served) -> None:
    with opened_lens(served) as lens:
        lens.open()
        lens.sidebar.get_by_role("link", name="Pre vs post").click()
        lens.page.get_by_text("Click a cell of either map to make it the query of both.").wait_for()
        lens.settle()
        for row, col, panel in ((1, 5, 1), (5, 2, 0)):  # the second map's cell, then the first's
            target = lens.page.evaluate(CELL, [row, col, panel])
            lens.page.mouse.click(target["x"], target["y"])
            lens.page.wait_for_function(QUERY_IS, arg=[row, col], timeout=WAIT_MS)
            lens.settle()
            pair = next(c for c in lens.charts() if c["traces"].count("cells") == 2)
            assert f"query ({row}, {col})" in pair["title"], pair["title"]
        lens.assert_clean()
