"""Which explanation to trust (analysis.explain_verdicts): faithfulness and sanity joined, with known
answers on a study whose numbers are set, and on the shipped studies."""

from __future__ import annotations

import pytest

from analysis import Study, explanation_verdicts, load_study, shipped_studies


def faith(method, stage=None, *, road, deletion, insertion, ranges=None) -> dict:
    row = {
        "method": method,
        "stage": stage,
        "road": road,
        "deletion_auc": deletion,
        "insertion_auc": insertion,
        "road_morf": 0.0, "road_lerf": 0.0, "n_images": 1, "std": {},
    }  # fmt: skip
    return row | ({"seed_range": ranges} if ranges else {})


def checks(method, stage=None, *, head, everything, other) -> list[dict]:
    measures = {"spearman": 0.0, "ssim": 0.0, "hog": 0.0, "constant": 0, "n_images": 1, "std": {}}
    found = _checks(method, stage, head=head, everything=everything, other=other)
    return [{**measures, **entry} for entry in found]


def _checks(method, stage, *, head, everything, other) -> list[dict]:
    return [
        {"method": method, "stage": stage, "test": "cascading", "randomised": "head", "spearman_abs": head},
        {
            "method": method,
            "stage": stage,
            "test": "cascading",
            "randomised": "S0",
            "spearman_abs": everything,
        },
        {"method": method, "stage": stage, "test": "random_logit", "randomised": None, "spearman_abs": other},
    ]


RANDOM = {"road": [-0.01, 0.01], "deletion_auc": [0.22, 0.24], "insertion_auc": [0.65, 0.67]}
STUDY = {
    "model": "toy",
    "faithfulness": [
        faith("random", road=0.0, deletion=0.23, insertion=0.66, ranges=RANDOM),
        faith("integrated_gradients", road=0.19, deletion=0.12, insertion=0.79),  # faithful
        faith("rollout", road=0.003, deletion=0.26, insertion=0.64),  # ROAD within random's range
        faith("gradcam", "S4", road=0.10, deletion=0.25, insertion=0.72),  # faithful through insertion
        faith("occlusion", road=0.11, deletion=0.18, insertion=0.68),
    ],
    "sanity": [
        *checks("random", head=0.0, everything=0.0, other=1.0),
        *checks("integrated_gradients", head=0.27, everything=0.16, other=0.26),
        *checks("rollout", head=1.0, everything=-0.04, other=1.0),  # class-agnostic
        *checks("gradcam", "S4", head=0.26, everything=-0.1, other=0.05),
        *checks("occlusion", head=0.9, everything=0.7, other=0.3),  # survives randomisation
    ],
}


def test_each_verdict_names_what_fails_and_keeps_the_evidence():
    found = {v.name: v for v in explanation_verdicts(Study.from_json(STUDY))}
    assert list(found) == ["random", "integrated_gradients", "rollout", "gradcam S4", "occlusion"]
    assert found["random"].verdict == "the floor"
    assert found["integrated_gradients"].verdict == "trust"
    assert found["gradcam S4"].verdict == "trust"  # deletes no faster than random, inserts faster
    assert found["rollout"].verdict == "not faithful; does not depend on the class"
    assert found["occlusion"].verdict == "does not depend on the weights"
    ig = found["integrated_gradients"]
    assert (ig.after_head, ig.after_all, ig.random_logit) == (0.27, 0.16, 0.26)
    assert (ig.random_road_high, ig.random_deletion_low, ig.random_insertion_high) == (0.01, 0.22, 0.67)


def test_what_a_study_did_not_measure_is_said_so():
    faith_only = explanation_verdicts(
        Study.from_json({"model": "toy", "faithfulness": STUDY["faithfulness"]})
    )
    ig = next(v for v in faith_only if v.method == "integrated_gradients")
    assert ig.model_dependent is None and ig.class_dependent is None
    assert ig.verdict == "passes what was measured (model randomisation, random logit not measured)"
    only = Study(model="toy", sanity=Study.from_json(STUDY).sanity)
    sanity_only = {v.name: v for v in explanation_verdicts(only)}
    assert sanity_only["rollout"].verdict == "does not depend on the class (faithfulness not measured)"
    assert explanation_verdicts(Study(model="toy")) == []


@pytest.mark.parametrize("name", shipped_studies())
def test_every_shipped_study_has_a_verdict_for_each_explanation(name):
    study = load_study(name)
    verdicts = explanation_verdicts(study)
    rows = study.faithfulness or study.sanity
    assert len(verdicts) == len({(r.method, r.stage) for r in rows})
    assert all(v.verdict for v in verdicts) and verdicts[0].verdict == "the floor"
