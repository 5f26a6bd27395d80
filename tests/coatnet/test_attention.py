"""Known answers for relative attention (the paper's section 2.1), in both normalization modes.

Offsets follow the project convention: the kernel view is indexed by ``key - query``; the paper's table P
(``RelativePositionBias.table``) by ``query - key``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import coatnet
from coatnet.model.attention import RelativeAttention, RelativePositionBias, resize_table
from tests.support.toys import toy_model

MODES = ("pre", "post")


def nhwc(attn: RelativeAttention, x: torch.Tensor) -> torch.Tensor:
    """Run ``attn`` (which takes and gives (B, C, H, W)) on a (B, H, W, C) tensor, giving (B, H, W, C)."""
    return attn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def make_attention(
    mode: str, grid: tuple[int, int] = (4, 5), dim: int = 16, head_dim: int = 8
) -> RelativeAttention:
    attn = RelativeAttention(dim_in=dim, dim_out=dim, head_dim=head_dim, grid=grid, mode=mode).eval()
    with torch.no_grad():
        attn.rel_pos.table.normal_(std=0.5)  # large enough that a wrong bias shows
    return attn


def split_qkv(attn: RelativeAttention, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v as (B, heads, N, d), read from the documented ``(s h d)`` channel layout of ``qkv``."""
    b, height, width, _ = x.shape
    dim = attn.heads * attn.head_dim
    out = attn.qkv(x).reshape(b, height * width, 3 * dim)
    parts = out.split(dim, dim=-1)  # s = 0, 1, 2: q, k, v
    return tuple(p.reshape(b, height * width, attn.heads, attn.head_dim).transpose(1, 2) for p in parts)


def zero_query_key(attn: RelativeAttention) -> None:
    """Make q = k = 0 so that the content logits vanish and only the bias remains."""
    dim = attn.heads * attn.head_dim
    with torch.no_grad():
        attn.qkv.weight[: 2 * dim].zero_()
        attn.qkv.bias[: 2 * dim].zero_()


def identity_values_and_proj(attn: RelativeAttention) -> None:
    """Make v = x and proj = identity, so that the module output is the attention-weighted input."""
    dim = attn.heads * attn.head_dim
    with torch.no_grad():
        attn.qkv.weight[2 * dim :].copy_(torch.eye(dim))
        attn.qkv.bias[2 * dim :].zero_()
        attn.proj.weight.copy_(torch.eye(dim))
        attn.proj.bias.zero_()


def set_kernel(attn: RelativeAttention, kernel: torch.Tensor) -> None:
    """Set the table from its kernel view (offset = key - query): P is the kernel flipped on both axes."""
    with torch.no_grad():
        attn.rel_pos.table.copy_(kernel.flip(-2, -1))


def local_kernel(heads: int, grid: tuple[int, int], outside: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A (heads, 2H-1, 2W-1) kernel, random inside the 3x3 window of offsets |dy|, |dx| <= 1 and
    ``outside`` elsewhere; returns it and its 3x3 window."""
    height, width = grid
    window = torch.randn(heads, 3, 3)
    kernel = torch.full((heads, 2 * height - 1, 2 * width - 1), outside)
    kernel[:, height - 2 : height + 1, width - 2 : width + 1] = window
    return kernel, window


def random_qkv(attn: RelativeAttention, batch: int, n: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(batch, attn.heads, n, attn.head_dim) for _ in range(3))


# ---------------------------------------------------------------- fused and explicit paths agree


@pytest.mark.parametrize("mode", MODES)
def test_fused_equals_explicit(mode: str) -> None:
    """The SDPA path and the step-by-step path compute the same output for the same q, k, v, bias."""
    attn = make_attention(mode)
    q, k, v = random_qkv(attn, 2, 20)
    bias = attn.rel_pos.get_bias()
    fused = attn.fused(q, k, v, bias)
    explicit, record = attn.explicit(q, k, v, bias)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    assert record["mode"] == mode
    # the bias matters: without it the output is different
    assert not torch.allclose(fused, attn.fused(q, k, v, torch.zeros_like(bias)), atol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_module_forward_same_with_and_without_recording(mode: str) -> None:
    """Opening a recorder switches the module to its explicit path without changing its output."""
    attn = make_attention(mode)
    x = torch.randn(2, 4, 5, 16)
    plain = nhwc(attn, x)
    with coatnet.record_attention() as records:
        recorded = nhwc(attn, x)
    assert len(records) == 1
    torch.testing.assert_close(plain, recorded, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- normalization


def test_pre_weight_rows_sum_to_one() -> None:
    """Pre-normalization (Eq. 3): softmax over content + bias, so each query's weights sum to 1."""
    attn = make_attention("pre")
    _, record = attn.explicit(*random_qkv(attn, 2, 20), attn.rel_pos.get_bias())
    weights = record["weights"]
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-6, rtol=0)
    assert (weights >= 0).all()


