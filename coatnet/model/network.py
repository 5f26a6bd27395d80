"""The CoAtNet network: stem S0, stages S1..S4, global-average-pool head (the paper's section 2.2)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coatnet.model.attention import RelativePosition, RelativePositionBias, relative_position_index
from coatnet.model.blocks import MaxViTBlock, Stem, TransformerBlock, conv_block_class
from coatnet.model.config import CoAtNetConfig
from coatnet.model.contexts import needs_eager
from coatnet.model.inference import automatic_build
from coatnet.model.layers import Dropout, LayerScale, make_norm2d, uninitialised
from coatnet.model.parallel import ParallelMaxViTBlock
from coatnet.model.parts import Part, PartName, block_names, model_parts
from coatnet.model.tracing import active_capture


@dataclass(frozen=True)
class StageInfo:
    """What a stage is, for one input size.

    Attributes:
        name: ``S0`` .. ``S4``.
        kind: ``conv`` / ``patch`` for the stem; ``C``, ``T``, ``M`` or ``C+T`` for S1..S4.
        blocks: number of blocks (convs for the conv stem: 2; the patch stem: 1).
        block_kinds: the kind of each block.
        channels: output channels.
        stride: this stage's own stride.
        reduction: input pixels per output grid step.
        grid: output (H, W) grid.

    Examples:
        >>> import coatnet
        >>> s3 = coatnet.load_checkpoint("demo-pre").stage_info()[3]
        >>> s3.name, s3.kind, s3.blocks, s3.channels, s3.reduction, s3.grid
        ('S3', 'T', 2, 128, 4, (7, 7))
    """

    name: str
    kind: str
    blocks: int
    block_kinds: tuple[str, ...]
    channels: int
    stride: int
    reduction: int
    grid: tuple[int, int]


class Stage(nn.Module):
    """One of S1..S4: its blocks in order; the first one applies the stage's stride."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ClassifierHead(nn.Module):
    """Global average pooling, then a linear classifier (the paper's head); with ``hidden`` > 0,
    pool -> LayerNorm -> linear -> tanh -> linear (timm's paper-like "pre-logits" head)."""

    def __init__(
        self, *, dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0, eps: float = 1e-5
    ):
        super().__init__()
        self.hidden = hidden
        if hidden:
            self.norm = nn.LayerNorm(dim, eps=eps)
            self.pre_logits = nn.Linear(dim, hidden)
            self.pre_act = nn.Tanh()
        self.num_features = hidden or dim
        self.drop = Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        x = x.mean((2, 3))  # (B, C, H, W) -> (B, C)
        if capture is not None:
            x = capture.tap("pooled", x)
        if self.hidden:
            x = self.pre_act(self.pre_logits(self.norm(x)))
        x = self.drop(x)
        if pre_logits:
            return x
        return self.fc(x) if capture is None else capture.tap("logits", self.fc(x))

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


