"""Many users at once: four browser sessions (Playwright, four contexts) on one server, each on another
model, image and page, act at the same moment: each then shows exactly what it shows when alone (every
chart's title and data, the top-5, the downloaded JSON), no error text, and the server's health endpoint
answers throughout. An upload over the limit is refused by the server.

The four sessions are opened and set up once: each acts alone in turn (the others idle) and is put back
as it was, then all four act together."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.browser import CELL, WAIT_MS, Lens, Served, opened_lens
from tests.support.toys import toy_checkpoint

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# every chart's title and every trace's name and data: what a user sees, to compare between runs
SEEN = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
    title: (gd.querySelector('.gtitle') || {}).textContent || '',
    traces: (gd._fullData || []).map(t => [t.name || '', t.x, t.y, t.z, t.customdata]),
}))"""


def opened_box(lens: Lens, label: str):
    """The sidebar's selectbox called ``label``, opened. It is scrolled to the middle of the sidebar first:
    a box on the window's bottom edge (the sidebar lists seven pages) ignored the first click after the
    model changed."""
    box = lens.sidebar.get_by_test_id("stSelectbox").filter(has=lens.page.get_by_text(label, exact=True))
    box.evaluate("element => element.scrollIntoView({block: 'center'})")
    box.click()
    return box


def pick(lens: Lens, label: str, option: str) -> None:
    """Choose ``option`` in the sidebar's selectbox called ``label``."""
    opened_box(lens, label)
    lens.page.get_by_role("option", name=option).click()


def pick_nth(lens: Lens, label: str, index: int) -> None:
    """Choose the ``index``-th option of the sidebar's selectbox called ``label``."""
    opened_box(lens, label)
    lens.page.get_by_role("option").nth(index).click()


def radio(lens: Lens, label: str, option: str) -> None:
    group = lens.sidebar.get_by_test_id("stRadio").filter(has=lens.page.get_by_text(label, exact=True))
    group.get_by_text(option, exact=True).click()


def click_cell(lens: Lens, row: int, col: int) -> None:
    """Click a cell of the explorer's clickable map; returns without waiting for the app."""
    target = lens.page.evaluate(CELL, [row, col])
    lens.page.mouse.click(target["x"], target["y"])


def go(lens: Lens, page: str, marker: str) -> None:
    lens.sidebar.get_by_role("link", name=page).click()
    lens.show(lens.page.get_by_text(marker, exact=False).first)


@dataclass
class User:
    """One user's session: how it is set up, what it does at the shared moment, which JSON it keeps."""

    name: str
    setup: Callable[[Lens], None]
    act: Callable[[Lens], None]
    marker: str  # text that shows when the page has drawn after the action
    download: str  # the label of the JSON download button's row to keep
    undo: Callable[[Lens, tuple[str, str]], None]  # back to the query (row, col) before ``act``, drawn

    def observe(self, lens: Lens, folder: Path) -> dict:
        lens.show(lens.page.get_by_text(self.marker, exact=False).first)
        expander = lens.page.get_by_test_id("stExpander").filter(has_text="Download").first
        if expander.locator("details").get_attribute("open") is None:
            expander.locator("summary").click()
        button = expander.get_by_role("button").filter(has_text="JSON").nth(int(self.download))
        expect(button).to_be_visible(timeout=WAIT_MS)
        lens.settle()
        saved = lens.download(button, folder)
        return {"charts": lens.page.evaluate(SEEN), "json": json.loads(saved.read_text()), "file": saved.name}


