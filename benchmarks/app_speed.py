"""The app's speed as a user feels it: each time measured in Chromium, from what a user does to the page
settled, against the project's target for it.

"Settled": the view shows what was asked (its own sign, below), Streamlit's run started by the action has
ended and the page is settled as tests/support/server.py's ``SETTLED`` reads it (no running script, no
stale element, every figure drawn, every column-width probe answered), and no new run starts in the next
``QUIET_MS`` (a rerun right after the first, as a chart's selection or a new column width asks, counts
in the time). The end is the moment the page first read settled; the start is taken just before the
action (``page.goto``, ``mouse.click``, a link's or button's click). Every action is checked to leave no
traceback, error line, console error or request outside the server.

Each round starts a server of its own (``streamlit run app/main.py`` on a free loopback port, in its own
process group, killed on every way out), so that its first visit is a server's first, and one Chromium
serves every round. In a round, in order (the row names of the results):

- ``first_visit``: a new browser session navigates to the app as soon as the server answers its health
  check; until the explorer's default view has settled ("Attention rollout" shown). Target 3 s.
- ``new_session``: the same in a second new session, a fresh browser profile (the imports, demo-pre and
  the view now warm on the server; nothing cached in the browser). Target 1.5 s. ``new_tab`` (no target):
  the same in a new tab of the first visit's browser, as a returning user opens the app (its HTTP cache
  holds Streamlit's and Plotly's scripts, its cookie the column's width). ``server_up`` (no target) is the
  server's start to its health check: the server is started as ``make app`` starts it (``python -m
  app.serve``, which imports the pages' code and runs the default model once before it answers).
- ``page_<view>``: in that session, each page of app/pages.py's ``PAGES`` after the explorer, in order:
  the click on its sidebar link until its default view has settled under its title (which app/main.py
  draws first in every run; a page that has not drawn its ``landmark`` by then is named in ``notes``),
  each the page's first view in this server; then ``page_explorer``, the link back to the explorer,
  whose view this session already drew. Target 1 s each.
- ``add_intervention``: on the Interventions page, the click on "Add" until the page has settled with
  "Applied: ..." shown. Target 1 s.
- ``cell_click``: clicks on cells of the explorer's clickable map (:data:`CELLS`, placed by
  tests/support/browser.py's ``CELL``), each until the page has settled with the new query in the row and
  column inputs and in the map's title. Target 0.25 s.
- ``switch_to_demo_post`` and ``switch_back``: the click on demo-post, then on demo-pre, in the sidebar's
  "Checkpoint" list, until the explorer has settled on that model (the link names it). demo-post is
  loaded for the first time in this server; demo-pre comes back from the cache. Target 1 s.
- at 224 (left out by ``--no-224``): random weights of timm's ``coatnet_0_rw_224`` in timm's own format,
  made by timm (tests/support/timm.py's ``randomised_timm_model``), given by path as a user gives them: a
  new session opens the explorer, goes to the My images page (which computes nothing until asked),
  chooses "Checkpoint or weights file" and types the path. ``load_224`` (no target): from Enter in the
  "Path" field until the page has settled on that model (the model loaded, the gallery's first photo
  prepared). Then ``page_224_<view>`` for every other page, explorer first: the click on its link until
  its default view has settled (the page's first view of this model). Target 2 s each, but for the
  Patching page, whose default view is activation patching of every block, branch and head, computed as
  the page opens with a progress bar (the targets leave such analyses out: :data:`UNTIMED_224`). What a
  page computes only when asked (head importance, a study of My images) is left out: no such button is
  pressed.

- the floor (no target): what Streamlit and Plotly cost in this browser on this machine whatever the app
  draws, a page of one 2 x 2 Plotly heatmap and a button, served by plain ``streamlit run`` in the round:
  ``floor_new_session`` (a fresh browser profile, as ``new_session``), ``floor_new_tab`` (as ``new_tab``)
  and ``floor_rerun`` (the button's click until the heatmap is redrawn with new values, as a cell click
  redraws the explorer's maps; three clicks a round). The app's times are read against these.

The medians are over every round (``cell_click`` over its clicks too); every run's time is kept.

Run from the repository root on a quiet machine (nothing else running)::

    python benchmarks/app_speed.py                 # 5 rounds, every page, at 224 too
    python benchmarks/app_speed.py --quick         # one round, a few pages: a smoke test of the script

Writes ``benchmarks/results/app_speed_cpu.json`` (``benchmarks/results_file.py``'s format; ``--out`` names
another) and the markdown table beside it (``.md``). Needs Chromium (``make system-packages``) and timm
(requirements-test.txt) for the 224 part.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright
from streamlit.logger import set_log_level

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
set_log_level("error")  # app.pages imports the app's caches, which warn outside a server
from app.pages import PAGES, Page  # noqa: E402
from benchmarks import results_file  # noqa: E402
from tests.support.browser import CELL, CHARTS, QUERY_IS, WAIT_MS, Lens, Served, opened_lens  # noqa: E402
from tests.support.server import CHROMIUM, CHROMIUM_ARGS, SETTLED, running_app  # noqa: E402

QUIET_MS = 400  # no new run this long after the page reads settled (as Lens.settle waits)
CELLS = ((1, 5), (5, 2), (2, 4))  # clicked in turn on the explorer's 7x7 map (the query starts at 3, 3)
ARCH_224 = "coatnet_0_rw_224"
EXPLORER = next(p for p in PAGES if p.default)
MY_IMAGES = next(p for p in PAGES if p.view == "my_images")
QUICK_PAGES = ("stages", "interventions", "model")  # with --quick (the Interventions page for "Add")
QUICK_PAGES_224 = ("explorer", "stages")

# the project's targets, in seconds (None: reported, no target)
TARGETS: dict[str, float | None] = {
    "server_up": None,
    "first_visit": 3.0,
    "new_session": 1.5,
    "new_tab": None,
    "floor_new_session": None,
    "floor_new_tab": None,
    "floor_rerun": None,
    "page": 1.0,
    "add_intervention": 1.0,
    "cell_click": 0.25,
    "switch_to_demo_post": 1.0,
    "switch_back": 1.0,
    "load_224": None,
    "page_224": 2.0,
}

# pages whose default view at 224 is an analysis computed on the page's opening with a progress bar, which
# the targets leave out ("what is computed on request, as patching, head importance or My images"): timed,
# no target
UNTIMED_224 = ("page_224_patching",)

# counts the runs Streamlit starts: every time the app's script state leaves "notRunning" (installed in
# every document of a session's context before the app's own scripts)
RUNS = "window.__lensRuns || 0"
COUNT_RUNS = """window.__lensRuns = 0;
new MutationObserver(records => records.forEach(r => {
    if (r.oldValue === 'notRunning') window.__lensRuns += 1;
})).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
    attributeFilter: ['data-test-script-state']});"""

# the query [row, col] in the row and column inputs and in the clickable map's title
QUERY_SHOWN = f"""([row, col]) => ({QUERY_IS})([row, col])
    && ({CHARTS})().some(c => c.traces.includes('cells') && c.title.includes(`query (${{row}}, ${{col}})`))"""
# the Interventions page's caption of the interventions applied
APPLIED = """() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
    .some(c => c.textContent.startsWith('Applied: '))"""
# the page's title, which app/main.py draws first in every run
TITLED = "(title) => [...document.querySelectorAll('h1')].some(h => h.textContent.trim() === title)"
MODEL_IN_LINK = "(name) => new URLSearchParams(location.search).get('model') === name"


def settled(lens: Lens, start: float, *, runs: int | None, ready: str = "() => true", arg=None) -> float:
    """Seconds from ``start`` to the moment the page first read settled with ``ready(arg)`` true and, when
    ``runs`` is given, a run begun since (the action's); a run begun in the next ``QUIET_MS`` moves the end
    to that run's settling. Raises on a traceback, an error line or a browser error."""
    wanted = f"([arg, runs]) => (runs === null || ({RUNS}) > runs) && ({ready})(arg) && ({SETTLED})()"
    while True:
        lens.page.wait_for_function(wanted, arg=[arg, runs], timeout=WAIT_MS)
        end = time.perf_counter()
        seen = lens.page.evaluate(RUNS)
        lens.page.wait_for_timeout(QUIET_MS)
        if lens.page.evaluate(RUNS) == seen and lens.page.evaluate(SETTLED):
            lens.assert_clean()
            return end - start
        runs = seen


def timed(lens: Lens, act: Callable[[], None], *, shown: str | None = None, **until) -> float:
    """Seconds from ``act()`` (a user's action, which starts a run) to the page settled, with the text
    ``shown`` on it (exact, as the tests find a landmark) and ``until``'s ``ready`` true."""
    before = lens.page.evaluate(RUNS)
    start = time.perf_counter()
    act()
    if shown is not None:
        lens.page.get_by_text(shown, exact=True).first.wait_for(timeout=WAIT_MS)
    return settled(lens, start, runs=before, **until)


@contextmanager
def session(served: Served) -> Iterator[Lens]:
    """A new browser session (context) on the app, counting the runs Streamlit starts."""
    with opened_lens(served) as lens:
        lens.page.context.add_init_script(COUNT_RUNS)
        yield lens


def navigate(lens: Lens, path: str, landmark: str) -> float:
    """Seconds from ``page.goto(path)`` to the view settled with ``landmark`` shown."""
    start = time.perf_counter()
    lens.page.goto(lens.url + path)
    lens.page.get_by_text(landmark, exact=True).first.wait_for(timeout=WAIT_MS)
    return settled(lens, start, runs=None)


def load_by_path(lens: Lens, weights: Path) -> float:
    """On the My images page (which computes nothing until asked), with "Checkpoint or weights file" chosen
    in the sidebar: seconds from pressing Enter in its "Path" field, holding ``weights``, to the page settled
    on that model (the model loaded, the gallery's first photo prepared)."""
    navigate(lens, "/", EXPLORER.landmark)
    lens.settle()  # a rerun for the column's width may follow a new session's first: a click during it
    visit(lens, MY_IMAGES)  # was lost (this link's too, once in six rounds)
    lens.settle()
    sources = lens.sidebar.get_by_test_id("stRadio").filter(has=lens.page.get_by_text("Model", exact=True))
    timed(lens, sources.get_by_text("Checkpoint or weights file", exact=True).click)
    field = lens.sidebar.get_by_label("Path", exact=True)
    field.fill(str(weights))
    lens.settle()  # the field in place: Enter in one a rerun replaces is lost
    return timed(
        lens, lambda: field.press("Enter"), shown=MY_IMAGES.landmark, ready=MODEL_IN_LINK, arg=str(weights)
    )


def visit(lens: Lens, page: Page) -> float:
    """Seconds from the click on ``page``'s sidebar link to its default view settled under its title."""
    link = lens.sidebar.get_by_role("link", name=page.title, exact=True)
    return timed(lens, link.click, ready=TITLED, arg=page.title)


def landmark_missing(lens: Lens, page: Page) -> bool:
    """Whether the page, settled, lacks the ``landmark`` app/pages.py says it always draws once ready."""
    return lens.page.get_by_text(page.landmark, exact=True).count() == 0


def click_cell(lens: Lens, cell: tuple[int, int]) -> float:
    """Seconds from a click on ``cell`` of the explorer's clickable map to the new query shown, settled."""
    where = lens.page.evaluate(CELL, list(cell))  # scrolls the map into view
    return timed(lens, lambda: lens.page.mouse.click(where["x"], where["y"]), ready=QUERY_SHOWN, arg=cell)


def switch_model(lens: Lens, name: str) -> float:
    """Seconds from the click on ``name`` in the sidebar's "Checkpoint" list to the explorer settled on it."""
    lens.sidebar.get_by_test_id("stSelectbox").filter(
        has=lens.page.get_by_text("Checkpoint", exact=True)
    ).click()
    option = lens.page.get_by_role("option", name=name, exact=True)
    return timed(lens, option.click, shown=EXPLORER.landmark, ready=MODEL_IN_LINK, arg=name)


class Record:
    """Every run's seconds per measure, in the order first measured, with a progress line for each; and
    what was seen amiss on the way (``notes``)."""

    def __init__(self) -> None:
        self.runs: dict[str, list[float]] = {}
        self.notes: list[str] = []

    def visit(self, lens: Lens, page: Page, measure: str, *, round_: int) -> None:
        """Time a visit to ``page`` as ``measure``, noting a landmark the page did not draw."""
        self.add(measure, visit(lens, page), round_=round_)
        note = f"{measure}: the page does not draw its landmark {page.landmark!r}"
        if landmark_missing(lens, page) and note not in self.notes:
            self.notes.append(note)
            print(note, file=sys.stderr, flush=True)

    def add(self, measure: str, seconds: float, *, round_: int) -> None:
        self.runs.setdefault(measure, []).append(seconds)
        target = target_of(measure)
        goal = "" if target is None else f"  (target {target:g} s)"
        print(f"round {round_}  {measure:32s} {seconds:7.2f} s{goal}", flush=True)


def target_of(measure: str) -> float | None:
    if measure in UNTIMED_224:
        return None
    for prefix in ("page_224", "page"):
        if measure.startswith(prefix + "_"):
            return TARGETS[prefix]
    return TARGETS[measure]


def one_round(
    browser: Browser,
    record: Record,
    n: int,
    *,
    pages: list[Page],
    weights: Path | None,
    pages_224: list[Page],
) -> None:
    """One server, started now: every measure once (:data:`CELLS` clicks), into ``record``."""
    start = time.perf_counter()
    with running_app() as url:
        record.add("server_up", time.perf_counter() - start, round_=n)
        served = Served(url, browser)
        with session(served) as lens:
            record.add("first_visit", navigate(lens, "/", EXPLORER.landmark), round_=n)
            with new_tab(lens) as tab:
                record.add("new_tab", navigate(tab, "/", EXPLORER.landmark), round_=n)
        with session(served) as lens:
            record.add("new_session", navigate(lens, "/", EXPLORER.landmark), round_=n)
            for page in [*pages, EXPLORER]:
                record.visit(lens, page, f"page_{page.view}", round_=n)
                if page.view == "interventions":
                    add = lens.page.get_by_role("button", name="Add", exact=True).click
                    record.add("add_intervention", timed(lens, add, ready=APPLIED), round_=n)
            for cell in CELLS:
                record.add("cell_click", click_cell(lens, cell), round_=n)
            record.add("switch_to_demo_post", switch_model(lens, "demo-post"), round_=n)
            record.add("switch_back", switch_model(lens, "demo-pre"), round_=n)
        if weights is not None:
            with session(served) as lens:
                record.add("load_224", load_by_path(lens, weights), round_=n)
                for page in pages_224:
                    record.visit(lens, page, f"page_224_{page.view}", round_=n)


# the floor: one Plotly heatmap and a button that redraws it with new values (docs above)
FLOOR_PAGE = """import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
n = st.session_state.setdefault("redrawn", 0)
if st.button("Redraw"):
    n = st.session_state["redrawn"] = n + 1
st.plotly_chart(go.Figure(go.Heatmap(z=[[n, 1], [2, 3]]), layout={"title": f"redrawn {n}"}), theme=None)
"""
REDRAWN = "(n) => (" + CHARTS + ")().some(c => c.title === `redrawn ${n}`)"


def floor_round(browser: Browser, record: Record, n: int, folder: Path) -> None:
    """The floor's measures (docs above) on a server of its own, started now."""
    script = folder / "floor.py"
    script.write_text(FLOOR_PAGE)
    with running_app(script=script) as url:
        served = Served(url, browser)
        with session(served) as lens:
            navigate(lens, "/", "Floor")
        with session(served) as lens:
            record.add("floor_new_session", navigate(lens, "/", "Floor"), round_=n)
            with new_tab(lens) as tab:
                record.add("floor_new_tab", navigate(tab, "/", "Floor"), round_=n)
            for redrawn in (1, 2, 3):
                record.add("floor_rerun", floor_rerun(lens, redrawn), round_=n)


def floor_rerun(lens: Lens, redrawn: int) -> float:
    """Seconds from a click on the floor's "Redraw" to its heatmap redrawn for the ``redrawn``-th time,
    settled. The redrawn title is the sign of the click's run: a run this short can start and end within
    one of the browser's renders, so that the script state's attribute never changes and the run counter
    does not see it."""
    lens.settle()  # the last run's button in place (a click on the one it replaces is lost)
    start = time.perf_counter()
    lens.page.get_by_role("button", name="Redraw", exact=True).click()
    return settled(lens, start, runs=None, ready=REDRAWN, arg=redrawn)


@contextmanager
def new_tab(lens: Lens) -> Iterator[Lens]:
    """A new tab of ``lens``'s browser (its cache and cookies), counting the runs Streamlit starts."""
    page = lens.page.context.new_page()
    page.set_default_timeout(WAIT_MS)
    tab = Lens(page, lens.url, lens.console_errors, lens.page_errors, lens.outside)  # the context's route too
    page.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and tab.console_errors.append(f"{m.text} ({m.location})"))
    try:
        yield tab
    finally:
        page.close()
        lens.page.bring_to_front()  # a page left in the background draws nothing (no animation frames)


