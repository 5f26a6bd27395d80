"""The layout study: five models of matching size with the layouts they claim, equal steps at every size,
seeded subsets, an end-to-end study on a tiny subset, and a resumed study equal to an unbroken one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import coatnet
from coatnet.cli.commands import main
from coatnet.data.datasets import sample_indices
from coatnet.model.complexity import count_params
from coatnet.training.layouts import LAYOUT_MODELS, LayoutStudySettings, run_layout_study
from tests.support import processes
from tests.support.system import skip_unless

ROOT = Path(__file__).resolve().parents[2]
needs_data = pytest.mark.needs("fashion-mnist")
# two layouts (one with an attention stage pooled from S2, one patch-stem ViT_REL), two sizes, four steps
TINY = ["--layouts", "C-C-T-T", "ViT_REL", "--sizes", "100", "200", "--steps", "4", "--batch-size", "50",
        "--test-limit", "100", "--quiet"]  # fmt: skip


def test_the_five_models_have_their_layouts_and_parameters_within_15_percent() -> None:
    counts = {}
    for layout, name in LAYOUT_MODELS.items():
        model = coatnet.create_model(name, in_chans=1)
        assert model.config.layout == layout
        info = model.stage_info((28, 28))
        assert tuple(info[3].grid) == (7, 7)  # the same S3 grid in every layout
        counts[layout] = count_params(model)
    assert max(counts.values()) / min(counts.values()) <= 1.15, counts
    assert min(counts.values()) >= 300_000 and max(counts.values()) <= 500_000


def test_every_run_takes_the_same_steps_and_warm_up() -> None:
    settings = LayoutStudySettings()
    for size in settings.sizes:
        run = settings.run_settings("C-C-T-T", size)
        per_epoch = size // run.batch_size
        assert run.epochs * per_epoch == settings.steps
        assert run.warmup_epochs * per_epoch == pytest.approx(settings.warmup_steps)
        assert run.eval_every == run.epochs and run.subset_seed == settings.seed
    with pytest.raises(ValueError, match="not whole epochs"):
        LayoutStudySettings(sizes=(300,), steps=4)
    with pytest.raises(ValueError, match="unknown layout"):
        LayoutStudySettings(layouts=("T-T-T-T",))
    with pytest.raises(ValueError, match="given twice"):
        LayoutStudySettings(sizes=(2000, 2000))
    with pytest.raises(ValueError, match="at least 1"):
        LayoutStudySettings(steps=0)


@needs_data
def test_a_size_over_the_training_set_is_refused_before_anything_trains(tmp_path) -> None:
    settings = LayoutStudySettings(layouts=("C-C-T-T",), sizes=(70000,), steps=700)
    with pytest.raises(ValueError, match="more than the 60000 training images"):
        run_layout_study(settings, tmp_path / "study")
    assert not (tmp_path / "study" / "runs").exists()


def test_subsets_are_drawn_with_a_seed_in_dataset_order() -> None:
    first = sample_indices(1000, 10, None)
    assert first.tolist() == list(range(10))
    drawn = sample_indices(1000, 10, 3)
    assert torch.equal(drawn, sample_indices(1000, 10, 3)) and not torch.equal(
        drawn, sample_indices(1000, 10, 4)
    )
    assert drawn.tolist() == sorted(drawn.tolist()) and len(set(drawn.tolist())) == 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny study, run once for the module (its folder)."""
    skip_unless("fashion-mnist")
    out = tmp_path_factory.mktemp("layouts") / "study"
    assert main(["study-layouts", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.slow
@needs_data
def test_a_tiny_study_runs_end_to_end_and_a_resumed_one_equals_it(tiny: Path, tmp_path) -> None:
    out = tiny
    study = json.loads((out / "layouts.json").read_text())
    runs = study["runs"]
    assert study["processes"] == 1
    assert len(runs) == 4 and {r["layout"] for r in runs} == {"C-C-T-T", "ViT_REL"}
    for r in runs:
        assert r["steps"] == 4 and r["epochs"] == 4 // (r["size"] // 50)
        assert 0.0 <= r["test_top1"] <= 1.0 and r["train_loss"] > 0 and r["parameters"] > 0
        assert r["command"].startswith("coatnet train") and f"--limit {r['size']}" in r["command"]
    assert "Layouts" in (out / "layouts.html").read_text()
    # the test set is scored once, after the last epoch (--eval-every): 2 epochs of 100 images
    metrics = json.loads((out / "runs" / "c-c-t-t-100" / "metrics.json").read_text())
    assert [m["test_top1"] is None for m in metrics] == [True, False]
    # a run killed after its last epoch, before it was scored: scored when the study runs again
    (out / "runs" / "vit-rel-200" / "result.json").unlink()
    assert main(["study-layouts", "--out", str(out), *TINY]) == 2  # it holds a study: --resume continues it
    assert main(["study-layouts", "--out", str(out), "--resume", *TINY]) == 0
    rescored = json.loads((out / "layouts.json").read_text())["runs"]
    assert rescored[:3] == runs[:3] and rescored[3]["test_top1"] == runs[3]["test_top1"]
    assert rescored[3]["train_loss"] == pytest.approx(runs[3]["train_loss"], rel=1e-6)
    # a study stopped before its last run (that run's folder gone: as if killed before it began) ends the same
    again = tmp_path / "again"
    again.mkdir()
    (again / "runs").mkdir()
    for r in runs[:-1]:
        name = f"{r['layout'].lower().replace('_', '-')}-{r['size']}"
        target = again / "runs" / name
        target.mkdir()
        (target / "result.json").write_text((out / "runs" / name / "result.json").read_text())
    (again / "settings.json").write_text((out / "settings.json").read_text())
    assert main(["study-layouts", "--out", str(again), "--resume", *TINY]) == 0
    resumed = json.loads((again / "layouts.json").read_text())["runs"]
    for a, b in zip(runs, resumed, strict=True):
        assert a["test_top1"] == b["test_top1"] and a["train_loss"] == pytest.approx(
            b["train_loss"], rel=1e-6
        )


@pytest.mark.slow
@needs_data
def test_two_torchrun_processes_share_the_runs_and_give_one_processs_study(tiny: Path, tmp_path) -> None:
    """Under torchrun (gloo, two CPU processes) each process trains every other run; the first writes
    layouts.json once both are done, with the numbers of a single process (one thread each there, two
    here: the same to one test image and 1e-3 of the loss)."""
    out = tmp_path / "two"
    command = ["-m", "coatnet", "study-layouts", "--out", str(out), *TINY, "--device", "cpu"]
    done = processes.torchrun(*command, preload=("coatnet.cli", "analysis.cli.layouts"))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((out / "layouts.json").read_text())
    expected = json.loads((tiny / "layouts.json").read_text())
    assert found["processes"] == 2 and found["settings"] == expected["settings"]
    for a, b in zip(expected["runs"], found["runs"], strict=True):
        assert (a["layout"], a["size"], a["steps"], a["parameters"]) == (
            b["layout"],
            b["size"],
            b["steps"],
            b["parameters"],
        )
        assert b["test_top1"] == pytest.approx(a["test_top1"], abs=0.011)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)


def test_every_spelling_of_a_layout_is_read_from_its_one_row() -> None:
    from coatnet.model.layouts import LAYOUTS, find_layout
    from coatnet.model.variants import LAYOUTS as KIND_LAYOUTS
    from coatnet.training.layouts import run_name
    from coatnet.weights.demos import LAYOUT_NAMES

    assert LAYOUT_MODELS == {
        "C-C-C-C": "layout_c_c_c_c", "C-C-C-T": "layout_c_c_c_t", "C-C-T-T": "layout_c_c_t_t",
        "C-T-T-T": "layout_c_t_t_t", "ViT_REL": "layout_vit_rel",
    }  # fmt: skip
    checkpoints = ("layout-c-c-c-c", "layout-c-c-c-t", "layout-c-c-t-t", "layout-c-t-t-t", "layout-vit-rel")
    assert checkpoints == LAYOUT_NAMES
    assert KIND_LAYOUTS == ("C-C-C-C", "C-C-C-T", "C-C-T-T", "C-T-T-T")
    assert run_name("ViT_REL", 2000) == "vit-rel-2000" and run_name("C-C-T-T", 100) == "c-c-t-t-100"
    for layout in LAYOUTS:
        assert {find_layout(name) for name in layout.spellings} == {layout}
        if layout.kinds is not None:  # the variant of that name is built of those kinds
            assert coatnet.create_model(layout.variant, in_chans=1).config.layout == layout.label
    with pytest.raises(ValueError, match="the layouts are C-C-C-C, C-C-C-T, C-C-T-T, C-T-T-T, ViT_REL"):
        find_layout("T-T-T-T")
