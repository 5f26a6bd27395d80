"""Interventions: per-call substitutions inside attention and MBConv blocks, safe with one shared model.

An intervention replaces what one block computes, at the level of the attention logits or weights, for
chosen heads and batch rows, while a forward pass runs inside :func:`intervene`. Like the recorder
(:mod:`coatnet.model.recording`) it lives in a :class:`contextvars.ContextVar`: no state on modules, no weight
edited, each thread sees only its own. With C = the content logits ``q k^T / sqrt(d)``, w = the relative
bias and N = the number of keys:

======================  ========================  ==========================================
kind                    pre-normalization model   post-normalization model
======================  ========================  ==========================================
``knockout``            the head's output ``A v`` set to zero, before the output projection
``content_only``        softmax(C)                softmax(C)
``bias_only``           softmax(w): position      1/N + w: a convolution with kernel w plus
                        alone                     the mean of the values
``uniform``             1/N                       1/N
``swap_normalization``  softmax(C) + w            softmax(C + w)
``zero_branch``         (MBConv) the residual branch set to zero
``no_se``               (MBConv) squeeze-excitation's gate set to 1
======================  ========================  ==========================================

``swap_normalization`` runs weights trained one way in the other: an untrained combination, labelled so
(:attr:`Intervention.label`). softmax(w) is renormalised over each query's own keys, so it equals a
convolution only away from the borders.

Interventions compose: those of enclosing :func:`intervene` contexts and those listed in one call all
apply; where two substitutions cover the same head and row, the later one wins, and a knockout always
wins (a zero output stays zero). They act on the fused and the explicit attention paths alike (the
explicit path, under :func:`coatnet.record_attention`, records the weights as substituted), on the
plain model and on its inference build. Knocking out every head of a block leaves that block's attention
branch equal to the output projection's bias (then LayerScale). A ``torch.compile``'d model asked to
intervene runs that call eagerly (:func:`coatnet.model.contexts.needs_eager`), so no request goes unheard.

Examples:
    >>> with intervene(Intervention("S3.0", "knockout", heads=(2,)), Intervention("S4.0", "bias_only")):
    ...     logits = model(images)
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F

from coatnet.model.contexts import context_open
from coatnet.model.parts import PartName

AttentionKind = Literal["knockout", "content_only", "bias_only", "uniform", "swap_normalization"]
ConvKind = Literal["zero_branch", "no_se"]


@dataclass(frozen=True)
class InterventionKind:
    """One intervention kind of :data:`INTERVENTION_KINDS`.

    Attributes:
        name: the ``kind`` an :class:`Intervention` is given (``knockout``, ``zero_branch`` ...).
        acts_on: ``attention`` (a Transformer block's attention, a MaxViT's block or grid attention) or
            ``conv`` (an MBConv block, a MaxViT's conv).
        description: what it does, in one line (the app's picker, ``coatnet.INTERVENTION_DESCRIPTIONS``).
        untrained: whether it runs the weights in a combination they were not trained in.
        per_head: whether a dataset study runs it once per head (a knockout of each head alone) rather
            than once per block.

    Examples:
        >>> from coatnet.model.interventions import INTERVENTION_KINDS
        >>> [(k.name, k.acts_on) for k in INTERVENTION_KINDS if k.untrained]
        [('swap_normalization', 'attention')]
    """

    name: str
    acts_on: Literal["attention", "conv"]
    description: str
    untrained: bool = False
    per_head: bool = False


INTERVENTION_KINDS: tuple[InterventionKind, ...] = (
    InterventionKind("knockout", "attention", "the heads' outputs set to zero", per_head=True),
    InterventionKind("content_only", "attention", "softmax(content logits): the bias removed"),
    InterventionKind("bias_only", "attention", "position alone: softmax(w) (pre) or 1/N + w (post)"),
    InterventionKind("uniform", "attention", "uniform weights 1/N"),
    InterventionKind(
        "swap_normalization", "attention",
        "the other normalization: softmax(C) + w (pre model), softmax(C + w) (post)", untrained=True,
    ),
    InterventionKind("zero_branch", "conv", "the MBConv residual branch set to zero"),
    InterventionKind("no_se", "conv", "squeeze-excitation's gate set to 1"),
)  # fmt: skip
"""Every intervention kind, once, in the order the app lists them: the constants below are read from it."""
ATTENTION_KINDS: tuple[str, ...] = tuple(k.name for k in INTERVENTION_KINDS if k.acts_on == "attention")
"""The intervention kinds an attention block takes (:class:`Intervention`'s ``kind``), in the order the
app lists them; :data:`DESCRIPTIONS` says each in words.

Examples:
    >>> import coatnet
    >>> "knockout" in coatnet.ATTENTION_KINDS and "no_se" not in coatnet.ATTENTION_KINDS
    True
"""
CONV_KINDS: tuple[str, ...] = tuple(k.name for k in INTERVENTION_KINDS if k.acts_on == "conv")
"""The intervention kinds an MBConv block takes: ``zero_branch`` (the residual branch removed) and
``no_se`` (the squeeze-excitation gate opened, 1 everywhere).

Examples:
    >>> import coatnet
    >>> coatnet.CONV_KINDS
    ('zero_branch', 'no_se')
"""
KINDS = ATTENTION_KINDS + CONV_KINDS
UNTRAINED = "untrained combination"
DESCRIPTIONS = {k.name: k.description for k in INTERVENTION_KINDS}
"""Every intervention kind in words, kind -> one line (``coatnet.INTERVENTION_DESCRIPTIONS``).

Examples:
    >>> import coatnet
    >>> coatnet.INTERVENTION_DESCRIPTIONS["knockout"]
    "the heads' outputs set to zero"
"""
_UNTRAINED_KINDS = {k.name: k.untrained for k in INTERVENTION_KINDS}


def _block_of(name: str) -> PartName:
    """``name`` as an intervention's block: a block (``S3.0``) or a MaxViT block's attention
    (``S1.0.block``, ``S1.0.grid``); a ValueError for any other name."""
    parsed = PartName(name)
    if not parsed.is_block or parsed.part not in (None, "block", "grid"):
        raise ValueError(
            f"an intervention names a block like S3.0 (stage, then block index; S1.0.block or S1.0.grid "
            f"for one of a MaxViT block's two attentions), got {str(name)!r}"
        )
    return parsed


@dataclass(frozen=True)
class Intervention:
    """One substitution in one block (see the module's table, and :data:`DESCRIPTIONS`).

    Attributes:
        block: the block's name, ``S3.0``; in a MaxViT ``S1.0`` is the whole block (attention kinds act
            on both its block and grid attention, MBConv kinds on its MBConv), ``S1.0.block`` and
            ``S1.0.grid`` one of its two attentions.
        kind: one of :data:`KINDS`: attention kinds for Transformer blocks, ``zero_branch`` and
            ``no_se`` for MBConv blocks.
        heads: the heads an attention kind applies to (``None``: all of them).
        rows: ``(start, stop)``, the rows of the batch it applies to (``None``: all): many interventions
            can then run in one batch, each on its own copy of the images.

    Raises:
        ValueError: an unknown kind, a conv kind with heads, or empty rows.

    Examples:
        >>> import coatnet
        >>> coatnet.Intervention("S3.0", "knockout", heads=(1, 2))
        Intervention(block='S3.0', kind='knockout', heads=(1, 2), rows=None)
    """

    block: str
    kind: str
    heads: tuple[int, ...] | None = None
    rows: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        name = _block_of(self.block)
        object.__setattr__(self, "block", name)
        part = name.part
        if self.kind not in KINDS:
            raise ValueError(f"unknown intervention {self.kind!r}: choose one of {', '.join(KINDS)}")
        if part is not None and self.kind in CONV_KINDS:
            raise ValueError(
                f"{self.kind} acts on a MaxViT block's MBConv: name the block {name.base}, "
                f"not its {part} attention"
            )
        if self.heads is not None:
            heads = tuple(int(h) for h in self.heads)
            if self.kind in CONV_KINDS:
                raise ValueError(f"{self.kind} acts on a whole MBConv block: it takes no heads")
            if not heads or min(heads) < 0 or len(set(heads)) != len(heads):
                raise ValueError(f"heads must be distinct indices >= 0, got {self.heads}")
            object.__setattr__(self, "heads", heads)
        if self.rows is not None:
            start, stop = (int(r) for r in self.rows)
            if not 0 <= start < stop:
                raise ValueError(f"rows must be (start, stop) with 0 <= start < stop, got {self.rows}")
            object.__setattr__(self, "rows", (start, stop))

    @property
    def stage(self) -> int:
        return self.block.stage

    @property
    def index(self) -> int:
        return self.block.block

    @property
    def part(self) -> str | None:
        """``block`` or ``grid`` for one of a MaxViT block's attentions; None for a whole block."""
        return self.block.part

    @property
    def base(self) -> PartName:
        """The block's name without its part: ``S1.0`` for ``S1.0.grid``."""
        return self.block.base

    @property
    def untrained(self) -> bool:
        """Whether this runs the weights in a combination they were not trained in."""
        return _UNTRAINED_KINDS.get(self.kind, False)

    @property
    def label(self) -> str:
        """``knockout S3.0 h2``, ``bias_only S4.0``; ``swap_normalization`` says it is untrained."""
        heads = "" if self.heads is None else " h" + ",".join(str(h) for h in self.heads)
        untrained = f" ({UNTRAINED})" if self.untrained else ""
        return f"{self.kind} {self.block}{heads}{untrained}"

    @property
    def text(self) -> str:
        """The intervention as a link or a command line writes it, ``kind:block[:heads]`` (rows left out):
        :meth:`from_text` reads it back.

        Examples:
            >>> import coatnet
            >>> coatnet.Intervention("S3.0", "knockout", heads=(1, 2)).text
            'knockout:S3.0:1,2'
        """
        heads = "" if self.heads is None else ":" + ",".join(str(h) for h in self.heads)
        return f"{self.kind}:{self.block}{heads}"

    @classmethod
    def from_text(cls, text: str) -> Intervention:
        """The intervention :attr:`text` wrote.

        Args:
            text: ``kind:block`` or ``kind:block:h1,h2``.

        Returns:
            The intervention.

        Raises:
            ValueError: text of another form, or an intervention the constructor refuses (says why).

        Examples:
            >>> import coatnet
            >>> coatnet.Intervention.from_text("zero_branch:S1.0")
            Intervention(block='S1.0', kind='zero_branch', heads=None, rows=None)
        """
        kind, _, rest = text.strip().partition(":")
        block, _, heads = rest.partition(":")
        if not kind or not block:
            raise ValueError(f"{text!r} is not an intervention: write kind:block or kind:block:h1,h2")
        try:
            chosen = tuple(int(h) for h in heads.split(",")) if heads else None
        except ValueError:
            raise ValueError(f"{text!r}: the heads are numbers separated by commas, as 1,2") from None
        return cls(block, kind, heads=chosen)

    def row_slice(self) -> slice:
        return slice(None) if self.rows is None else slice(*self.rows)


_ACTIVE: contextvars.ContextVar[tuple[Intervention, ...]] = contextvars.ContextVar(
    "coatnet_interventions", default=()
)


@contextmanager
def intervene(*interventions: Intervention, model: torch.nn.Module | None = None) -> Iterator[None]:
    """Apply ``interventions`` to the forward passes run inside this context, in this thread.

    Args:
        *interventions: :class:`Intervention` s; they add to those of an enclosing context.
        model: the model they are meant for: each is checked against it first (the block exists, has
            the right kind, has those heads), so a typo raises instead of silently changing nothing.

    Raises:
        ValueError: with ``model``, an intervention that does not fit it.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> x = torch.randn(1, 1, 28, 28)
        >>> knockout = coatnet.Intervention("S4.0", "knockout")
        >>> with torch.no_grad(), coatnet.intervene(knockout, model=model):
        ...     knocked = model(x)
        >>> with torch.no_grad():
        ...     torch.equal(knocked, model(x))
        False
    """
    for item in interventions:
        if not isinstance(item, Intervention):
            raise TypeError(f"intervene takes Intervention objects, got {type(item).__name__}")
    if model is not None:
        check_interventions(model, interventions)
    token = _ACTIVE.set(_ACTIVE.get() + tuple(interventions))
    try:
        with context_open():
            yield
    finally:
        _ACTIVE.reset(token)


def active_interventions() -> tuple[Intervention, ...]:
    """Every intervention open in the current context, in the order applied."""
    return _ACTIVE.get()


def block_interventions(stage: int, block: int, part: str | None = None) -> tuple[Intervention, ...]:
    """The open interventions for block ``S{stage}.{block}`` (``part``: for a MaxViT block's ``block`` or
    ``grid`` attention, which also takes those for the whole block), knockouts last (they always win);
    none while ``torch.compile`` traces (a compiled model runs such calls eagerly)."""
    if torch.compiler.is_compiling():  # checked first: torch.compile cannot trace a ContextVar
        return ()
    found = _ACTIVE.get()
    if not found:
        return ()
    mine = [i for i in found if i.block.stage == stage and i.block.block == block and i.part in (None, part)]
    if part is not None:  # a MaxViT attention: the whole block's MBConv kinds are its MBConv's
        mine = [i for i in mine if i.kind in ATTENTION_KINDS]
    return tuple(i for i in mine if i.kind != "knockout") + tuple(i for i in mine if i.kind == "knockout")


def check_interventions(model: torch.nn.Module, interventions: Sequence[Intervention]) -> None:
    """Raise a ValueError naming the first intervention ``model`` has no place for: each block checks the
    interventions meant for it (``check_intervention``: its kind, its heads)."""
    parts = model.parts()
    blocks = {part.name.base: part for part in parts if part.block is not None}  # a block's first part
    for item in interventions:
        first = blocks.get(item.base)
        if first is None:
            raise ValueError(f"{item.label}: the model has no block {item.base} (it has {', '.join(blocks)})")
        if item.part is not None and first.name.part is None:
            raise ValueError(f"{item.label}: {item.base} is not a MaxViT block; name the block {item.base}")
        if first.kind == "module":
            raise ValueError(f"{item.label}: {item.base} is a {type(first.owner).__name__}, which takes none")
        first.owner.check_intervention(item)


def intervention_targets(model: torch.nn.Module) -> dict[str, tuple[tuple[str, ...], int]]:
    """Every block name an :class:`Intervention` can take in ``model``, in forward order. A MaxViT block
    gives three: ``S1.0`` (attention kinds on every head of both its attentions, conv kinds on its conv;
    no heads to pick), ``S1.0.block`` and ``S1.0.grid`` (each attention, with its heads).

    Args:
        model: a :class:`CoAtNet` (or its inference build).

    Returns:
        Block name -> (the kinds it takes, the number of heads one may pick; 0 where it takes none).

    Examples:
        >>> import coatnet
        >>> targets = coatnet.intervention_targets(coatnet.load_checkpoint("demo-pre"))
        >>> targets["S2.0"], targets["S4.0"][1]
        ((('zero_branch', 'no_se'), 0), 8)
    """
    out: dict[str, tuple[tuple[str, ...], int]] = {}
    for part in model.parts():
        if part.block is None or part.kind in ("mlp", "module"):
            continue
        if part.name.part is not None:  # MaxViT: its conv, block (if any) and grid attention
            # the whole block: attention kinds on every head of both attentions, conv kinds on its conv
            # (a parallel block's two convs take none); heads are picked on each attention by name
            if part.name.base not in out:
                convs = part.owner.convs()
                out[part.name.base] = (
                    ATTENTION_KINDS + (convs[0][1].conv_kinds if len(convs) == 1 else ()),
                    0,
                )
            if part.kind == "attention":
                out[part.name] = (ATTENTION_KINDS, part.owner.heads)
        elif part.kind == "attention":
            out[part.name] = (ATTENTION_KINDS, part.attention.heads)
        else:
            out[part.name] = (part.module.conv_kinds, 0)
    return out


def per_window(items: Sequence[Intervention], windows: int) -> tuple[Intervention, ...]:
    """``items`` for a batch of windows, ``windows`` per image (a MaxViT attention's input): each
    intervention's rows, which count images, made to count their windows."""
    if windows == 1:
        return tuple(items)
    return tuple(
        item if item.rows is None else replace(item, rows=(item.rows[0] * windows, item.rows[1] * windows))
        for item in items
    )


def _where(item: Intervention, tensor: torch.Tensor) -> tuple[slice, torch.Tensor | slice]:
    """The (rows, heads) index of ``item`` into a (B, heads, ...) tensor."""
    heads = slice(None) if item.heads is None else torch.tensor(item.heads, device=tensor.device)
    return item.row_slice(), heads


def substitute_weights(
    kind: str, mode: str, content: torch.Tensor, bias: torch.Tensor, softmax: torch.nn.Module
) -> torch.Tensor:
    """The weights ``kind`` puts in place of a block's, from its content logits (b, h, N, N) and bias
    (h, N, N) (see the module's table); ``mode`` is the model's normalization."""
    n = content.shape[-1]
    if kind == "knockout":
        return torch.zeros_like(content)
    if kind == "uniform":
        return torch.full_like(content, 1.0 / n)
    if kind == "content_only":
        return softmax(content)
    if kind == "bias_only":
        weights = softmax(bias) if mode == "pre" else bias + 1.0 / n
        return weights.expand_as(content)
    if kind == "swap_normalization":
        return softmax(content) + bias if mode == "pre" else softmax(content + bias)
    raise ValueError(f"{kind} is not an attention intervention")


def substitute_output(
    kind: str, mode: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """``substitute_weights(...) @ v`` without forming the weights where a fused kernel can do it."""
    if kind == "knockout":
        return torch.zeros_like(v)
    if kind == "uniform":
        return v.mean(-2, keepdim=True).expand_as(v)
    if kind == "content_only":
        return F.scaled_dot_product_attention(q, k, v)
    if kind == "bias_only":
        if mode == "pre":
            return torch.matmul(torch.softmax(bias, dim=-1), v)
        return v.mean(-2, keepdim=True) + torch.matmul(bias, v)
    if kind == "swap_normalization":
        if mode == "pre":
            return F.scaled_dot_product_attention(q, k, v) + torch.matmul(bias, v)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])
    raise ValueError(f"{kind} is not an attention intervention")


def edit_weights(
    items: Sequence[Intervention],
    mode: str,
    weights: torch.Tensor,
    content: torch.Tensor,
    bias: torch.Tensor,
    softmax: torch.nn.Module,
) -> torch.Tensor:
    """``weights`` (B, h, N, N) with each intervention's substitution in its rows and heads."""
    weights = weights.clone()
    for item in items:
        rows, heads = _where(item, weights)
        part = content[rows][:, heads]
        weights[rows, heads] = substitute_weights(item.kind, mode, part, bias[heads], softmax).to(
            weights.dtype
        )
    return weights


def edit_output(
    items: Sequence[Intervention],
    mode: str,
    out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """The fused path's per-head outputs ``out`` (B, h, N, d) with each intervention's substitution."""
    out = out.clone()
    for item in items:
        rows, heads = _where(item, out)
        qs, ks, vs = (t[rows][:, heads] for t in (q, k, v))
        out[rows, heads] = substitute_output(item.kind, mode, qs, ks, vs, bias[heads]).to(out.dtype)
    return out


def row_mask(items: Sequence[Intervention], kind: str, like: torch.Tensor) -> torch.Tensor | None:
    """A (B, 1, 1, 1) mask, True on the rows an intervention of ``kind`` covers (None if none does)."""
    chosen = [i for i in items if i.kind == kind]
    if not chosen:
        return None
    mask = torch.zeros(like.shape[0], 1, 1, 1, dtype=torch.bool, device=like.device)
    for item in chosen:
        mask[item.row_slice()] = True
    return mask
