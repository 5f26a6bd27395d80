"""Parameters and multiply-accumulates (MACs) of a CoAtNet, per stage.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on a copy of the model built on the
``meta`` device: free for any size, and attention matmuls are counted there (the CPU kernel of
``F.scaled_dot_product_attention`` reports 0). The paper's "FLOPs" are MACs, so a FLOP counter's total is
halved (the paper's Table 3). Elementwise work (norms, activations, softmax, bias gathers) is not counted,
as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from coatnet.model.config import CoAtNetConfig, as_hw
from coatnet.model.network import CoAtNet


@dataclass(frozen=True)
class StageCost:
    """Parameters and MACs of one part of the model (``S0`` .. ``S4``, or ``head``).

    Attributes:
        name: ``S0`` .. ``S4``, or ``head`` (pooling and classifier).
        params: its parameters.
        macs: its multiply-accumulates for one image.

    Examples:
        >>> import coatnet
        >>> coatnet.stage_costs(coatnet.load_checkpoint("demo-pre"))[0]
        StageCost(name='S0', params=9568, macs=1862784)
    """

    name: str
    params: int
    macs: int


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """The number of parameters (buffers such as BatchNorm statistics are not parameters).

    Args:
        model: any module.
        trainable_only: count only those with ``requires_grad``.

    Returns:
        The number of parameter elements.

    Examples:
        >>> import coatnet
        >>> coatnet.count_params(coatnet.load_checkpoint("demo-pre"))
        1210618
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def stage_costs(
    model_or_config: CoAtNet | CoAtNetConfig, img_size: int | tuple[int, int] | None = None
) -> list[StageCost]:
    """Per-part parameters and MACs for one image of ``img_size`` (default: the built size).

    Args:
        model_or_config: a model, or its config (nothing is built).
        img_size: the input side or (H, W) (default: the size the model was built for).

    Returns:
        ``S0`` .. ``S4`` and ``head`` (pooling + classifier), in forward order.

    Examples:
        >>> import coatnet
        >>> costs = coatnet.stage_costs(coatnet.load_checkpoint("demo-pre").config)
        >>> [c.name for c in costs], sum(c.params for c in costs)
        (['S0', 'S1', 'S2', 'S3', 'S4', 'head'], 1210618)
    """
    config = model_or_config.config if isinstance(model_or_config, CoAtNet) else model_or_config
    height, width = as_hw(img_size) if img_size is not None else config.img_size
    with torch.device("meta"):
        meta = CoAtNet(config).eval()
        x = torch.empty(1, config.in_chans, height, width)
    meta.check_input_size(height, width)
    parts: list[tuple[str, nn.Module, object]] = [("S0", meta.stem, meta.stem)]
    parts += [(f"S{s}", stage, stage) for s, stage in enumerate(meta.stages, start=1)]
    parts[-1] = (
        parts[-1][0],
        nn.ModuleList([parts[-1][1], meta.norm]),
        lambda x: meta.norm(meta.stages[-1](x)),
    )
    parts.append(("head", meta.head, meta.head))
    costs = []
    with torch.no_grad():
        for name, module, run in parts:
            with FlopCounterMode(display=False) as counter:
                x = run(x)
            costs.append(StageCost(name, count_params(module), counter.get_total_flops() // 2))
    return costs


def count_macs(
    model_or_config: CoAtNet | CoAtNetConfig, img_size: int | tuple[int, int] | None = None
) -> int:
    """Multiply-accumulates of one forward pass on one image of ``img_size``.

    Args:
        model_or_config: a model, or its config (nothing is built).
        img_size: the input side or (H, W) (default: the size the model was built for).

    Returns:
        The MACs of every convolution, linear layer and attention product.

    Examples:
        >>> import coatnet
        >>> coatnet.count_macs(coatnet.load_checkpoint("demo-pre"))
        72502400
    """
    return sum(cost.macs for cost in stage_costs(model_or_config, img_size))
