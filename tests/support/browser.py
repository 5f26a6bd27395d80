"""The app in a real browser: the served app and Chromium (Served), one page of it with what a user does
there (Lens), and the JavaScript probes the browser tests read the page with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.support.server import ROOT, SETTLED

WAIT_MS = 90_000  # a cold model load, or a PNG export through kaleido, on 2 busy cores
POLL_MS = 100  # how often a wait asks the page: every frame, Playwright's default, keeps Chromium busier

VIEWPORT = {"width": 1400, "height": 1000}

# every drawn Plotly chart: its stable name (analysis.figures.names), its title (wrapped lines joined by
# spaces, a no-break space read as the space a person sees), its traces' names and sizes
CHARTS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
    name: ((gd.layout || {}).meta || {}).name || '',
    title: [...gd.querySelectorAll('.gtitle')].map(t => t.querySelectorAll('tspan.line').length
        ? [...t.querySelectorAll('tspan.line')].map(l => l.textContent).join(' ') : t.textContent).join('')
        .replace(/\u00a0/g, ' '),
    traces: (gd._fullData || []).map(t => t.name || ''),
    points: (gd._fullData || []).map(t => (t.x || []).length),
}))"""

# the clickable map (the first chart with a "cells" trace), scrolled into view: where the marker of cell
# [row, col] of its ``panel``-th map (the first by default) is in the page (the centre of its SVG path) and
# in the chart's data coordinates
CELL = """([row, col, panel = 0]) => {
    const gd = [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => (g._fullData || []).some(t => t.name === 'cells'));
    gd.scrollIntoView({block: 'center'});
    const layer = [...gd.querySelectorAll('.scatterlayer .trace')]
        .filter(t => t.__data__ && t.__data__[0].trace.name === 'cells')[panel];
    const cells = layer.__data__[0].trace;
    const marker = [...layer.querySelectorAll('.points path')]
        .find(p => cells.customdata[p.__data__.i][0] === row && cells.customdata[p.__data__.i][1] === col);
    const box = marker.getBoundingClientRect();
    const index = marker.__data__.i;
    return {x: box.left + box.width / 2, y: box.top + box.height / 2,
            cell: [cells.x[index], cells.y[index]]};
}"""

# the query inputs hold [row, col], or the app shows a traceback or an st.error line instead
QUERY_IS = """([row, col]) => document.querySelector(
        '[data-testid="stException"], [data-testid="stAlertContentError"]')
    || (document.querySelector('input[aria-label^="Query row"]')?.value === String(row)
        && document.querySelector('input[aria-label^="Query column"]')?.value === String(col))"""

# where the clickable map's red "query" marker is, in data coordinates
QUERY_MARK = """() => {
    const gd = [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => (g._fullData || []).some(t => t.name === 'cells'));
    const query = gd._fullData.find(t => t.name === 'query');
    return [query.x[0], query.y[0]];
}"""


@dataclass
class Served:
    """The app's URL, the one Chromium every test shares and, where given, the one browser context their
    pages open in: its cache keeps the app's scripts, which a new context fetched and compiled again
    (measured: about 4.3 core-s of Chromium's a first screen, against 0.8 from the cache)."""

    url: str
    browser: Browser
    context: BrowserContext | None = None


