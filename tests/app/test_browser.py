"""The app in a real browser: ``streamlit run app/main.py`` served once for the module on a free loopback
port (offline), driven by Debian's Chromium through Playwright, on the built-in demo checkpoints.

Each test opens a fresh page (its own browser context, hence its own Streamlit session) and ends by
checking that the page logged no console error and raised no JavaScript error, and that the app shows no
traceback (``stException``) and no ``st.error`` line (``stAlertContentError``) beyond those it expects.
Requests that would leave the loopback server are blocked and recorded: the app must make none.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from app import pages as app_pages
from tests.support.browser import (
    CELL,
    QUERY_IS,
    QUERY_MARK,
    WAIT_MS,
    Lens,
    Served,
    opened_lens,
)
from tests.support.layout_check import DRAWN_MAPS, LAYOUT_PROBLEMS, PAGE_FACTS, repeated_phrase

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def lens(served: Served) -> Iterator[Lens]:
    """A fresh page of its own (:func:`opened_lens`)."""
    with opened_lens(served) as opened:
        yield opened


def test_the_explorer_opens_with_its_map_heads_and_top_5(lens: Lens):
    """The default page draws the clickable map (a "cells" trace, one marker per cell of the 7x7 grid of
    S3.0), the grid of per-head maps, and the top-5 chart; the query starts at the grid's centre."""
    lens.open()
    charts = lens.charts()
    clickable = [c for c in charts if "cells" in c["traces"]]
    heads = [c for c in charts if c["traces"].count("query") > 1]
    assert len(clickable) == 1, charts
    assert len(heads) == 1, charts
    assert any("Top-5" in c["title"] for c in charts if c["name"] == "predictions"), charts
    assert lens.page.locator(".js-plotly-plot").count() >= 4  # map, heads, top 5, rollout
    cells = clickable[0]["traces"].index("cells")
    assert clickable[0]["points"][cells] == 7 * 7, clickable
    assert lens.query() == ("3", "3")
    assert "query (3, 3)" in clickable[0]["title"] and "query (3, 3)" in heads[0]["title"]
    expect(lens.page.get_by_text("as given", exact=False).first).to_be_visible()
    lens.assert_clean()


def test_an_uploaded_png_with_transparency_is_analysed(lens: Lens, tmp_path: Path):
    """Choosing "Upload" and giving a 60x40 RGBA PNG (half transparent) redraws the page on that image:
    its caption names the file, the model sees it at 28x28, and every chart draws again."""
    picture = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    picture.paste((200, 40, 40, 255), (10, 5, 40, 35))
    picture.paste((20, 20, 220, 128), (35, 10, 55, 30))
    path = tmp_path / "red-square.png"
    picture.save(path)
    lens.open()
    lens.upload_image(path)
    lens.show(lens.page.get_by_text("red-square as given", exact=False))
    expect(lens.page.get_by_text("what the model sees: 28x28", exact=False)).to_be_visible()
    assert sum("cells" in c["traces"] for c in lens.charts()) == 1
    assert any("Top-5" in c["title"] for c in lens.charts() if c["name"] == "predictions")
    lens.assert_clean()


def test_clicking_a_cell_of_the_map_moves_the_query(lens: Lens):
    """A click on cell (1, 5) of the clickable map (its near-transparent "cells" marker there) makes it
    the query: the row and column inputs read 1 and 5, the titles of the map and of the heads grid say
    "query (1, 5)", and the query's outline moves onto that cell."""
    lens.open()
    assert lens.query() == ("3", "3")
    target = lens.page.evaluate(CELL, [1, 5])
    lens.page.mouse.move(target["x"], target["y"])
    # hovering shows the weight, the cell, its offset from the query (3, 3) and the distance (4 px cells)
    expect(lens.page.locator(".hoverlayer .hovertext")).to_contain_text(
        re.compile(r"weight [0-9.e-]+\s*cell \(1, 5\)\s*offset \(-2, 2\) cells, 11\.3 px")
    )
    lens.page.mouse.click(target["x"], target["y"])
    lens.page.wait_for_function(QUERY_IS, arg=[1, 5], timeout=WAIT_MS)
    lens.settle()
    lens.assert_clean()  # a failed click callback shows a traceback instead of the inputs: say so
    assert lens.query() == ("1", "5")
    charts = lens.charts()
    clickable = next(c for c in charts if "cells" in c["traces"])
    heads = next(c for c in charts if c["traces"].count("query") > 1)
    assert "query (1, 5)" in clickable["title"] and "query (1, 5)" in heads["title"], charts
    assert "query (3, 3)" not in lens.titles()
    assert lens.page.evaluate(QUERY_MARK) == target["cell"]
    lens.assert_clean()


