"""Relative attention (Dai et al. 2021, section 2.1, Eq. 3) with a fused and an explicit path.

Pre-normalization (the paper's choice):   ``y_i = sum_j softmax_j(x_i^T x_j + w_{i-j}) x_j``
Post-normalization:                       ``y_i = sum_j (softmax_j(x_i^T x_j) + w_{i-j}) x_j``

``w_{i-j}`` is a scalar per head and 2-D offset, held in a table P of shape (heads, 2H-1, 2W-1) indexed
by query - key. The kernel view (offset = key - query, the orientation of a depthwise conv kernel) is P
flipped on both axes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from coatnet.model.interventions import block_interventions, edit_output, edit_weights, per_window
from coatnet.model.layers import Dropout
from coatnet.model.tracing import Capture, active_capture, tap, traced_name, wants_explicit


def relative_position_index(height: int, width: int, *, device: torch.device | None = None) -> torch.Tensor:
    """Index into a flattened (2H-1)(2W-1) table for each (query, key) pair: shape (N, N), N = H*W.

    The entry for query (i, j) and key (i', j') is ``(i - i' + H - 1) * (2W - 1) + (j - j' + W - 1)``.
    """
    target = torch.device(device) if device is not None else torch.get_default_device()
    # on the meta device (a model built for loading) integer arithmetic runs through Python
    # decompositions whose first use imports torch._dynamo, 2-3 s of every command's start: made on the
    # CPU and moved there
    made_on = torch.device("cpu") if target.type == "meta" else target
    rows = torch.arange(height, device=made_on).repeat_interleave(width)  # (N,) row of each position
    cols = torch.arange(width, device=made_on).repeat(height)  # (N,) column of each position
    d_row = rows[:, None] - rows[None, :] + height - 1  # query - key, shifted to >= 0
    d_col = cols[:, None] - cols[None, :] + width - 1
    return (d_row * (2 * width - 1) + d_col).to(target)


class RelativePosition(nn.Module):
    """The learned "global static convolution kernel" of one attention block: whatever gives the table P
    (heads, 2H-1, 2W-1) for a grid. :meth:`get_bias` and :meth:`kernel` are read from it."""

    def __init__(self, *, heads: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.heads = heads
        self.grid = (int(grid[0]), int(grid[1]))
        self.register_buffer("index", relative_position_index(*self.grid), persistent=False)

    def table_for(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The table P (heads, 2H-1, 2W-1) for ``grid`` (default: the built grid), indexed query - key."""
        raise NotImplementedError

    # the last biases computed without gradients, by grid: (weights' identity and versions, bias)
    _kept: dict = {}  # replaced whole on each module, never changed in place
    KEPT_GRIDS = 4

    def get_bias(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The bias ``w_{i-j}`` for every (query, key) pair: shape (heads, N, N), row-major positions.

        Without gradients, in eval mode, the bias is computed once per grid and kept (outside the
        parameters, buffers and state dict) until a weight it comes from changes (its storage or its
        version, which every in-place change through it, an optimizer step or ``load_state_dict``, bumps;
        torch does not count a change through ``.data``):
        a gather per block per call, and for the relative-position MLP a whole MLP, become a lookup.
        The kept tensor is shared by the calls that read it: never change it in place (the recorder
        keeps a copy)."""
        grid = self.grid if grid is None else (int(grid[0]), int(grid[1]))
        if torch.is_grad_enabled() or self.training or self.index.is_meta or torch.compiler.is_compiling():
            return self._compute_bias(grid)  # (meta tensors have no storage to tell weights apart)
        weights = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())
        device = self.index.device.type  # an autocast pass computes the MLP's bias in another precision
        weights += (torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None,)
        kept = self._kept.get(grid)
        if kept is not None and kept[0] == weights:
            return kept[1]
        bias = self._compute_bias(grid)
        others = [(g, v) for g, v in self._kept.items() if g != grid][-(self.KEPT_GRIDS - 1) :]
        self._kept = {**dict(others), grid: (weights, bias)}  # one assignment: readers see a whole dict
        return bias

    def _compute_bias(self, grid: tuple[int, int]) -> torch.Tensor:
        table = self.table_for(grid)
        index = self.index if grid == self.grid else relative_position_index(*grid, device=table.device)
        # index_select on the flat index: a third of the time of ``table.flatten(1)[:, index]``, and with
        # gradients its backward is one index_add
        count = index.shape[0]
        return table.flatten(1).index_select(1, index.reshape(-1)).view(-1, count, count)

    def kernel(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The kernel view (heads, 2H-1, 2W-1): entry [h, dy + H - 1, dx + W - 1] is the bias a query
        adds to the key at offset (dy, dx) = key - query, like a depthwise conv kernel."""
        return self.table_for(grid).flip(-2, -1)

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        return self.get_bias(grid)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, grid={self.grid}"


class RelativePositionBias(RelativePosition):
    """P as a learned table (the paper's), bilinearly resized when the grid changes (section 2.1)."""

    def __init__(self, *, heads: int, grid: tuple[int, int]) -> None:
        super().__init__(heads=heads, grid=grid)
        height, width = self.grid
        self.table = nn.Parameter(torch.zeros(heads, 2 * height - 1, 2 * width - 1))
        nn.init.trunc_normal_(self.table, std=0.02)

    def table_for(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        if grid is None or tuple(grid) == self.grid:
            return self.table
        height, width = grid
        return resize_table(self.table, (2 * height - 1, 2 * width - 1))


class RelativePositionMlp(RelativePosition):
    """P computed by a small MLP from log-spaced offsets ``sign(d) * log(1 + |d|)``, d = query - key
    (timm's "rmlp", after Swin-V2): defined for any grid, no resizing needed."""

    def __init__(self, *, heads: int, grid: tuple[int, int], hidden: int = 512) -> None:
        super().__init__(heads=heads, grid=grid)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(2, hidden))
        self.mlp.add_module("act", nn.ReLU())
        self.mlp.add_module("drop", Dropout(0.125))
        self.mlp.add_module("fc2", nn.Linear(hidden, heads))

    def table_for(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        height, width = self.grid if grid is None else grid
        device, dtype = self.mlp.fc1.weight.device, self.mlp.fc1.weight.dtype
        dy = torch.arange(-(height - 1), height, device=device, dtype=dtype)
        dx = torch.arange(-(width - 1), width, device=device, dtype=dtype)
        coords = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)  # (2H-1, 2W-1, 2)
        coords = torch.sign(coords) * torch.log1p(coords.abs())
        return self.mlp(coords).permute(2, 0, 1)  # (heads, 2H-1, 2W-1)


def resize_table(table: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a (heads, 2H-1, 2W-1) table to (heads, *size); the centre (offset 0) stays put.

    Interpolated in float64 where the device has it (tables are small), so the centre is kept exactly for
    any size, not only up to float32 rounding of the sampling positions.
    """
    precise = torch.float32 if table.device.type == "mps" else torch.float64
    resized = F.interpolate(table[None].to(precise), size=size, mode="bilinear", align_corners=False)
    return resized[0].to(table.dtype)


CPU_MATH_LIMIT = 1 << 24
"""The most attention weights (batch x heads x queries x keys, 64 MB in fp32) a pre-normalization block
computes as plain matrix products on a CPU; a larger batch goes through the fused kernel, which never holds
them all at once."""


class RelativeAttention(nn.Module):
    """Multi-head relative self-attention over a (B, C_in, H, W) grid, giving (B, C_out, H, W).

    Args:
        dim_in: input channels.
        dim_out: output channels.
        dim_attn: q/k/v width (default ``dim_out``, the paper's reading); heads = dim_attn / head_dim,
            and ``proj`` maps dim_attn to dim_out.
        head_dim: channels per head.
        grid: the (H, W) grid the relative position is built for.
        mode: ``pre`` or ``post`` normalization.
        rel_pos: ``table`` (:class:`RelativePositionBias`) or ``mlp`` (:class:`RelativePositionMlp`).
        rel_pos_mlp_hidden: the MLP's hidden width.
        stage, block: where the block sits, for recorded attention.
        partition: ``global`` (the whole grid), or for a MaxViT block ``block`` / ``grid``: the input is
            then a batch of windows, each ``grid`` positions.
    """

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        head_dim: int,
        grid: tuple[int, int],
        dim_attn: int | None = None,
        mode: str = "pre",
        rel_pos: str = "table",
        rel_pos_mlp_hidden: int = 512,
        stage: int = 0,
        block: int = 0,
        partition: str = "global",
    ) -> None:
        super().__init__()
        if mode not in ("pre", "post"):
            raise ValueError(f"attention mode must be 'pre' or 'post', got {mode!r}")
        dim_attn = dim_attn or dim_out
        self.heads = dim_attn // head_dim
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.mode = mode
        self.stage = stage
        self.block = block
        self.partition = partition  # "global", or a MaxViT block's "block" / "grid" (its windows)
        self.qkv = nn.Linear(dim_in, 3 * dim_attn)
        if rel_pos == "mlp":
            self.rel_pos: RelativePosition = RelativePositionMlp(
                heads=self.heads, grid=grid, hidden=rel_pos_mlp_hidden
            )
        else:
            self.rel_pos = RelativePositionBias(heads=self.heads, grid=grid)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim_attn, dim_out)

    def forward(self, x: torch.Tensor, field: tuple[int, int] | None = None) -> torch.Tensor:
        """``field``: for a batch of windows (``partition`` block or grid), the (H, W) grid they tile,
        which the record keeps to place them (:func:`coatnet.model.windows.window_positions`)."""
        height, width = x.shape[-2:]
        if isinstance(self.qkv, nn.Conv2d):  # the inference build's 1x1 convolution on (B, C, H, W)
            qkv = rearrange(self.qkv(x), "b (s h d) y x -> s b h (y x) d", s=3, h=self.heads)
        else:
            x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C): free for channels_last tensors
            qkv = rearrange(self.qkv(x), "b y x (s h d) -> s b h (y x) d", s=3, h=self.heads)
        q, k, v = qkv.unbind(0)
        capture = active_capture()  # coatnet.model.tracing (tracing, recording): per call, usually none
        if capture is not None:
            q, k, v = (tap(capture, self, f"attn.{c}", t) for c, t in zip("qkv", (q, k, v), strict=True))
        bias = self.rel_pos.get_bias((height, width)).to(q.dtype)
        part = None if self.partition == "global" else self.partition
        edits = block_interventions(self.stage, self.block, part)  # per call, usually none
        if edits and field is not None:  # a batch of windows: the edits' rows count images
            edits = per_window(edits, (field[0] // height) * (field[1] // width))
        name = traced_name(self) if capture is not None else None
        if not wants_explicit(capture, name):
            out = self.fused(q, k, v, bias)
            if edits:
                out = edit_output(edits, self.mode, out, q, k, v, bias)
        else:  # the caller's own copy of the bias: the kept one is shared
            out, _ = self.explicit(q, k, v, tap(capture, self, "attn.bias", bias.clone()), edits, capture)
            capture.attended(name, self, (height, width), field)  # a recorder makes its record
        out = tap(capture, self, "attn.heads", out)
        out = rearrange(out, "b h (y x) d -> b y x (h d)", y=height, x=width)
        if isinstance(self.proj, nn.Conv2d):  # channels-last (B, C, H, W), without a copy
            return self.proj(out.permute(0, 3, 1, 2))
        return self.proj(out).permute(0, 3, 1, 2)

    def fused(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``F.scaled_dot_product_attention``: the bias as the additive mask (pre), or ``+ bias @ v``
        (post). On a CPU, pre-normalization weights that fit in :data:`CPU_MATH_LIMIT` elements are
        computed as the explicit path does, ``softmax(q k^T / sqrt(d) + w) v``, with nothing kept: there
        the kernel with a mask is slower (1.2-1.9x the time here, 1.5x with gradients at 224 px)."""
        if self.mode == "pre":
            if q.device.type == "cpu" and q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] <= CPU_MATH_LIMIT:
                content = torch.matmul(q * self.scale, k.transpose(-2, -1))
                return torch.matmul(torch.softmax(content + bias, dim=-1), v)
            # a 4-D mask (1, heads, N, N): with a 3-D one the CPU kernel falls back to the slow math path
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])
        return F.scaled_dot_product_attention(q, k, v) + torch.matmul(bias, v)

    def explicit(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor,
        edits: tuple = (),
        capture: Capture | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """The same result step by step, keeping the content logits, the bias and the weights (as
        substituted by ``edits``, :mod:`coatnet.model.interventions`), each traced by ``capture``."""
        content = torch.matmul(q * self.scale, k.transpose(-2, -1))  # q scaled: (N, d), not (N, N)
        content = tap(capture, self, "attn.logits", content)
        if self.mode == "pre":
            weights = self.softmax(content + bias)
        else:
            weights = self.softmax(content) + bias
        if edits:
            weights = edit_weights(edits, self.mode, weights, content, bias, self.softmax)
        weights = tap(capture, self, "attn.weights", weights)
        out = torch.matmul(weights, v)
        return out, {"mode": self.mode, "content_logits": content, "bias": bias, "weights": weights}

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, mode={self.mode!r}"
