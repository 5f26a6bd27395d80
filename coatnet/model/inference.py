"""The inference build: a model prepared once, when it is loaded for inference, to run faster.

:func:`inference_build` makes a new module tree from a model (the model itself is never touched):

- every BatchNorm that directly follows a convolution is folded into it (``W' = W * g / s``,
  ``b' = (b - m) * g / s + beta``), and a BatchNorm that directly precedes a 1x1 convolution (through an
  average pool at most, which commutes with a per-channel affine map) is folded into it
  (``W' = W * g / s``, ``b' = b + W (beta - m g / s)``);
- in blocks whose squeeze-excitation comes before the BatchNorm (CoAtNet-0 of timm), the two run as one
  pass, ``x * (gate * scale) + shift``;
- each attention block's relative bias ``w_{i-j}`` is gathered once for its grid into a (heads, N, N)
  buffer, instead of on every call;
- the token-wise linear layers of the Transformer blocks (q/k/v, the output projection, the MLP) become
  1x1 convolutions on (B, C, H, W): oneDNN runs them faster than a matrix multiply on the CPU, and no
  permute is needed around them;
- residual sums land in place on each branch's fresh output where no hook watches the branch (the
  plain model's blocks already compute their activations and gating in place on fresh tensors), and the
  MLP's GELU on the (B, H, W, C) view of its channels-last input (twice as fast on the CPU);
- the weights are put in channels-last memory, the layout oneDNN's convolutions run fastest in on the
  CPU, and in which every permute between (B, C, H, W) and tokens is a free view;
- on the CPU in fp32, every convolution keeps its weight also in oneDNN's own blocked layout, reordered
  once here rather than on every call (15-20% off a 1x1 convolution at batch 1, up to half at 7x7), with
  the activation right after it (SiLU, ReLU, GELU) computed by the convolution as it writes its output
  (:class:`PackedConv2d`).

:func:`for_inference` keeps one build per (model, device, dtype) and rebuilds it when any parameter or
buffer of the model has changed since (an optimizer step, ``load_state_dict``): a build never serves stale
weights. The build is for forward passes and for gradients with respect to the input (its parameters
need none; the in-place residual sums write only a branch's fresh output, which no backward formula
reads, and autograd's version counters would refuse one that did): recording attention
(:func:`coatnet.record_attention`: the relative bias it records is the same), every intervention, the
analyses' forward-only passes and Integrated Gradients' input gradients run on it
(``analysis.core.running``); those that take other gradients or hook the model's own modules keep using
the plain model.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.utils.hooks import RemovableHandle

from coatnet.model.attention import RelativeAttention, RelativePosition
from coatnet.model.blocks import MBConvBlock, Mlp, Stem, TransformerBlock, fresh_act, watched
from coatnet.model.interventions import active_interventions
from coatnet.model.layers import SqueezeExcite, batchnorm_affine, folded_after, traced_gate, uninitialised
from coatnet.model.tracing import active_capture

_BUILDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_AUTOMATIC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> the build its calls took
_PLAIN: ContextVar[bool] = ContextVar("coatnet_plain_modules", default=False)


class FrozenBias(nn.Module):
    """A relative position whose bias for its grid is gathered once: (heads, N, N), other grids computed
    from the original module (kept inside)."""

    def __init__(self, source: RelativePosition) -> None:
        super().__init__()
        self.source = source
        self.heads, self.grid = source.heads, source.grid
        with torch.no_grad():
            self.register_buffer("bias", source.get_bias().detach().clone(), persistent=False)

    def get_bias(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        if grid is None or tuple(grid) == self.grid:
            return self.bias
        return self.source.get_bias(grid)

    def table_for(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return self.source.table_for(grid)

    def kernel(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return self.source.kernel(grid)

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        return self.get_bias(grid)


class ChannelsLastGELU(nn.GELU):
    """GELU of a channels-last (B, C, H, W) tensor computed on its (B, H, W, C) view: the same values,
    about twice as fast on the CPU (the elementwise kernel takes its contiguous path)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)


