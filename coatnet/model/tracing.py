"""A named activation cache, and activation patching at the same named points: per call, thread-safe.

Every activation a block makes that an analysis may want has a stable name (the hook map, docs/causal.md):

============================  ==================================================================
name                          the activation
============================  ==================================================================
``S0.output``                 the stem's output (B, C, H, W)
``S{s}.{b}.input``            what block ``S{s}.{b}`` takes (B, C, H, W)
``S{s}.{b}.expanded``         MBConv: the 1x1 expansion after its norm and activation (B, hidden, H, W)
``S{s}.{b}.depthwise``        MBConv: the depthwise convolution's output as squeeze-excitation takes it
``S{s}.{b}.se.gate``          MBConv: the squeeze-excitation gate (B, hidden, 1, 1), in (0, 1)
``S{s}.{b}.branch``           MBConv: the branch added to the shortcut (B, C, H, W)
``S{s}.{b}.attn.q`` ``.k``    Transformer: queries, keys, values (B, heads, N, head_dim), N = H*W
``.v``                        row-major
``S{s}.{b}.attn.bias``        Transformer: the relative bias ``w_{i-j}`` (heads, N, N)
``S{s}.{b}.attn.logits``      Transformer: the content logits ``q k^T / sqrt(d)`` (B, heads, N, N)
``S{s}.{b}.attn.weights``     Transformer: the weights applied to the values (B, heads, N, N), as
                              :func:`coatnet.record_attention` records them
``S{s}.{b}.attn.heads``       Transformer: each head's output ``weights @ v`` (B, heads, N, head_dim)
``S{s}.{b}.attn.branch``      Transformer: the attention branch added to the shortcut (B, C, H, W)
``S{s}.{b}.mlp.branch``       Transformer: the MLP branch added to the residual (B, C, H, W)
``S{s}.{b}.output``           the block's output (B, C, H, W)
``S{s}.output``               stage ``S{s}``'s output (its last block's)
``S{s}.{b}.conv.*``           MaxViT: its MBConv's names; ``S{s}.{b}.block.*`` and ``.grid.*`` its block and
                              grid attention's Transformer names, per window: (B x windows, heads, P*P, d)
``pooled``                    the globally average-pooled features (B, C)
``logits``                    the logits (B, classes)
============================  ==================================================================

:func:`trace_names` lists a model's names in forward order. Names are selected with :mod:`fnmatch`'s
rules, ``*`` matching across dots (``"S3.*.attn.weights"``, ``"*.output"``); only selected activations are
kept. A *patch* is a function of a named activation returning what the rest of the pass uses instead
(activation patching: :mod:`analysis.causal.patching`).

While a tracer is open, blocks compute nothing in place (a kept activation is never overwritten) and an
attention block whose logits, bias or weights are asked for takes its explicit path, as for the
recorder: the fused kernel does not make them. The inference build (:func:`coatnet.for_inference`) and
models imported from timm trace the same names with the same values.

Examples:
    >>> cache = trace(model, images, names=["S3.*.attn.weights", "logits"])
    >>> cache["S3.0.attn.weights"].shape  # (B, heads, N, N)
    >>> with tracing(patch={"S3.0.output": lambda x: x * 0}):  # S3.0's output zeroed for this pass
    ...     logits = model(images)
"""

from __future__ import annotations

import contextvars
import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from coatnet.model.contexts import context_open

_TRACER: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar("coatnet_tracer", default=None)

MBCONV_NAMES = ("input", "expanded", "depthwise", "se.gate", "branch", "output")
CONVNEXT_NAMES = ("input", "depthwise", "branch", "output")  # coatnet.model.convnext
TRANSFORMER_NAMES = (
    "input", "attn.q", "attn.k", "attn.v", "attn.bias", "attn.logits", "attn.weights", "attn.heads",
    "attn.branch", "mlp.branch", "output",
)  # fmt: skip
ATTENTION_NAMES = tuple(n for n in TRANSFORMER_NAMES if n.startswith("attn.") and n != "attn.branch")
EXPLICIT_NAMES = ("attn.logits", "attn.bias", "attn.weights")  # made only by the explicit path
RESIDUAL_STREAM = ("*.output", "pooled", "logits")  # trace's default: every block's and stage's output

Patch = Callable[[torch.Tensor], torch.Tensor]


