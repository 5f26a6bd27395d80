"""A view as one zip: every figure as HTML (PNG where Chromium is), every result as JSON and NPZ with what it
is about, and a README with the view's link and what is missing."""

from __future__ import annotations

import doctest
import io
import json
import zipfile

import numpy as np
import plotly.graph_objects as go

from analysis import attention_maps
from analysis.figures.names import named
from analysis.report import view, view_zip
from tests.support.toys import images, toy

LINK = "/stages?source=demo&model=demo-pre"


def test_the_zip_holds_every_figure_and_result_with_the_link_and_says_pngs_need_chromium():
    maps = attention_maps(toy(), images(1))
    about = {"model": "coatnet_toy, pre", "image": "x.png"}
    figures = [
        ("S3.0 heads", named(go.Figure(layout_title_text="Heads<br>of S3.0"), "attention-heads")),
        ("S3.0 heads", named(go.Figure(), "rollout")),  # the same file name twice: the second gets -2
        ("../up", go.Figure()),  # never a path out of its folder
    ]
    data = view_zip(figures, [("every block", maps, about)], link=LINK, title="Stage inspector", png=False)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == [
        "README.txt",
        "figures/s3.0-heads-2.html",
        "figures/s3.0-heads.html",
        "figures/up.html",
        "results/every-block.json",
        "results/every-block.npz",
        "view.json",
    ]
    readme = archive.read("README.txt").decode()
    assert readme.startswith("Stage inspector\n") and f"Link: {LINK}\n" in readme
    assert view.NO_PNG in readme and "apt-get install chromium" in readme
    assert "figures/s3.0-heads.html: attention-heads (Heads of S3.0)" in readme
    html = archive.read("figures/s3.0-heads-2.html").decode()
    assert '"meta":{"name":"rollout"}' in html and "<script src=" not in html  # its figure, self-contained
    loaded = json.loads(archive.read("results/every-block.json"))
    assert loaded["about"] == about and np.allclose(loaded["result"]["logits"], maps.logits)
    arrays = np.load(io.BytesIO(archive.read("results/every-block.npz")))  # allow_pickle stays False
    assert json.loads(str(arrays["about"])) == about
    np.testing.assert_array_equal(arrays["blocks.0.effective"], maps.blocks[0].effective)
    described = json.loads(archive.read("view.json"))
    assert described["link"] == LINK and [f["name"] for f in described["figures"]] == [
        "attention-heads",
        "rollout",
        None,
    ]


def test_a_png_that_fails_is_named_with_why_and_the_rest_of_the_view_is_zipped(monkeypatch):
    def fails(figure):
        raise view.ExportError("kaleido failed (TimeoutError: no browser answered)")

    monkeypatch.setattr(view, "figure_png", fails)
    data = view_zip(
        [("bars", go.Figure(go.Bar(y=[1])))], [], link="/?model=demo-pre", title="Explorer", png=True
    )
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert "figures/bars.html" in archive.namelist() and "figures/bars.png" not in archive.namelist()
    readme = archive.read("README.txt").decode()
    assert "No PNG of figures/bars: kaleido failed (TimeoutError" in readme and view.NO_PNG not in readme


def test_the_example_runs():
    """analysis.report is not among the modules tests/test_reference.py runs the examples of."""
    (example,) = doctest.DocTestFinder().find(view_zip, "view_zip", globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(example)
    assert runner.summarize(verbose=False).failed == 0
