"""A model's parts and their names (coatnet.model.parts): one parser, one walk."""

from __future__ import annotations

import copy
import pickle

import pytest
from torch import nn

import coatnet
from coatnet import PartName
from tests.support.toys import maxvit_toy, toy

NAMES = {  # name -> (stage, block, part, leaf)
    "S0": (0, None, None, None),
    "S3": (3, None, None, None),
    "S3.0": (3, 0, None, None),
    "S1.0.block": (1, 0, "block", None),
    "S1.0.grid": (1, 0, "grid", None),
    "S2.1.dw": (2, 1, None, "dw"),
    "S3.0.attn.weights": (3, 0, None, "attn.weights"),
    "S1.0.conv0.se.gate": (1, 0, "conv0", "se.gate"),
    "S1.0.grid.mlp": (1, 0, "grid", "mlp"),
    "S3.output": (3, None, None, "output"),
    "logits": (None, None, None, "logits"),
}


@pytest.mark.parametrize("text", NAMES)
def test_a_name_parses_to_its_fields_and_formats_back(text: str) -> None:
    name = PartName(text)
    assert (name.stage, name.block, name.part, name.leaf) == NAMES[text]
    assert name == text and hash(name) == hash(text) and str(name) == text
    if name.stage is not None:
        assert PartName.of(name.stage, name.block, name.part, name.leaf) == text


@pytest.mark.parametrize("text", ["S3.x", "s3.0", "S.0", "S3.0.", "S1.grid", "", "3.0", "S3.0.Attn", "S3..0"])
def test_every_bad_name_gets_the_one_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"^a part is named like S3\.0 .* got "):
        PartName(text)


def test_a_name_survives_pickle_and_copy_and_cannot_be_changed() -> None:
    name = PartName("S1.0.grid.attn.weights")
    for other in (pickle.loads(pickle.dumps(name)), copy.deepcopy(name)):
        assert isinstance(other, PartName) and other.part == "grid" and other.leaf == "attn.weights"
    assert (name.base, name.unit, name.base.child("output")) == ("S1.0", "S1.0.grid", "S1.0.output")
    with pytest.raises(AttributeError):
        name.stage = 2


def test_parts_of_a_coatnet_follow_its_stages() -> None:
    model = coatnet.load_checkpoint("demo-pre")
    parts = model.parts()
    assert [(p.name, p.kind) for p in parts] == [
        ("S0", "stem"), ("S1.0", "mbconv"), ("S2.0", "mbconv"), ("S2.1", "mbconv"),
        ("S3.0", "attention"), ("S3.0.mlp", "mlp"), ("S3.1", "attention"), ("S3.1.mlp", "mlp"),
        ("S4.0", "attention"), ("S4.0.mlp", "mlp"), ("head", "head"),
    ]  # fmt: skip
    infos = model.stage_info()
    for part in parts[:-1]:
        info = infos[part.stage]
        assert (part.grid, part.stride) == (info.grid, info.reduction)
        assert part.channels == info.channels
    s3 = parts[4]
    assert s3.module is model.stages[2].blocks[0] and s3.attention is s3.module.attn
    assert (s3.partition, s3.window) == ("global", (7, 7))
    assert parts[5].module is s3.module.mlp and parts[-1].module is model.head
    assert model.block_names() == [p.name for p in parts if p.block is not None and p.kind != "mlp"]
    assert [p.grid for p in model.parts(img_size=56) if p.kind == "attention"] == [(14, 14)] * 3


def test_parts_of_a_maxvit_split_each_block_into_conv_and_attentions() -> None:
    model = maxvit_toy()
    parts = [p for p in model.parts() if p.stage == 1]
    assert [(p.name, p.kind, p.partition) for p in parts] == [
        ("S1.0.conv", "mbconv", None), ("S1.0.block", "attention", "block"), ("S1.0.block.mlp", "mlp", None),
        ("S1.0.grid", "attention", "grid"), ("S1.0.grid.mlp", "mlp", None),
    ]  # fmt: skip
    block = model.stages[0].blocks[0]
    assert parts[0].module is block.conv and parts[1].module is block.attn_block
    assert all(p.owner is block and p.block_kind == "M" for p in parts)
    assert parts[1].window == (2, 2) and not parts[1].parallel


def test_a_parallel_maxvit_block_shares_one_mlp() -> None:
    model = coatnet.create_model("maxvit_pico", in_chans=1, parallel_partitions=True)
    names = [p.name for p in model.parts() if p.name.base == "S1.0"]
    assert names == ["S1.0.conv0", "S1.0.conv1", "S1.0.block", "S1.0.grid", "S1.0.parallel.mlp"]


@pytest.mark.parametrize(
    "build", [lambda: coatnet.load_checkpoint("demo-pre"), maxvit_toy], ids=["coatnet", "maxvit"]
)
def test_every_traced_and_intervened_name_belongs_to_a_part(build) -> None:
    model = build()
    units = {p.name for p in model.parts()} | set(model.block_names())
    for name in coatnet.trace_names(model):
        parsed = PartName(name)
        if parsed.block is not None and parsed.part != "parallel":
            assert parsed.unit in units, name
    assert set(coatnet.intervention_targets(model)) <= units


def test_a_module_put_in_a_blocks_place_is_listed_as_it_is() -> None:
    model = toy()
    model.stages[1].blocks[0] = nn.Identity()
    part = next(p for p in model.parts() if p.name == "S2.0")
    assert part.kind == "module" and isinstance(part.module, nn.Identity)
    assert not any(name.startswith("S2.0.") for name in coatnet.trace_names(model))
    with pytest.raises(ValueError, match=r"S2\.0 is a Identity"):
        coatnet.intervene(coatnet.Intervention("S2.0", "zero_branch"), model=model).__enter__()
