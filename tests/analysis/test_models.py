"""One model spec for the report, the app and the command line."""

from __future__ import annotations

import pytest
import torch

import coatnet
from analysis.models import ModelSpecError, describe, load_model


def test_built_in_names_checkpoints_and_variants(tmp_path):
    demo = load_model("demo-post")
    assert demo.config.attention == "post" and "from fashion-mnist" in describe(demo)
    switched = load_model("demo-post", attention="pre")
    assert "weights trained with post-normalization" in describe(switched)
    torch.manual_seed(0)
    coatnet.save_checkpoint(coatnet.create_model("coatnet_toy"), tmp_path / "toy.safetensors")
    assert load_model(str(tmp_path / "toy.safetensors")).config.name == "coatnet_toy"
    fresh = load_model("coatnet_toy")
    assert not fresh.training and "random weights (untrained)" in describe(fresh)


def test_a_timm_tag_offline_says_how_to_load_the_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(coatnet.HubUnavailableError, match="from_timm"):
        load_model("coatnet_nano_rw_224.sw_in1k")


def test_nothing_by_that_name_lists_what_works():
    with pytest.raises(ModelSpecError, match=r"demo-pre or demo-post, a \.safetensors checkpoint"):
        load_model("resnet50")
