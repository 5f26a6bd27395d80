"""``coatnet study --sanity``: each image's sanity checks and robustness are those of
:func:`analysis.sanity_checks` and :func:`analysis.robustness` for that image alone; added to a finished
study only the sanity part runs; interrupted, it resumes to the unbroken result; a sanity-only study loads
and draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import analysis.cli.study
from analysis import load_study, robustness, sanity_checks
from analysis.explain.faithfulness import method_rows
from analysis.explain.sanity import parts
from analysis.explain.similarity import MEASURES
from analysis.report import study_sections
from analysis.studies.sanity import sanity_entries
from tests.support.studies import first_images, run_toy_study
from tests.support.toys import fashion_toy_checkpoint

pytestmark = pytest.mark.needs("fashion-mnist")


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    return fashion_toy_checkpoint(tmp_path_factory.mktemp("model") / "toy.safetensors")


run = run_toy_study  # a small study of the toy checkpoint


def test_the_sanity_study_is_each_images_checks_added_to_a_finished_study_and_resumes(
    toy_checkpoint, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "study"
    assert run(toy_checkpoint, out) == 0
    before = json.loads((out / "study.json").read_text())
    assert run(toy_checkpoint, out, "--sanity-only", "--sanity", "1", "--split", "train", "--resume") == 2
    assert "holds a different study (split differ)" in capsys.readouterr().err  # not merged into this one
    assert json.loads((out / "study.json").read_text()) == before and not (out / "sanity").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("the finished interventions were measured again")

    monkeypatch.setattr(analysis.cli.study, "measure_batch", refuse)
    real = analysis.cli.study.measure_sanity
    calls = []

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis.cli.study, "measure_sanity", interrupted)
    assert run(toy_checkpoint, out, "--sanity", "6") == 2  # a part added to a finished study is a resume
    assert "add --resume to continue it" in capsys.readouterr().err
    assert run(toy_checkpoint, out, "--sanity", "6", "--resume") == 130  # after the first 4 images
    assert "sanity" not in json.loads((out / "study.json").read_text())
    monkeypatch.setattr(analysis.cli.study, "measure_sanity", real)
    capsys.readouterr()
    assert run(toy_checkpoint, out, "--sanity", "6", "--resume") == 0  # only what is missing
    assert "the finished interventions of 8 images, the sanity checks of 4 of 6" in capsys.readouterr().err
    found = json.loads((out / "study.json").read_text())
    assert {k: v for k, v in found.items() if k in before} == before  # the interventions' part as it was
    model, x = first_images(toy_checkpoint, 6)
    rows, entries = method_rows(model), sanity_entries(model)
    assert len(found["sanity"]) == len(entries) * len(rows) and found["sanity_images"] == 6
    assert entries[0] == ("cascading", "head") and entries[-1] == ("random_logit", None)
    assert [e for e, _ in entries].count("independent") == len(parts(model))
    with np.load(out / "study.npz") as arrays:
        values, robust = arrays["sanity_values"], arrays["robustness_values"]
        assert "intervention_drop" in arrays.files  # the interventions' arrays are kept
    assert values.shape == (6, len(entries), len(rows), len(MEASURES) + 1)
    for i in (0, 5):  # the first and, measured after the interruption, the last image
        report = sanity_checks(model, x[i : i + 1], rows=rows, seed=0)
        for result in report.results:
            e = entries.index((result.test, result.randomised))
            r = rows.index((result.method, result.stage))
            alone = [getattr(result, key) for key in MEASURES] + [float(result.constant)]
            np.testing.assert_allclose(values[i, e, r], alone, rtol=1e-4, atol=1e-5)
        alone = [[f.max_sensitivity, f.local_lipschitz] for f in robustness(model, x[i : i + 1], seed=0)]
        np.testing.assert_allclose(robust[i], alone, rtol=1e-4, atol=1e-5)
    entry = next(e for e in found["sanity"] if e["test"] == "cascading" and e["method"] == "gradcam"
                 and e["stage"] == "S4" and e["randomised"] == "S0")  # fmt: skip
    column = values[:, entries.index(("cascading", "S0")), rows.index(("gradcam", "S4"))]
    assert entry["spearman_abs"] == pytest.approx(float(column[:, 1].mean()), rel=1e-6)
    assert entry["std"]["ssim"] == pytest.approx(float(column[:, 2].std()), rel=1e-5, abs=1e-7)
    assert entry["constant"] == int(column[:, -1].sum()) and entry["n_images"] == 6
    logit = [e for e in found["sanity"] if e["test"] == "random_logit"]
    assert all(e["randomised"] is None for e in logit)
    rollout = next(e for e in logit if e["method"] == "rollout")
    assert rollout["spearman_abs"] == pytest.approx(1.0)  # class-agnostic: 1 by construction
    assert [(r["method"], r["stage"]) for r in found["robustness"]] == rows
    assert all(r["radius"] == 0.1 and r["n_samples"] == 8 and r["n_images"] == 6 for r in found["robustness"])
    assert all(v is not None and np.isfinite(v) for e in found["sanity"] for v in (e["spearman"], e["hog"]))
    assert "Sanity checks" in (out / "study.html").read_text()
    files = {name: (out / name).read_bytes() for name in ("study.json", "study.npz", "study.html")}
    assert run(toy_checkpoint, out, "--sanity", "6", "--resume") == 0  # everything there: nothing measured
    assert len(calls) == 1
    assert {name: (out / name).read_bytes() for name in files} == files  # nor written again


def test_a_sanity_only_study_loads_draws_and_refuses_another_protocol(toy_checkpoint, tmp_path, capsys):
    out = tmp_path / "only"
    assert run(toy_checkpoint, out, "--sanity-only", "--sanity", "1") == 0
    study = load_study(out)
    assert study.baseline is None and study.sanity_images == 1
    assert [s.title for s in study_sections(study)] == ["Sanity checks"]
    assert len(study_sections(study)[0].figures) == 4
    assert run(toy_checkpoint, out, "--sanity-only", "--sanity", "1", "--split", "train", "--resume") == 2
    assert "holds a different study (split differ)" in capsys.readouterr().err
    alone = json.loads((out / "study.json").read_text())
    assert run(toy_checkpoint, out, "--resume") == 0  # its interventions, added: the sanity part is kept
    both = json.loads((out / "study.json").read_text())
    assert "baseline" in both and all(both[k] == v for k, v in alone.items() if k.startswith("sanity"))
    with np.load(out / "study.npz") as arrays:
        assert {"sanity_values", "robustness_values", "intervention_drop"} <= set(arrays.files)
