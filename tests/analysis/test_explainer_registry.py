"""An explanation method registered by a user's own code (tests/support/explainers.py: gradient x input)
appears, with no other change, in faithfulness, the sanity checks, robustness, a new study and the app's
picker; the built-in records say what the consumers used to write out by hand.

The consumers run their default rows: to keep that fast, the registry holds the random map and the toy
alone while they run (``only_the_toy``); :func:`method_rows` shows the toy among every built-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import analysis
from analysis.explain import registry
from analysis.explain.registry import method_rows, short_name
from analysis.studies.sanity import measure_sanity, summarise_sanity
from analysis.studies.study import study_plan
from tests.support.apptest import clean, titles
from tests.support.explainers import LABEL, NAME, gradient_x_input, registered
from tests.support.toys import SIZE, images, toy

BUILT_IN = ["random", "rollout", "relevance", "grad_rollout", "gradcam", "integrated_gradients", "occlusion",
            "lrp_attnlrp", "lrp_cp"]  # fmt: skip


@pytest.fixture
def only_the_toy(monkeypatch):
    """The registry with the random map (the floor) and the toy alone, restored after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", {"random": registry.explainer("random")})
    with registered() as record:
        yield record


def test_the_built_in_methods_in_order_with_the_labels_the_figures_and_pickers_used():
    found = analysis.explainers()
    assert [e.name for e in found] == BUILT_IN
    assert [short_name(e.name, "S3" if e.stages else None) for e in found] == [
        "random", "rollout", "relev.", "grad roll.", "CAM S3", "IG", "occl.", "AttnLRP", "CP-LRP",
    ]  # fmt: skip
    assert [e.name for e in found if not e.class_specific] == ["random", "rollout"]
    assert [e.name for e in found if e.attribution] == [
        "gradcam", "integrated_gradients", "occlusion", "lrp_attnlrp", "lrp_cp",
    ]  # fmt: skip
    assert {e.name: e.label for e in found if e.needs_attention and e.class_specific} == {
        "relevance": "Relevance (Chefer et al. 2021)",
        "grad_rollout": "Gradient-weighted rollout",
    }


def test_a_registered_method_is_a_row_after_the_built_in_ones_and_leaves_no_trace():
    model = toy()
    before = method_rows(model)
    with registered() as record:
        assert method_rows(model) == [*before, (NAME, None)]
        assert analysis.explainers()[-1] is record and record.short_label == "GxI"
        with pytest.raises(ValueError, match="built-in"):
            analysis.register_explainer("gradcam", gradient_x_input, label="Mine")
    assert method_rows(model) == before and [e.name for e in analysis.explainers()] == BUILT_IN
    with pytest.raises(ValueError, match="stages must be some of"):
        analysis.register_explainer("mine", gradient_x_input, label="Mine", stages=("S9",))
    with pytest.raises(ValueError, match="unknown attribution method 'mine'"):
        analysis.attributions(model, images(1), method="mine")


def test_the_toy_appears_in_faithfulness_sanity_robustness_and_a_new_study(only_the_toy):
    model, x = toy(), images(1)
    target = int(model(x).argmax())
    report = analysis.faithfulness(model, x)
    assert [r.name for r in report.results] == ["random", NAME]
    expected = gradient_x_input(model, x, torch.tensor([target]))[0]
    checks = analysis.sanity_checks(model, x, tests=("random_logit",))
    np.testing.assert_allclose(checks.trained[1].map, expected, rtol=1e-5, atol=1e-6)
    assert [(r.method, r.test) for r in checks.results] == [(m, "random_logit") for m in ("random", NAME)]
    assert [r.method for r in analysis.robustness(model, x, n_samples=1)] == ["random", NAME]
    assert study_plan(model, (SIZE, SIZE), faithfulness=True).faithfulness == (("random", None), (NAME, None))
    sanity, robustness = summarise_sanity(model, measure_sanity(model, x))  # every test, as a study runs
    assert {e["test"] for e in sanity if e["method"] == NAME} == {"cascading", "independent", "random_logit"}
    assert [e["method"] for e in robustness] == ["random", NAME]


def _stage_inspector_picker():
    """The Stage inspector's attribution picker, on demo-pre and one picture (AppTest runs this alone)."""
    import io
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from app.cache import ModelKey
    from app.views.stages import pixel_attributions

    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(buffer, format="PNG")
    picture = SimpleNamespace(data=buffer.getvalue(), name="grey")
    chosen = SimpleNamespace(key=ModelKey("demo-pre"), image=picture)
    pixel_attributions(chosen, np.zeros((28, 28, 3), np.uint8), 4, 0.5)


def test_the_toy_is_a_choice_of_the_stage_inspector_picker_and_drawn_when_asked():
    with registered():
        at = AppTest.from_function(_stage_inspector_picker, default_timeout=60)
        clean(at.run())
        picker = at.radio(key="pixel_method")
        assert picker.options[-1] == LABEL and picker.value == "integrated_gradients"
        picker.set_value(NAME).run()
        at.button(key="pixel_go").click().run()
        (drawn,) = titles(clean(at))
        assert drawn.startswith(f"{LABEL}: ")  # titled with its label in words