class Tracer:
    """The named activations one traced call keeps (``cache``, in forward order) and the patches it
    applies. Made by :func:`tracing`; blocks call :meth:`tap` at each named point."""

    def __init__(self, names: Sequence[str], patch: Mapping[str, Patch], detach: bool) -> None:
        self.patterns = tuple(names)
        self.patches = dict(patch)
        self.detach = detach
        self.cache: dict[str, torch.Tensor] = {}
        self._kept: dict[str, bool] = {}

    def keeps(self, name: str) -> bool:
        """Whether ``name`` is selected (memoised: a pass asks for each name once)."""
        kept = self._kept.get(name)
        if kept is None:
            kept = self._kept[name] = any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
        return kept

    def wants(self, name: str) -> bool:
        """Whether ``name`` is kept or patched."""
        return name in self.patches or self.keeps(name)

    def tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the rest of the pass uses it: patched where a patch is given for ``name``, and kept
        (after the patch) where ``name`` is selected."""
        patch = self.patches.get(name)
        if patch is not None:
            patched = patch(x)
            if patched.shape != x.shape:
                raise ValueError(f"the patch of {name} gave shape {tuple(patched.shape)}; the activation "
                                 f"is {tuple(x.shape)}")  # fmt: skip
            x = patched
        if self.keeps(name):
            self.cache[name] = x.detach() if self.detach else x
        return x


def active_tracer() -> Tracer | None:
    """The tracer open in the current context, or None (always None while ``torch.compile`` traces: a
    compiled model runs eagerly while any per-call context may be open)."""
    if torch.compiler.is_compiling():
        return None
    return _TRACER.get()


def traced_name(module: nn.Module) -> str:
    """The name ``module``'s activations are traced under: its block's (``S3.0``), or inside a MaxViT
    block its part's (``S1.0.conv``, ``S1.0.block``, ``S1.0.grid``: ``trace_prefix``)."""
    return getattr(module, "trace_prefix", None) or f"S{module.stage}.{module.block}"


