"""What a head, a bias or a block does for one image's prediction: interventions and head importance.

:func:`intervention_effect` runs an image with and without chosen interventions
(:mod:`coatnet.model.interventions`: knock heads out, keep only the content or only the bias, uniform weights,
the other normalization, an MBConv branch or its squeeze-excitation removed) and gives the top-5, the
chosen class's logit and probability before and after, and the attention maps of both passes.
:func:`head_importance` gives, for every head of every attention block, the drop of the class's logit
when that head alone is knocked out: all heads in one batched pass (one copy of the image per head, each
with its own knockout), not one pass per head.

Both run the shared model without touching it (the interventions live in a per-call context).

Examples:
    >>> effect = intervention_effect(model, image, [Intervention("S3.0", "bias_only")])
    >>> effect.logit_before, effect.logit_after
    >>> importance = head_importance(model, image)
    >>> importance.drop["S3.0"]  # (heads,) logit drops
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.geometry import attention_blocks
from analysis.core.inputs import as_batch
from analysis.core.predictions import Prediction, top_k
from analysis.core.running import call_model
from analysis.maps.attention import AttentionMaps, attention_maps
from coatnet.model.interventions import UNTRAINED, Intervention, check_interventions, intervene
from coatnet.model.network import CoAtNet

BORDER_NOTE = (
    "softmax(w) is renormalised over each query's own keys: it equals a convolution only away from the "
    "borders"
)


@dataclass(frozen=True)
class InterventionEffect:
    """One image with and without a set of interventions (:func:`intervention_effect`).

    Attributes:
        labels: each intervention's label (``swap_normalization`` says "untrained combination").
        target: the class followed (default: the class predicted without intervention).
        top5_before: the top-5 predictions without the interventions.
        top5_after: the top-5 predictions with them.
        logit_before: the target class's logit without the interventions.
        logit_after: the target class's logit with them.
        prob_before: the target class's probability without the interventions.
        prob_after: the target class's probability with them.
        before: the attention maps without the interventions.
        after: the attention maps with them (as substituted).
        notes: what the reader should know (untrained combinations, softmax(w) at the borders).

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> uniform = [analysis.Intervention("S4.0", "uniform")]
        >>> effect = analysis.intervention_effect(model, torch.randn(1, 28, 28), uniform)
        >>> effect.labels, len(effect.top5_after), [b.name for b in effect.after.blocks]
        (('uniform S4.0',), 5, ['S3.0', 'S3.1', 'S4.0'])
    """

    labels: tuple[str, ...]
    target: int
    top5_before: tuple[Prediction, ...]
    top5_after: tuple[Prediction, ...]
    logit_before: float
    logit_after: float
    prob_before: float
    prob_after: float
    before: AttentionMaps
    after: AttentionMaps
    notes: tuple[str, ...]


def intervention_effect(
    model: CoAtNet,
    image: torch.Tensor | Image.Image,
    interventions: Sequence[Intervention],
    *,
    target: int | None = None,
    class_names: Sequence[str] | None = None,
) -> InterventionEffect:
    """The prediction and attention of one image before and after ``interventions``.

    Args:
        model: a CoAtNet (left as found).
        image: a preprocessed (C, H, W) / (1, C, H, W) tensor or a PIL image.
        interventions: :class:`coatnet.model.interventions.Intervention` s, checked against the model.
        target: the class whose logit and probability are followed; default the predicted class.
        class_names: names for the top-5.

    Returns:
        :class:`InterventionEffect`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> knockout = [analysis.Intervention("S3.0", "knockout"), analysis.Intervention("S3.1", "knockout")]
        >>> effect = analysis.intervention_effect(model, torch.randn(1, 28, 28), knockout, target=4)
        >>> effect.target, effect.logit_before != effect.logit_after
        (4, True)
    """
    batch = as_batch(image, model)[:1]
    check_interventions(model, interventions)
    before = attention_maps(model, batch)
    with intervene(*interventions):
        after = attention_maps(model, batch)
    logits_before, logits_after = before.logits[0], after.logits[0]
    target = int(np.argmax(logits_before)) if target is None else int(target)
    if not 0 <= target < logits_before.shape[0]:
        raise ValueError(f"target must be a class index 0..{logits_before.shape[0] - 1}, got {target}")
    notes = []
    if any(i.untrained for i in interventions):
        notes.append(f"swap_normalization runs the weights in the other normalization: an {UNTRAINED}")
    if any(i.kind == "bias_only" for i in interventions) and model.attention_mode == "pre":
        notes.append(BORDER_NOTE)
    return InterventionEffect(
        labels=tuple(i.label for i in interventions),
        target=target,
        top5_before=top_k(logits_before, class_names),
        top5_after=top_k(logits_after, class_names),
        logit_before=float(logits_before[target]),
        logit_after=float(logits_after[target]),
        prob_before=float(_softmax(logits_before)[target]),
        prob_after=float(_softmax(logits_after)[target]),
        before=before,
        after=after,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class HeadImportance:
    """The drop of one class's logit when each head alone is knocked out, for one image
    (:func:`head_importance`).

    Attributes:
        target: the class followed.
        logit: its logit without intervention.
        blocks: the attention blocks, in forward order.
        drop: per block, (heads,) ``logit - logit with that head knocked out``: positive when the head
            supports the class.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> importance = analysis.head_importance(model, torch.randn(1, 28, 28))
        >>> importance.blocks, importance.drop["S4.0"].shape
        (('S3.0', 'S3.1', 'S4.0'), (8,))
    """

    target: int
    logit: float
    blocks: tuple[str, ...]
    drop: dict[str, np.ndarray]

    def ranked(self) -> list[tuple[str, int, float]]:
        """(block, head, drop) of every head, the largest drop first."""
        rows = [(b, h, float(d)) for b in self.blocks for h, d in enumerate(self.drop[b])]
        return sorted(rows, key=lambda r: -r[2])


def head_importance(
    model: CoAtNet,
    image: torch.Tensor | Image.Image,
    *,
    target: int | None = None,
    max_rows: int = 64,
    progress: Callable[[float], None] | None = None,
) -> HeadImportance:
    """Knock out each head of each attention block alone and measure the class's logit drop.

    Batched: the image is repeated once per head, each copy with one head knocked out, and each block's
    copies run from that block on (the activation entering it is computed once), ``max_rows`` copies
    per pass.

    Args:
        model: a CoAtNet (left as found).
        image: a preprocessed (C, H, W) / (1, C, H, W) tensor or a PIL image.
        target: the class followed; default the predicted class.
        max_rows: the largest batch of copies run at once.
        progress: called with the fraction done after each pass.

    Returns:
        :class:`HeadImportance`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> importance = analysis.head_importance(model, torch.randn(1, 28, 28), target=4)
        >>> block, head, drop = importance.ranked()[0]  # the head whose knockout lowers the logit most
        >>> importance.target, block in importance.blocks
        (4, True)
    """
    batch = as_batch(image, model)[:1]
    refs = attention_blocks(model, tuple(batch.shape[-2:]))
    names = model.block_names()
    drops: dict[str, np.ndarray] = {}
    with call_model(model) as own, torch.inference_mode():
        logits = own(batch)[0]
        target = int(logits.argmax()) if target is None else int(target)
        if not 0 <= target < logits.shape[0]:
            raise ValueError(f"target must be a class index 0..{logits.shape[0] - 1}, got {target}")
        total = sum(ref.attention.heads for ref in refs)
        done = 0
        for ref in refs:
            position = names.index(ref.base)  # a MaxViT block's attentions: the block they are in
            entering = own.forward_to(batch, position)
            heads = ref.attention.heads
            out = []
            for start in range(0, heads, max_rows):
                chosen = range(start, min(heads, start + max_rows))
                items = [
                    Intervention(ref.name, "knockout", heads=(h,), rows=(i, i + 1))
                    for i, h in enumerate(chosen)
                ]
                with intervene(*items):
                    out.append(own.forward_from(entering.expand(len(items), -1, -1, -1), position)[:, target])
                done += len(items)
                if progress is not None:
                    progress(done / total)
            drops[ref.name] = (logits[target] - torch.cat(out)).float().cpu().numpy()
    return HeadImportance(target=target, logit=float(logits[target]), blocks=tuple(drops), drop=drops)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()
