"""One model spec for the report, the app and the command line."""

from __future__ import annotations

import pytest
import torch

import coatnet
from analysis.core.models import ModelSpecError, describe, load_model


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
    with pytest.raises(
        ModelSpecError, match=r"give a built-in name \(demo-pre, demo-post[^)]*\), a \.safetensors checkpoint"
    ):
        load_model("resnet50")


def test_our_checkpoint_that_does_not_fit_names_the_key_not_timm(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = coatnet.save_checkpoint(coatnet.create_model("coatnet_toy").eval(), tmp_path / "toy.safetensors")
    state = load_file(path)
    key = next(k for k in state if k.endswith("attn.qkv.weight"))
    state[key] = torch.zeros(state[key].shape[0] + 3, state[key].shape[1])
    with safe_open(path, "pt") as f:
        save_file(state, tmp_path / "wrong.safetensors", metadata=f.metadata())
    with pytest.raises(coatnet.CheckpointError, match=rf"{key}: file \(99, 16\) vs model \(96, 16\)"):
        load_model(str(tmp_path / "wrong.safetensors"))
    with pytest.raises(coatnet.CheckpointError, match="is a directory"):
        load_model(str(tmp_path))
    # without our metadata it is tried as timm weights, whose fused qkv then fits no arch: a clear error
    save_file(state, tmp_path / "bare.safetensors")
    with pytest.raises(coatnet.CheckpointError, match="nor is it timm CoAtNet weights"):
        load_model(str(tmp_path / "bare.safetensors"))