# the panels of the figure named ``name``: each map's box on the page, in drawing order
PANEL_BOXES = """(name) => {
    const gd = [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => (g.layout.meta || {}).name === name);
    gd.scrollIntoView({block: 'center'});
    return [...gd.querySelectorAll('.heatmaplayer image')].map(i => {
        const r = i.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; });
}"""


def test_pre_vs_post_shows_both_demo_models_side_by_side_with_their_difference(lens: Lens):
    """The "Pre vs post" page compares the two built-in checkpoints: their maps side by side at one size,
    each panel named by its model first; the difference map at that size; a click on a map moves the query
    of both; both models' relative-bias kernels are drawn."""
    lens.open()
    lens.sidebar.get_by_role("link", name="Pre vs post").click()
    lens.show(lens.page.get_by_text("Relative-bias kernels of", exact=False))
    titles = lens.titles()
    assert "demo-pre" in titles and "demo-post" in titles, titles
    assert lens.page.locator(".js-plotly-plot").count() >= 5  # comparison, divergence, distance, 2 kernels
    (a, b) = lens.page.evaluate(PANEL_BOXES, "comparison-pair")
    (difference,) = lens.page.evaluate(PANEL_BOXES, "comparison-difference-map")
    assert b[0] >= a[0] + a[2] and abs(a[1] - b[1]) < 1, (a, b)  # beside each other, level
    assert abs(a[2] - b[2]) < 1 and abs(a[2] - difference[2]) < 1 and a[2] >= 160, (a, b, difference)
    target = lens.page.evaluate(CELL, [1, 5])  # the first panel's cell
    lens.page.mouse.click(target["x"], target["y"])
    lens.page.wait_for_function(QUERY_IS, arg=[1, 5], timeout=WAIT_MS)
    lens.settle()
    pair = next(c for c in lens.charts() if c["name"] == "comparison-pair")
    assert "query (1, 5)" in pair["title"], pair
    lens.assert_clean()


def test_figures_download_as_self_contained_html_and_as_png(lens: Lens, tmp_path: Path):
    """A figure's "HTML" button gives a page with plotly.js inlined (over 1 MB, no script from the web);
    its "PNG" button gives a PNG made through kaleido and Chromium."""
    lens.open()
    html = lens.download(lens.page.get_by_role("button", name="HTML", exact=True).first, tmp_path)
    text = html.read_text(encoding="utf-8")
    assert html.suffix == ".html" and "<html" in text.lower(), html
    assert html.stat().st_size > 1_000_000, (
        f"{html.name}: {html.stat().st_size} bytes, plotly.js not inlined?"
    )
    assert not re.search(r"<script[^>]+src=[\"']https?:", text), "the page loads a script from the web"
    button = lens.page.get_by_role("button", name="PNG", exact=True).first
    with lens.page.expect_download(timeout=WAIT_MS) as started:
        button.click()
        # while kaleido draws it (seconds), the button shows it is working: a spinner, and no second click
        expect(button.get_by_test_id("stSpinnerIcon")).to_be_visible(timeout=2_000)
        expect(button).to_be_disabled()
    assert started.value.failure() is None
    png = tmp_path / started.value.suggested_filename
    started.value.save_as(png)
    assert png.suffix == ".png" and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), png
    with Image.open(png) as image:
        assert image.width > 100 and image.height > 100
    lens.assert_clean()


