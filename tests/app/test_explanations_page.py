"""The explorer's class explanations through AppTest: the relevance map follows the class picked and the
method, and "Measure faithfulness" draws every method's curves and scores."""

from __future__ import annotations

import pytest

from coatnet import load_checkpoint
from tests.support.apptest import clean, figure_named, figures, named_titles, title


@pytest.fixture
def page(explorer):
    """A session of the test's own on the explorer."""
    return explorer


def _relevance_titles(at) -> list[str]:
    return named_titles(at, "relevance")


def test_the_relevance_map_explains_the_class_picked_with_the_method_picked(page):
    picker = page.selectbox(key="explain_class")
    predicted = picker.value
    (first,) = _relevance_titles(page)
    assert "class relevance (Chefer et al. 2021)" in first and "post" not in first.split(",")[1]
    other = (predicted + 1) % 10
    picker.set_value(other).run()
    (second,) = _relevance_titles(clean(page))
    assert second != first and page.selectbox(key="explain_class").value == other
    assert f"{load_checkpoint('demo-pre').checkpoint_info.class_names[other]} (p = " in second
    page.radio(key="explain_method").set_value("grad_rollout").run()
    (third,) = _relevance_titles(clean(page))
    assert third.startswith("gradient-weighted rollout")


def test_the_class_picker_offers_layer_wise_relevance_drawn_over_the_pixels(page):
    """The registry's one-pass methods join the picker: AttnLRP of the class picked, as a pixel map, with
    the caption of what it is (the attention-weighted caption gone)."""
    assert page.radio(key="explain_method").options[-2:] == ["LRP (AttnLRP)", "LRP (CP-LRP)"]
    other = (page.selectbox(key="explain_class").value + 1) % 10
    page.selectbox(key="explain_class").set_value(other).run()
    page.radio(key="explain_method").set_value("lrp_attnlrp").run()
    assert not _relevance_titles(clean(page))
    (drawn,) = [f for f in figures(page) if title(f).startswith("LRP (AttnLRP): ")]
    assert load_checkpoint("demo-pre").checkpoint_info.class_names[other] in title(drawn)
    said = " ".join(c.value for c in page.caption)
    assert "relevance propagated back to each pixel" in said and "grad A * A" not in said


def test_measuring_faithfulness_draws_the_curves_and_scores_of_every_method(page):
    assert not any(t.startswith("Deletion") for t in named_titles(page, "faithfulness-curves"))
    page.button(key="faith_go").click().run()
    curves = named_titles(clean(page), "faithfulness-curves")
    assert any(t.startswith("Deletion: p(") for t in curves)
    assert any(t.startswith("Insertion: p(") for t in curves)
    assert title(figure_named(page, "faithfulness-scores")).startswith("Faithfulness of each explanation")
    page.run()  # kept for the session: drawn again without the button
    assert any(t.startswith("Deletion: p(") for t in named_titles(clean(page), "faithfulness-curves"))