class CoAtNet(nn.Module):
    """A CoAtNet built from a :class:`CoAtNetConfig`; ``coatnet.create_model`` builds it by name.

    Args:
        config: the architecture: stem, stages S1..S4, attention mode, input size and classes.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.CoAtNet(coatnet.load_checkpoint("demo-pre").config).eval()
        >>> model(torch.randn(1, 1, 28, 28)).shape
        torch.Size([1, 10])
        >>> features, stage_outputs = model.forward_intermediates(torch.randn(1, 1, 28, 28))
        >>> [tuple(x.shape[1:]) for x in stage_outputs]
        [(32, 14, 14), (32, 14, 14), (64, 14, 14), (128, 7, 7), (256, 7, 7)]
    """

    def __init__(self, config: CoAtNetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = Stem(config)
        grids = config.grids()
        total_blocks = sum(config.depths)
        # stochastic depth rises linearly over all blocks (plain floats: the model may be built on "meta")
        rates = [config.drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]
        stages, dim_in, index = [], config.stem_dim, 0
        for s, stage_cfg in enumerate(config.stages, start=1):
            blocks: list[nn.Module] = []
            for group in stage_cfg.groups:
                for _ in range(group.depth):
                    b = len(blocks)
                    stride = config.strides[s] if b == 0 else 1
                    common = dict(dim_in=dim_in, dim_out=group.dim, stride=stride, config=config)
                    if group.kind == "C":
                        conv = conv_block_class(config)
                        blocks.append(conv(**common, drop_path=rates[index], stage=s, block=b))
                    elif group.kind == "M":
                        maxvit = ParallelMaxViTBlock if config.parallel_partitions else MaxViTBlock
                        blocks.append(maxvit(**common, drop_path=rates[index], stage=s, block=b))
                    else:
                        blocks.append(
                            TransformerBlock(
                                **common, grid=grids[s], drop_path=rates[index], stage=s, block=b
                            )
                        )
                    dim_in, index = group.dim, index + 1
            stages.append(Stage(blocks))
        self.stages = nn.ModuleList(stages)
        self.norm = (
            make_norm2d(config.attn_norm, dim_in, eps=config.ln_eps, momentum=config.bn_momentum)
            if config.final_norm
            else nn.Identity()
        )
        self.head = ClassifierHead(
            dim=dim_in,
            num_classes=config.num_classes,
            hidden=config.head_hidden,
            dropout=config.dropout,
            eps=config.ln_eps,
        )
        self.num_features = self.head.num_features
        if next(self.parameters()).device.type != "meta":  # a model of shapes only: nothing to initialise
            self.apply(_init_weights)

    # the memory format inputs are put in before the stem (the inference build sets channels-last)
    input_memory_format: torch.memory_format | None = None
    inference_build = False  # True on a build (coatnet.model.inference), which runs its own modules
    # what its checkpoint says about it (a coatnet.weights.checkpoint.CheckpointInfo, which this package
    # may not import), set by load_checkpoint and from_timm; None for a model built here
    checkpoint_info: Any = None

    @property
    def attention_mode(self) -> str:
        return self.config.attention

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a ValueError naming the sizes that work unless both sides divide by the total stride."""
        maxvit = "M" in self.config.stages[0].block_kinds
        r = self.config.partition_step() if maxvit else self.config.total_stride
        if height % r == 0 and width % r == 0 and height > 0 and width > 0:
            return
        down = f"{max(r, height // r * r)}x{max(r, width // r * r)}"
        up = f"{-(-height // r) * r}x{-(-width // r) * r}"
        what = f"its total stride times its window and grid sides, {r}" if maxvit else f"its total stride {r}"
        raise ValueError(
            f"{self.config.name} cannot take a {height}x{width} input: both sides must be positive "
            f"multiples of {what}; resize or crop to {down} or {up}"
            + (f" (it was built for {self.config.img_size[0]}x{self.config.img_size[1]})")
        )

    def stage_info(self, img_size: int | tuple[int, int] | None = None) -> list[StageInfo]:
        """Per-stage kind, blocks, channels, stride and grid for ``img_size`` (default: the built size)."""
        cfg = self.config
        grids, reductions = cfg.grids(img_size), cfg.reductions()
        stem_blocks = 1 if cfg.stem_kind == "patch" else 2
        infos = [
            StageInfo(
                "S0", cfg.stem_kind, stem_blocks, (cfg.stem_kind,) * stem_blocks,
                cfg.stem_dim, cfg.strides[0], reductions[0], grids[0],
            )
        ]  # fmt: skip
        for s, stage_cfg in enumerate(cfg.stages, start=1):
            infos.append(
                StageInfo(
                    f"S{s}", stage_cfg.kind, stage_cfg.depth, stage_cfg.block_kinds,
                    stage_cfg.dim, cfg.strides[s], reductions[s], grids[s],
                )
            )  # fmt: skip
        return infos

    def forward_intermediates(
        self, x: torch.Tensor, *, indices: list[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final feature map (as :meth:`forward_features` gives it) and the outputs of stages S0..S4
        (or those in ``indices``), (B, C, H, W)."""
        self.check_input_size(*x.shape[-2:])
        wanted = set(range(5) if indices is None else indices)
        outputs = []
        if self.input_memory_format is not None:
            x = x.contiguous(memory_format=self.input_memory_format)
        x = _traced("S0.output", self.stem(x))
        if 0 in wanted:
            outputs.append(x)
        for s, stage in enumerate(self.stages, start=1):
            x = _traced(f"S{s}.output", stage(x))
            if s in wanted:
                outputs.append(x)
        return self.norm(x), outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The S4 feature map (B, C, H/32, W/32) for the paper's strides."""
        self.check_input_size(*x.shape[-2:])
        if self.input_memory_format is not None:
            x = x.contiguous(memory_format=self.input_memory_format)
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        x = self.stem(x)
        if capture is None:
            for stage in self.stages:
                x = stage(x)
            return self.norm(x)
        x = capture.tap("S0.output", x)
        for s, stage in enumerate(self.stages, start=1):
            x = capture.tap(f"S{s}.output", stage(x))
        return self.norm(x)

    def block_names(self) -> list[PartName]:
        """The names of the blocks of S1..S4 in forward order (``S1.0``, ..., ``S4.1``): the positions
        :meth:`forward_to` stops at and :meth:`forward_from` starts at."""
        return block_names(self)

    def parts(self, img_size: int | tuple[int, int] | None = None) -> list[Part]:
        """Every named part in forward order (:mod:`coatnet.model.parts`): the stem, each conv block,
        each attention (with its partition and windows), each MLP and the head, with kind, stage, block,
        grid and stride for ``img_size`` (default: the built size), channels and module.

        Args:
            img_size: the input size the grids are for.

        Returns:
            A list of :class:`coatnet.model.parts.Part`.

        Examples:
            >>> import coatnet
            >>> parts = coatnet.load_checkpoint("demo-pre").parts(img_size=56)
            >>> [(str(p.name), p.grid) for p in parts if p.kind == "attention"]
            [('S3.0', (14, 14)), ('S3.1', (14, 14)), ('S4.0', (14, 14))]
        """
        return model_parts(self, img_size)

    def forward_to(self, x: torch.Tensor, position: int) -> torch.Tensor:
        """The activation entering block ``block_names()[position]`` (the stem's output for 0)."""
        self.check_input_size(*x.shape[-2:])
        if self.input_memory_format is not None:
            x = x.contiguous(memory_format=self.input_memory_format)
        return self.forward_blocks(_traced("S0.output", self.stem(x)), 0, position)

    def forward_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """The activation entering block ``block_names()[stop]`` (the last block's output for
        ``len(block_names())``) from the one entering block ``start``."""
        capture = active_capture()  # coatnet.model.tracing: a stage's output is its last block's
        if capture is None:
            for block in self._blocks()[start:stop]:
                x = block(x)
            return x
        last = itertools.accumulate(len(stage.blocks) for stage in self.stages)
        ends = {count - 1: s for s, count in enumerate(last, start=1)}  # a stage's last block: the stage
        for position, block in enumerate(self._blocks()[start:stop], start=start):
            x = block(x)
            if position in ends:
                x = capture.tap(f"S{ends[position]}.output", x)
        return x

    def forward_from(self, x: torch.Tensor, position: int) -> torch.Tensor:
        """The logits, from the activation entering block ``block_names()[position]``:
        ``forward_from(forward_to(images, p), p)`` runs the same operations as ``forward(images)``."""
        x = self.forward_blocks(x, position, len(self._blocks()))
        return self.forward_head(self.norm(x))

    def _blocks(self) -> list[nn.Module]:
        return [block for stage in self.stages for block in stage.blocks]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the classifier (skipped with ``pre_logits=True``)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a torch.compile'd model asked to record runs this call eagerly (contexts.needs_eager):
        # the per-call context lives outside what the compiled graph sees
        if torch.compiler.is_compiling():
            if needs_eager():
                return _eager_forward()(self, x)
        elif torch.is_inference_mode_enabled() and not self.training:
            # under inference mode, with nothing recorded, traced or hooked, the inference build runs
            build = automatic_build(self)
            if build is not None:
                return build(x)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for ``num_classes`` classes (0: none)."""
        self.config = self.config.replace(num_classes=num_classes)
        self.head.reset(num_classes)
        self.head.fc.apply(_init_weights)


def _traced(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the open capture at ``name`` (:mod:`coatnet.model.tracing`), itself without one."""
    capture = active_capture()
    return x if capture is None else capture.tap(name, x)


def build_for_loading(config: CoAtNetConfig) -> CoAtNet:
    """``CoAtNet(config)`` with its parameters and buffers allocated on the CPU but not initialised, for a
    state dict that sets every one of them (the loaders check that its keys are exactly the model's before
    they load it): initialising a large model costs seconds (2 s for coatnet_3) that loading throws away.
    The buffers a state dict does not hold (each relative-position index) are computed as at creation."""
    model = uninitialised(CoAtNet, config)
    for module in model.modules():
        if isinstance(module, RelativePosition):
            module.index = relative_position_index(*module.grid)
        elif module._non_persistent_buffers_set:  # a new kind of derived buffer must be computed here too
            raise TypeError(f"build_for_loading cannot compute {type(module).__name__}'s derived buffers")
    return model


def _forward(model: CoAtNet, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x))


