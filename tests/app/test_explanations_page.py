"""The explorer's class explanations through AppTest: the relevance map follows the class picked and the
method, and "Measure faithfulness" draws every method's curves and scores."""

from __future__ import annotations

import pytest

from coatnet import load_checkpoint
from tests.support.apptest import clean, fresh, titles


@pytest.fixture(scope="module")
def page():
    at = fresh()
    at.run()
    return clean(at)


def _relevance_titles(at) -> list[str]:
    return [t for t in titles(at) if "Chefer" in t or "gradient-weighted rollout" in t]


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


def test_measuring_faithfulness_draws_the_curves_and_scores_of_every_method(page):
    assert not any(t.startswith("Deletion") for t in titles(page))
    page.button(key="faith_go").click().run()
    drawn = titles(clean(page))
    assert any(t.startswith("Deletion: p(") for t in drawn)
    assert any(t.startswith("Insertion: p(") for t in drawn)
    assert any(t.startswith("Faithfulness of each explanation") for t in drawn)
    page.run()  # kept for the session: drawn again without the button
    assert any(t.startswith("Deletion: p(") for t in titles(clean(page)))
