"""Activation patching: how much of a decision one component's activation carries from one run to another.

Two runs of the model: a *clean* input and a *corrupted* one (another image, or the clean image with a
stated :class:`Corruption`: Gaussian noise, a blur, a masked box). A *metric* reads each run's logits:
``logit_diff`` (default) = logit[target] - logit[foil], the target the clean prediction and the foil the
corrupted one; ``logit`` or ``prob``: the target's logit or probability. One component's activation (a
name of the hook map, :mod:`coatnet.model.tracing`) is taken from the other run and the rest of the pass
runs on (Meng et al. 2022's causal tracing; Heimersheim and Nanda 2024):

- **denoising**: the corrupted run with the component from the clean run (does it suffice?);
- **noising**: the clean run with the component from the corrupted run (is it necessary?).

Both are reported as the normalised recovery ``(m - m_corrupted) / (m_clean - m_corrupted)``: 0 is the
corrupted run's metric, 1 the clean run's (denoising climbs from 0, noising falls from 1). Where the two
runs' metrics differ by less than ``epsilon`` (as for ``logit_diff`` when both runs predict the same class)
the recovery is undefined: NaN in the arrays, "undefined" in the figures, never a number.

Components, per block (:data:`COMPONENTS`): ``output`` (for the stem ``S0``, its output as S1.0 takes it);
``branch`` (MBConv), ``attn.branch`` and ``mlp.branch`` (Transformer); CoAtNet's split of the attention:
``attn.logits`` (the content logits ``q k^T`` alone), ``attn.bias`` (the relative bias alone: it does not
depend on the input, so it recovers exactly 0 denoising, 1 noising), ``attn.weights`` (where the heads
look) and ``attn.v`` (what they carry); and each head's output (``attn.heads[:, h]``). A MaxViT block is
patched in its parts, as traced: its conv (``S1.0.conv``: output, branch), then its block and grid
attention (``S1.0.block``, ``S1.0.grid``: the Transformer components, per window), every part's rows
running from the block's input; a per-window activation is patched for all of one image's windows.
:func:`position_patching` patches every cell of one block's output (squares of ``cell`` x ``cell``
cells), a map on the image.

Batched: in eval mode the rows of one block (its components, its heads, or a chunk of its cells) run as
one batch from the activation entering that block (:meth:`coatnet.CoAtNet.forward_from`), each row
patched at its own name. A model in training mode runs each row as a whole pass of its own, every pass
with the same seeded draws, so that a row differs from its base run by the patch alone.

Examples:
    >>> result = activation_patching(model, image, corruption=Corruption("noise", sigma=1.0))
    >>> result.value("S3.0", "attn.weights")  # the recovery, or None where undefined
    >>> positions = position_patching(model, image, block="S3.0")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.causal.corruption import Corruption
from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from coatnet.model.network import CoAtNet
from coatnet.model.parts import PartName
from coatnet.model.randomness import private_random
from coatnet.model.tracing import Patch, tracing

MBCONV_COMPONENTS = ("output", "branch")
TRANSFORMER_COMPONENTS = (
    "output", "attn.branch", "mlp.branch", "attn.logits", "attn.bias", "attn.weights", "attn.v",
)  # fmt: skip
COMPONENTS = ("output", "branch", "attn.branch", "mlp.branch", "attn.logits", "attn.bias", "attn.weights",
              "attn.v")  # fmt: skip
METRICS = ("logit_diff", "logit", "prob")
DIRECTIONS = ("denoising", "noising")
EPSILON = 1e-3  # in the metric's units: logits, or probability
BATCH_SIZE = 64  # rows per pass
MAX_CELLS = 16  # position_patching's default: squares of cells, at most this many per side


@dataclass(frozen=True)
class PatchedPair:
    """What both patching results say of their two runs (the fields :class:`Patching` and
    :class:`PositionPatching` begin with).

    Attributes:
        direction: ``denoising`` or ``noising`` (module docstring).
        metric: ``logit_diff``, ``logit`` or ``prob``.
        target: the metric's class.
        foil: ``logit_diff``'s second class; None for the other metrics.
        clean_metric: the metric of the unpatched clean run.
        corrupted_metric: the metric of the unpatched corrupted run.
        defined: whether they differ by at least ``epsilon``; if not, every recovery is NaN.
        epsilon: the threshold.
        corruption: how the corrupted input was made ("a second image" when one was given).
        clean_logits: (classes,) of the unpatched clean run.
        corrupted_logits: (classes,) of the unpatched corrupted run.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> clean, corrupted = torch.randn(1, 28, 28), torch.randn(1, 28, 28)
        >>> pair = analysis.activation_patching(model, clean, corrupted, heads=False)
        >>> pair.direction, pair.metric, pair.corruption, pair.clean_logits.shape
        ('denoising', 'logit_diff', 'a second image', (10,))
    """

    direction: str
    metric: str
    target: int
    foil: int | None
    clean_metric: float
    corrupted_metric: float
    defined: bool
    epsilon: float
    corruption: str
    clean_logits: np.ndarray
    corrupted_logits: np.ndarray


@dataclass(frozen=True)
class Patching(PatchedPair):
    """The recovery of every block's components and heads, one direction, for one pair of inputs
    (:class:`PatchedPair`'s fields, then these).

    Attributes:
        direction: ``denoising`` or ``noising`` (module docstring).
        metric: ``logit_diff``, ``logit`` or ``prob``.
        target: the metric's class.
        foil: ``logit_diff``'s second class; None for the other metrics.
        clean_metric: the metric of the unpatched clean run.
        corrupted_metric: the metric of the unpatched corrupted run.
        defined: whether they differ by at least ``epsilon``; if not, every recovery is NaN.
        epsilon: the threshold.
        corruption: how the corrupted input was made ("a second image" when one was given).
        clean_logits: (classes,) of the unpatched clean run.
        corrupted_logits: (classes,) of the unpatched corrupted run.
        blocks: ``S0`` (the stem), then every block in forward order.
        kinds: each block's kind: ``stem``, ``C`` or ``T``.
        components: :data:`COMPONENTS`, the recovery's columns.
        recovery: (blocks, components), NaN where a block has no such component or where undefined.
        heads: per attention block, (heads,) the recovery of each head's output.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> clean, corrupted = torch.randn(1, 28, 28), torch.randn(1, 28, 28)
        >>> result = analysis.activation_patching(model, clean, corrupted)
        >>> result.blocks[:2], result.recovery.shape, result.heads["S4.0"].shape
        (('S0', 'S1.0'), (7, 8), (8,))
    """

    blocks: tuple[str, ...]
    kinds: tuple[str, ...]
    components: tuple[str, ...]
    recovery: np.ndarray
    heads: dict[str, np.ndarray]

    @property
    def present(self) -> np.ndarray:
        """(blocks, components) whether each block has each component (the stem its output alone)."""
        own = {"stem": ("output",), "C": MBCONV_COMPONENTS, "T": TRANSFORMER_COMPONENTS}
        return np.array([[c in own[kind] for c in self.components] for kind in self.kinds])

    def value(self, block: str, component: str) -> float | None:
        """The recovery of ``component`` of ``block``, or None where undefined (a KeyError for a block or
        component the result does not hold)."""
        if block not in self.blocks:
            raise KeyError(f"no block {block!r}; this result holds {', '.join(self.blocks)}")
        if component not in self.components:
            raise KeyError(f"no component {component!r}; the components are {', '.join(self.components)}")
        value = float(self.recovery[self.blocks.index(block), self.components.index(component)])
        return None if math.isnan(value) else value


@dataclass(frozen=True)
class PositionPatching(PatchedPair):
    """The recovery of every position (square of ``cell`` x ``cell`` cells) of one block's output
    (:class:`PatchedPair`'s fields, then these).

    Attributes:
        direction: ``denoising`` or ``noising`` (module docstring).
        metric: ``logit_diff``, ``logit`` or ``prob``.
        target: the metric's class.
        foil: ``logit_diff``'s second class; None for the other metrics.
        clean_metric: the metric of the unpatched clean run.
        corrupted_metric: the metric of the unpatched corrupted run.
        defined: whether they differ by at least ``epsilon``; if not, every recovery is NaN.
        epsilon: the threshold.
        corruption: how the corrupted input was made ("a second image" when one was given).
        clean_logits: (classes,) of the unpatched clean run.
        corrupted_logits: (classes,) of the unpatched corrupted run.
        block: the block (``S3.0``; ``S0`` for the stem's output).
        grid: the block's output grid (H, W).
        cell: the side of each patched square, in cells.
        stride: input pixels per grid step.
        recovery: (ceil(H / cell), ceil(W / cell)), NaN where undefined.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> clean, corrupted = torch.randn(1, 28, 28), torch.randn(1, 28, 28)
        >>> result = analysis.position_patching(model, clean, corrupted, block="S3.0")
        >>> result.grid, result.cell, result.recovery.shape
        ((7, 7), 1, (7, 7))
    """

    block: str
    grid: tuple[int, int]
    cell: int
    stride: int
    recovery: np.ndarray


@dataclass(frozen=True)
class _Row:
    """One patched pass: ``name`` taken from the source run, whole, or one head, or one square of cells."""

    position: int  # the block whose input the row starts from (forward_from)
    name: str
    head: int | None = None
    cells: tuple[int, int, int, int] | None = None  # (top, left, bottom, right) of the grid


@dataclass(frozen=True)
class _Setting:
    """What one call compares: the two inputs, the metric and how the rows run."""

    clean: torch.Tensor
    corrupted: torch.Tensor
    corruption: str
    direction: str
    metric: str
    target: int | None
    foil: int | None
    epsilon: float
    batch_size: int
    seed: int


def activation_patching(
    model: CoAtNet,
    clean: torch.Tensor | Image.Image,
    corrupted: torch.Tensor | Image.Image | None = None,
    *,
    corruption: Corruption | None = None,
    direction: str = "denoising",
    metric: str = "logit_diff",
    target: int | None = None,
    foil: int | None = None,
    heads: bool = True,
    epsilon: float = EPSILON,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> Patching:
    """The recovery of every block's output, branches, attention parts and heads (module docstring).

    Args:
        model: a CoAtNet (left as found).
        clean: the clean input: a preprocessed (C, H, W) / (1, C, H, W) tensor or a PIL image.
        corrupted: the corrupted input, of the same size; default ``corruption`` applied to ``clean``.
        corruption: how to corrupt ``clean`` when no ``corrupted`` input is given (default
            ``Corruption()``: Gaussian noise of sigma 1).
        direction: ``denoising`` (clean into corrupted) or ``noising`` (corrupted into clean).
        metric: ``logit_diff``, ``logit`` or ``prob``.
        target: the metric's class; default the clean run's prediction.
        foil: ``logit_diff``'s second class; default the corrupted run's prediction.
        heads: also patch each head's output.
        epsilon: the smallest difference of the two runs' metrics with a defined recovery.
        batch_size: rows per pass.
        seed: the draws of a model in training mode.
        progress: called with the share of the rows done, after each pass.

    Returns:
        :class:`Patching`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> image = torch.randn(1, 28, 28)  # corrupted by Gaussian noise (analysis.Corruption())
        >>> result = analysis.activation_patching(model, image, metric="logit", target=4, heads=False)
        >>> result.components[:3], result.value("S3.0", "output") is not None
        (('output', 'branch', 'attn.branch'), True)
    """
    setting = _setting(model, clean, corrupted, corruption, direction, metric, target, foil, epsilon,
                       batch_size, seed)  # fmt: skip
    blocks, kinds, rows, places = ["S0"], ["stem"], [_Row(0, "S1.0.input")], [("S0", "output", None)]
    head_counts: dict[str, int] = {}
    for name, kind, block, position in _blocks(model):
        blocks.append(name)
        kinds.append(kind)
        for component in TRANSFORMER_COMPONENTS if kind == "T" else MBCONV_COMPONENTS:
            rows.append(_Row(position, f"{name}.{component}"))
            places.append((name, component, None))
        if kind == "T" and heads:
            head_counts[name] = block.attn.heads
            for h in range(block.attn.heads):
                rows.append(_Row(position, f"{name}.attn.heads", head=h))
                places.append((name, "heads", h))
    sources = {row.name for row in rows}
    measured = _measure(model, setting, rows, sources, progress)
    recovery = np.full((len(blocks), len(COMPONENTS)), np.nan)
    per_head = {name: np.full(count, np.nan) for name, count in head_counts.items()}
    for (block_name, component, head), value in zip(places, measured.recovery, strict=True):
        if head is None:
            recovery[blocks.index(block_name), COMPONENTS.index(component)] = value
        else:
            per_head[block_name][head] = value
    return Patching(
        **measured.pair,
        blocks=tuple(blocks),
        kinds=tuple(kinds),
        components=COMPONENTS,
        recovery=recovery,
        heads=per_head,
    )


def position_patching(
    model: CoAtNet,
    clean: torch.Tensor | Image.Image,
    corrupted: torch.Tensor | Image.Image | None = None,
    *,
    block: str | None = None,
    cell: int | None = None,
    corruption: Corruption | None = None,
    direction: str = "denoising",
    metric: str = "logit_diff",
    target: int | None = None,
    foil: int | None = None,
    epsilon: float = EPSILON,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> PositionPatching:
    """The recovery of each position of ``block``'s output: every square of ``cell`` x ``cell`` cells
    taken from the other run.

    Args:
        model: a CoAtNet (left as found).
        clean: the clean input: a preprocessed (C, H, W) / (1, C, H, W) tensor or a PIL image.
        corrupted: the corrupted input, of the same size; default ``corruption`` applied to ``clean``.
        block: ``S3.0``, or ``S0`` for the stem's output; default the first attention block (the last block
            of a model without one).
        cell: the side of each patched square, in cells; default the smallest with at most
            :data:`MAX_CELLS` squares per side (1 for every grid up to 16 x 16).
        corruption: how to corrupt ``clean`` when no ``corrupted`` input is given (default
            ``Corruption()``: Gaussian noise of sigma 1).
        direction: ``denoising`` (clean into corrupted) or ``noising`` (corrupted into clean).
        metric: ``logit_diff``, ``logit`` or ``prob``.
        target: the metric's class; default the clean run's prediction.
        foil: ``logit_diff``'s second class; default the corrupted run's prediction.
        epsilon: the smallest difference of the two runs' metrics with a defined recovery.
        batch_size: rows per pass.
        seed: the draws of a model in training mode.
        progress: called with the share of the rows done, after each pass.

    Returns:
        :class:`PositionPatching`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> image = torch.randn(1, 28, 28)
        >>> result = analysis.position_patching(model, image, block="S2.0", cell=2, direction="noising")
        >>> result.grid, result.recovery.shape  # 14x14 cells in squares of 2x2
        ((14, 14), (7, 7))
    """
    setting = _setting(model, clean, corrupted, corruption, direction, metric, target, foil, epsilon,
                       batch_size, seed)  # fmt: skip
    named = _blocks(model)
    names = [name for name, _, _, _ in named]
    if block is None:
        block = next((name for name, kind, _, _ in named if kind == "T"), names[-1])
    if block == "S0":
        position, name = 0, "S1.0.input"
    elif block in names:
        position, name = named[names.index(block)][3], f"{block}.output"
    else:
        raise ValueError(f"no block {block!r}; the blocks are S0 (the stem), {', '.join(names)}")
    infos = model.stage_info(tuple(setting.clean.shape[-2:]))
    info = infos[PartName(block).stage]
    grid = (int(info.grid[0]), int(info.grid[1]))
    if cell is None:
        cell = max(1, math.ceil(max(grid) / MAX_CELLS))
    if not (isinstance(cell, int) and cell >= 1):
        raise ValueError(f"cell must be a positive whole number of cells, got {cell!r}")
    squares = [(t, s, min(t + cell, grid[0]), min(s + cell, grid[1]))
               for t in range(0, grid[0], cell) for s in range(0, grid[1], cell)]  # fmt: skip
    rows = [_Row(position, name, cells=square) for square in squares]
    measured = _measure(model, setting, rows, {name}, progress)
    shape = (math.ceil(grid[0] / cell), math.ceil(grid[1] / cell))
    return PositionPatching(
        **measured.pair,
        block=block,
        grid=grid,
        cell=cell,
        stride=int(info.reduction),
        recovery=np.asarray(measured.recovery, dtype=float).reshape(shape),
    )


def _blocks(model: CoAtNet) -> list[tuple[str, str, torch.nn.Module, int]]:
    """(name, kind ``C`` / ``T``, module, position) of every block of S1..S4 in forward order, ``position``
    its index in :meth:`CoAtNet.block_names` (where its rows run from). A MaxViT block gives its parts, as
    traced: its conv (``S1.0.conv``, ``C``), then its block and grid attention (``S1.0.block``,
    ``S1.0.grid``, ``T``), all from the block's position; a parallel block is refused in one line."""
    positions = {name: i for i, name in enumerate(model.block_names())}
    out = []
    for part in model.parts():
        if part.parallel:
            raise ValueError(
                f"{model.config.name}: activation patching does not map a parallel MaxViT block's "
                "attentions yet (they share one branch)"
            )
        if part.block is None or part.kind == "mlp":
            continue
        kind = "T" if part.kind == "attention" else "C"
        out.append((part.name, kind, part.module, positions[part.name.base]))
    return out


def _setting(
    model: CoAtNet,
    clean: torch.Tensor | Image.Image,
    corrupted: torch.Tensor | Image.Image | None,
    corruption: Corruption | None,
    direction: str,
    metric: str,
    target: int | None,
    foil: int | None,
    epsilon: float,
    batch_size: int,
    seed: int,
) -> _Setting:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'denoising' or 'noising', got {direction!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if foil is not None and metric != "logit_diff":
        raise ValueError(f"a foil class is for the logit_diff metric; {metric} reads the target alone")
    if corrupted is not None and corruption is not None:
        raise ValueError("give a corrupted input or a corruption of the clean one, not both")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    classes = model.config.num_classes
    for label, value in (("target", target), ("foil", foil)):
        if value is not None and not 0 <= value < classes:
            raise ValueError(f"the {label} must be a class index 0..{classes - 1}, got {value}")
    clean_batch = _one(clean, model, "clean")
    if corrupted is None:
        corruption = corruption or Corruption()
        corrupted_batch, label = corruption.apply(clean_batch), corruption.label
    else:
        corrupted_batch, label = _one(corrupted, model, "corrupted"), "a second image"
        if corrupted_batch.shape != clean_batch.shape:
            sizes = f"{tuple(clean_batch.shape[1:])} vs {tuple(corrupted_batch.shape[1:])}"
            raise ValueError(f"the clean and corrupted inputs must have one size: {sizes}")
    return _Setting(clean_batch, corrupted_batch, label, direction, metric, target, foil, epsilon,
                    batch_size, seed)  # fmt: skip


def _one(image: torch.Tensor | Image.Image, model: CoAtNet, which: str) -> torch.Tensor:
    batch = as_batch(image, model)
    if batch.shape[0] != 1:
        raise ValueError(f"the {which} input must be one image, got a batch of {batch.shape[0]}: patch one "
                         "pair at a time (index the batch: images[0])")  # fmt: skip
    return batch


@dataclass(frozen=True)
class _Measured:
    pair: dict  # PatchedPair's fields
    recovery: list[float]


def _measure(
    model: CoAtNet,
    setting: _Setting,
    rows: Sequence[_Row],
    sources: set[str],
    progress: Callable[[float], None] | None = None,
) -> _Measured:
    """The two unpatched runs, then every row's metric, normalised."""
    training = any(m.training for m in model.modules())
    explicit = _explicit_names(model)  # every attention block takes its explicit path in every pass
    inputs = {f"{name}.input" for name in model.block_names()}  # what each block's rows run from
    with call_model(model, seed=setting.seed) as own, torch.inference_mode():
        caches = {}
        for run, batch in (("clean", setting.clean), ("corrupted", setting.corrupted)):
            with (
                _draws(own, training, setting.seed),
                tracing(sorted(sources | inputs), patch=explicit) as cache,
            ):
                logits = own(batch)
            caches[run] = {**cache, "logits": logits}
        base, source = (caches["corrupted"], caches["clean"]) if setting.direction == "denoising" else (
            caches["clean"], caches["corrupted"])  # fmt: skip
        base_image = setting.corrupted if setting.direction == "denoising" else setting.clean
        patched = _run_rows(own, rows, base, source, base_image, explicit, setting, training, progress)
    clean_logits, corrupted_logits = caches["clean"]["logits"][0], caches["corrupted"]["logits"][0]
    target = int(clean_logits.argmax()) if setting.target is None else setting.target
    foil = None
    if setting.metric == "logit_diff":
        foil = int(corrupted_logits.argmax()) if setting.foil is None else setting.foil
    m_clean = _metric(clean_logits[None], setting.metric, target, foil)[0]
    m_corrupted = _metric(corrupted_logits[None], setting.metric, target, foil)[0]
    defined = abs(m_clean - m_corrupted) >= setting.epsilon
    values = _metric(patched, setting.metric, target, foil) if len(rows) else np.zeros(0)
    recovery = [math.nan] * len(rows)
    if defined:
        recovery = ((values - m_corrupted) / (m_clean - m_corrupted)).tolist()
    pair = {
        "direction": setting.direction, "metric": setting.metric, "target": target, "foil": foil,
        "clean_metric": float(m_clean), "corrupted_metric": float(m_corrupted), "defined": bool(defined),
        "epsilon": setting.epsilon, "corruption": setting.corruption,
        "clean_logits": clean_logits.float().cpu().numpy(),
        "corrupted_logits": corrupted_logits.float().cpu().numpy(),
    }  # fmt: skip
    return _Measured(pair, recovery)


def _explicit_names(model: CoAtNet) -> dict[str, Patch]:
    """An identity patch of every attention block's bias: each takes its explicit path (the one that makes
    the logits, the bias and the weights), so that every pass of a call computes alike."""
    return {f"{name}.attn.bias": _same for name, kind, _, _ in _blocks(model) if kind == "T"}


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _draws(model: CoAtNet, training: bool, seed: int) -> AbstractContextManager:
    """Each pass of a model in training mode draws the same numbers (a private generator, seeded); a model
    in eval mode draws none."""
    if not training:
        return nullcontext()
    return private_random(torch.Generator(device=next(model.parameters()).device).manual_seed(seed))


def _run_rows(
    own: CoAtNet,
    rows: Sequence[_Row],
    base: Mapping[str, torch.Tensor],
    source: Mapping[str, torch.Tensor],
    base_image: torch.Tensor,
    explicit: Mapping[str, Patch],
    setting: _Setting,
    training: bool,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """(rows, classes) logits: each row the base run with its patch. In eval mode the rows of one block
    run in batches from the base activation entering it; a bias row runs alone (the bias has no batch
    axis: its patch would reach every row of a batch). In training mode every row is a pass of its own
    from the base image, with the call's draws."""
    out: list[torch.Tensor | None] = [None] * len(rows)
    names = own.block_names()
    groups: dict[tuple[int, bool], list[int]] = {}
    done = 0
    for i, row in enumerate(rows):
        alone = training or row.name.endswith(".attn.bias")
        groups.setdefault((row.position, alone), []).append(i)
    for (position, alone), indices in groups.items():
        size = 1 if alone else setting.batch_size
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            patches = {**explicit, **_patches([rows[i] for i in chunk], source)}
            with _draws(own, training, setting.seed), tracing(patch=patches):
                if training:
                    logits = own(base_image)
                else:
                    entering = base[f"{names[position]}.input"]
                    logits = own.forward_from(torch.cat([entering] * len(chunk)), position)
            for j, i in enumerate(chunk):
                out[i] = logits[j]
            done += len(chunk)
            if progress is not None:
                progress(done / len(rows))
    return torch.stack(out) if out else torch.zeros(0)


def _patches(rows: Sequence[_Row], source: Mapping[str, torch.Tensor]) -> dict[str, Patch]:
    """The patch of each name the rows (row i at batch index i) take from ``source``."""
    by_name: dict[str, list[tuple[int, _Row]]] = {}
    for i, row in enumerate(rows):
        by_name.setdefault(row.name, []).append((i, row))
    return {name: _patch(entries, source[name]) for name, entries in by_name.items()}


def _patch(entries: list[tuple[int, _Row]], value: torch.Tensor) -> Patch:
    if entries[0][1].name.endswith(".attn.bias"):  # (heads, N, N), the same for every row
        return lambda x: value.to(x.dtype).clone()

    # the source run is one image: its batch axis holds that image's windows (a MaxViT attention's
    # per-window tensors), so row i of a patched batch is its rows i * per .. (i + 1) * per
    per = value.shape[0]

    def patch(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        for i, row in entries:
            rows = slice(i * per, (i + 1) * per)
            if row.head is not None:
                out[rows, row.head] = value[:, row.head]
            elif row.cells is not None:
                top, left, bottom, right = row.cells
                out[rows, :, top:bottom, left:right] = value[:, :, top:bottom, left:right]
            else:
                out[rows] = value
        return out

    return patch


def _metric(logits: torch.Tensor, metric: str, target: int, foil: int | None) -> np.ndarray:
    logits = logits.float()
    if metric == "logit_diff":
        values = logits[:, target] - logits[:, foil]
    elif metric == "logit":
        values = logits[:, target]
    else:
        values = logits.softmax(-1)[:, target]
    return values.cpu().double().numpy()