class SqueezeExciteNorm(nn.Module):
    """Squeeze-excitation and the BatchNorm right after it (``se_early`` MBConv blocks) as one pass over
    the tensor: ``norm(x * gate) == x * (gate * scale) + shift``."""

    def __init__(self, se: SqueezeExcite, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2, self.gate = se.fc1, se.act, se.fc2, se.gate
        scale, shift = batchnorm_affine(norm)
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).clone())

    gates_in_place = True  # takes ``fresh`` (and computes out of place: addcmul is one pass)

    def forward(
        self,
        x: torch.Tensor,
        ungated: torch.Tensor | None = None,
        *,
        fresh: bool = False,
        trace: str | None = None,
    ) -> torch.Tensor:
        gate = self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
        if ungated is not None:  # the no_se intervention: gate 1 on those rows
            gate = torch.where(ungated, torch.ones_like(gate), gate)
        gate = traced_gate(trace, gate)
        return torch.addcmul(self.shift, x, gate * self.scale)


class PackedConv2d(nn.Conv2d):
    """A convolution, optionally followed by its activation, whose weight is also held in oneDNN's blocked
    layout and which runs as one oneDNN call with the activation fused.

    Depthwise convolutions, and dense ones over at most :attr:`LARGE` input positions (batch 1, or the
    small grids of S3 and S4), take the packed path. oneDNN picks the blocked layout for an input shape (a
    weight packed for another grid can run ten times slower, and one packed for batch 1 made a batch of 8
    of coatnet_nano_rw_224 run 30% slower), so the weight is packed on the first call at each input
    shape, batch size included, and kept for the last :attr:`SHAPES` shapes. The packed weights are derived
    copies
    outside the module's parameters and buffers (so the build's ``state_dict`` and its weight versions
    are those of a plain convolution).
    Inputs the packed kernel does not take (another device or dtype, or one that needs gradients) run as
    ``act(conv(x))``, and so does the module under ``torch.compile`` (Inductor packs weights itself).
    """

    SHAPES = 4
    # a dense convolution over more input positions (batch x H x W) than this runs oneDNN's per-call path:
    # its weight reorder is then a small part of the work, and the packed kernel measured up to 20% slower
    LARGE = 4096

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, device="meta",
        )  # fmt: skip
        self.weight, self.bias = conv.weight, conv.bias
        self.act = act if act is not None else nn.Identity()
        self.post_op = _post_op(self.act)
        self.packed: dict[tuple[int, ...], torch.Tensor] = {}

    def packed_weight(self, shape: torch.Size) -> torch.Tensor:
        """The weight packed for inputs of ``shape`` (made on first use; thread-safe: two threads
        packing at once make equal tensors and one is kept)."""
        key = (shape[0], *shape[2:])  # (batch, H, W)
        packed = self.packed.get(key)
        if packed is None:
            with torch.inference_mode(False), torch.no_grad():
                packed = torch.ops.mkldnn._reorder_convolution_weight(
                    self.weight, list(self.padding), list(self.stride), list(self.dilation), self.groups,
                    [shape[0], self.in_channels, *key[1:]],
                )  # fmt: skip
            kept = dict(self.packed)
            while len(kept) >= self.SHAPES:
                kept.pop(next(iter(kept)))
            kept[key] = packed
            self.packed = kept  # one assignment: readers see the old dict or the new one, whole
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad = x.requires_grad and torch.is_grad_enabled()
        plain = grad or x.device.type != "cpu" or x.dtype != torch.float32
        large = self.groups == 1 and x.shape[0] * x.shape[-2] * x.shape[-1] > self.LARGE
        if plain or large or torch.compiler.is_compiling():  # torch.compile packs the plain convolution
            # the convolution's output is fresh: its activation may run in place (unless hooked)
            return fresh_act(self.act, super().forward(x), not watched(self.act))
        attr, algorithm = self.post_op
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed_weight(x.shape), self.bias, list(self.padding), list(self.stride),
            list(self.dilation), self.groups, attr, [], algorithm,
        )  # fmt: skip


def _post_op(act: nn.Module) -> tuple[str, str]:
    """The oneDNN post-op (name, algorithm) computing ``act``."""
    if isinstance(act, nn.Identity):
        return "none", ""
    if type(act) in (nn.SiLU, nn.ReLU):
        return ("swish" if isinstance(act, nn.SiLU) else "relu"), ""
    if type(act) in (nn.GELU, ChannelsLastGELU):
        return "gelu", act.approximate
    raise ValueError(f"no oneDNN post-op for {type(act).__name__}")


