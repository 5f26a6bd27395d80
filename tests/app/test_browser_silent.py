"""Nothing silently wrong, in a real browser: a link naming a missing model and image says so in lines
that stay; without an image the page links and the opacity slider stay; the slider shows the opacity the
maps are drawn at after an upload; a 5 x 5 px picture says how far it is from the model's input; and a
reload brings back the rollout's mode and the interventions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from app import pages
from tests.support.browser import WAIT_MS, Lens, Served, opened_lens

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# the opacity of the clickable map's heatmap as Plotly.js draws it
MAP_OPACITY = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .map(gd => gd._fullData || []).find(traces => traces.some(t => t.name === 'cells'))
    .find(t => t.type === 'heatmap').opacity"""


@pytest.fixture
def lens(served: Served) -> Iterator[Lens]:
    with opened_lens(served) as opened:
        yield opened


def slider_value(lens: Lens) -> str:
    """What the sidebar's "Map opacity" slider shows by its thumb."""
    return lens.sidebar.get_by_test_id("stSlider").get_by_test_id("stSliderThumbValue").inner_text()


def test_a_link_upload_and_reload_leave_nothing_silently_wrong(lens: Lens, tmp_path: Path) -> None:
    lens.page.set_viewport_size({"width": 1024, "height": 900})
    lens.open("?model=demo-nonexistent&image=nope")
    lens.page.wait_for_timeout(1_000)  # a rerun or two (the column's width) must not erase the lines
    lens.settle()
    notes = lens.page.get_by_test_id("stAlertContentWarning")
    expect(notes.filter(has_text="'demo-nonexistent'")).to_contain_text("showing demo-pre instead")
    expect(notes.filter(has_text="'nope'")).to_contain_text("instead")
    links = lens.sidebar.get_by_test_id("stPageLink")
    lens.choose_image_source("Upload")
    expect(lens.page.get_by_text("Upload an image in the sidebar", exact=False)).to_be_visible(
        timeout=WAIT_MS
    )
    lens.settle()
    expect(links).to_have_count(len(pages.PAGES))
    assert slider_value(lens) == "0.60"
    tiny = tmp_path / "tiny.png"
    Image.new("L", (5, 5), 180).save(tiny)
    lens.upload_image(tiny)
    lens.show(lens.page.get_by_text("tiny as given", exact=False))
    expect(notes.filter(has_text="far below").get_by_test_id("stMarkdownContainer")).to_have_text(
        "Your picture is 5 x 5 px, far below the model's 28 x 28 px input: the prediction means little"
    )
    assert slider_value(lens) == "0.60" and lens.page.evaluate(MAP_OPACITY) == 0.6
    lens.page.set_viewport_size({"width": 1440, "height": 900})
    lens.choose_image_source("Gallery")
    lens.show(lens.page.get_by_text("Attention rollout", exact=True))
    lens.page.get_by_text("averaged over queries", exact=True).click()
    lens.settle()
    lens.sidebar.get_by_role("link", name="Interventions").click()
    lens.show(lens.page.get_by_text("Which heads matter for this image", exact=True).first)
    lens.page.get_by_role("button", name="Add").click()
    lens.settle()
    link = lens.page.url.split("?", 1)[1]
    assert "iv=" in link and "rollout_from=" not in link, link  # only what applies to this view
    # a new session on that link's view (opened at the app's root: Streamlit's health check wants it)
    lens.page.goto(f"{lens.url}/?{link}&rollout_from=averaged+over+queries")
    lens.show(lens.page.get_by_text("Attention rollout", exact=True))
    expect(lens.page.get_by_role("radio", name="averaged over queries")).to_be_checked()
    lens.sidebar.get_by_role("link", name="Interventions").click()
    lens.show(lens.page.get_by_text("Which heads matter for this image", exact=True).first)
    expect(lens.page.get_by_text("Applied: ", exact=False)).to_be_visible()
    lens.assert_clean()
