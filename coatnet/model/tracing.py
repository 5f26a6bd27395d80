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

This cache is the model's one capture mechanism: a block asks for one per-call context,
:func:`active_capture`, and hands each named activation to it. :func:`coatnet.record_attention` is a view
of the same cache: a tracer that keeps every ``*.attn.logits``, ``*.attn.bias`` and ``*.attn.weights``
and makes an :class:`coatnet.AttentionRecord` of each attention's three. A tracing context and a recording
one see the same pass; an inner context of one kind hides an outer one of the same kind while it is open.

While a tracer keeps more than attention's logits, bias and weights, blocks compute nothing in place (a
kept activation is never overwritten), and an attention block whose logits, bias or weights are asked for
takes its explicit path: the fused kernel does not make them. The inference build
(:func:`coatnet.for_inference`) and models imported from timm trace the same names with the same values.

Examples:
    >>> cache = trace(model, images, names=["S3.*.attn.weights", "logits"])
    >>> cache["S3.0.attn.weights"].shape  # (B, heads, N, N)
    >>> with tracing(patch={"S3.0.output": lambda x: x * 0}):  # S3.0's output zeroed for this pass
    ...     logits = model(images)
"""

from __future__ import annotations

import contextvars
import fnmatch
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from coatnet.model.contexts import context_open
from coatnet.model.parts import PartName

_CAPTURE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("coatnet_capture", default=None)

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
    applies. Made by :func:`tracing` (and, as a view, by :func:`coatnet.record_attention`); blocks hand it
    each named point through the open :class:`Capture`.

    ``in_place``: whether blocks may still compute in place while it is open (True only for a tracer that
    keeps nothing an in-place step could overwrite: attention's logits, bias and weights)."""

    def __init__(
        self, names: Sequence[str], patch: Mapping[str, Patch], detach: bool, *, in_place: bool = False
    ) -> None:
        self.patterns = tuple(names)
        self.patches = dict(patch)
        self.detach = detach
        self.in_place = in_place
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

    def patched(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x``, or what the patch given for ``name`` makes of it (same shape)."""
        patch = self.patches.get(name)
        if patch is None:
            return x
        patched = patch(x)
        if patched.shape != x.shape:
            raise ValueError(f"the patch of {name} gave shape {tuple(patched.shape)}; the activation "
                             f"is {tuple(x.shape)}")  # fmt: skip
        return patched

    def keep(self, name: str, x: torch.Tensor) -> None:
        """Keep ``x`` as ``name`` where ``name`` is selected."""
        if self.keeps(name):
            self.cache[name] = x.detach() if self.detach else x

    def tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the rest of the pass uses it: patched where a patch is given for ``name``, and kept
        (after the patch) where ``name`` is selected."""
        x = self.patched(name, x)
        self.keep(name, x)
        return x

    def attended(self, name: str, attention: nn.Module, grid: tuple[int, int], field: tuple[int, int] | None):
        """Told by ``attention`` (traced as ``name``) that it kept its logits, bias and weights for a
        ``grid`` of queries (windows tiling ``field``); a plain tracer has nothing to add."""


class Capture:
    """The one per-call capture context a block checks: the open tracers, at most one per kind
    (``trace``: :func:`tracing`'s, ``record``: :func:`coatnet.record_attention`'s). Every named activation
    goes through all of them: first each one's patch, then each one keeps what it selects."""

    def __init__(self, tracers: Mapping[str, Tracer]) -> None:
        self.tracers = dict(tracers)
        self._all = tuple(self.tracers.values())
        self.in_place = all(t.in_place for t in self._all)  # blocks may still compute in place

    def get(self, kind: str) -> Tracer | None:
        """The open tracer of ``kind`` (``trace``, ``record``), or None."""
        return self.tracers.get(kind)

    def wants(self, name: str) -> bool:
        """Whether any open tracer keeps or patches ``name``."""
        return any(t.wants(name) for t in self._all)

    def tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the rest of the pass uses it (every patch applied), kept by each tracer selecting
        ``name``."""
        for tracer in self._all:
            x = tracer.patched(name, x)
        for tracer in self._all:
            tracer.keep(name, x)
        return x

    def attended(self, name: str, attention: nn.Module, grid: tuple[int, int], field: tuple[int, int] | None):
        """Passed on to every tracer (:meth:`Tracer.attended`)."""
        for tracer in self._all:
            tracer.attended(name, attention, grid, field)


def active_capture() -> Capture | None:
    """The capture context open in the current context, or None (always None while ``torch.compile``
    traces: a compiled model runs eagerly while any per-call context may be open)."""
    if torch.compiler.is_compiling():
        return None
    return _CAPTURE.get()


@contextmanager
def capturing(kind: str, tracer: Tracer) -> Iterator[Tracer]:
    """Open ``tracer`` as this context's tracer of ``kind`` (hiding an outer one of the same kind) for the
    forward passes run inside the ``with`` block, in this thread."""
    outer = _CAPTURE.get()
    token = _CAPTURE.set(Capture({**(outer.tracers if outer is not None else {}), kind: tracer}))
    try:
        with context_open():
            yield tracer
    finally:
        _CAPTURE.reset(token)


def traced_name(module: nn.Module) -> str:
    """The name ``module``'s activations are traced under: its block's (``S3.0``), or inside a MaxViT
    block its part's (``S1.0.conv``, ``S1.0.block``, ``S1.0.grid``: ``trace_prefix``)."""
    return getattr(module, "trace_prefix", None) or PartName.of(module.stage, module.block)


def tap(capture: Capture | None, block: nn.Module, leaf: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` through ``capture`` at the point ``{block's name}.{leaf}`` (``x`` itself without one)."""
    if capture is None:
        return x
    return capture.tap(f"{traced_name(block)}.{leaf}", x)


def wants_explicit(capture: Capture | None, name: str) -> bool:
    """Whether the attention traced under ``name`` (``S3.0``, ``S1.0.block``) must make what its fused
    kernel does not."""
    return capture is not None and any(capture.wants(f"{name}.{leaf}") for leaf in EXPLICIT_NAMES)


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
    names, stage = ["S0.output"], None
    blocks = [part for part in model.parts() if part.block is not None]
    for (s, _), grouped in itertools.groupby(blocks, key=lambda part: (part.stage, part.block)):
        if stage is not None and s != stage:
            names.append(f"S{stage}.output")
        stage, group = s, list(grouped)
        base = group[0].name.base
        if group[0].name.part is None:  # an MBConv, ConvNeXt or Transformer block: its own names
            if group[0].kind != "module":  # a module put in a block's place traces nothing of its own
                leaves = TRANSFORMER_NAMES if group[0].kind == "attention" else group[0].module.trace_leaves
                names += [base.child(leaf) for leaf in leaves]
            continue
        # MaxViT: its conv(s), then block (if any) and grid attention, one after the other or side by side
        names.append(base.child("input"))
        parallel = group[0].parallel
        for part in group:
            if part.kind in ("mbconv", "convnext"):
                names += [part.name.child(leaf) for leaf in part.module.trace_leaves]
            elif part.kind == "attention":
                if parallel and part is next(p for p in group if p.kind == "attention"):
                    names.append(base.child("parallel.input"))  # both attentions take the same input
                names += [
                    part.name.child(leaf) for leaf in (ATTENTION_NAMES if parallel else TRANSFORMER_NAMES)
                ]
        if parallel:
            names += [base.child(f"parallel.{leaf}") for leaf in ("attn.branch", "mlp.branch", "output")]
        names.append(base.child("output"))
    names.append(f"S{stage}.output")
    return [*map(str, names), "pooled", "logits"]


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
    blocks = list(dict.fromkeys(PartName(n).base for n in known if PartName(n).block is not None))
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
    with capturing("trace", Tracer(names, patch, detach)) as tracer:
        yield tracer.cache


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
