"""A model's attention blocks as analyses name them (``S3.0``; a MaxViT block's two attentions
``S1.0.block`` and ``S1.0.grid``), with their grids, windows and strides."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import nn

from coatnet.model.blocks import PartitionBlock, TransformerBlock
from coatnet.model.network import CoAtNet
from coatnet.model.parts import PartName
from coatnet.model.windows import window_positions


@dataclass(frozen=True)
class BlockRef:
    """One attention: its name (``S3.0``, ``S1.0.block``), stage and block index, module, and geometry.

    Attributes:
        module: the block that attends (a Transformer block, or one of a MaxViT block's two
            partitions).
        grid: the stage's (H, W) grid, which its queries and keys index; stride: input pixels per step.
        partition: ``global`` (every position sees every position), ``block`` or ``grid`` (MaxViT).
        window: the (h, w) positions one window holds (``grid`` for global attention).
        pool: what links the previous attention's grid to this one on the residual path: the block's own
            pool (Eq. 4), a MaxViT block's MBConv shortcut pool for its first partition, else identity.
        owner: the block that holds the pool (the Transformer block, or the MaxViT block).
    """

    name: str
    stage: int
    block: int
    module: TransformerBlock | PartitionBlock
    grid: tuple[int, int]
    stride: int  # input pixels per grid step
    partition: str = "global"
    window: tuple[int, int] | None = None
    pool: nn.Module | None = None
    owner: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.window is None:
            object.__setattr__(self, "window", tuple(self.grid))
        if self.pool is None:
            object.__setattr__(self, "pool", getattr(self.module, "pool", nn.Identity()))
        if self.owner is None:
            object.__setattr__(self, "owner", self.module)

    @property
    def attention(self) -> nn.Module:
        """The relative attention itself (a Transformer block's or a partition's ``attn``, or a parallel
        block's attention module)."""
        return getattr(self.module, "attn", self.module)

    @property
    def base(self) -> str:
        """The block it is in: ``S1.0`` for ``S1.0.grid`` (the name :meth:`CoAtNet.block_names` gives)."""
        return PartName(self.name).base

    @property
    def positions(self) -> torch.Tensor:
        """(windows, n): each window's positions as row-major indices into :attr:`grid`."""
        return window_positions(self.grid, self.window, self.partition)

    @property
    def parallel(self) -> bool:
        """Whether it attends side by side with the other partition of its block (timm's parallel
        MaxViT block): the two are one step of a composition, their operators averaged."""
        return bool(getattr(self.owner, "parallel", False))

    def pool_input(self, stage_input: torch.Tensor, owner: nn.Module | None = None) -> torch.Tensor:
        """What :attr:`pool` takes, from the output of the stage before: the normalised input for a
        Transformer block (``Pool(Norm(x))``, by ``owner``: the caller's runner of :attr:`owner`, which a
        BatchNorm in training mode must be), the input itself for a MaxViT block's MBConv shortcut."""
        if isinstance(self.owner, TransformerBlock):
            return (self.owner if owner is None else owner).norm1(stage_input)
        return stage_input


def _conv_pool(block: nn.Module) -> nn.Module:
    """What links a MaxViT block's input grid to its attention's: its (first) conv's shortcut pool."""
    conv = block.conv[0] if isinstance(block.conv, nn.Sequential) else block.conv
    return conv.shortcut.pool


def dense_windows(values: np.ndarray, positions: np.ndarray, tokens: int, *, fill: float = 0.0) -> np.ndarray:
    """Per-window square arrays (B * windows, ..., n, n) as one block-sparse operator per image on the
    whole grid, (B, ..., N, N) for N = ``tokens``: entry [q, j] is the window's entry for query q and key
    j where both sit in one window (``positions``: (windows, n) grid indices), ``fill`` elsewhere."""
    count = positions.shape[0]
    if count == 1 and positions.shape[1] == tokens and np.array_equal(positions[0], np.arange(tokens)):
        return values  # global attention: the one window is the grid
    per_image = values.reshape(-1, count, *values.shape[1:])  # (B, windows, ..., n, n)
    per_image = np.moveaxis(per_image, 1, -3)  # (B, ..., windows, n, n)
    out = np.full((*per_image.shape[:-3], tokens, tokens), fill, dtype=values.dtype)
    out[..., positions[:, :, None], positions[:, None, :]] = per_image
    return out


@dataclass(frozen=True, eq=False)
class WindowedStep:
    """``diag(d) (weight * F + identity * I)`` on a grid of N positions, F block-sparse: the per-window
    square arrays ``values`` (B * windows, n, n) laid on the grid by ``positions`` (windows, n), which
    tile it (each position in one window); ``d`` makes each row sum to 1 where ``normalise``, else 1.
    One windowed attention's step of rollout or relevance, applied without building the N x N matrix
    (a MaxViT at 224 px has N = 3136 on S1): :meth:`after` costs M x N x n where the dense product costs
    M x N x N."""

    values: np.ndarray
    positions: np.ndarray
    tokens: int
    weight: float = 1.0
    identity: float = 0.0
    normalise: bool = False

    @cached_property
    def row_scale(self) -> np.ndarray | None:
        """(B, N): each row's ``d``, or None when the rows are taken as they are."""
        if not self.normalise:
            return None
        sums = self.weight * self.values.sum(axis=-1) + self.identity  # (B * windows, n)
        out = np.empty((sums.shape[0] // self.positions.shape[0], self.tokens), dtype=sums.dtype)
        out[:, self.positions.reshape(-1)] = sums.reshape(out.shape[0], -1)
        return 1.0 / out

    def dense(self) -> np.ndarray:
        """The operator as a (B, N, N) matrix."""
        out = self.weight * dense_windows(self.values, self.positions, self.tokens)
        out = out + self.identity * np.eye(self.tokens)
        return out / out.sum(axis=-1, keepdims=True) if self.normalise else out

    def after(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix @ self`` for a (B, M, N) ``matrix``, window by window."""
        if self.row_scale is not None:
            matrix = matrix * self.row_scale[:, None, :]
        windows = self.positions.shape[0]
        per_image = self.values.reshape(-1, windows, *self.values.shape[-2:])  # (B, windows, n, n)
        gathered = np.moveaxis(matrix[:, :, self.positions], 2, 1)  # (B, windows, M, n)
        out = self.identity * matrix
        out[:, :, self.positions] += self.weight * np.moveaxis(gathered @ per_image, 1, 2)
        return out


def windowed_step(
    values: np.ndarray,
    positions: np.ndarray,
    tokens: int,
    *,
    weight: float = 1.0,
    identity: float = 0.0,
    normalise: bool = False,
) -> np.ndarray | WindowedStep:
    """One step of a composition (:class:`WindowedStep`'s operator): for global attention (one window,
    the whole grid) the (B, N, N) matrix itself, for windowed attention the step applied window by
    window."""
    step = WindowedStep(values, positions, tokens, weight, identity, normalise)
    global_attention = positions.shape[0] == 1 and positions.shape[1] == tokens
    return step.dense() if global_attention and np.array_equal(positions[0], np.arange(tokens)) else step


@dataclass(frozen=True, eq=False)
class AveragedStep:
    """The mean of two or more steps on one grid (a parallel MaxViT block's block and grid attention, side
    by side on one input): applied step by step, so windowed ones are never built as matrices."""

    steps: tuple

    def dense(self) -> np.ndarray:
        return sum(as_matrix(step) for step in self.steps) / len(self.steps)

    def after(self, matrix: np.ndarray) -> np.ndarray:
        return sum(times(matrix, step) for step in self.steps) / len(self.steps)


def times(matrix: np.ndarray, step: np.ndarray | WindowedStep | AveragedStep) -> np.ndarray:
    """``matrix @ step`` for a step that is a matrix, a :class:`WindowedStep` or an :class:`AveragedStep`."""
    return matrix @ step if isinstance(step, np.ndarray) else step.after(matrix)


def as_matrix(step: np.ndarray | WindowedStep | AveragedStep) -> np.ndarray:
    """A step of a composition as its (B, N, N) matrix."""
    return step if isinstance(step, np.ndarray) else step.dense()


def attention_blocks(model: CoAtNet, img_size: tuple[int, int] | None = None) -> list[BlockRef]:
    """Every attention of ``model``, in forward order, with its grid for ``img_size``: a Transformer
    block's, or a MaxViT block's two (block and grid attention, each with its windows)."""
    out: list[BlockRef] = []
    for part in model.parts(img_size):
        if part.kind != "attention":
            continue
        pool = None  # a Transformer block's own pool (Eq. 4)
        if part.name.part is not None:  # a MaxViT block's conv strides once, before its first attention
            first = not out or out[-1].base != part.name.base
            pool = _conv_pool(part.owner) if first else nn.Identity()
        out.append(BlockRef(part.name, part.stage, part.block, part.module, part.grid, part.stride,
                            part.partition, part.window, pool, part.owner))  # fmt: skip
    return out


class NamedBlocks:
    """For results holding ``blocks`` (each with a ``name``): ``names`` and ``block(name)``."""

    blocks: tuple

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def block(self, name: str):
        """The block called ``name`` (``S3.0``); a KeyError names the blocks there are."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(f"no block {name!r}; this result holds {', '.join(self.names) or 'none'}")