def test_a_click_keeps_the_download_buttons_and_they_give_the_new_view(lens: Lens, tmp_path: Path):
    """The download buttons of the figures a click on the map redraws are updated in place (a button whose
    key changed was drawn anew: slower; Streamlit draws a chart anew whenever its figure changes), yet they
    give the view as it is now: the heads overview's HTML is named after the new query and holds it."""
    lens.open()
    button = lens.page.locator(".st-key-html-explorer_heads").get_by_role("button", name="HTML", exact=True)
    button.evaluate("el => el.dataset.lensKept = 'yes'")  # a mark on the button as drawn before the click
    target = lens.page.evaluate(CELL, [1, 5])
    lens.page.mouse.click(target["x"], target["y"])
    lens.page.wait_for_function(QUERY_IS, arg=[1, 5], timeout=WAIT_MS)
    lens.settle()
    assert button.evaluate("el => el.dataset.lensKept") == "yes"  # the same element
    (shown,) = [c for c in lens.charts() if c["name"] == "attention-heads"]
    assert "query (1, 5)" in shown["title"], shown["title"]
    html = lens.download(button, tmp_path)
    text = html.read_text(encoding="utf-8").replace("\\u00a0", " ")  # the title's no-break space, as JSON
    assert "q1-5" in html.name and "query (1, 5)" in text, html.name
    lens.assert_clean()


def test_bad_uploads_say_what_to_do_and_the_gallery_recovers(lens: Lens, tmp_path: Path):
    """A 0-byte "empty.png" and a text file named "notes.png" each give one st.error line that says what to
    choose, and no traceback; choosing "Gallery" again brings the explorer back without an error."""
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    notes = tmp_path / "notes.png"
    notes.write_text("shopping list: milk, eggs\n")
    lens.open()
    alerts = lens.page.get_by_test_id("stAlertContentError")
    for path in (empty, notes):
        lens.upload_image(path)
        lens.show(alerts, errors=1)
        message = alerts.get_by_test_id("stMarkdownContainer").inner_text()  # without the icon's name
        assert "choose a PNG" in message and "\n" not in message.strip(), message
        assert lens.page.locator(".js-plotly-plot").count() == 0
        lens.page.get_by_test_id("stFileUploaderDeleteBtn").or_(
            lens.page.get_by_test_id("stFileChipDeleteBtn")
        ).first.click()
        expect(alerts).to_have_count(0, timeout=WAIT_MS)
        lens.settle()
    lens.choose_image_source("Gallery")
    lens.show(lens.page.get_by_text("Attention rollout", exact=True))
    assert sum("cells" in c["traces"] for c in lens.charts()) == 1
    lens.assert_clean()


def test_no_request_leaves_the_server(lens: Lens):
    """Offline by design (docs/architecture.md, "The app"): loading the app and moving to another page asks
    nothing of any host but the app's own server (favicon, fonts and scripts included)."""
    lens.open()
    lens.sidebar.get_by_role("link", name="Model").click()
    lens.show(lens.page.get_by_text("Model card", exact=False))
    assert lens.outside == [], f"requests outside {lens.url}: {lens.outside}"
    lens.assert_clean()
    # the check itself: a request for another host is seen, and fails at once (Chromium resolves none)
    probe = "http://example.com/lens-probe"
    assert lens.page.evaluate(f"() => fetch('{probe}').then(() => 'answered', () => 'failed')") == "failed"
    assert lens.outside == [probe]


def test_a_reload_keeps_the_page_model_and_query(lens: Lens):
    """The view is in the URL: after a click on cell (1, 5) and a visit to the Stage inspector and back, a
    reload (a new session on that URL) shows the same page and the same query."""
    lens.open()
    target = lens.page.evaluate(CELL, [1, 5])
    lens.page.mouse.click(target["x"], target["y"])
    lens.page.wait_for_function(QUERY_IS, arg=[1, 5], timeout=WAIT_MS)
    lens.settle()
    assert "q=" in lens.page.url and "model=demo-pre" in lens.page.url, lens.page.url
    lens.page.reload()
    lens.show(lens.page.get_by_text("Attention rollout", exact=True))
    assert lens.query() == ("1", "5")
    lens.assert_clean()


# the boxes of the two pictures above every page and of their captions
HEADER_BOXES = """() => [...document.querySelectorAll(
        '[data-testid="stImage"] img, [data-testid="stImageCaption"]')]
    .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"""