def timm_weights(folder: Path) -> Path:
    """``folder/model.safetensors``: random weights of timm's ``coatnet_0_rw_224`` in timm's own format."""
    from tests.support.timm import ensure_torchvision_ops, randomised_timm_model, save_timm

    ensure_torchvision_ops()
    import timm

    return save_timm(randomised_timm_model(timm, ARCH_224, img_size=224), folder / "model.safetensors")


def summary(record: Record) -> list[dict]:
    """One row per measure: its median, target, whether the median meets it, and every run."""
    rows = []
    for measure, runs in record.runs.items():
        target, median = target_of(measure), statistics.median(runs)
        rows.append(
            {
                "measure": measure,
                "median_s": round(median, 3),
                "target_s": target,
                "within": None if target is None else median <= target,
                "runs_s": [round(s, 3) for s in runs],
            }
        )
    return rows


def markdown(rows: list[dict], rounds: int) -> str:
    lines = ["| measure | median | target | within | runs |", "|---|---|---|---|---|"]
    for row in rows:
        target = "-" if row["target_s"] is None else f"{row['target_s']:g} s"
        within = {None: "-", True: "yes", False: "**no**"}[row["within"]]
        runs = " ".join(f"{s:.2f}" for s in row["runs_s"])
        lines.append(f"| {row['measure']} | {row['median_s']:.2f} s | {target} | {within} | {runs} |")
    lines.append(
        f"\nSeconds from the user's action to the page settled in Chromium, median of {rounds} round(s), "
        "a new server each (benchmarks/app_speed.py)."
    )
    return "\n".join(lines)