def _packable(conv: nn.Module) -> bool:
    """Whether :class:`PackedConv2d` can stand for ``conv``: a zero-padded fp32 CPU convolution with
    explicit padding, where oneDNN is available."""
    return (
        type(conv) is nn.Conv2d
        and conv.weight.device.type == "cpu"
        and conv.weight.dtype == torch.float32
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and torch.backends.mkldnn.is_available()
    )


def _pack(conv: nn.Module, act: nn.Module | None = None) -> tuple[nn.Module, nn.Module | None]:
    """``(packed convolution, what stands for act)``: the activation fused into the convolution where
    oneDNN can compute it (``act`` becomes an identity), the convolution as it was where it cannot be
    packed."""
    if not _packable(conv):
        return conv, act
    if act is not None and type(act) not in (nn.SiLU, nn.ReLU, nn.GELU, ChannelsLastGELU):
        return PackedConv2d(conv), act
    return PackedConv2d(conv, act), (None if act is None else nn.Identity())


def _fold_after(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """``norm(conv(x))`` as one convolution."""
    fused = _copy_conv(conv, bias=True)
    weight, bias = folded_after(conv, norm)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


def _fold_before(norm: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(norm(x))`` as one convolution, for a 1x1 convolution without groups (so that padding and
    groups cannot mix the shift into other channels)."""
    scale, shift = batchnorm_affine(norm)
    fused = _copy_conv(conv, bias=True)
    weight = conv.weight  # (out, in, 1, 1)
    fused.weight.copy_(weight * scale.reshape(1, -1, 1, 1))
    bias = conv.bias if conv.bias is not None else weight.new_zeros(conv.out_channels)
    fused.bias.copy_(bias + weight[:, :, 0, 0] @ shift)
    return fused


def _copy_conv(conv: nn.Conv2d, *, bias: bool, device: torch.device | None = None) -> nn.Conv2d:
    # no random initialisation (the weights are written next), so the global RNG stays put
    fused = uninitialised(
        nn.Conv2d, conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=bias,
        padding_mode=conv.padding_mode, device=device or conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip
    return fused.requires_grad_(False)


def _conv1x1(linear: nn.Linear) -> nn.Conv2d:
    """A linear layer over channels as the 1x1 convolution computing the same on (B, C, H, W)."""
    template = nn.Conv2d(linear.in_features, linear.out_features, 1, device="meta", dtype=linear.weight.dtype)
    conv = _copy_conv(template, bias=linear.bias is not None, device=linear.weight.device)
    conv.weight.copy_(linear.weight[:, :, None, None])
    if linear.bias is not None:
        conv.bias.copy_(linear.bias)
    return conv


def _foldable_before(block: MBConvBlock) -> bool:
    """Whether the pre-norm of an MBConv block reaches its first 1x1 convolution through nothing but an
    average pool (no activation, no max pool)."""
    return (
        isinstance(block.pre_norm, nn.BatchNorm2d)
        and isinstance(block.pre_act, nn.Identity)
        and isinstance(block.down, nn.Identity | nn.AvgPool2d)
        and block.conv1_1x1.kernel_size == (1, 1)
        and block.conv1_1x1.groups == 1
        and block.conv1_1x1.padding in ((0, 0), 0, "valid")
    )


@torch.no_grad()
def inference_build(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """A new module tree computing what ``model`` computes in eval mode, prepared for inference (see the
    module's docstring): BatchNorm folded into the convolutions beside it, relative biases gathered once,
    channels-last weights. ``model`` is left as it was."""
    with torch.inference_mode(False):  # plain tensors even when called under inference_mode
        fast = copy.deepcopy(model).eval().requires_grad_(False)
        for module in fast.modules():
            stem = isinstance(module, Stem) and module.kind != "patch"
            if stem and isinstance(module.norm1, nn.BatchNorm2d):
                module.conv1 = _fold_after(module.conv1, module.norm1)
                module.norm1 = nn.Identity()
            elif isinstance(module, MBConvBlock):
                if _foldable_before(module):
                    module.conv1_1x1 = _fold_before(module.pre_norm, module.conv1_1x1)
                    module.pre_norm = nn.Identity()
                module.conv1_1x1 = _fold_after(module.conv1_1x1, module.norm1)
                module.norm1 = nn.Identity()
                if not module.se_early:  # norm2 follows the depthwise conv directly
                    module.conv2_kxk = _fold_after(module.conv2_kxk, module.norm2)
                    module.norm2 = nn.Identity()
                elif isinstance(module.se, SqueezeExcite) and isinstance(module.norm2, nn.BatchNorm2d):
                    module.se = SqueezeExciteNorm(module.se, module.norm2)  # norm2 follows SE's gating
                    module.norm2 = nn.Identity()
                module.residual_in_place = True
            elif isinstance(module, TransformerBlock):
                module.residual_in_place = True
            if isinstance(module, RelativeAttention):
                module.rel_pos = FrozenBias(module.rel_pos)
                module.qkv, module.proj = _conv1x1(module.qkv), _conv1x1(module.proj)
            elif isinstance(module, Mlp):
                module.fc1, module.fc2 = _conv1x1(module.fc1), _conv1x1(module.fc2)
                if type(module.act) is nn.GELU:
                    module.act = ChannelsLastGELU(approximate=module.act.approximate)
        if channels_last:
            fast = fast.to(memory_format=torch.channels_last)
            fast.input_memory_format = torch.channels_last
            _pack_convolutions(fast)
    fast.eval()  # the modules made here (folded convolutions, identities, packed ones) too
    fast.inference_build = True
    return fast


def _pack_convolutions(model: nn.Module) -> None:
    """Every convolution of ``model`` as a :class:`PackedConv2d` where it can be one, with the activation
    that directly follows it fused where nothing (a BatchNorm) stands between them."""
    for module in model.modules():
        if isinstance(module, Stem) and module.kind != "patch" and isinstance(module.norm1, nn.Identity):
            module.conv1, module.act1 = _pack(module.conv1, module.act1)
        elif isinstance(module, MBConvBlock):
            if isinstance(module.norm1, nn.Identity):
                module.conv1_1x1, module.act1 = _pack(module.conv1_1x1, module.act1)
            if not module.se_early and isinstance(module.norm2, nn.Identity):
                module.conv2_kxk, module.act2 = _pack(module.conv2_kxk, module.act2)
        elif isinstance(module, Mlp | SqueezeExcite | SqueezeExciteNorm):
            module.fc1, module.act = _pack(module.fc1, module.act)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.Conv2d:
                setattr(module, name, _pack(child)[0])


def _versions(model: nn.Module) -> tuple:
    """What changes when any weight of ``model`` changes: each tensor's identity, storage and in-place version
    (read from each module's own dicts: half the time of ``parameters()`` and ``buffers()``)."""
    return tuple(
        (id(t), t.data_ptr(), t._version)  # the pointer: a ``.data`` reassignment bumps no version
        for module in model.modules()
        for tensors in (module._parameters, module._buffers)
        for t in tensors.values()
        if t is not None
    )


_REGISTRATIONS = [0]  # modules, parameters and buffers registered (set as attributes) anywhere


def _registered(*_: object) -> None:
    _REGISTRATIONS[0] += 1


# counted from the first import on, so that a build's tensors can be compared one by one on each call:
# a tensor put in a weight's place (``load_state_dict(assign=True)``, a new classifier) is registered
module_hooks.register_module_module_registration_hook(_registered)
module_hooks.register_module_parameter_registration_hook(_registered)
module_hooks.register_module_buffer_registration_hook(_registered)


def _generation() -> tuple[int, int]:
    """Changes whenever a module, parameter or buffer is registered anywhere, or a hook is (every hook
    registration takes a new handle id)."""
    return RemovableHandle.next_id, _REGISTRATIONS[0]


@dataclass
class _Build:
    """A build and what it was made from: the model's modules and tensors, and their versions, read
    again one by one while no module, tensor or hook has been registered since (:func:`_generation`);
    the whole model is walked again otherwise."""

    build: nn.Module
    signature: tuple  # _versions(model)
    generation: tuple[int, int]
    modules: tuple[nn.Module, ...]
    tensors: tuple[torch.Tensor, ...]
    versions: list[tuple[int, int]]
    watched: bool  # a hook on one of the model's modules, when last walked

    @classmethod
    def of(cls, model: nn.Module, *, channels_last: bool) -> _Build:
        """``model``'s build, with what it is made from read first (a weight changed while building
        makes the next call build again)."""
        generation = _generation()  # first: a registration while reading makes the next call walk again
        modules = tuple(model.modules())
        tensors = tuple(t for m in modules for own in (m._parameters, m._buffers) for t in own.values())
        tensors = tuple(t for t in tensors if t is not None)
        versions = [(t._version, t.data_ptr()) for t in tensors]
        signature, hooked = _versions(model), watched(model)
        build = inference_build(model, channels_last=channels_last)
        return cls(build, signature, generation, modules, tensors, versions, hooked)

    def current(self, model: nn.Module) -> bool:
        """Whether the model's weights are still those the build was made from."""
        if self.generation == _generation():
            return [(t._version, t.data_ptr()) for t in self.tensors] == self.versions
        generation = _generation()
        if _versions(model) != self.signature:
            return False
        self.generation, self.watched = generation, watched(model)
        return True


def for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """The inference build of ``model`` (:func:`inference_build`): BatchNorm folded into the convolutions,
    relative biases gathered once, channels-last; made once per (model, device, dtype, layout) and made
    again when the model's weights have changed since. Thread-safe; ``model`` itself stays as it is.

    Args:
        model: the model, in eval mode.
        channels_last: lay the convolutions' tensors out channels-last (faster on CPUs).

    Returns:
        A model with the same outputs (to float rounding), for plain forward passes under
        ``torch.inference_mode()``.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> fast = coatnet.for_inference(model)
        >>> x = torch.randn(2, 1, 28, 28)
        >>> with torch.inference_mode():
        ...     torch.allclose(fast(x), model(x), atol=1e-4)
        True
    """
    return _kept_build(model, channels_last=channels_last).build


def _kept_build(model: nn.Module, *, channels_last: bool = True) -> _Build:
    first = next(model.parameters())
    key = (first.device, first.dtype, channels_last)
    with _LOCK:
        kept = _BUILDS.get(model, {}).get(key)
    if kept is not None and kept.current(model):
        return kept
    kept = _Build.of(model, channels_last=channels_last)
    with _LOCK:
        _BUILDS.setdefault(model, {})[key] = kept
    return kept


@contextmanager
def plain_modules() -> Iterator[None]:
    """Calls of a :class:`coatnet.CoAtNet` inside this block run its own modules, never the build that a
    call under ``torch.inference_mode()`` otherwise takes (:func:`automatic_build`); per thread and task.

    Yields:
        Nothing; the context is the setting.

    Examples:
        >>> import torch, coatnet
        >>> from coatnet.model.inference import automatic_build, plain_modules
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> with torch.inference_mode():
        ...     automatic_build(model) is coatnet.for_inference(model)
        True
        >>> with torch.inference_mode(), plain_modules():
        ...     automatic_build(model) is None
        True
    """
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def automatic_build(model: nn.Module) -> nn.Module | None:
    """The build ``model(x)`` runs instead of the model's own modules, or None: under
    ``torch.inference_mode()`` (no gradient can be asked for) without autocast, for a float32 model with
    every module in eval mode, no hook on any of them nor a global one (a hook must see the modules it was
    put on), and nothing recorded, traced or intervened in this call
    (:func:`coatnet.model.tracing.active_capture`, :func:`coatnet.intervene`), outside
    :func:`plain_modules`. The build computes the same outputs to float rounding, follows every weight
    change (:func:`for_inference`), and is itself never redirected.
    """
    if (
        not torch.is_inference_mode_enabled()
        or model.inference_build
        or _PLAIN.get()
        or active_capture() is not None
        or active_interventions()
        or torch.is_autocast_enabled("cpu")
        or torch.is_autocast_enabled("cuda")
        or module_hooks._global_forward_hooks
        or module_hooks._global_forward_pre_hooks
        or module_hooks._global_backward_hooks
        or module_hooks._global_backward_pre_hooks
    ):
        return None
    with _LOCK:  # the last build this call may take: its tensors tell whether the model still matches it
        kept = _AUTOMATIC.get(model)
    if kept is None or kept.generation != _generation() or kept.watched:
        if next(model.parameters()).dtype != torch.float32 or any(m.training for m in model.modules()):
            return None
        if watched(model):
            return None
        kept = _kept_build(model)
        with _LOCK:
            _AUTOMATIC[model] = kept
        return kept.build
    for module in kept.modules:
        if module.training:
            return None
    if kept.current(model):  # the same tensors, unchanged: on the device and in the dtype it was made for
        return kept.build
    with _LOCK:
        _AUTOMATIC.pop(model, None)
    return automatic_build(model)
