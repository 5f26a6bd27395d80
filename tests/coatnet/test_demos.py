"""The built-in demo checkpoints: shipped, small, paired, trained, and as good as their model cards say."""

from __future__ import annotations

import json
import re

import pytest
import torch

from coatnet import count_params, load_checkpoint, read_checkpoint_info, record_attention
from coatnet.cli.commands import main
from coatnet.data.datasets import fashion_mnist
from coatnet.training.evaluation import evaluate
from coatnet.weights.demos import demo

needs_fashion_mnist = pytest.mark.needs("fashion-mnist")
DEMOS = ("demo-pre", "demo-post")  # the pre/post pair; the layout study's models: test_layout_checkpoints.py
MAXVIT = "demo-maxvit"  # block and grid attention at every stage, trained with the pair's recipe


def card_accuracy(name: str) -> float:
    match = re.search(r"\| test top-1 \| ([0-9.]+)% \(10000 images\)", demo(name).model_card)
    assert match, f"{name}'s model card gives no test accuracy on the 10,000 test images"
    return float(match.group(1)) / 100


@pytest.mark.parametrize("name", DEMOS)
def test_each_demo_is_shipped_small_and_loads_by_name(name):
    files = demo(name)
    assert files.checkpoint.stat().st_size <= 10 * 2**20
    model = load_checkpoint(name)
    assert model is not load_checkpoint(name.upper().replace("-", "_"))  # names match loosely
    info = model.checkpoint_info
    assert info.config.attention == name.removeprefix("demo-") == info.trained_attention
    assert info.class_names[0] == "T-shirt/top" and len(info.class_names) == 10
    assert info.preprocessing.channels == 1 and info.provenance["dataset"] == "fashion-mnist"
    assert info.provenance["command"].startswith("coatnet train ")
    stages = {s.name: s for s in model.stage_info()}
    assert stages["S3"].kind == "T" and min(stages["S3"].grid) >= 7  # attention worth looking at
    assert count_params(model) < 2.5e6


def test_the_two_demos_differ_only_in_attention_normalization():
    pre, post = (read_checkpoint_info(n).config for n in DEMOS)
    assert pre.replace(attention="post") == post
    commands = [read_checkpoint_info(n).provenance["command"] for n in DEMOS]
    assert commands[0].replace("pre", "post") == commands[1]  # --out runs/demo-pre, --attention pre


def test_demo_maxvit_is_shipped_windowed_and_loads_by_name():
    files = demo(MAXVIT)
    assert files.checkpoint.stat().st_size <= 16 * 2**20  # 3.4M float32 parameters
    model = load_checkpoint("Demo_MaxViT")
    info = model.checkpoint_info
    assert info.config.name == "maxvit_pico" and info.config.windowed
    assert info.class_names[0] == "T-shirt/top" and len(info.class_names) == 10
    assert info.preprocessing == read_checkpoint_info("demo-pre").preprocessing  # the demos' 28 px grey input
    assert info.provenance["dataset"] == "fashion-mnist"
    assert "--model maxvit_pico" in info.provenance["command"]
    # the card's choice: 14x14 grids at S1-S2 with P = G = 7, so block and grid attention differ there
    stages = {s.name: s for s in model.stage_info()}
    assert stages["S1"].grid == stages["S2"].grid == (14, 14) and stages["S3"].grid == (7, 7)
    assert model.config.partition_sizes((28, 28)) == (7, 7)
    card = files.model_card
    assert "14x14" in card and "P = G = 7" in card and "## Why this model" in card
    with torch.no_grad(), record_attention() as records:
        model(torch.zeros(1, 1, 28, 28))
    first = [r for r in records if r.name.startswith("S1.0.")]
    assert [(r.partition, r.grid, r.windows) for r in first] == [("block", (7, 7), 4), ("grid", (7, 7), 4)]


@pytest.mark.parametrize("name", (*DEMOS, MAXVIT))
def test_metrics_and_model_card_agree_with_the_checkpoint(name):
    files = demo(name)
    rows = files.metrics()
    info = read_checkpoint_info(name)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1]["epoch"] == info.provenance["epochs"]
    assert rows[-1]["test_top1"] == pytest.approx(info.provenance["test_top1"])
    assert card_accuracy(name) == pytest.approx(rows[-1]["test_top1"], abs=5e-5)
    assert card_accuracy(name) >= 0.91
    assert info.provenance["command"] in files.model_card
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("name", ["demo-pre", "demo-post"])
def test_eval_reproduces_the_model_card(name, tmp_path, capsys):
    # each card gives its first 2,000 test images' figure beside the whole test set's, which the same
    # command checks in a fifth of the time (the whole set: 20 s on one core; `coatnet eval demo-pre --data
    # fashion-mnist` gives the card's 91.16%); the card's whole-set figure is the training run's own
    # (test_metrics_and_model_card_agree_with_the_checkpoint)
    limit = 2000
    out = tmp_path / "eval.json"
    # batches of 64: on one core a third faster than the default 256 for these 28 px models
    flags = ["--batch-size", "64", "--json", str(out), "--quiet", "--limit", str(limit)]
    assert main(["eval", name, "--data", "fashion-mnist", *flags]) == 0
    result = json.loads(out.read_text())
    assert result["count"] == limit
    match = re.search(rf"\| test top-1, first {limit} test images \| ([0-9.]+)% \|", demo(name).model_card)
    assert match and result["top1"] == pytest.approx(float(match.group(1)) / 100, abs=5e-5)
    assert sum(map(sum, result["confusion"])) == limit and len(result["per_class"]) == 10
    assert f"top-1 {100 * result['top1']:.2f}%" in capsys.readouterr().out


@needs_fashion_mnist
def test_demo_maxvit_gives_its_cards_accuracy_on_the_first_500_test_images():
    # the whole test set takes 30 s here (coatnet eval demo-maxvit reproduces the card's 92.21%): the card
    # also gives the first 500 images' figure, which this checks in 2 s
    model = load_checkpoint(MAXVIT)
    result = evaluate(
        model, fashion_mnist("test").subset(500), model.checkpoint_info.preprocessing, progress=False
    )
    match = re.search(r"\| test top-1, first 500 test images \| ([0-9.]+)% \|", demo(MAXVIT).model_card)
    assert match and result.count == 500
    assert result.top1 == pytest.approx(float(match.group(1)) / 100, abs=5e-5)


@needs_fashion_mnist
def test_demo_predicts_test_images_from_the_python_api():
    model = load_checkpoint("demo-pre")
    test = fashion_mnist("test").subset(256)
    result = evaluate(model, test, model.checkpoint_info.preprocessing, progress=False)
    assert result.top1 > 0.85
    assert not model.training and all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_info_and_eval_name_the_built_in_checkpoints(capsys):
    assert main(["info", "demo-post"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint" in out and "7x7" in out and "post-normalization" in out
    assert main(["eval", "demo-missing"]) == 2
    assert "give a built-in name (demo-pre, demo-post" in capsys.readouterr().err  # the one grammar's line