@pytest.mark.parametrize("width", [1024, 1440])
def test_the_pictures_and_their_captions_never_overlap(lens: Lens, width: int):
    """At 1024 and 1440 px the picture as given, the picture the model sees and their captions each keep
    a box of their own (at 1024 they once overlapped and the captions collided)."""
    lens.page.set_viewport_size({"width": width, "height": 900})
    lens.open()
    boxes = lens.page.evaluate(HEADER_BOXES)
    assert len(boxes) == 4, boxes
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a[2] <= b[0] + 0.5 or b[2] <= a[0] + 0.5 or a[3] <= b[1] + 0.5 or b[3] <= a[1] + 0.5
            assert apart, (a, b)
    lens.assert_clean()


# every page of the app, by its link in the sidebar, and a text it shows once drawn
PAGES = {page.title: page.landmark for page in app_pages.PAGES}


WIDTHS = (1024, 1440)


@pytest.fixture(scope="module")
def layout_problems(served: Served) -> dict:
    """Every page of the app visited once (folded parts opened), with the sidebar's model not the default
    one (demo-post), and read at each of :data:`WIDTHS`: what :mod:`tests.support.layout_check` finds
    wrong, per width and page (the window is resized on the drawn page, as a user resizes it, so the pages
    are computed once for both widths); under ``"facts"``, per width and page, what the page shows
    (``PAGE_FACTS``); and under ``"colours"`` what each page's maps draw (:func:`drawn_colours`)."""
    found: dict = {width: {} for width in WIDTHS}
    found["facts"] = {width: {} for width in WIDTHS}
    found["colours"] = {}  # per page: what the drawn maps' colours say (see drawn_colours)
    with opened_lens(served) as lens:
        lens.page.set_viewport_size({"width": WIDTHS[-1], "height": 900})
        lens.open("?model=demo-post")
        for n, (page, shown) in enumerate(PAGES.items()):
            lens.sidebar.get_by_role("link", name=page).click()
            lens.show(lens.page.get_by_text(shown, exact=True).first)
            folded = lens.page.locator("details:not([open]) > summary")
            for _ in range(folded.count()):  # each click opens one: the first folded one is another each time
                folded.first.click()
            lens.settle()
            lens.still()
            drawn = lens.page.locator(".js-plotly-plot").count()
            assert drawn > 0 or page == "My images", page  # My images draws once given images
            for width in WIDTHS[:: 1 if n % 2 else -1]:  # from the width the last page ended at
                if lens.page.viewport_size["width"] != width:
                    lens.page.set_viewport_size({"width": width, "height": 900})
                    lens.page.wait_for_function(f"() => window.innerWidth === {width}")
                    lens.settle()  # the charts redrawn at the new width
                    lens.still()
                if problems := lens.page.evaluate(LAYOUT_PROBLEMS):
                    found[width][page] = problems[:8]
                found["facts"][width][page] = lens.page.evaluate(PAGE_FACTS)
            found["colours"][page] = drawn_colours(lens)
        lens.assert_clean()
    return found


