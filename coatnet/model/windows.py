"""MaxViT's two partitions of a stage's (H, W) grid into windows of ``size`` x ``size`` positions (Tu et
al. 2022, section 3.2), and where each window's positions sit on the grid.

- ``block``: window (p, q) holds the positions (p * size + a, q * size + b), a contiguous square;
- ``grid``: group (p, q) holds (a * H / size + p, b * W / size + q), a ``size`` x ``size`` grid dilated by
  (H / size, W / size) and spread over the whole map;
- ``global``: one window, the whole grid (CoAtNet's attention: the one-window case).

Windows are ordered row-major by (p, q) and the positions within a window row-major by (a, b), as timm's
``window_partition`` / ``grid_partition`` order them.
"""

from __future__ import annotations

import torch

PARTITIONS = ("global", "block", "grid")


def partition(x: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """(B, C, H, W) -> (B * windows, C, size, size), the windows of the module docstring (channels-first
    tensors)."""
    b, c, h, w = x.shape
    if kind == "block":
        x = x.view(b, c, h // size, size, w // size, size).permute(0, 2, 4, 1, 3, 5)
    elif kind == "grid":
        x = x.view(b, c, size, h // size, size, w // size).permute(0, 3, 5, 1, 2, 4)
    else:
        raise ValueError(f"partition must be 'block' or 'grid', got {kind!r}")
    return x.reshape(-1, c, size, size)


def unpartition(x: torch.Tensor, size: int, kind: str, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`partition`: (B * windows, C, size, size) -> (B, C, H, W)."""
    h, w = grid
    c = x.shape[1]
    x = x.view(-1, h // size, w // size, c, size, size)
    order = (0, 3, 1, 4, 2, 5) if kind == "block" else (0, 3, 4, 1, 5, 2)
    return x.permute(*order).reshape(-1, c, h, w)


def window_positions(grid: tuple[int, int], window: tuple[int, int], kind: str) -> torch.Tensor:
    """Where each window's positions sit: (windows, wh * ww) row-major indices into the (H, W) ``grid``,
    by :func:`partition` itself (so the two cannot disagree). ``global``: one window of every position."""
    h, w = (int(v) for v in grid)
    if kind == "global":
        if tuple(window) != (h, w):
            raise ValueError(f"a global attention's window is its grid {grid}, not {window}")
        return torch.arange(h * w)[None]
    if window[0] != window[1]:
        raise ValueError(f"windows are square, got {window}")
    index = torch.arange(h * w).view(1, 1, h, w)
    return partition(index, int(window[0]), kind).flatten(1)
