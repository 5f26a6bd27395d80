"""Parameter and MAC counts against the paper's Table 3 (the paper's Table 3), counted on the meta device."""

from __future__ import annotations

import pytest
import torch

import coatnet
from coatnet.model.variants import build_config

# (params, MACs at 224) from Table 3; None where the paper gives MACs only at a larger size.
PAPER = {
    "coatnet_0": (25e6, 4.2e9),
    "coatnet_1": (42e6, 8.4e9),
    "coatnet_2": (75e6, 15.7e9),
    "coatnet_3": (168e6, 34.7e9),
    "coatnet_4": (275e6, None),
    "coatnet_5": (688e6, None),
    "coatnet_7": (2.44e9, None),
}
# MACs at the paper's fine-tuning size (Table 3 / Table 12).
PAPER_LARGE = {"coatnet_4": (384, 189.5e9), "coatnet_5": (512, 812e9), "coatnet_7": (512, 2586e9)}


def meta_params(name: str) -> int:
    with torch.device("meta"):
        return coatnet.count_params(coatnet.create_model(name))


@pytest.mark.parametrize("name", sorted(PAPER))
def test_params_within_3_percent_of_table_3(name: str) -> None:
    expected = PAPER[name][0]
    assert meta_params(name) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("name", ["coatnet_0", "coatnet_1", "coatnet_2", "coatnet_3"])
def test_macs_at_224_within_5_percent_of_table_3(name: str) -> None:
    assert coatnet.count_macs(build_config(name)) == pytest.approx(PAPER[name][1], rel=0.05)


@pytest.mark.parametrize("name", sorted(PAPER_LARGE))
def test_macs_at_fine_tuning_size_within_5_percent(name: str) -> None:
    size, expected = PAPER_LARGE[name]
    assert coatnet.count_macs(build_config(name), size) == pytest.approx(expected, rel=0.05)


def test_coatnet_6_counts_below_the_table_as_documented() -> None:
    """Built as Table 12 reads, CoAtNet-6 counts ~1.34B parameters against the table's 1.47B (README)."""
    params = meta_params("coatnet_6")
    assert 1.30e9 < params < 1.40e9


def test_coatnet_0_matches_the_reading_in_paper_md() -> None:
    """The paper's reading: hidden = 4 x C_out, q/k/v at the output width gives 24.4M / 4.14G MACs."""
    assert meta_params("coatnet_0") == pytest.approx(24.4e6, rel=0.002)
    assert coatnet.count_macs(build_config("coatnet_0")) == pytest.approx(4.14e9, rel=0.002)


def test_stage_costs_add_up_to_the_model() -> None:
    model = coatnet.create_model("coatnet_pico", img_size=64)
    costs = coatnet.stage_costs(model)
    assert [c.name for c in costs] == ["S0", "S1", "S2", "S3", "S4", "head"]
    assert sum(c.params for c in costs) == coatnet.count_params(model)
    assert sum(c.macs for c in costs) == coatnet.count_macs(model)


def test_stem_macs_known_answer() -> None:
    """S0 of coatnet_toy at 32x32: conv 3->16 (3x3, stride 2) then 16->16 (3x3), both on a 16x16 grid."""
    model = coatnet.create_model("coatnet_toy")
    stem = coatnet.stage_costs(model)[0]
    assert stem.macs == 16 * 16 * 16 * (3 * 9) + 16 * 16 * 16 * (16 * 9)


def test_attention_matmuls_are_counted_and_post_adds_bias_times_v() -> None:
    """Pre and post differ by exactly the ``bias @ v`` product: heads * N * N * head_dim per block."""
    pre = coatnet.stage_costs(build_config("coatnet_toy", attention="pre"))
    post = coatnet.stage_costs(build_config("coatnet_toy", attention="post"))
    # S3 of coatnet_toy: one block, 32 channels = 4 heads of 8, on a 2x2 grid (N = 4).
    assert post[3].macs - pre[3].macs == 4 * 4 * 4 * 8
    # and q k^T plus weights @ v are in the pre count: 2 * heads * N * N * d
    head_dim, heads, n = 8, 4, 4
    linear = 4 * (16 * 96 + 32 * 32 + 32 * 128 + 128 * 32)  # qkv, proj, fc1, fc2 on 4 tokens
    shortcut = 4 * 16 * 32  # 1x1 projection 16 -> 32 after pooling
    assert pre[3].macs == linear + shortcut + 2 * heads * n * n * head_dim


def test_macs_grow_with_resolution() -> None:
    config = build_config("coatnet_0")
    assert coatnet.count_macs(config, 384) > 2.9 * coatnet.count_macs(config, 224)


def test_counting_a_bad_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="multiples of its total stride 32"):
        coatnet.count_macs(build_config("coatnet_0"), 100)
