"""The shipped ImageNet class names: counts, known answers, and timm's class order."""

from __future__ import annotations

import re

import pytest

from coatnet.weights.class_names import imagenet_class_names, imagenet_synsets, label_space_name
from tests.support.timm import import_timm

COUNTS = (1000, 11821, 21843)


@pytest.mark.parametrize(
    ("num_classes", "space"), [(1000, "imagenet-1k"), (11821, "imagenet-12k"), (21843, "imagenet-21k")]
)
def test_label_spaces_by_class_count(num_classes: int, space: str) -> None:
    assert label_space_name(num_classes) == space
    names, synsets = imagenet_class_names(num_classes), imagenet_synsets(num_classes)
    assert names is not None and synsets is not None
    assert len(names) == len(synsets) == num_classes


@pytest.mark.parametrize("num_classes", [0, 10, 999, 1001, 11221, 21841])
def test_other_counts_have_no_names(num_classes: int) -> None:
    assert label_space_name(num_classes) is None
    assert imagenet_class_names(num_classes) is None
    assert imagenet_synsets(num_classes) is None


@pytest.mark.parametrize(
    ("index", "synset", "name"),
    [
        (0, "n01440764", "tench, Tinca tinca"),
        (1, "n01443537", "goldfish, Carassius auratus"),
        (207, "n02099601", "golden retriever"),
        (281, "n02123045", "tabby, tabby cat"),
        (999, "n15075141", "toilet tissue, toilet paper, bathroom tissue"),
    ],
)
def test_imagenet1k_known_answers(index: int, synset: str, name: str) -> None:
    assert imagenet_synsets(1000)[index] == synset
    assert imagenet_class_names(1000)[index] == name


def test_imagenet12k_known_answers() -> None:
    names, synsets = imagenet_class_names(11821), imagenet_synsets(11821)
    assert (synsets[0], names[0]) == ("n00005787", "benthos")
    assert names[-1] == "knothole"
    # timm's 12k subset is sorted by synset id and holds all but 7 of the ImageNet-1k classes
    assert list(synsets) == sorted(synsets)
    assert len(set(imagenet_synsets(1000)) - set(synsets)) == 7


@pytest.mark.parametrize("num_classes", COUNTS)
def test_names_are_clean_and_synsets_unique(num_classes: int) -> None:
    names, synsets = imagenet_class_names(num_classes), imagenet_synsets(num_classes)
    assert all(name and name == name.strip() and "\t" not in name for name in names)
    assert all(re.fullmatch(r"n\d{8}", s) for s in synsets)
    assert len(set(synsets)) == num_classes
    # WordNet reuses a few lemmas for different synsets (in1k: "crane" the bird and the machine)
    assert len(set(names)) >= 0.97 * num_classes


def test_crane_is_the_one_repeated_imagenet1k_name() -> None:
    names = imagenet_class_names(1000)
    assert [i for i, n in enumerate(names) if n == "crane"] == [134, 517]
    assert len(set(names)) == 999


def test_results_are_cached_tuples() -> None:
    assert isinstance(imagenet_class_names(1000), tuple)
    assert imagenet_class_names(1000) is imagenet_class_names(1000)


@pytest.mark.timm
@pytest.mark.parametrize(
    ("subset", "num_classes"), [("imagenet-1k", 1000), ("imagenet-12k", 11821), ("imagenet-21k-goog", 21843)]
)
def test_order_matches_timm(subset: str, num_classes: int) -> None:
    timm = import_timm()
    info = timm.data.ImageNetInfo(subset)
    assert info.num_classes() == num_classes
    # timm calls Google's 21k release "imagenet-21k-goog"; it is the only 21,843-class space
    assert timm.data.infer_imagenet_subset({"num_classes": num_classes}).removesuffix(
        "-goog"
    ) == label_space_name(num_classes)
    assert list(imagenet_synsets(num_classes)) == info.label_names()
    assert list(imagenet_class_names(num_classes)) == info.label_descriptions()


@pytest.mark.timm
def test_timm_in12k_heads_use_this_label_space() -> None:
    timm = import_timm()
    from timm.models import get_pretrained_cfg

    assert get_pretrained_cfg("coatnet_2_rw_224.sw_in12k").num_classes == 11821
    assert get_pretrained_cfg("coatnet_2_rw_224.sw_in12k_ft_in1k").num_classes == 1000
    assert timm.__version__
