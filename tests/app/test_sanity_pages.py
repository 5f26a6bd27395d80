"""The sanity checks in the app: the Stage inspector runs them for the image when asked (the cascade, the
similarity curves of either test, the random logit test) and the Dataset page draws a study's, also of a
sanity-only study."""

from __future__ import annotations

import pytest

from coatnet.cli.commands import main
from tests.support.apptest import clean, fresh, titles
from tests.support.toys import fashion_toy_checkpoint, toy_checkpoint


def test_the_stage_inspector_runs_the_sanity_check_when_asked_and_keeps_it(tmp_path):
    path = toy_checkpoint(tmp_path / "toy.safetensors")
    at = fresh()
    at.run()
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path)).run()
    at.switch_page("views/stages.py").run()
    assert not any(t.startswith("Cascading randomisation") for t in titles(clean(at)))  # not before asked
    at.button(key="sanity_go").click().run()
    drawn = titles(clean(at))
    assert any(t.startswith("Cascading randomisation: the explanations of") for t in drawn), drawn
    curves = "Cascading randomisation (from the head down, cumulatively): Spearman"
    assert any(t.startswith(curves) for t in drawn)
    assert any(t.startswith("Random logit: Spearman rank correlation of |map|") for t in drawn)
    at.radio(key="sanity_test").set_value("independent").run()  # kept: no second button press
    at.radio(key="sanity_measure").set_value("ssim").run()
    drawn = titles(clean(at))
    assert any(t.startswith("Independent randomisation (one part at a time): SSIM") for t in drawn), drawn
    assert any(t.startswith("Random logit: SSIM") for t in drawn)


@pytest.mark.needs("fashion-mnist")
def test_the_dataset_page_draws_a_studys_sanity_checks_and_a_sanity_only_study(tmp_path):
    checkpoint = fashion_toy_checkpoint(tmp_path / "toy.safetensors")
    common = ["study", "--model", str(checkpoint), "--limit", "8", "--batch-size", "8", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "full"), "--sanity", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "only"), "--sanity-only", "--sanity", "1"]) == 0
    at = fresh()
    at.run()
    at.switch_page("views/dataset.py").run()
    at.selectbox(key="study_choice").set_value("a study folder...").run()
    at.text_input(key="study_folder").set_value(str(tmp_path / "full")).run()
    drawn = titles(clean(at))
    assert any(t.startswith("Interventions, most harmful first") for t in drawn)
    assert any(t.startswith("Cascading randomisation") and "the mean over 1 images" in t for t in drawn)
    assert any(t.startswith("Random logit:") for t in drawn)
    assert any(t.startswith("Robustness: max-sensitivity") for t in drawn)
    (verdicts,) = [frame.value for frame in at.dataframe]  # faithfulness was not measured: said so
    assert list(verdicts.columns)[:3] == ["explanation", "verdict", "ROAD"]
    assert verdicts.iloc[0]["verdict"] == "the floor" and verdicts["ROAD"].isna().all()
    assert all("(faithfulness not measured)" in v for v in verdicts["verdict"][1:])
    at.radio(key="study_sanity_test").set_value("independent").run()
    assert any(t.startswith("Independent randomisation") for t in titles(clean(at)))
    at.text_input(key="study_folder").set_value(str(tmp_path / "only")).run()
    drawn = titles(clean(at))
    assert any("the sanity checks alone" in c.value for c in at.caption)
    assert not any(t.startswith("Interventions") for t in drawn)
    assert any(t.startswith("Independent randomisation") for t in drawn)
    assert any(t.startswith("Robustness: max-sensitivity") for t in drawn)