def stop_on_term(*_) -> None:
    raise SystemExit(143)  # unwinds the with-blocks: the server's group and Chromium are stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="servers started, each measured once")
    parser.add_argument("--quick", action="store_true", help="one round, a few pages: a smoke test")
    parser.add_argument("--no-224", action="store_true", help="leave out the pages at 224")
    results_file.add_out_argument(parser, "app_speed_cpu")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rounds = 1 if args.quick else args.rounds
    wanted = set(QUICK_PAGES) if args.quick else {p.view for p in PAGES}
    pages = [p for p in PAGES if not p.default and p.view in wanted]
    wanted_224 = set(QUICK_PAGES_224) if args.quick else {p.view for p in PAGES}
    pages_224 = [p for p in PAGES if p is not MY_IMAGES and p.view in wanted_224]
    signal.signal(signal.SIGTERM, stop_on_term)
    signal.signal(signal.SIGHUP, stop_on_term)
    record = Record()
    with tempfile.TemporaryDirectory(prefix="app-speed-") as scratch, sync_playwright() as playwright:
        weights = None if args.no_224 else timm_weights(Path(scratch))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for n in range(1, rounds + 1):
                one_round(browser, record, n, pages=pages, weights=weights, pages_224=pages_224)
                floor_round(browser, record, n, Path(scratch))
        finally:
            browser.close()
    rows = summary(record)
    table = markdown(rows, rounds)
    print(table)
    for note in record.notes:
        print(note)
    figures = {
        "rows": rows,
        "cells": [list(c) for c in CELLS],
        "arch_224": None if args.no_224 else ARCH_224,
        "quick": args.quick,
        "notes": record.notes,
    }
    path = results_file.write(results_file.out_path(args), figures, rounds=rounds)
    path.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