_EAGER: list = []


def _eager_forward():
    """The model's forward pass as a function that runs outside any compiled graph, made the first time
    ``torch.compile`` traces a call that needs it: ``torch.compiler.disable`` imports ``torch._dynamo``,
    a second's work that every ``import coatnet`` would otherwise pay."""
    if not _EAGER:
        _EAGER.append(torch.compiler.disable(_forward))
    return _EAGER[0]


def _init_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        # He init on fan-out, counted per group so depthwise kernels are not scaled down by their width
        k_h, k_w = module.kernel_size
        fan_out = k_h * k_w * module.out_channels // module.groups
        nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_out), generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


ZERO_INIT_STD = 0.02  # a parameter created as zeros is re-initialised from N(0, ZERO_INIT_STD^2)


@torch.no_grad()
def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter of ``module`` (a block, the stem, the head) afresh from ``generator``, in
    place, with the initialiser the model uses at creation: linear and convolution weights as
    ``CoAtNet.__init__`` draws them, each relative-bias table from a normal of std 0.02 truncated at +-2,
    norms' weights at 1 and each layer scale at its starting value. A parameter created as zeros (every
    bias, the norms' shifts) is drawn from N(0, :data:`ZERO_INIT_STD`^2) instead, so that a randomised part
    is random (a zero classifier bias would leave every logit's gradient as it was). BatchNorm statistics
    are reset to their state at creation (mean 0, variance 1): the statistics of the trained weights
    describe activations the new weights do not make, and reset ones never divide by zero.

    Sanity checks (:mod:`analysis.explain.sanity`) call this on a copy of a model, never on a shared one.
    Raises TypeError for a parameter of a kind this does not know (a new layer must be added here)."""
    drawn: set[int] = set()
    for part in module.modules():
        own = dict(part.named_parameters(recurse=False))
        if isinstance(part, (nn.Linear, nn.Conv2d)):
            _init_weights(part, generator)
            drawn.add(id(part.weight))
        elif isinstance(part, RelativePositionBias):
            nn.init.trunc_normal_(part.table, std=0.02, generator=generator)
            drawn.add(id(part.table))
        elif isinstance(part, (nn.BatchNorm2d, nn.LayerNorm)):
            if isinstance(part, nn.BatchNorm2d):
                part.reset_running_stats()
            if part.weight is not None:
                part.weight.fill_(1.0)
                drawn.add(id(part.weight))
        elif isinstance(part, LayerScale):
            part.gamma.fill_(part.init)
            drawn.add(id(part.gamma))
        for name, parameter in own.items():
            if name == "bias" and id(parameter) not in drawn:
                nn.init.normal_(parameter, std=ZERO_INIT_STD, generator=generator)
                drawn.add(id(parameter))
        unknown = [name for name, parameter in own.items() if id(parameter) not in drawn]
        if unknown:
            raise TypeError(f"reinitialise does not know {type(part).__name__}'s parameters {unknown}")