def tap(tracer: Tracer | None, block: nn.Module, leaf: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` through ``tracer`` at the point ``{block's name}.{leaf}`` (``x`` itself without a tracer)."""
    if tracer is None:
        return x
    return tracer.tap(f"{traced_name(block)}.{leaf}", x)


def wants_explicit(tracer: Tracer | None, name: str) -> bool:
    """Whether the attention traced under ``name`` (``S3.0``, ``S1.0.block``) must make what its fused
    kernel does not."""
    return tracer is not None and any(tracer.wants(f"{name}.{leaf}") for leaf in EXPLICIT_NAMES)


def trace_names(model: nn.Module) -> list[str]:
    """Every name ``model`` (a :class:`coatnet.CoAtNet` or its inference build) traces, in forward order
    (the table in :mod:`coatnet.model.tracing`).

    Args:
        model: the model.

    Returns:
        The names, from ``S0.output`` to ``logits``.

    Examples:
        >>> import coatnet
        >>> names = coatnet.trace_names(coatnet.load_checkpoint("demo-pre"))
        >>> names[:3], names[-1], "S3.0.attn.weights" in names
        (['S0.output', 'S1.0.input', 'S1.0.expanded'], 'logits', True)
    """
    names = ["S0.output"]
    for s, stage in enumerate(model.stages, start=1):
        for b, block in enumerate(stage.blocks):
            if getattr(block, "parallel", False):  # two convs, then block and grid attention side by side
                names.append(f"S{s}.{b}.input")
                names += [
                    f"S{s}.{b}.conv{i}.{leaf}" for i, c in enumerate(block.conv) for leaf in _conv_names(c)
                ]
                names += [f"S{s}.{b}.parallel.input"]
                names += [
                    f"S{s}.{b}.{part}.{leaf}" for part, _, _ in block.partitions() for leaf in ATTENTION_NAMES
                ]
                names += [f"S{s}.{b}.parallel.{leaf}" for leaf in ("attn.branch", "mlp.branch", "output")]
                names.append(f"S{s}.{b}.output")
                continue
            if hasattr(block, "partitions"):  # MaxViT: its conv, then block (if any) and grid attention
                names.append(f"S{s}.{b}.input")
                names += [f"S{s}.{b}.conv.{leaf}" for leaf in _conv_names(block.conv)]
                names += [
                    f"S{s}.{b}.{part}.{leaf}"
                    for part, _, _ in block.partitions()
                    for leaf in TRANSFORMER_NAMES
                ]
                names.append(f"S{s}.{b}.output")
                continue
            leaves = TRANSFORMER_NAMES if hasattr(block, "attn") else _conv_names(block)
            names += [f"S{s}.{b}.{leaf}" for leaf in leaves]
        names.append(f"S{s}.output")
    return [*names, "pooled", "logits"]


def _conv_names(block: nn.Module) -> tuple[str, ...]:
    """What a conv block traces: an MBConv's names, or a ConvNeXt block's (``trace_leaves``)."""
    return block.trace_leaves


def check_names(model: nn.Module, names: Sequence[str], patch: Mapping[str, Patch] = {}) -> None:
    """Raise a ValueError for a pattern that selects none of ``model``'s names, or a patch of a name it
    does not have: a typo must not pass silently as an empty cache."""
    known = trace_names(model)
    for pattern in names:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in known):
            raise ValueError(f"{pattern!r} matches no activation of this model; {_hint(known)}")
    for name in patch:
        if name not in known:
            raise ValueError(f"{name!r} is not an activation of this model (patches take exact names); "
                             f"{_hint(known)}")  # fmt: skip


def _hint(known: list[str]) -> str:
    blocks = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in known if re.match(r"S\d+\.\d+\.[a-z]+$", n)))
    return (f"names look like 'S3.0.attn.weights' or 'S2.*.output' (coatnet.trace_names(model) lists "
            f"them); its blocks are {blocks[0]} .. {blocks[-1]}")  # fmt: skip


@contextmanager
def tracing(
    names: Sequence[str] = (),
    *,
    patch: Mapping[str, Patch] | None = None,
    detach: bool = True,
    model: nn.Module | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the activations ``names`` selects, and apply ``patch``, in the forward passes run inside this
    context, in this thread (another thread's passes see neither). Nothing is left on the model.

    Args:
        names: fnmatch patterns (the table in :mod:`coatnet.model.tracing`).
        patch: exact name -> a function of that activation giving its replacement (same shape).
        detach: keep detached tensors (default); ``False`` keeps them in the autograd graph.
        model: checked against: a pattern selecting nothing, or a patch of an unknown name, raises.

    Yields:
        The cache, name -> activation, filled as the pass runs (a second pass overwrites).

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> images = torch.randn(2, 1, 28, 28)
        >>> last = coatnet.trace(model, images[:1], ["S4.0.output"])["S4.0.output"]
        >>> with torch.no_grad(), coatnet.tracing(["logits"], patch={"S4.0.output": lambda x: last}) as cache:
        ...     patched = model(images[1:])  # the first image's S4 output: its logits, whatever the input
        >>> with torch.no_grad():
        ...     torch.allclose(patched, model(images[:1]), atol=1e-5), tuple(cache["logits"].shape)
        (True, (1, 10))
    """
    if isinstance(names, str):
        names = [names]
    patch = dict(patch or {})
    if model is not None:
        check_names(model, names, patch)
    tracer = Tracer(names, patch, detach)
    token = _TRACER.set(tracer)
    try:
        with context_open():
            yield tracer.cache
    finally:
        _TRACER.reset(token)


def trace(
    model: nn.Module,
    images: torch.Tensor,
    names: Sequence[str] = RESIDUAL_STREAM,
    *,
    detach: bool = True,
) -> dict[str, torch.Tensor]:
    """The named activations of one forward pass of ``images`` (the table in :mod:`coatnet.model.tracing`),
    by default every block's and stage's output, the pooled features and the logits (a 224 px coatnet_0
    with every activation kept holds gigabytes: select what you need).

    The model runs as it is (a model in training mode updates its BatchNorm statistics, as any forward
    pass does; the analyses run such a model as a twin of their own); no gradient is kept unless
    ``detach=False``.

    Args:
        model: the model (or its inference build).
        images: a batch, (B, C, H, W), prepared as the model expects.
        names: fnmatch patterns, ``*`` matching across dots (``"S3.*.attn.weights"``).
        detach: keep detached tensors (default); ``False`` keeps them in the autograd graph.

    Returns:
        Name -> activation, for every name the patterns select, in forward order.

    Raises:
        ValueError: a pattern that selects nothing in ``model``.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> cache = coatnet.trace(model, torch.randn(2, 1, 28, 28), ["S3.*.attn.weights", "logits"])
        >>> {name: tuple(x.shape) for name, x in cache.items()}
        {'S3.0.attn.weights': (2, 4, 49, 49), 'S3.1.attn.weights': (2, 4, 49, 49), 'logits': (2, 10)}
    """
    if isinstance(names, str):
        names = [names]
    with (
        tracing(names, detach=detach, model=model) as cache,
        torch.set_grad_enabled(torch.is_grad_enabled() and not detach),
    ):
        model(images)
    return dict(cache)
