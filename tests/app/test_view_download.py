"""The sidebar's "Download this view": what a page's run draws (every figure and result, per session and run)
goes in one zip with the link that shows the view again."""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager

from analysis.figures.names import figure_name
from analysis.report import view
from app import render, urlstate
from tests.support.apptest import clean, figures


@pytest.fixture
def made(monkeypatch) -> dict:
    """Every download made when clicked that a run registers: file name -> the function Streamlit calls on
    the click (AppTest keeps no runtime after a run, so the test keeps the function as it is registered)."""
    found = {}
    register = MediaFileManager.add_deferred

    def add(self, data_callable, mimetype, coordinates, file_name=None, **options):
        found[file_name] = data_callable
        return register(self, data_callable, mimetype, coordinates, file_name=file_name, **options)

    monkeypatch.setattr(MediaFileManager, "add_deferred", add)
    monkeypatch.setattr(view, "browser_available", lambda: False)  # no PNGs: seconds each through Chromium
    return found


def test_the_explorer_zips_every_figure_and_result_it_draws_with_its_link(explorer, made):
    at = clean(explorer.run())  # a second run: its record replaces the first run's, never adds to it
    names = sorted(figure_name(f) for f in figures(at))
    drawn = at.session_state[render.DRAWN]
    assert sorted(figure_name(f) for _, f in drawn.figures) == names and "rollout" in names
    assert len(drawn.results) == 3  # the page's own downloads: every block's attention, rollout, the class
    (button,) = [b for b in at.sidebar.get("download_button") if b.proto.label == "Download this view"]
    assert button.proto.deferred_file_id  # made when clicked

    with ThreadPoolExecutor(1) as thread:  # as Streamlit calls it: on a thread of its own, outside any run
        archive = zipfile.ZipFile(io.BytesIO(thread.submit(made["explorer-view.zip"]).result()))
    described = json.loads(archive.read("view.json"))
    assert sorted(f["name"] for f in described["figures"]) == names
    for entry in described["figures"]:  # each file is its figure
        assert f'"meta":{{"name":"{entry["name"]}"}}' in archive.read(entry["html"]).decode()
    link = urlsplit(described["link"])
    assert link.path == "/" and dict(parse_qsl(link.query))["model"] == "demo-pre"  # the explorer is the root
    assert dict(parse_qsl(link.query)) == at.query_params  # the view's own link, as the URL holds it
    readme = archive.read("README.txt").decode()
    assert readme.startswith("Attention explorer: ") and f"Link: {described['link']}\n" in readme
    assert view.NO_PNG in readme
    results = [name for name in archive.namelist() if name.startswith("results/")]
    assert len(results) == 6 and sum(name.endswith(".npz") for name in results) == 3
    for name in results:
        if name.endswith(".json"):
            assert json.loads(archive.read(name))["about"]["model_spec"] == "demo-pre"


def test_a_link_is_the_page_path_and_its_parameters_relative_to_the_server():
    assert (
        urlstate.link("stages", {"source": "demo", "model": "demo-pre"})
        == "/stages?source=demo&model=demo-pre"
    )
    assert (
        urlstate.link("", {"iv": "S3.0 knockout 0;S3.0 knockout 1"})
        == "/?iv=S3.0+knockout+0%3BS3.0+knockout+1"
    )
    assert urlstate.link("", {}) == "/"


def test_a_part_that_reruns_alone_replaces_what_it_drew_and_moves_the_links_query(monkeypatch):
    """A part of the page rerun alone (``st.fragment``: the explorer's query views after a click) draws
    again into its own place of the view's record: what it drew before goes, the page's other figures
    stay; the query it leaves goes into the URL and into the link the view's zip is made with."""
    import plotly.graph_objects as go

    from analysis import Query
    from app import widgets

    monkeypatch.setattr(render.st, "session_state", {})
    monkeypatch.setattr(render.st, "query_params", {"model": "demo-pre", "q": "0.50000,0.50000"})
    render.start_view()
    record = render.drawn()
    record.params = {"model": "demo-pre", "q": "0.50000,0.50000"}  # as app.main's save left them
    figure = go.Figure()
    record.drawing()[0].append(("top5", figure))
    with render.part("query"):
        record.drawing()[0].append(("map-q3-3", figure))
        record.drawing()[1].append(("rollout-q3-3", None, {}))
    record.drawing()[0].append(("relevance", figure))
    with render.part("query"):  # rerun alone after a click on (1, 5)
        record.drawing()[0].append(("map-q1-5", figure))
        record.drawing()[1].append(("rollout-q1-5", None, {}))
    assert [name for name, _ in record.figures] == ["top5", "relevance", "map-q1-5"]
    assert [name for name, *_ in record.results] == ["rollout-q1-5"]
    render.st.session_state[widgets.QUERY_POINT] = Query(0.25, 0.75)
    urlstate.save_query(record.params)
    assert render.st.query_params == {"model": "demo-pre", "q": Query(0.25, 0.75).text()}
    assert record.params == render.st.query_params  # the zip's link: made when clicked, from these
