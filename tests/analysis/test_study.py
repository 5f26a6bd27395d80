"""``coatnet study`` and analysis.studies.study: the baseline is coatnet eval's, copies of one image give that
image's numbers with zero spread, a resumed study and two torchrun processes give an unbroken run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import analysis.cli.study
from analysis.studies.study import HEAD_METRICS, concatenate, measure_batch, study_plan, summarise
from coatnet import for_inference
from coatnet.cli.commands import main
from tests.support import processes
from tests.support.studies import assert_close_json
from tests.support.system import skip_unless
from tests.support.toys import fashion_toy_checkpoint, images, toy

ROOT = Path(__file__).resolve().parents[2]
needs_data = pytest.mark.needs("fashion-mnist")
# with the ledger of the first 8 images: its part runs after the interventions, under torchrun too
ARGS = ["--model", "demo-pre", "--limit", "40", "--batch-size", "16", "--ledger", "8", "--quiet"]
TIMES = ("wall_s_this_run", "compute_s", "command", "processes", "ledger_wall_s_this_run", "ledger_compute_s",
         "ledger_command")  # fmt: skip


def study(out: Path, *extra: str) -> dict:
    assert main(["study", *ARGS, "--out", str(out), *extra]) == 0
    return json.loads((out / "study.json").read_text())


def without_times(found: dict) -> dict:
    return {k: v for k, v in found.items() if k not in TIMES}


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> tuple[Path, dict]:
    skip_unless("fashion-mnist")
    out = tmp_path_factory.mktemp("study") / "unbroken"
    return out, study(out)


@needs_data
def test_the_study_holds_every_intervention_head_and_stage_and_coatnet_evals_baseline(unbroken, tmp_path):
    out, found = unbroken
    assert main(["eval", "demo-pre", "--limit", "40", "--batch-size", "16", "--quiet",
                 "--json", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert found["baseline"]["top1"] == evaluated["top1"]
    assert abs(found["baseline"]["loss"] - evaluated["loss"]) < 1e-5
    assert found["baseline"]["n_images"] == 40
    kinds = {(r["block"], r["kind"]) for r in found["interventions"]}
    # demo-pre: S1.0, S2.0, S2.1 MBConv; S3.0, S3.1 (4 heads), S4.0 (8 heads) attention
    for block in ("S1.0", "S2.0", "S2.1"):
        assert {(block, "zero_branch"), (block, "no_se")} <= kinds
    for block in ("S3.0", "S3.1", "S4.0"):
        assert {(block, k) for k in ("content_only", "bias_only", "uniform", "swap_normalization")} <= kinds
    knockouts = [r for r in found["interventions"] if r["kind"] == "knockout"]
    assert len(knockouts) == 4 + 4 + 8 and all(len(r["heads"]) == 1 for r in knockouts)
    for r in found["interventions"]:
        assert 0 <= r["top1"] <= 1 and r["delta_top1"] == pytest.approx(r["top1"] - found["baseline"]["top1"])
    assert len(found["heads"]) == 16 and set(found["heads"][0]["mean_distance_px"]) == {
        "effective",
        "content",
        "bias",
    }
    assert [s["stage"] for s in found["stages"]] == ["S0", "S1", "S2", "S3", "S4"]
    assert found["versions"]["torch"] and found["device"] == "cpu" and found["command"] is None
    assert (out / "study.npz").exists() and "plotly" in (out / "study.html").read_text()[:10_000_000].lower()


@needs_data
def test_a_resumed_study_equals_an_unbroken_one(unbroken, tmp_path, monkeypatch, capsys):
    out, expected = unbroken
    calls = []
    real = analysis.cli.study.measure_batch

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis.cli.study, "measure_batch", interrupted)
    assert main(["study", *ARGS, "--out", str(tmp_path / "b")]) == 130
    assert not (tmp_path / "b" / "study.json").exists()
    monkeypatch.setattr(analysis.cli.study, "measure_batch", real)
    assert main(["study", *ARGS, "--out", str(tmp_path / "b")]) == 2  # one line, nothing lost
    assert "add --resume to continue it" in capsys.readouterr().err
    resumed = study(tmp_path / "b", "--resume")
    assert without_times(resumed) == without_times(expected)
    with np.load(tmp_path / "b" / "study.npz") as a, np.load(out / "study.npz") as b:
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in b.files)


@needs_data
@pytest.mark.slow
def test_two_gloo_processes_give_one_processs_result(unbroken, tmp_path):
    _, expected = unbroken
    command = ["-m", "coatnet", "study", *ARGS, "--device", "cpu", "--out", str(tmp_path / "two")]
    done = processes.torchrun(*command, preload=("coatnet.cli", "analysis.cli.study"))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((tmp_path / "two" / "study.json").read_text())
    assert found["processes"] == 2
    # LRP's relevance sums many products of both signs in float32: one thread a process rounds a stage's
    # total up to about 1e-4 apart (measured: 1.1e-4 on S1's spread)
    assert_close_json(found.pop("ledger"), expected["ledger"], "study.ledger", rel=1e-3)
    assert_close_json(
        without_times(found), without_times({k: v for k, v in expected.items() if k != "ledger"})
    )


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_copies_of_one_image_give_its_single_image_numbers_with_zero_spread(mode):
    model = toy(attention=mode)
    plan = study_plan(model, (16, 16))
    one = images(1)
    runner = for_inference(model)
    labels = torch.tensor([3])
    single = summarise(model, plan, measure_batch(model, runner, one, labels, plan))
    copies = summarise(model, plan, concatenate([measure_batch(model, runner, one.repeat(5, 1, 1, 1),
                                                               labels.repeat(5), plan)]))  # fmt: skip
    assert copies["baseline"]["n_images"] == 5
    for a, b in zip(single["interventions"], copies["interventions"], strict=True):
        assert a["top1"] == b["top1"] and b["mean_logit_drop"] == pytest.approx(
            a["mean_logit_drop"], abs=1e-4
        )
    for a, b in zip(single["heads"], copies["heads"], strict=True):
        for key in ("mean_distance_px", "entropy"):
            for part in ("effective", "content", "bias"):
                assert b[key][part]["mean"] == pytest.approx(a[key][part]["mean"], rel=1e-5)
                assert b[key][part]["std"] == pytest.approx(0.0, abs=1e-5)
    for a, b in zip(single["stages"], copies["stages"], strict=True):
        assert a["erf_side_50_px"] == b["erf_side_50_px"]
        assert np.allclose(a["frequency_profile"], b["frequency_profile"], rtol=1e-3, atol=1e-4)
    assert len(HEAD_METRICS) == 7


def test_knocking_out_nothing_that_matters_costs_nothing_in_the_study():
    """A head whose output projection columns are zero: its knockout changes no logit (drop 0)."""
    model = toy()
    with torch.no_grad():
        model.stages[2].blocks[0].attn.proj.weight[:, :8] = 0  # head 0 of S3.0
    plan = study_plan(model, (16, 16))
    arrays = measure_batch(model, for_inference(model), images(4), torch.tensor([0, 1, 2, 3]), plan)
    index = next(
        i for i, item in enumerate(plan.interventions) if item.block == "S3.0" and item.heads == (0,)
    )
    assert np.abs(arrays["intervention_drop"][index]).max() < 1e-5


@needs_data
def test_resuming_a_different_study_is_refused_and_keeps_what_is_there(tmp_path, capsys):
    study(tmp_path / "s", "--limit", "16")
    assert main(["study", *ARGS, "--out", str(tmp_path / "s"), "--resume", "--limit", "24"]) == 2
    assert "holds a different study (limit, n_images differ)" in capsys.readouterr().err
    assert json.loads((tmp_path / "s" / "study.json").read_text())["baseline"]["n_images"] == 16


@needs_data
@pytest.mark.slow
def test_a_study_killed_with_sigkill_resumes_to_the_unbroken_result(unbroken, tmp_path):
    """SIGKILL mid-run: the batches written so far are whole (written atomically), --resume does the rest."""
    import signal
    import time

    _, expected = unbroken
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "coatnet", "study", *ARGS, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with processes.started(command, env=env, **quiet) as process:
        deadline = time.monotonic() + 120
        while not (out / "batches" / "00000.npz").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert not (out / "study.json").exists()  # killed before the end
    # the first batch ran with one thread, the rest with two: the same up to rounding
    assert_close_json(without_times(study(out, "--resume")), without_times(expected))


@pytest.mark.slow
@needs_data
def test_the_faithfulness_of_every_explanation_is_measured_on_the_first_images(tmp_path):
    """--faithfulness N: study.json's faithfulness rows over the first N images, each image's scores those
    analysis.faithfulness gives for it alone."""
    from analysis import faithfulness, load_model
    from coatnet.data.datasets import open_for_model

    out = tmp_path / "faith"
    checkpoint = str(fashion_toy_checkpoint(tmp_path / "toy.safetensors"))  # 8 px: the protocol, cheaply
    assert main(["study", "--model", checkpoint, "--limit", "20", "--batch-size", "16", "--quiet",
                 "--faithfulness", "2", "--out", str(out)]) == 0  # fmt: skip
    found = json.loads((out / "study.json").read_text())
    rows = found["faithfulness"]
    assert [(r["method"], r["stage"]) for r in rows][:4] == [
        ("random", None), ("rollout", None), ("relevance", None), ("grad_rollout", None)
    ]  # fmt: skip
    assert {r["n_images"] for r in rows} == {2} and found["faithfulness_protocol"]["steps"] == 16
    for r in rows:
        assert r["road"] == pytest.approx((r["road_lerf"] - r["road_morf"]) / 2)
    low, high = rows[0]["seed_range"]["deletion_auc"]
    assert low <= rows[0]["deletion_auc"] <= high
    model = load_model(checkpoint)
    pre = analysis.cli.study.preprocessing_of(model)
    dataset = open_for_model("fashion-mnist", "test", model, pre)
    with np.load(out / "study.npz") as arrays:
        scores = arrays["faith_scores"]
    assert scores.shape[:2] == (2, len(rows))
    image = dataset.subset(1)
    from coatnet.data.batches import iterate_batches, normalize, prepare_batch

    (pictures, _), *_ = iterate_batches(image, torch.arange(1), 1, workers=0)
    report = faithfulness(model, normalize(prepare_batch(pictures, pre, device="cpu"), pre))
    alone = [[r.deletion_auc, r.insertion_auc, r.road_morf, r.road_lerf] for r in report.results]
    np.testing.assert_allclose(scores[0], alone, rtol=1e-4, atol=1e-5)
    assert "Faithfulness" in (out / "study.html").read_text()
