"""Small building blocks shared by the MBConv and Transformer blocks."""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from coatnet.model.randomness import active_generator
from coatnet.model.tracing import active_capture

M = TypeVar("M", bound=nn.Module)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` (training).
    The masks come from the generator of :func:`coatnet.model.randomness.private_random` when one is open."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep, generator=active_generator())
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask comes from the generator of :func:`coatnet.model.randomness.private_random`
    when one is open (``F.dropout`` draws from the global generator only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        generator = active_generator()
        if generator is None or not self.training or self.p == 0.0:
            return super().forward(x)
        keep = 1.0 - self.p
        return x * torch.empty_like(x).bernoulli_(keep, generator=generator) / keep


def make_act(name: str) -> nn.Module:
    """A fresh activation module: ``gelu``, ``gelu_tanh`` (GELU's tanh approximation), ``silu`` or
    ``relu``."""
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    return {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}[name]()


class SamePad(nn.Module):
    """TensorFlow's "same" padding before a ``kernel`` x ``kernel`` convolution of ``stride``: the total
    ``max((ceil(n / s) - 1) s + k - n, 0)`` per side, the smaller half before (on even sides, for a 3x3
    convolution of stride 2: 0 before, 1 after). The convolution itself pads nothing."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad takes the last axis first
            total = max((-(-n // self.stride) - 1) * self.stride + self.kernel - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads) if any(pads) else x

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


def batchnorm_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``norm(x) == x * scale + shift`` per channel, in eval mode
    (``scale = g / sqrt(var + eps)``, ``shift = beta - m * scale``)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def folded_after(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of one convolution computing ``norm(conv(x))`` in eval mode:
    ``W' = W * scale``, ``b' = b * scale + shift`` (:func:`batchnorm_affine`)."""
    scale, shift = batchnorm_affine(norm)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: channel gates from globally pooled features (1x1 convs ``fc1``, ``fc2``)."""

    gates_in_place = True  # takes ``fresh`` (MBConvBlock._gate)

    def __init__(self, *, channels: int, hidden: int, act: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(
        self,
        x: torch.Tensor,
        ungated: torch.Tensor | None = None,
        *,
        fresh: bool = False,
        trace: str | None = None,
    ) -> torch.Tensor:
        """``x * gate``; rows where the (B, 1, 1, 1) mask ``ungated`` is True keep gate 1 (the ``no_se``
        intervention). ``fresh``: the caller's word that no one else holds ``x`` (an activation's output
        just made) and no hook watches this module (``blocks.watched``), so that without gradients the gate
        is applied in place (a third of the time at 56x56). ``trace``: the name the gate is traced at
        (:mod:`coatnet.model.tracing`)."""
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.fc2(self.act(self.fc1(scale))))
        if ungated is not None:
            scale = torch.where(ungated, torch.ones_like(scale), scale)
        scale = traced_gate(trace, scale)
        if not fresh or (torch.is_grad_enabled() and x.requires_grad):
            return x * scale
        return x.mul_(scale)


def traced_gate(name: str | None, gate: torch.Tensor) -> torch.Tensor:
    """A squeeze-excitation gate through the open capture at ``name`` (the gate itself without a name)."""
    if name is None:
        return gate
    capture = active_capture()
    return gate if capture is None else capture.tap(name, gate)


def make_pool(kind: str, stride: int) -> nn.Module:
    """The down-sampling pool of Eq. 4 and 5: a stride x stride window (``max``, ``avg``) or a 3x3 window
    with padding 1 (``max3``); identity for stride 1."""
    if stride == 1:
        return nn.Identity()
    if kind == "max3":
        return nn.MaxPool2d(kernel_size=3, stride=stride, padding=1)
    if kind == "max":
        return nn.MaxPool2d(kernel_size=stride, stride=stride)
    return nn.AvgPool2d(kernel_size=stride, stride=stride)


class Shortcut(nn.Module):
    """The residual path of a block: ``Proj(Pool(x))`` (Eq. 4 and 5), each part only where needed."""

    def __init__(self, *, dim_in: int, dim_out: int, stride: int, pool: str, bias: bool = True) -> None:
        super().__init__()
        self.pool = make_pool(pool, stride)
        self.expand = nn.Conv2d(dim_in, dim_out, 1, bias=bias) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.pool(x))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C): free for channels_last tensors
        x = super().forward(x)
        return x.permute(0, 3, 1, 2)


def make_norm2d(kind: str, channels: int, *, eps: float, momentum: float = 0.1) -> nn.Module:
    """A norm over the channels of (B, C, H, W): ``layer`` (LayerNorm) or ``batch`` (BatchNorm)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    return LayerNorm2d(channels, eps=eps)


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch, (B, C, H, W) (Touvron et al. 2021)."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.init = init  # the value every channel starts at (coatnet.model.network.reinitialise)
        self.gamma = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None]


def uninitialised(kind: type[M], *args, device: torch.device | str = "cpu", **kwargs) -> M:
    """``kind(*args, **kwargs)`` with uninitialised storage on ``device``, the global random state
    untouched (``torch.nn.utils.skip_init`` for any module tree): built on the meta device, then every
    parameter and buffer given empty storage, tied ones staying tied. ``Module.to_empty`` would do the
    same through ``empty_like`` of meta tensors, whose first use imports sympy: a second of every
    command's start."""
    with torch.device("meta"):
        module = kind(*args, **kwargs)
    made: dict[int, torch.Tensor] = {}

    def allocate(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in made:
            empty = torch.empty(t.shape, dtype=t.dtype, device=device)
            parameter = isinstance(t, nn.Parameter)
            made[id(t)] = nn.Parameter(empty, requires_grad=t.requires_grad) if parameter else empty
        return made[id(t)]

    for part in module.modules():
        for name, p in part._parameters.items():
            if p is not None:
                part._parameters[name] = allocate(p)
        for name, b in part._buffers.items():
            if b is not None:
                part._buffers[name] = allocate(b)
    return module


class Mlp(nn.Module):
    """The Transformer FFN, Linear -> GELU -> Linear over the channels of (B, C, H, W)."""

    def __init__(self, *, dim: int, hidden: int, act: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.fc1, nn.Conv2d):  # the inference build's 1x1 convolutions on (B, C, H, W)
            return self.fc2(self.act(self.fc1(x)))
        x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C): free for channels_last tensors
        return self.fc2(self.act(self.fc1(x))).permute(0, 3, 1, 2)
