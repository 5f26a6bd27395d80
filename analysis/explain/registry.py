"""Every explanation method, one record each: the one list that faithfulness, the sanity checks,
robustness, the studies, ``coatnet analyze``, its report and the app iterate (captum gives every method
one shape in the same way).

A record (:class:`Explainer`) names the method and says what it takes; its ``maps`` makes a batch of maps
at once, ``maps(model, images, targets, **options) -> (B, H, W)``: ``images`` a preprocessed
(B, C, H, W) tensor, ``targets`` a (B,) tensor of classes, the maps at the input's H x W (a method that
works on a stage's or a block's grid upsamples as drawn: bilinearly for Grad-CAM, each cell's value
repeated over its pixels for rollout and relevance). A method that takes a stage gets it as ``stage=``.
``maps`` is called outside inference mode with gradients enabled and turns them off itself where it
needs none; it accepts, and may ignore, options it does not use (the random map's ``seed``, the pixel
methods' settings and ``progress``).

:func:`register_explainer` adds a method of your own; :func:`explainers` lists the records in order, the
built-in ones first: the random map (the floor every score is compared with), attention rollout, class
relevance, gradient-weighted rollout, Grad-CAM at each stage, Integrated Gradients and occlusion
(registered in :mod:`analysis.explain.methods`, one line each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from analysis.core.geometry import attention_blocks

STAGES = ("S0", "S1", "S2", "S3", "S4")  # what a method that takes a stage may take
Maps = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Explainer:
    """One explanation method (:func:`register_explainer`, :func:`explainers`).

    Attributes:
        name: what results, rows and pickers call it (``gradcam``, ``integrated_gradients``).
        label: its name in words, for pickers and legends (``Integrated Gradients (SmoothGrad)``).
        short_label: short enough to head a column of small maps (``IG``).
        maps: ``maps(model, images, targets, **options) -> (B, H, W)`` (module docstring).
        class_specific: whether the map explains a class (a map that does not is the same for every
            class: the random logit test reads 1 by construction).
        needs_gradients: whether it computes gradients.
        stages: the stage names it takes (``("S0", .., "S4")``), each a row of its own; None for none.
        signed: the maps carry a sign: the map ranked and drawn is their positive part, the sign kept
            beside it (Integrated Gradients, occlusion).
        needs_attention: it reads attention blocks: left out for a model without any.
        baseline: the random map, the floor every other method is compared with; its ``maps`` takes a
            ``seed`` and each consumer seeds it by its own protocol.
        every_stage: where the method makes the maps of every stage in one pass, that function
            (as ``maps`` without ``stage``, the stages' maps in the order of ``stages``).
        one_pass: its map of a class costs one forward and one backward pass (layer-wise relevance): cheap
            enough to draw as a page opens, as the explorer's "Explain a class" picker does.

    Examples:
        >>> import analysis
        >>> gradcam = next(e for e in analysis.explainers() if e.name == "gradcam")
        >>> gradcam.label, gradcam.short_label, gradcam.stages[-1], gradcam.class_specific
        ('Grad-CAM', 'CAM', 'S4', True)
    """

    name: str
    label: str
    short_label: str
    maps: Maps
    class_specific: bool = True
    needs_gradients: bool = True
    stages: tuple[str, ...] | None = None
    signed: bool = False
    needs_attention: bool = False
    baseline: bool = False
    every_stage: Maps | None = None
    one_pass: bool = False

    @property
    def attribution(self) -> bool:
        """Whether :func:`analysis.attributions` makes it: a map of the input's pixels that any model
        gives (every method but the random map and those that read attention)."""
        return not (self.baseline or self.needs_attention)

    def rows(self) -> list[tuple[str, str | None]]:
        """The (method, stage) rows this method gives: one per stage, or one."""
        return [(self.name, s) for s in self.stages] if self.stages else [(self.name, None)]

    def row_label(self, stage: str | None = None, *, short: bool = False) -> str:
        """One row in words: ``Grad-CAM S3``, or with ``short`` ``CAM S3``."""
        label = self.short_label if short else self.label
        return f"{label} {stage}" if stage else label

    def at_stages(self, model, images: torch.Tensor, targets: torch.Tensor, stages: Sequence[str], **options):
        """The (B, H, W) maps at each of ``stages``, in order: one pass for them all where the method
        makes every stage's at once."""
        if self.every_stage is not None and len(stages) > 1:
            found = self.every_stage(model, images, targets, **options)
            return [found[self.stages.index(s)] for s in stages]
        return [self.maps(model, images, targets, stage=s, **options) for s in stages]


_REGISTRY: dict[str, Explainer] = {}
_BUILT_IN: set[str] = set()


def register_explainer(
    name: str,
    maps: Maps,
    *,
    label: str,
    short_label: str | None = None,
    class_specific: bool = True,
    needs_gradients: bool = True,
    stages: Sequence[str] | None = None,
    one_pass: bool = False,
) -> Explainer:
    """Add an explanation method: from then on it is a row of :func:`analysis.faithfulness`,
    :func:`analysis.sanity_checks`, :func:`analysis.robustness` and a new study, a choice of ``coatnet
    analyze --attributions`` and of the app's pickers, with no other change.

    Args:
        name: what results and rows call it: letters, digits and underscores. Registering a name of
            your own again replaces its record (a notebook or an app script that runs twice); a built-in
            name is refused.
        maps: ``maps(model, images, targets, **options) -> numpy (B, H, W)``: ``images`` a preprocessed
            (B, C, H, W) tensor, ``targets`` a (B,) tensor of the class each map explains, the maps at
            the input's H x W, larger meaning more relevant. It is called outside inference mode with
            gradients enabled (turn them off yourself where you need none), must leave the model as it
            found it, and must accept options it does not use (``**options``): a method with
            ``stages`` gets its stage as ``stage=``.
        label: its name in words, for pickers and legends.
        short_label: a short name for small maps' columns (default ``name``).
        class_specific: whether the map explains a class.
        needs_gradients: whether it computes gradients.
        stages: the stage names it takes (a row per stage, e.g. ``("S2", "S3")``); None for none.
        one_pass: a class's map costs one forward and one backward pass: the explorer's class picker
            offers it (:attr:`Explainer.one_pass`).

    Returns:
        The record, as :func:`explainers` lists it.

    Raises:
        ValueError: a name that is not a plain identifier or is a built-in's, an empty label, a
            ``maps`` that cannot be called, or stages not among ``S0`` .. ``S4``.

    Examples:
        >>> import numpy as np, torch, analysis
        >>> def brightness(model, images, targets, **options):  # the summed channels: no model at all
        ...     return images.sum(1).detach().cpu().numpy()
        >>> record = analysis.register_explainer(
        ...     "brightness", brightness, label="Brightness", class_specific=False, needs_gradients=False
        ... )
        >>> record.short_label, [e.name for e in analysis.explainers()][-1]
        ('brightness', 'brightness')
        >>> from analysis.explain.registry import _unregister
        >>> _unregister("brightness")
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an explainer's name is letters, digits and underscores; got {name!r}")
    if name in _BUILT_IN:
        raise ValueError(f"{name!r} is a built-in explanation method; give yours another name")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"give the explainer {name!r} a label in words, e.g. label={name.capitalize()!r}")
    if not callable(maps):
        raise ValueError(f"maps must be a function (model, images, targets, **options); got {maps!r}")
    if stages is not None:
        stages = tuple(stages)
        unknown = [s for s in stages if s not in STAGES]
        if not stages or unknown:
            raise ValueError(f"stages must be some of {', '.join(STAGES)} (or None); got {stages!r}")
    record = Explainer(
        name=name, label=label, short_label=short_label or name, maps=maps,
        class_specific=bool(class_specific), needs_gradients=bool(needs_gradients), stages=stages,
        one_pass=bool(one_pass),
    )  # fmt: skip
    _REGISTRY[name] = record
    return record


def explainers() -> tuple[Explainer, ...]:
    """Every explanation method, in order: the built-in ones (the random map, attention rollout, class
    relevance, gradient-weighted rollout, Grad-CAM, Integrated Gradients, occlusion), then yours in
    the order registered.

    Returns:
        The records (:class:`Explainer`).

    Examples:
        >>> import analysis
        >>> [e.name for e in analysis.explainers()][:4]
        ['random', 'rollout', 'relevance', 'grad_rollout']
        >>> [e.short_label for e in analysis.explainers() if e.signed]
        ['IG', 'occl.', 'AttnLRP', 'CP-LRP']
    """
    return tuple(_REGISTRY.values())


def explainer(name: str) -> Explainer:
    """The record of the method ``name``; an unknown name raises, naming those there are."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown explanation method {name!r}; choose from {', '.join(_REGISTRY)}") from None


def _unregister(name: str) -> None:
    """Remove a method registered with :func:`register_explainer` (tests clean up with it)."""
    if name in _BUILT_IN:
        raise ValueError(f"{name!r} is a built-in explanation method")
    _REGISTRY.pop(name, None)


def method_rows(model) -> list[tuple[str, str | None]]:
    """The (method, stage) rows measured for ``model``, in the order of :func:`explainers`: the methods
    that read attention only where it has attention blocks, a method with stages once per stage."""
    attention = bool(attention_blocks(model))
    return [row for e in explainers() if attention or not e.needs_attention for row in e.rows()]


def row_name(method: str, stage: str | None) -> str:
    """A (method, stage) row as one label: ``gradcam S3``, ``relevance``."""
    return f"{method} {stage}" if stage else method


def short_name(method: str, stage: str | None) -> str:
    """A row's name short enough to head a column of small maps: ``CAM S3``, ``IG``; a method not
    registered (read from a stored result) by its own name."""
    found = _REGISTRY.get(method)
    return found.row_label(stage, short=True) if found is not None else row_name(method, stage)


def _built_in(record: Explainer) -> None:
    _REGISTRY[record.name] = record
    _BUILT_IN.add(record.name)
