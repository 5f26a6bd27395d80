"""``coatnet study --ledger``: each image's relevance ledger is :func:`analysis.lrp`'s for that image;
added to a finished study only the ledger part runs; interrupted, it resumes to the unbroken result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import analysis
import analysis.cli.study
from analysis import load_study
from coatnet.cli.commands import main
from tests.support.studies import first_images, run_toy_study
from tests.support.toys import fashion_toy_checkpoint

pytestmark = pytest.mark.needs("fashion-mnist")


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    return fashion_toy_checkpoint(tmp_path_factory.mktemp("model") / "toy.safetensors")


run = run_toy_study  # a small study of the toy checkpoint


def test_the_ledger_is_each_images_lrp_added_to_a_finished_study_and_resumes(
    toy_checkpoint,
    tmp_path,
    monkeypatch,
    capsys,
):
    out = tmp_path / "study"
    assert run(toy_checkpoint, out) == 0
    before = json.loads((out / "study.json").read_text())

    def refuse(*args, **kwargs):
        raise AssertionError("the finished interventions were measured again")

    monkeypatch.setattr(analysis.cli.study, "measure_batch", refuse)
    monkeypatch.setattr(analysis.cli.study, "LEDGER_CHUNK", 4)
    real = analysis.cli.study.measure_ledger
    calls = []

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis.cli.study, "measure_ledger", interrupted)
    assert run(toy_checkpoint, out, "--ledger", "6", "--resume") == 130  # after the first 4 images
    assert "ledger" not in json.loads((out / "study.json").read_text())
    monkeypatch.setattr(analysis.cli.study, "measure_ledger", real)
    capsys.readouterr()
    assert run(toy_checkpoint, out, "--ledger", "6", "--resume") == 0  # only what is missing
    assert "the finished study of 8 images, the ledger of 4 of 6 images" in capsys.readouterr().err
    found = json.loads((out / "study.json").read_text())
    assert {k: v for k, v in found.items() if k in before} == before  # the interventions' part as it was
    assert found["ledger_images"] == 6 and set(found["ledger"]) == {"attnlrp", "cp"}
    model, x = first_images(toy_checkpoint, 6)
    parts = [str(p.name) for p in model.parts()]
    for rule in ("attnlrp", "cp"):
        alone = [analysis.lrp(model, x[i : i + 1], rule=rule) for i in range(6)]
        rows = found["ledger"][rule]["rows"]
        assert [r["part"] for r in rows] == parts
        for j, row in enumerate(rows):
            branch, logit = (np.array([a.ledger[j].branch[0] for a in alone]),
                             np.array([a.logit[0] for a in alone]))  # fmt: skip
            assert row["branch"]["mean"] == pytest.approx(branch.sum() / logit.sum(), rel=1e-4, abs=1e-6)
            steady = np.abs(logit) >= 0.1 * np.abs(logit).mean()
            shares = branch[steady] / logit[steady]
            assert row["branch"]["std"] == pytest.approx(float(shares.std()), rel=1e-3, abs=1e-6)
            assert ("content" in row) == (row["kind"] == "attention")
        kept = found["ledger"][rule]["absorbed"]
        stem = next(row["branch"]["mean"] for row in rows if row["kind"] == "stem")  # what reaches the stem
        reached = sum(a.stages["S0"].sum() for a in alone) / sum(a.logit[0] for a in alone)
        assert stem == pytest.approx(float(reached), rel=1e-4)
        assert set(kept) == {"bias", "epsilon", "softmax", "position"}
    assert load_study(out).ledger_images == 6
    files = {name: (out / name).read_bytes() for name in ("study.json", "study.npz", "study.html")}
    assert run(toy_checkpoint, out, "--ledger", "6", "--resume") == 0  # everything there: nothing measured
    assert {name: (out / name).read_bytes() for name in files} == files  # nor written again


def test_a_sanity_only_study_takes_the_ledger_after_its_checks(toy_checkpoint, tmp_path):
    out = tmp_path / "only"
    assert main(["study", "--model", str(toy_checkpoint), "--limit", "8", "--quiet", "--out", str(out),
                 "--sanity-only", "--sanity", "1", "--ledger", "2"]) == 0  # fmt: skip
    found = json.loads((out / "study.json").read_text())
    assert found["ledger_images"] == 2 and found["sanity_images"] == 1 and "baseline" not in found
    assert load_study(out).ledger["cp"]["rows"][0]["part"] == "S0"
