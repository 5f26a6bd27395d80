"""A study over the user's own images (analysis.study_image_set) is the dataset study's code on those
images: the same heads, stages and faithfulness as ``coatnet study``'s batches give for them, the
predictions the model gives each image, and the accuracy over the labelled ones alone."""

from __future__ import annotations

import math

import pytest
import torch

import analysis
from analysis import read_folder, study_image_set
from analysis.studies.study import measure_batch, study_plan, summarise
from coatnet import class_names, for_inference
from coatnet.data.batches import normalize, prepare_batch
from coatnet.data.datasets import decode_image
from tests.support.data import demo_image_set
from tests.support.studies import assert_close_json


@pytest.fixture(scope="module")
def demo():
    return analysis.load_model("demo-pre")


def test_a_set_study_equals_the_dataset_study_of_the_same_images(demo, tmp_path):
    images = read_folder(demo_image_set(tmp_path / "mine"), class_names=class_names(demo))
    assert [(i.name, i.label_name) for i in images.images] == [
        ("05-sandal-0008.png", None),
        ("Bag/08-bag-0018.png", "Bag"),
        ("Coat/04-coat-0006.png", "Coat"),
        ("t-shirt_top/00-t-shirt-top-0019.png", "T-shirt/top"),
    ]
    # one image a batch, faithfulness of the first two: the batches are joined as the command joins them
    shares: list[float] = []
    found = study_image_set(
        demo, images, method="rollout", faithfulness_images=2, batch_size=1, progress=shares.append
    )
    assert shares == sorted(shares) and shares[-1] == 1.0 and len(shares) >= 6  # each batch, each faithful

    # each image decoded as an image folder's (coatnet study --data DIR), predicted by the plain model
    pre = analysis.preprocessing_of(demo)
    raw = [decode_image(tmp_path / "mine" / i.name, pre.size, pre.channels, pre.interpolation, pre.crop)
           for i in images.images]  # fmt: skip
    x = normalize(prepare_batch(torch.stack(raw), pre), pre)
    top = [analysis.top_k(analysis.attention_maps(demo, x[i : i + 1]).logits[0], class_names(demo))[0]
           for i in range(len(raw))]  # fmt: skip
    assert [(p.index, p.class_name) for p in found.predictions] == [(t.index, t.name) for t in top]
    assert [p.probability for p in found.predictions] == pytest.approx([t.probability for t in top], abs=1e-5)
    labels = torch.tensor(
        [t.index if i.label is None else i.label for i, t in zip(images.images, top, strict=True)]
    )
    plan = study_plan(demo, pre.size, faithfulness=True, methods=("rollout",), interventions=False)
    arrays = measure_batch(demo, for_inference(demo), x, labels, plan, faithfulness_images=2)
    expected = summarise(demo, plan, arrays)
    got = found.study.to_json()
    for part in ("heads", "stages", "faithfulness"):
        assert_close_json(expected[part], got[part], part)
    assert got["interventions"] == [] and [(r.method, r.stage) for r in found.study.faithfulness] == [
        ("random", None), ("rollout", None),
    ]  # fmt: skip
    assert found.study.faithfulness[0].n_images == found.study.faithfulness_images == 2

    # accuracy over the three labelled images alone; the sandal counts for the heads, not the top-1
    right = [p.index == p.label for p in found.predictions if p.label is not None]
    assert found.labelled == 3 and found.accuracy == sum(right) / 3 == found.study.baseline.top1
    assert found.study.baseline.n_images == 4 and found.predictions[0].correct is None
    assert found.study.baseline.loss == pytest.approx(float(arrays["loss"][1:].mean()), rel=1e-5)


def test_a_set_without_labels_has_no_accuracy_and_a_study_without_faithfulness(demo, tmp_path):
    root = demo_image_set(tmp_path / "mine")
    found = study_image_set(demo, read_folder(root), method=None, batch_size=4)  # the model names no class
    assert found.accuracy is None and found.labelled == 0 and found.method is None
    assert math.isnan(found.study.baseline.top1) and found.study.faithfulness is None
    assert len(found.study.heads) == sum(b.attention.heads for b in study_plan(demo, (28, 28)).heads)
    with pytest.raises(ValueError, match="holds no image to study"):
        study_image_set(demo, analysis.ImageSet((), origin="an empty folder"))


def test_the_study_plan_measures_one_method_beside_the_random_map(demo):
    convolutions = analysis.load_model("layout-c-c-c-c")
    plan = study_plan(demo, (28, 28), faithfulness=True, methods=("gradcam",), interventions=False)
    assert plan.faithfulness == (
        ("random", None),
        *((("gradcam", s)) for s in ("S0", "S1", "S2", "S3", "S4")),
    )
    assert plan.interventions == () and plan.positions == ()
    assert study_plan(demo, (28, 28), faithfulness=True).faithfulness[1:4] == (
        ("rollout", None), ("relevance", None), ("grad_rollout", None),
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown explanation method 'nothing'"):
        study_plan(demo, (28, 28), faithfulness=True, methods=("nothing",))
    with pytest.raises(ValueError, match="rollout reads attention, and this model has no attention block"):
        study_plan(convolutions, (28, 28), faithfulness=True, methods=("rollout",))
