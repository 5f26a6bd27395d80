"""The sanity checks in the app: the Stage inspector runs them for the image when asked (the cascade, the
similarity curves of either test, the random logit test) and the Dataset page draws a study's, also of a
sanity-only study."""

from __future__ import annotations

import pytest

from coatnet.cli.commands import main
from tests.support.apptest import clean, figure_named, figures_named, title, titles
from tests.support.toys import fashion_toy_checkpoint, toy_checkpoint


def test_the_stage_inspector_runs_the_sanity_check_when_asked_and_keeps_it(tmp_path, explorer):
    path = toy_checkpoint(tmp_path / "toy.safetensors")
    at = explorer
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path)).run()
    at.switch_page("views/stages.py").run()
    clean(at)
    assert not figures_named(at, "sanity-cascade") + figures_named(at, "sanity-curves")  # not before asked
    at.button(key="sanity_go").click().run()
    cascade = title(figure_named(clean(at), "sanity-cascade"))
    assert cascade.startswith("Cascading randomisation: the explanations of"), titles(at)
    curves = "Cascading randomisation (from the head down, cumulatively): Spearman"
    assert title(figure_named(at, "sanity-curves")).startswith(curves)
    assert title(figure_named(at, "random-logit")).startswith(
        "Random logit: Spearman rank correlation of |map|"
    )
    at.radio(key="sanity_test").set_value("independent").run()  # kept: no second button press
    at.radio(key="sanity_measure").set_value("ssim").run()
    curves = title(figure_named(clean(at), "sanity-curves"))
    assert curves.startswith("Independent randomisation (one part at a time): SSIM"), titles(at)
    assert title(figure_named(at, "random-logit")).startswith("Random logit: SSIM")


@pytest.mark.needs("fashion-mnist")
def test_the_dataset_page_draws_a_studys_sanity_checks_and_a_sanity_only_study(tmp_path, explorer):
    checkpoint = fashion_toy_checkpoint(tmp_path / "toy.safetensors")
    common = ["study", "--model", str(checkpoint), "--limit", "8", "--batch-size", "8", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "full"), "--sanity", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "only"), "--sanity-only", "--sanity", "1"]) == 0
    at = explorer
    at.switch_page("views/dataset.py").run()
    at.selectbox(key="study_choice").set_value("a study folder...").run()
    at.text_input(key="study_folder").set_value(str(tmp_path / "full")).run()
    assert title(figure_named(clean(at), "study-interventions")).startswith(
        "Interventions, most harmful first"
    )
    sanity = title(figure_named(at, "study-sanity"))
    assert sanity.startswith("Cascading randomisation") and "the mean over 1 images" in sanity
    assert title(figure_named(at, "study-random-logit")).startswith("Random logit:")
    assert title(figure_named(at, "robustness")).startswith("Robustness: max-sensitivity")
    (verdicts,) = [frame.value for frame in at.dataframe]  # faithfulness was not measured: said so
    assert list(verdicts.columns)[:3] == ["explanation", "verdict", "ROAD"]
    assert verdicts.iloc[0]["verdict"] == "the floor" and verdicts["ROAD"].isna().all()
    assert all("(faithfulness not measured)" in v for v in verdicts["verdict"][1:])
    at.radio(key="study_sanity_test").set_value("independent").run()
    assert title(figure_named(clean(at), "study-sanity")).startswith("Independent randomisation")
    at.text_input(key="study_folder").set_value(str(tmp_path / "only")).run()
    assert any("the sanity checks alone" in c.value for c in clean(at).caption)
    assert not figures_named(at, "study-interventions")
    assert title(figure_named(at, "study-sanity")).startswith("Independent randomisation")
    assert title(figure_named(at, "robustness")).startswith("Robustness: max-sensitivity")


def test_the_dataset_page_draws_the_shipped_ledgers_by_layout_when_its_fold_opens(explorer):
    """The Dataset page's LRP fold: every shipped study's ledger in one figure (a bar trace each), under
    either rule; closed, nothing is drawn."""
    from analysis import load_study, shipped_studies
    from analysis.figures import ledger_summary

    at = explorer
    at.switch_page("views/dataset.py").run()
    assert not figures_named(clean(at), "layouts-ledger")
    at.session_state["dataset_ledger"] = True
    at.run()
    (figure,) = figures_named(clean(at), "layouts-ledger")
    shipped = shipped_studies()
    assert [trace["name"] for trace in figure["data"]] == shipped
    assert "AttnLRP, 1000 test images each" in title(figure)
    vit = next(t for t in figure["data"] if t["name"] == "sanity-layout-vit-rel")
    summary = ledger_summary(load_study("sanity-layout-vit-rel").ledger)
    assert vit["x"] == [100 * v for v in summary.values()] and vit["x"][0] == 0  # no convolution
    at.radio(key="dataset_ledger_rule").set_value("cp").run()
    (figure,) = figures_named(clean(at), "layouts-ledger")
    assert "CP-LRP" in title(figure)
    assert all(t["x"][3] == 0 and t["x"][4] == 0 for t in figure["data"])  # no content or position under cp