@dataclass
class Lens:
    """One fresh page on the app, and what went wrong in it: console errors, page errors, and requests
    that tried to leave the loopback server (each fails at once: no other host resolves)."""

    page: Page
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    @property
    def sidebar(self) -> Locator:
        return self.page.get_by_test_id("stSidebar")

    @property
    def problems(self) -> Locator:
        """Tracebacks and st.error lines."""
        return self.page.get_by_test_id("stException").or_(self.page.get_by_test_id("stAlertContentError"))

    def open(self, query: str = "") -> None:
        """Load the app (with the link's ``query``: "?model=demo-post") and wait until the explorer has
        drawn (the default page: rollout at its end)."""
        self.page.goto(self.url + query)
        self.show(self.page.get_by_text("Attention rollout", exact=True))

    def show(self, target: Locator, *, errors: int = 0) -> None:
        """Wait until ``target`` shows (or a traceback or an st.error line does, so that a broken app fails
        at once, with its message), let the app settle, and check the page (:meth:`assert_clean`)."""
        expect(target.or_(self.problems).first).to_be_visible(timeout=WAIT_MS)
        self.settle()
        self.assert_clean(errors=errors)

    def settle(self) -> None:
        """Wait until Streamlit is idle and every chart has drawn; then once more after a short pause,
        in case a rerun (a callback, a chart's selection) started right after the first."""
        self.page.wait_for_function(SETTLED, timeout=WAIT_MS, polling=POLL_MS)
        self.page.wait_for_timeout(400)
        self.page.wait_for_function(SETTLED, timeout=WAIT_MS, polling=POLL_MS)

    def still(self) -> None:
        """Wait until nothing on the page moves: an expander opened by a click animates its height from
        before the rerun that fills it, for longer than :meth:`settle`'s pause, and a layout read meanwhile
        finds its figures spilling over what follows (they do not, once it ends)."""
        self.page.wait_for_function("() => document.getAnimations().length === 0", polling=POLL_MS)

    def charts(self) -> list[dict]:
        """Every Plotly chart on the page: its name, its title, its traces' names and their numbers of
        points."""
        return self.page.evaluate(CHARTS)

    def titles(self) -> str:
        """Every chart title, one per line."""
        return "\n".join(chart["title"] for chart in self.charts())

    def choose_image_source(self, source: str) -> None:
        """Click ``Gallery`` or ``Upload`` in the sidebar's "Image" radio."""
        radio = self.sidebar.get_by_test_id("stRadio").filter(has=self.page.get_by_text("Image", exact=True))
        radio.get_by_text(source, exact=True).click()

    def upload_image(self, path: Path) -> None:
        """Set ``path`` on the sidebar's image uploader (choosing "Upload" first if needed)."""
        uploader = self.sidebar.get_by_test_id("stFileUploaderDropzoneInput")
        if uploader.count() == 0:
            self.choose_image_source("Upload")
        uploader.set_input_files(path, timeout=WAIT_MS)

    def query(self) -> tuple[str, str]:
        """The values of the "Query row" and "Query column" inputs."""
        return (
            self.page.get_by_label("Query row").input_value(),
            self.page.get_by_label("Query column").input_value(),
        )

    def download(self, button: Locator, folder: Path, *, tries: int = 3) -> Path:
        """Click a download button and save what the browser receives into ``folder``. A button's file is
        made when it is clicked, from what the session's last run registered: a click that lands while a
        rerun replaces that registration asks for a file the server no longer holds, and nothing downloads
        (Streamlit: "a click that still holds the old id fails until the browser receives the new delta").
        A user clicks again; so does this, after the app settles, ``tries`` times in all."""
        for attempt in range(tries):
            try:
                with self.page.expect_download(timeout=WAIT_MS // 2) as started:
                    button.click()
                break
            except PlaywrightTimeout:
                if attempt == tries - 1:
                    raise AssertionError(
                        f"no download after {tries} clicks; the server log ends:\n{self.log_tail()}"
                    ) from None
                self.settle()
        download = started.value
        assert download.failure() is None, f"{download.suggested_filename}: {download.failure()}"
        path = folder / download.suggested_filename
        download.save_as(path)
        return path

    def log_tail(self, lines: int = 25) -> str:
        """The end of the server's log (where Streamlit writes the tracebacks it hides from the page)."""
        log = ROOT / ".pytest_cache" / f"streamlit-{urlsplit(self.url).port}.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else str(log)

    def assert_clean(self, *, errors: int = 0) -> None:
        """No console error, no page error, no request outside the app's server, no traceback element, and
        exactly ``errors`` st.error lines."""
        assert self.page_errors == [], f"JavaScript errors: {self.page_errors}"
        assert self.outside == [], f"requests outside {self.url}: {self.outside}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        exceptions = self.page.get_by_test_id("stException")
        assert exceptions.count() == 0, f"the app shows a traceback; its server log ends:\n{self.log_tail()}"
        alerts = self.page.get_by_test_id("stAlertContentError")
        assert alerts.count() == errors, f"st.error lines: {alerts.all_inner_texts()}"


@contextmanager
def opened_lens(served: Served) -> Iterator[Lens]:
    """A fresh page (a new Streamlit session; in :attr:`Served.context` where there is one, its cookies
    cleared first, as a browser that never saw the app; else in a new context) recording console errors,
    page errors and any request that leaves the server (Chromium resolves no other host:
    :data:`tests.support.server.CHROMIUM_ARGS`, so such a request fails at once and nothing waits on the
    network)."""
    context = served.context or served.browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    if served.context is not None:
        context.clear_cookies()  # the column width a page before remembered
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    lens = Lens(page, served.url)
    server = urlsplit(served.url).netloc

    def leaves(url: str) -> bool:
        return urlsplit(url).netloc != server and not url.startswith(("data:", "blob:"))

    def on_console(message: ConsoleMessage) -> None:
        # a failed outside request also logs "Failed to load resource": test_no_request_leaves_the_server
        # reports those, so that one bug does not fail every test
        where = message.location.get("url", "")
        if message.type == "error" and not (where and urlsplit(where).netloc not in ("", server)):
            lens.console_errors.append(f"{message.text} ({where})")

    page.on("request", lambda request: lens.outside.append(request.url) if leaves(request.url) else None)
    page.on("console", on_console)
    page.on("pageerror", lambda error: lens.page_errors.append(str(error)))
    try:
        yield lens
    finally:
        page.close()
        if served.context is None:
            context.close()