def test_post_weight_rows_sum_to_one_plus_bias_row() -> None:
    """Post-normalization: softmax(content) + bias, so row sums are 1 + the bias row sum, and weights
    can be negative (the paper's section 2.1)."""
    attn = make_attention("post")
    bias = attn.rel_pos.get_bias()
    _, record = attn.explicit(*random_qkv(attn, 2, 20), bias)
    weights = record["weights"]
    expected = (1.0 + bias.sum(-1)).expand(weights.shape[:-1])
    torch.testing.assert_close(weights.sum(-1), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(weights.sum(-1), torch.ones_like(expected), atol=1e-2)
    assert (weights < 0).any()


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("mode", MODES)
def test_zero_bias_table_is_plain_softmax_attention(mode: str) -> None:
    """With a zero table both modes reduce to ``softmax(q k^T / sqrt(d)) v`` followed by the projection."""
    attn = make_attention(mode)
    with torch.no_grad():
        attn.rel_pos.table.zero_()
    x = torch.randn(2, 4, 5, 16)
    q, k, v = split_qkv(attn, x)
    weights = torch.softmax(q @ k.transpose(-2, -1) / attn.head_dim**0.5, dim=-1)
    heads_out = weights @ v  # (B, heads, N, d)
    expected = attn.proj(heads_out.transpose(1, 2).reshape(2, 4, 5, 16))
    torch.testing.assert_close(nhwc(attn, x), expected, atol=1e-5, rtol=1e-5)
    with coatnet.record_attention() as records:
        torch.testing.assert_close(nhwc(attn, x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(records[0].weights, weights, atol=1e-6, rtol=1e-5)


def test_zero_content_pre_weights_are_softmax_of_bias() -> None:
    """With q = k = 0 the content logits vanish and pre-normalization weights are softmax(bias rows)."""
    attn = make_attention("pre")
    zero_query_key(attn)
    x = torch.randn(2, 4, 5, 16)
    with coatnet.record_attention() as records:
        nhwc(attn, x)
    record = records[0]
    assert torch.count_nonzero(record.content_logits) == 0
    expected = torch.softmax(attn.rel_pos.get_bias(), dim=-1).expand_as(record.weights)
    torch.testing.assert_close(record.weights, expected, atol=1e-6, rtol=1e-5)


def test_zero_content_pre_local_kernel_is_translation_equivariant_conv() -> None:
    """Relative attention with q = k = 0 and a bias that is -inf outside a 3x3 window is a depthwise conv
    for interior queries (the paper's section 2.1, Table 1): every interior query puts the same weights,
    softmax(window), on the same key - query offsets, and the output equals ``F.conv2d`` with that kernel.
    Border queries renormalize over fewer keys, so the conv answer holds for interior queries only."""
    grid, heads, head_dim = (5, 6), 2, 4
    height, width = grid
    attn = make_attention("pre", grid=grid, dim=heads * head_dim, head_dim=head_dim)
    zero_query_key(attn)
    identity_values_and_proj(attn)
    kernel, window = local_kernel(heads, grid, outside=float("-inf"))
    set_kernel(attn, kernel)
    torch.testing.assert_close(attn.rel_pos.kernel(), kernel)

    x = torch.randn(2, height, width, heads * head_dim)
    with coatnet.record_attention() as records:
        out = nhwc(attn, x)
    weights = records[0].weights  # (B, heads, N, N)
    expected_window = torch.softmax(window.flatten(1), dim=-1).view(heads, 3, 3)

    interior = [(y, x_) for y in range(1, height - 1) for x_ in range(1, width - 1)]
    for y, x_ in interior:
        query = y * width + x_
        row = weights[:, :, query].view(2, heads, height, width)
        torch.testing.assert_close(
            row[:, :, y - 1 : y + 2, x_ - 1 : x_ + 2], expected_window.expand(2, -1, -1, -1)
        )
        assert torch.isclose(row.sum((-2, -1)), torch.ones(2, heads)).all()  # nothing outside the window
    corner = weights[:, :, 0].view(2, heads, height, width)
    corner_expected = torch.softmax(window[:, 1:, 1:].flatten(1), dim=-1).view(heads, 2, 2)
    torch.testing.assert_close(corner[:, :, :2, :2], corner_expected.expand(2, -1, -1, -1))

    conv_weight = expected_window.repeat_interleave(head_dim, dim=0)[:, None]  # (C, 1, 3, 3)
    conv = F.conv2d(x.permute(0, 3, 1, 2), conv_weight, padding=1, groups=heads * head_dim)
    out = out.permute(0, 3, 1, 2)
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], conv[:, :, 1:-1, 1:-1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[:, :, 0, 0], conv[:, :, 0, 0], atol=1e-3)  # a border query differs


def test_zero_content_post_local_kernel_is_mean_plus_conv() -> None:
    """Post-normalization with q = k = 0 is a uniform average plus the bias as a zero-padded conv kernel:
    ``y_i = mean_j v_j + sum_d w_d v_{i+d}``, at every query, border included."""
    grid, heads, head_dim = (4, 5), 2, 4
    height, width = grid
    attn = make_attention("post", grid=grid, dim=heads * head_dim, head_dim=head_dim)
    zero_query_key(attn)
    identity_values_and_proj(attn)
    kernel, window = local_kernel(heads, grid, outside=0.0)
    set_kernel(attn, kernel)

    x = torch.randn(2, height, width, heads * head_dim).permute(0, 3, 1, 2)  # (B, C, H, W)
    out = nhwc(attn, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    conv_weight = window.repeat_interleave(head_dim, dim=0)[:, None]
    expected = x.mean((2, 3), keepdim=True) + F.conv2d(x, conv_weight, padding=1, groups=heads * head_dim)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_strong_bias_at_offset_0_plus1_attends_right_neighbour() -> None:
    """A large kernel entry at offset (dy, dx) = (0, +1), i.e. table entry [h, H-1, W-2], makes every query
    with a right neighbour attend to it (pre, q = k = 0); queries in the last column have no such key."""
    grid = (4, 5)
    height, width = grid
    attn = make_attention("pre", grid=grid)
    zero_query_key(attn)
    with torch.no_grad():
        attn.rel_pos.table[:, height - 1, width - 2] = 20.0
    assert (attn.rel_pos.kernel()[:, height - 1, width - 1 + 1] == 20.0).all()
    with coatnet.record_attention() as records:
        nhwc(attn, torch.randn(1, height, width, 16))
    weights = records[0].weights[0]  # (heads, N, N)
    for y, x in itertools.product(range(height), range(width)):
        query = y * width + x
        if x < width - 1:
            assert (weights[:, query, query + 1] > 0.999).all(), (y, x)
        else:
            assert (weights[:, query].max(-1).values < 0.2).all(), (y, x)


# ---------------------------------------------------------------- the bias table


def test_get_bias_depends_only_on_offset() -> None:
    """``get_bias()[h, i, j]`` is a function of the 2-D offset between positions i and j alone, and every
    one of the (2H-1)(2W-1) offsets reads a different table entry."""
    height, width, heads = 4, 5, 3
    rel_pos = RelativePositionBias(heads=heads, grid=(height, width))
    with torch.no_grad():
        rel_pos.table.normal_()
    bias = rel_pos.get_bias()
    assert bias.shape == (heads, height * width, height * width)
    by_offset: dict[tuple[int, int], torch.Tensor] = {}
    for i, j in itertools.product(range(height * width), repeat=2):
        offset = (i // width - j // width, i % width - j % width)
        if offset in by_offset:
            assert torch.equal(bias[:, i, j], by_offset[offset]), (i, j)
        else:
            by_offset[offset] = bias[:, i, j]
    assert len(by_offset) == (2 * height - 1) * (2 * width - 1)
    for h in range(heads):
        assert len({float(v[h].detach()) for v in by_offset.values()}) == len(by_offset)


@pytest.mark.parametrize("grid", [(4, 5), (3, 3), (1, 4)])
def test_get_bias_reads_paper_table_query_minus_key(grid: tuple[int, int]) -> None:
    """``get_bias()[h, i, j] == P[h, yi - yj + H - 1, xi - xj + W - 1]`` (the paper's section 2.1)."""
    height, width = grid
    rel_pos = RelativePositionBias(heads=2, grid=grid)
    with torch.no_grad():
        rel_pos.table.normal_()
    bias, table = rel_pos.get_bias(), rel_pos.table
    for i, j in itertools.product(range(height * width), repeat=2):
        (yi, xi), (yj, xj) = divmod(i, width), divmod(j, width)
        assert torch.equal(bias[:, i, j], table[:, yi - yj + height - 1, xi - xj + width - 1])


def test_kernel_view_is_table_flipped_and_indexed_key_minus_query() -> None:
    """``kernel()`` is P flipped on both axes, so ``kernel()[h, dy + H - 1, dx + W - 1]`` is the bias of the
    key at offset (dy, dx) = key - query."""
    height, width = 3, 4
    rel_pos = RelativePositionBias(heads=2, grid=(height, width))
    with torch.no_grad():
        rel_pos.table.normal_()
    kernel, table = rel_pos.kernel(), rel_pos.table
    assert torch.equal(kernel, torch.flip(table, dims=(-2, -1)))
    bias = rel_pos.get_bias()
    for i, j in itertools.product(range(height * width), repeat=2):
        (yq, xq), (yk, xk) = divmod(i, width), divmod(j, width)
        assert torch.equal(bias[:, i, j], kernel[:, yk - yq + height - 1, xk - xq + width - 1])


@pytest.mark.parametrize("mode", MODES)
def test_bias_table_gets_same_gradient_on_fused_and_explicit_path(mode: str) -> None:
    """``loss.backward()`` reaches every bias table, with the same gradient on both paths."""
    model = toy_model(attention=mode, img_size=64)  # S4 grid 2x2, not 1x1; its own: it gets gradients
    x = torch.randn(2, 3, 64, 64)
    tables = [m.rel_pos.table for m in model.modules() if isinstance(m, RelativeAttention)]
    assert len(tables) == 2

    model(x).square().sum().backward()
    fused = [t.grad.clone() for t in tables]
    model.zero_grad(set_to_none=True)
    with coatnet.record_attention():
        model(x).square().sum().backward()
    explicit = [t.grad.clone() for t in tables]

    for g_fused, g_explicit in zip(fused, explicit, strict=True):
        assert torch.isfinite(g_fused).all()
        assert g_fused.abs().max() > 0
        torch.testing.assert_close(g_fused, g_explicit, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------- resizing and grids


# The paper's fine-tuning resolutions: 224 -> 384 and 512 take S3 from 14x14 to 24x24 / 32x32 and S4 from
# 7x7 to 12x12 / 16x16.
@pytest.mark.parametrize(
    ("old_grid", "new_grid"),
    [
        ((14, 14), (24, 24)),
        ((14, 14), (32, 32)),
        ((7, 7), (12, 12)),
        ((7, 7), (16, 16)),
        ((14, 14), (7, 7)),
        # sizes whose float32 sampling position of the centre would round off it
        ((14, 14), (10, 10)),
        ((14, 14), (13, 13)),
        ((14, 14), (38, 38)),
        ((14, 14), (10, 20)),
    ],
)
def test_resize_keeps_centre_of_every_head(old_grid: tuple[int, int], new_grid: tuple[int, int]) -> None:
    """Bilinear resizing of P (fine-tuning at a new resolution) keeps the offset-0 entry of every head
    exactly, so the diagonal of the new bias is the old centre."""
    heads = 4
    rel_pos = RelativePositionBias(heads=heads, grid=old_grid)
    with torch.no_grad():
        rel_pos.table.normal_()
    centre = rel_pos.table[:, old_grid[0] - 1, old_grid[1] - 1].detach()
    height, width = new_grid
    table = rel_pos.table_for(new_grid)
    assert table.shape == (heads, 2 * height - 1, 2 * width - 1)
    torch.testing.assert_close(table[:, height - 1, width - 1], centre, atol=0, rtol=0)
    assert torch.equal(resize_table(rel_pos.table, (2 * height - 1, 2 * width - 1)), table)
    bias = rel_pos.get_bias(new_grid)
    assert bias.shape == (heads, height * width, height * width)
    assert torch.equal(bias.diagonal(dim1=1, dim2=2), centre[:, None].expand(-1, height * width))


def test_resize_to_same_size_is_identity() -> None:
    """Resizing a table to its own size, or asking for the built grid, gives the table unchanged."""
    rel_pos = RelativePositionBias(heads=3, grid=(14, 14))
    assert torch.equal(resize_table(rel_pos.table, (27, 27)), rel_pos.table)
    assert rel_pos.table_for((14, 14)) is rel_pos.table
    assert torch.equal(rel_pos.get_bias((14, 14)), rel_pos.get_bias())


@pytest.mark.parametrize("mode", MODES)
def test_non_square_grid(mode: str) -> None:
    """A block built for a 3x5 grid has a (heads, 5, 9) table, runs on 3x5 and (resized) on 5x3, and its
    fused and recorded outputs agree."""
    attn = make_attention(mode, grid=(3, 5))
    assert attn.rel_pos.table.shape == (2, 5, 9)
    for grid in [(3, 5), (5, 3)]:
        x = torch.randn(2, *grid, 16)
        with coatnet.record_attention() as records:
            recorded = nhwc(attn, x)
        plain = nhwc(attn, x)
        assert plain.shape == (2, *grid, 16)
        torch.testing.assert_close(plain, recorded, atol=1e-5, rtol=1e-5)
        assert records[0].grid == grid
        assert records[0].bias.shape == (2, 15, 15)


@pytest.mark.parametrize("rel_pos", ["table", "mlp"])
def test_the_kept_bias_follows_every_change_of_its_weights_and_is_never_handed_out_to_change(rel_pos):
    from coatnet.model.attention import RelativePositionBias, RelativePositionMlp

    torch.manual_seed(0)
    kind = RelativePositionBias if rel_pos == "table" else RelativePositionMlp
    module = kind(heads=2, grid=(3, 4)).eval()
    first = next(module.parameters())
    with torch.no_grad():
        kept = module.get_bias()
        assert module.get_bias() is kept and module.get_bias((2, 2)).shape == (2, 4, 4)  # kept per grid
        assert torch.equal(module._compute_bias((3, 4)), kept)
        first.mul_(2)  # an in-place change (as an optimizer step makes) is seen
        changed = module.get_bias()
        assert changed is not kept and torch.equal(changed, module._compute_bias((3, 4)))
        module.load_state_dict({k: torch.randn_like(v) for k, v in module.state_dict().items()})
        assert torch.equal(module.get_bias(), module._compute_bias((3, 4)))
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            module.get_bias()
        assert torch.equal(module.get_bias(), module._compute_bias((3, 4)))  # not autocast's precision
    assert module.get_bias().requires_grad  # with gradients: computed, for autograd
    module.train()
    with torch.no_grad():
        assert module.get_bias() is not module.get_bias()  # training mode (the MLP's dropout): computed


def test_a_model_on_the_meta_device_computes_its_bias_and_keeps_none():
    """Meta tensors have no storage (every data pointer is 0) and no autocast: the bias is computed, as
    the complexity count's meta pass needs."""
    with torch.device("meta"):
        model = coatnet.create_model("coatnet_toy").eval()
    with torch.no_grad():
        logits = model(torch.empty(1, 3, *model.config.img_size, device="meta"))
    assert logits.is_meta and logits.shape == (1, model.config.num_classes)
    assert all(not m._kept for m in model.modules() if hasattr(m, "_kept"))


def test_a_recorded_bias_is_the_callers_own(shared_toy):
    model = shared_toy()
    x = torch.randn(1, 3, *model.config.img_size)
    with torch.no_grad():
        with coatnet.record_attention() as records:
            model(x)
        records[0].bias.fill_(1e6)  # a caller's change of its record
        with coatnet.record_attention() as again:
            model(x)
    assert again[0].bias.abs().max() < 1e3
