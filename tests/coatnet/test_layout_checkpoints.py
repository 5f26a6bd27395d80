"""The layout study's built-in checkpoints (``layout-c-c-c-c`` .. ``layout-vit-rel``): shipped, small,
loadable by name, of the layout they claim, trained on all 60,000 images as the shipped layouts.json
says, and as good on the first 500 test images as their model cards say."""

from __future__ import annotations

import re

import pytest

from analysis.studies.layouts import load_layouts
from coatnet import count_params, load_checkpoint
from coatnet.data.datasets import fashion_mnist
from coatnet.training.evaluation import evaluate
from coatnet.weights.demos import LAYOUT_NAMES, NAMES, demo

LAYOUTS = dict(zip(LAYOUT_NAMES, ("C-C-C-C", "C-C-C-T", "C-C-T-T", "C-T-T-T", "ViT_REL"), strict=True))
needs_fashion_mnist = pytest.mark.needs("fashion-mnist")


def card_accuracy(name: str, images: str) -> float:
    """The model card's test top-1 on ``images`` ("all 10,000" or "first 500") test images."""
    match = re.search(rf"\| test top-1, {images} test images \| ([0-9.]+)% \|", demo(name).model_card)
    assert match, f"{name}'s model card gives no test top-1 on the {images} test images"
    return float(match.group(1)) / 100


def test_every_layout_is_shipped() -> None:
    assert set(LAYOUT_NAMES) <= set(NAMES)


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_each_layout_model_loads_by_name_and_has_its_layout(name: str) -> None:
    files = demo(name)
    assert files.checkpoint.stat().st_size <= 4 * 2**20
    model = load_checkpoint(name.upper().replace("-", "_"))  # names match loosely, as the demos'
    info = model.checkpoint_info
    assert model.config.layout == LAYOUTS[name]
    kinds = [s.kind for s in model.stage_info((28, 28))]
    expected = (
        ["patch", "T", "T", "T", "T"] if name == "layout-vit-rel" else ["conv", *LAYOUTS[name].split("-")]
    )
    assert kinds == expected
    assert tuple(model.stage_info((28, 28))[3].grid) == (7, 7)
    assert info.class_names[0] == "T-shirt/top" and info.preprocessing.size == (28, 28)
    assert info.provenance["settings"]["train_subset"] == 60000 and info.provenance["step"] == 600
    assert 300_000 <= count_params(model) <= 500_000


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_card_metrics_and_the_shipped_study_agree(name: str) -> None:
    files = demo(name)
    run = next(r for r in load_layouts().runs if r.layout == LAYOUTS[name] and r.size == 60000)
    assert files.metrics()[-1]["step"] == run.steps == 600
    # the card's figure comes from its own evaluation of the shipped file, the study's from training's
    assert card_accuracy(name, "all 10,000") == pytest.approx(run.test_top1, abs=5e-5)
    assert run.command in files.model_card and f"| layout | {LAYOUTS[name]} |" in files.model_card


@needs_fashion_mnist
@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_the_first_500_test_images_give_the_cards_accuracy(name: str) -> None:
    model = load_checkpoint(name)
    first = fashion_mnist("test").subset(500)
    result = evaluate(model, first, model.checkpoint_info.preprocessing, progress=False)
    assert result.count == 500
    assert result.top1 == pytest.approx(card_accuracy(name, "first 500"), abs=5e-5)