def drawn_colours(lens: Lens) -> dict:
    """What the page's maps draw: each heatmap's colour scale as Plotly.js holds it (whether it is one of
    the style module's scales, stop for stop), and, for each opaque map over no picture, the colour of the
    pixels at its lowest and highest cells against the colour its scale gives their values."""
    import plotly.colors

    def rgb(colour: str) -> tuple[float, ...]:
        return tuple(plotly.colors.unlabel_rgb(colour) if colour.startswith("rgb")
                     else plotly.colors.hex_to_rgb(colour))  # fmt: skip

    # the style module's four scales, as Plotly names them (SEQUENTIAL, DIVERGING, HEAT, MATRIX)
    ours = [[(p, rgb(c)) for p, c in plotly.colors.get_colorscale(name)]
            for name in ("Viridis", "RdBu_r", "Inferno", "Magma")]  # fmt: skip
    seen = {"scales": 0, "foreign": [], "pixels": [], "wrong": []}
    size = lens.page.viewport_size
    # a chart taller than the window is captured only as far as the window reaches (the page scrolls inside
    # Streamlit's own container): a window taller than every chart, as wide (the layout does not change)
    lens.page.set_viewport_size({"width": size["width"], "height": 2400})
    lens.page.wait_for_timeout(200)
    maps = lens.page.evaluate(DRAWN_MAPS)
    charts = lens.page.locator(".js-plotly-plot")
    shots: dict[int, Image.Image] = {}
    for drawn in maps:
        scale = [(float(p), rgb(c)) for p, c in drawn["colorscale"]]
        seen["scales"] += 1
        if scale not in ours:
            seen["foreign"].append(f"{drawn['title']}: {drawn['colorscale'][:2]}...")
        if drawn["pictured"] or drawn["opacity"] != 1 or not drawn["cells"]:
            continue
        if drawn["figure"] not in shots:  # the chart as drawn, scrolled into view
            chart = charts.nth(drawn["figure"])
            chart.scroll_into_view_if_needed()
            shots[drawn["figure"]] = Image.open(io.BytesIO(chart.screenshot())).convert("RGB")
        shot = shots[drawn["figure"]]
        low, high = drawn["zmin"], drawn["zmax"]
        for cell in drawn["cells"]:
            where = (round(cell["x"]), round(cell["y"]))
            got = shot.getpixel((min(where[0], shot.width - 1), min(where[1], shot.height - 1)))
            position = min(1.0, max(0.0, (cell["v"] - low) / ((high - low) or 1.0)))
            want = rgb(plotly.colors.sample_colorscale(drawn["colorscale"], [position])[0])
            seen["pixels"].append((drawn["title"], cell["v"], got, want))
            if max(abs(g - w) for g, w in zip(got, want, strict=True)) > 12:
                seen["wrong"].append(f"{drawn['title']}: value {cell['v']:.4g} drawn {got}, its scale says "
                                     f"{tuple(round(w) for w in want)}")  # fmt: skip
    lens.page.set_viewport_size(size)
    return seen


def test_every_map_draws_its_own_colours_in_the_browser(layout_problems) -> None:
    """Streamlit's front end rewrites #000001-#000040 in a Plotly chart (Inferno's and Magma's zero is
    #000004, once drawn lilac): on every page, every heatmap's colour scale as the browser holds it is
    one of the style module's scales stop for stop, and the pixels drawn at the lowest and highest cells
    of every opaque map (kernels, matrices, maps without a picture) are the colours the scale gives
    their values."""
    colours = layout_problems["colours"]
    assert {page for page, seen in colours.items() if seen["scales"]} >= {
        "Attention explorer", "Stage inspector", "Pre vs post", "Kernels", "Layouts"
    }, colours  # fmt: skip
    assert {page: seen["foreign"] for page, seen in colours.items() if seen["foreign"]} == {}
    assert {page: seen["wrong"] for page, seen in colours.items() if seen["wrong"]} == {}
    assert sum(len(seen["pixels"]) for seen in colours.values()) >= 20  # kernels and matrices read


@pytest.mark.parametrize("width", WIDTHS)
def test_no_text_of_any_figure_overlaps_another_or_leaves_its_figure_on_any_page(
    layout_problems: dict, width: int
):
    """At 1024 and 1440 px, on every page (folded parts opened): every text of every figure (titles,
    subplot titles, tick and axis labels, colour-bar labels, legends), the toolbars, the pictures and their
    captions each keep a box of their own, inside their figure, and every colour bar is as tall as its
    panels (:mod:`tests.support.layout_check`)."""
    assert layout_problems[width] == {}, layout_problems[width]


E_NOTATION = re.compile(r"\d(\.\d+)?e[-+]?\d")  # 3.66e-07: a number as no reader writes it


