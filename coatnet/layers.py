"""Small building blocks shared by the MBConv and Transformer blocks."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` (training)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: channel gates from globally pooled features (1x1 convs ``fc1``, ``fc2``)."""

    def __init__(self, *, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.fc2(self.act(self.fc1(scale))))
        return x * scale


def make_pool(kind: str, stride: int) -> nn.Module:
    """The down-sampling pool of Eq. 4 and 5: a stride x stride window, or identity for stride 1."""
    if stride == 1:
        return nn.Identity()
    if kind == "max":
        return nn.MaxPool2d(kernel_size=stride, stride=stride)
    return nn.AvgPool2d(kernel_size=stride, stride=stride)


class Shortcut(nn.Module):
    """The residual path of a block: ``Proj(Pool(x))`` (Eq. 4 and 5), each part only where needed."""

    def __init__(self, *, dim_in: int, dim_out: int, stride: int, pool: str) -> None:
        super().__init__()
        self.pool = make_pool(pool, stride)
        self.expand = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.pool(x))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C): free for channels_last tensors
        x = super().forward(x)
        return x.permute(0, 3, 1, 2)
