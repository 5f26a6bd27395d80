"""The Interventions and Dataset pages through AppTest: interventions added and removed move the
prediction and the maps, head importance draws, a shipped study draws, a wrong folder gets one line."""

from __future__ import annotations

import pytest

from tests.support.apptest import clean, copied, figure_named, figures_named, named_titles, one_error, title


@pytest.fixture(scope="module")
def interventions(first_run):
    """The Interventions page on demo-pre, built once: read-only."""
    at = copied(first_run)
    at.switch_page("views/interventions.py").run()
    return clean(at)


@pytest.fixture
def page(interventions):
    """A session of the test's own on the Interventions page."""
    return copied(interventions)


def test_without_interventions_both_columns_agree(page):
    logits = [m.value for m in page.metric if m.label.startswith("logit of")]
    assert len(logits) == 2 and logits[0] == logits[1]
    drop = title(figure_named(page, "head-importance"))  # 16 heads: measured at once
    assert drop.startswith("Logit drop of")
    names = page.selectbox(key="iv_target").options[1:]
    assert any(drop.startswith(f"Logit drop of {n.split(': ', 1)[1]} when") for n in names), drop  # named


def test_knocking_out_every_head_of_s4_changes_the_logit_and_the_maps(page):
    page.selectbox(key="iv_block").set_value("S4.0").run()
    page.selectbox(key="iv_kind").set_value("knockout")
    page.button(key="iv_add").click().run()
    clean(page)
    assert page.multiselect(key="iv_active").value == ["knockout S4.0"]
    before = [m.value for m in page.metric if m.label.startswith("logit of")]
    intervened = next(
        m for m in page.metric if m.label.startswith("logit of") and m.label.endswith("intervened")
    )
    assert before[0] != before[1] and intervened.delta
    # the maps open on the block the intervention changes: before, after and their difference
    assert page.selectbox(key="iv_map_block").value == "S4.0"
    (pair,) = named_titles(page, "comparison-pair")  # before and after side by side, one scale
    (change,) = named_titles(page, "comparison-difference-map")  # their difference, the same size
    assert pair.startswith("S4.0") and change.startswith("Difference, intervened - as the model is: S4.0")
    panels = [a["text"] for a in figure_named(page, "comparison-pair")["layout"]["annotations"]]
    assert panels == ["as the model is", "intervened"], panels
    assert any(c.value == "Applied: knockout S4.0" for c in page.caption)  # the names whole


def test_the_heads_chosen_for_one_block_do_not_carry_over_to_another(page):
    page.selectbox(key="iv_block").set_value("S3.0").run()
    page.multiselect(key="iv_heads").set_value([1]).run()
    assert clean(page).multiselect(key="iv_heads").value == [1]
    page.selectbox(key="iv_block").set_value("S4.0").run()
    assert clean(page).multiselect(key="iv_heads").value == []


def test_an_mbconv_intervention_opens_the_maps_on_the_first_attention_block_after_it(page):
    page.selectbox(key="iv_block").set_value("S2.0").run()
    page.selectbox(key="iv_kind").set_value("zero_branch")
    page.button(key="iv_add").click().run()
    assert clean(page).selectbox(key="iv_map_block").value == "S3.0"


def test_swap_normalization_is_labelled_untrained_and_interventions_come_off(page):
    page.selectbox(key="iv_block").set_value("S3.0").run()
    page.selectbox(key="iv_kind").set_value("swap_normalization")
    page.button(key="iv_add").click().run()
    assert any("untrained combination" in i.value for i in clean(page).info)
    page.multiselect(key="iv_active").set_value([]).run()
    logits = [m.value for m in clean(page).metric if m.label.startswith("logit of")]
    assert logits[0] == logits[1]


def test_mbconv_blocks_offer_their_own_interventions(page):
    page.selectbox(key="iv_block").set_value("S1.0").run()
    assert page.selectbox(key="iv_kind").options == ["zero_branch: the MBConv residual branch set to zero",
                                                     "no_se: squeeze-excitation's gate set to 1"]  # fmt: skip


def test_the_dataset_page_draws_a_shipped_study_and_refuses_a_wrong_folder(tmp_path, explorer):
    at = explorer
    at.switch_page("views/dataset.py").run()
    distance = title(figure_named(clean(at), "study-distance"))
    assert "Mean attention distance per head over 10000 images" in distance
    for trace in figure_named(at, "study-distance")["data"]:  # every dot says its head, not only on hover
        assert trace["mode"] == "markers+text" and trace["text"] == [str(h) for _, h in trace["customdata"]]
    assert "Interventions, most harmful first" in title(figure_named(at, "study-interventions"))
    assert not figures_named(at, "study-stages")  # folded
    at.session_state["study_stages"] = True  # opened
    at.run()
    assert title(figure_named(at, "study-stages")).startswith("Stages")
    assert "Faithfulness of each explanation over 500 images" in title(figure_named(at, "study-faithfulness"))
    at.selectbox(key="study_choice").set_value("study-demo-post").run()
    assert "(post)" in title(figure_named(clean(at), "study-distance"))
    at.selectbox(key="study_choice").set_value("a study folder...").run()
    at.text_input(key="study_folder").set_value(str(tmp_path)).run()
    assert "no study at" in one_error(at)


def test_the_dataset_page_opens_the_study_of_the_sidebars_model_or_says_how_to_make_one(tmp_path, explorer):
    at = explorer
    at.selectbox(key="demo_name").set_value("demo-post").run()
    at.switch_page("views/dataset.py").run()
    assert clean(at).selectbox(key="study_choice").value == "study-demo-post"
    assert "(post)" in title(figure_named(at, "study-distance")) and not at.info
    at.selectbox(key="study_choice").set_value("study-demo-pre").run()  # the user's pick is kept
    assert clean(at).selectbox(key="study_choice").value == "study-demo-pre"
    at.selectbox(key="demo_name").set_value("demo-pre").run()
    assert clean(at).selectbox(key="study_choice").value == "study-demo-pre"
    at.sidebar.radio(key="attention").set_value("post-normalization").run()  # demo-pre run as post
    notes = [i.value for i in clean(at).info]
    assert any("No study of" in n and "coatnet study --model demo-pre" in n for n in notes), notes