@pytest.mark.parametrize("width", WIDTHS)
def test_every_figure_says_how_to_read_it_in_words_people_read(layout_problems: dict, width: int):
    """At 1024 and 1440 px, on every page: every colour bar has at least three tick labels, a figure of
    several maps has a colour bar or says that each panel has its own scale, no text of a figure writes a
    number in e-notation, no title says a word twice in a row, and the top-5 axis runs 0-100 %."""
    wrong = []
    for page, facts in layout_problems["facts"][width].items():
        for figure in facts["figures"]:
            title = figure["title"][:60]
            wrong += [
                f"{page}: a colour bar of {title!r} has ticks {bar}" for bar in figure["bars"] if len(bar) < 3
            ]
            if figure["heatmaps"] > 1 and not figure["bars"] and "own scale" not in " ".join(figure["texts"]):
                wrong.append(f"{page}: {title!r} draws {figure['heatmaps']} maps, no colour bar, no word")
            wrong += [f"{page}: {title!r} writes {t!r}" for t in figure["texts"] if E_NOTATION.search(t)]
            if repeated_phrase(figure["title"]):
                wrong.append(f"{page}: {title!r} says {repeated_phrase(figure['title'])!r} twice")
            if figure["name"] == "predictions":  # the top-5
                wrong += (
                    [] if figure["xrange"] == [0, 1] else [f"{page}: the top-5 axis runs {figure['xrange']}"]
                )
    assert wrong == [], wrong
    assert (
        sum(len(f["bars"]) for facts in layout_problems["facts"][width].values() for f in facts["figures"])
        >= 8
    )


def test_the_pages_follow_the_sidebars_model_and_the_head_overview_fills_its_width(layout_problems: dict):
    """With demo-post in the sidebar (not the default): the explorer shows it, the Dataset page opens its
    study, Pre vs post starts from it and says which two it compares. Every figure fits its column at 1024
    and 1440 px, and the head overview's panels grow with the column (100 px panels beside an empty half
    page, once)."""
    narrow, wide = (layout_problems["facts"][width] for width in WIDTHS)
    (heads,) = [f for f in narrow["Attention explorer"]["figures"] if f["name"] == "attention-heads"]
    assert "S3.0 (post-normalization), every head" in heads["title"]
    assert "coatnet_pico, post-normalization, from fashion-mnist" in narrow["Dataset"]["text"], narrow[
        "Dataset"
    ]["text"][:400]
    assert re.search(r"Comparing demo-post\b.* with demo-pre", narrow["Pre vs post"]["text"]), narrow[
        "Pre vs post"
    ]["text"][:400]
    for facts in (narrow, wide):
        too_wide = [(page, f["title"][:40], round(f["width"])) for page, page_facts in facts.items()
                    for f in page_facts["figures"] if f["width"] > page_facts["column"] + 2]  # fmt: skip
        assert too_wide == [], (too_wide, {page: f["column"] for page, f in facts.items()})

    def head_panels(facts: dict) -> float:
        (overview,) = [f for f in facts["Attention explorer"]["figures"] if f["name"] == "attention-heads"]
        assert "every head" in overview["title"]
        return max(overview["panels"])

    for facts in (narrow, wide):  # at least 160 px each, together filling the column
        (overview,) = [f for f in facts["Attention explorer"]["figures"] if f["name"] == "attention-heads"]
        column = facts["Attention explorer"]["column"]
        assert head_panels(facts) >= 160 and overview["width"] >= column - 2 * 160, (overview, column)
    assert wide["Attention explorer"]["column"] > 1.5 * narrow["Attention explorer"]["column"]


def test_exported_figures_and_the_report_keep_their_texts_apart(lens: Lens, tmp_path: Path):
    """The same rules hold outside the app: a figure downloaded as HTML, and `coatnet analyze`'s report
    (every kind of figure it draws, class relevance and faithfulness included), opened offline in the
    browser."""
    import torch

    from analysis.core.models import load_model
    from analysis.figures.maps import attention_heads_figure
    from analysis.maps.attention import attention_maps
    from analysis.report.export import figure_html
    from coatnet.cli.commands import main
    from tests.support.data import pictures

    model = load_model("demo-post")
    images = pictures(tmp_path, 1)  # one image's section holds every kind of figure the report draws
    out = tmp_path / "report"
    arguments = ["analyze", *images, "--model", "demo-pre", "--compare", "demo-post", "--out", str(out),
                 "--faithfulness"]  # fmt: skip
    assert main([*arguments, "--quiet"]) == 0
    block = attention_maps(model, torch.rand(1, 1, 28, 28)).block("S3.0")
    exported = tmp_path / "heads.html"
    exported.write_text(figure_html(attention_heads_figure(block, None, 10)))
    for page in (exported, out / "report.html"):
        lens.page.set_viewport_size({"width": 1024, "height": 900})
        lens.page.set_content(page.read_text(), wait_until="load")
        lens.page.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')].every(g => g.querySelector('.main-svg'))"
        )
        assert lens.page.locator(".js-plotly-plot").count() > 0
        assert lens.page.evaluate(LAYOUT_PROBLEMS) == [], page.name
    lens.assert_clean()