def users(checkpoint: Path) -> list[User]:
    def demo_post(lens: Lens) -> None:
        pick(lens, "Checkpoint", "demo-post")
        lens.show(lens.page.get_by_text("Attention rollout", exact=True))
        pick_nth(lens, "Sample", 5)
        lens.show(lens.page.get_by_text("Attention rollout", exact=True))

    def by_path(lens: Lens) -> None:
        radio(lens, "Model", "Checkpoint or weights file")
        field = lens.sidebar.get_by_label("Path", exact=True)
        field.fill(str(checkpoint))
        field.press("Enter")
        lens.show(lens.page.get_by_text("Attention rollout", exact=True))

    def switched(lens: Lens) -> None:
        radio(lens, "Attention normalization", "post-normalization")
        lens.show(lens.page.get_by_text("Attention rollout", exact=True))

    def back_to(lens: Lens, query: tuple[str, str]) -> None:  # the cell clicked before
        click_cell(lens, int(query[0]), int(query[1]))
        lens.show(lens.page.get_by_text(f"query ({query[0]}, {query[1]})", exact=False).first)

    def back_to_the_explorer(lens: Lens, query: tuple[str, str]) -> None:
        go(lens, "Attention explorer", "Attention rollout")
        assert lens.query() == query

    return [
        User("demo-pre, explorer", lambda lens: None, lambda lens: click_cell(lens, 1, 5),
             "query (1, 5)", "1", back_to),
        User("demo-post, another image, explorer", demo_post, lambda lens: click_cell(lens, 5, 2),
             "query (5, 2)", "1", back_to),
        User("a toy checkpoint by path, explorer", by_path, lambda lens: click_cell(lens, 1, 0),
             "query (1, 0)", "1", back_to),
        User("demo-pre as post, pre vs post", switched,
             lambda lens: lens.sidebar.get_by_role("link", name="Pre vs post").click(),
             "Relative-bias kernels of", "0", back_to_the_explorer),
    ]  # fmt: skip


class Health:
    """Asks the server's health endpoint every 0.2 s from a thread of its own, counting the answers."""

    def __init__(self, url: str) -> None:
        self.url, self.answers, self.failures = f"{url}/_stcore/health", 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    assert answer.read() == b"ok"
                self.answers += 1
            except (OSError, AssertionError) as error:
                self.failures.append(repr(error))

    def __enter__(self) -> Health:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def test_four_sessions_at_once_each_see_what_they_see_alone(served: Served, tmp_path: Path) -> None:
    people = users(toy_checkpoint(tmp_path / "toy.safetensors", num_classes=10))
    with Health(served.url) as health, ExitStack() as stack:
        apart = Served(served.url, served.browser)  # four browsers: a context each
        lenses = [stack.enter_context(opened_lens(apart)) for _ in people]
        for lens, user in zip(lenses, people, strict=True):
            lens.open()
            user.setup(lens)
            lens.settle()
        alone = []
        for lens, user in zip(lenses, people, strict=True):  # one at a time, the others idle
            before = lens.query()
            user.act(lens)
            alone.append(user.observe(lens, tmp_path / "alone"))
            user.undo(lens, before)
            lens.assert_clean()
        for lens, user in zip(lenses, people, strict=True):  # all four at the same moment
            user.act(lens)
        together = [
            user.observe(lens, tmp_path / "together") for lens, user in zip(lenses, people, strict=True)
        ]
        for lens in lenses:
            lens.assert_clean()
    assert health.failures == [] and health.answers > 0, health.failures
    for user, a, b in zip(people, alone, together, strict=True):
        about = a["json"]["about"]  # each download says what it holds
        assert {"model", "model_spec", "provenance", "image"} <= set(about), user.name
        assert a["file"] == b["file"], user.name
        assert a["json"] == b["json"], f"{user.name}: the downloaded JSON differs from the one seen alone"
        assert a["charts"] == b["charts"], f"{user.name}: the charts differ from those seen alone"


def test_an_upload_over_the_limit_is_refused_by_the_server(served: Served) -> None:
    """Streamlit's upload endpoint refuses a body over ``server.maxUploadSize`` (50 MB, the limit the
    analysis layer states) before reading it: a small body reaches the handler (which wants a session's
    XSRF token, 403), the large one never does (the connection is dropped, or 400 / 413), and the server
    keeps answering."""

    def put(size: int) -> BaseException:
        request = urllib.request.Request(
            f"{served.url}/_stcore/upload_file/some-session/some-file", data=b"\0" * size, method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        with pytest.raises((urllib.error.URLError, ConnectionError)) as refused:
            urllib.request.urlopen(request, timeout=60)
        return refused.value

    small = put(1024)
    assert isinstance(small, urllib.error.HTTPError) and small.code == 403, small
    large = put(51 * 2**20)
    assert not isinstance(large, urllib.error.HTTPError) or large.code in (400, 413), large
    with urllib.request.urlopen(f"{served.url}/_stcore/health", timeout=10) as answer:
        assert answer.read() == b"ok"