def test_a_query_typed_out_of_range_is_refused_in_its_field(lens: Lens):
    """On the 7x7 grid of S3.0 the row field says its range (0-6); typing 9 and Enter leaves the field red
    with the reason, and every figure keeps the query it had (3, 3): nothing silently uses another cell."""
    lens.open()
    field = lens.page.get_by_label("Query row (0-6)")
    field.fill("9")
    field.press("Enter")
    lens.settle()
    expect(field).to_have_attribute("aria-invalid", "true")
    number_input = lens.page.get_by_test_id("stNumberInput").filter(has=field)
    expect(number_input).to_contain_text("between 0 and 6")
    titles = lens.titles()
    assert "query (3, 3)" in titles and "query (9" not in titles and "query (6, 3)" not in titles, titles
    lens.assert_clean()


# texts a control shows cut short (an ellipsis drawn where its text does not fit)
CUT_TEXTS = """() => [...document.querySelectorAll('[data-testid="stMain"] *, [data-testid="stSidebar"] *')]
    .filter(e => getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent.trim()).filter(Boolean)"""


@pytest.mark.parametrize("width", WIDTHS)
def test_the_explorers_first_screen_shows_the_image_the_prediction_and_the_map(lens: Lens, width: int):
    """The image, the top-5, the pickers and the query take one band: at 1024 x 900 and 1440 x 900 the
    pictures and the top-5 are in the first screen and the clickable map's plot starts in it, at least
    150 px of it in view (it started 807 px down); no control's text is cut ("all heads, mear")."""
    lens.page.set_viewport_size({"width": width, "height": 900})
    lens.open()
    top = lens.page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => (g._fullData || []).some(t => t.name === 'cells'))
        .querySelector('.heatmaplayer image, .layer-above image, image').getBoundingClientRect().top""")
    assert top <= 900 - 150, top
    bottoms = lens.page.evaluate("""() => [...document.querySelectorAll('[data-testid="stImage"] img')]
        .map(e => e.getBoundingClientRect().bottom)""")
    assert len(bottoms) == 2 and max(bottoms) <= 900, bottoms
    top5 = lens.page.locator(".js-plotly-plot").filter(has_text="Top-5").first.bounding_box()
    assert top5["y"] + top5["height"] <= 900, top5
    assert lens.page.evaluate(CUT_TEXTS) == []


@pytest.mark.parametrize("width", WIDTHS)
def test_every_figure_of_several_maps_gives_each_at_least_160_px_on_every_page(
    layout_problems: dict, width: int
):
    """At 1024 and 1440 px, on every page (folded parts opened): no panel of a figure of several maps is
    narrower than 160 px (the head overview drew four of 100 px in a 946 px figure, the Layouts page 90
    px panels under titles taller than them), and none is wider than its column."""
    small = [
        (page, f["name"] or f["title"][:40], round(min(f["panels"])))
        for page, facts in layout_problems["facts"][width].items()
        for f in facts["figures"]
        if len(f["panels"]) > 1 and min(f["panels"]) < 160 - 1
    ]
    assert small == [], small


def test_one_press_of_back_returns_to_the_page_before(lens: Lens):
    """Each page change is one history entry, the view's parameters carried by the sidebar's links:
    Streamlit's own menu dropped them and the app wrote them back, so Back once stayed on the page."""
    lens.open()
    before = lens.page.evaluate("history.length")
    lens.sidebar.get_by_role("link", name="Kernels").click()
    lens.show(lens.page.get_by_text("MBConv depthwise kernels", exact=True).first)
    assert lens.page.evaluate("history.length") == before + 1
    assert "model=demo-pre" in lens.page.url and "/kernels" in lens.page.url  # the view went along
    lens.page.go_back()
    lens.show(lens.page.get_by_text("Attention rollout", exact=True).first)
    expect(lens.page.locator("h1").first).to_have_text("Attention explorer")
