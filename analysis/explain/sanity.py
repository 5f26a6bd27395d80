"""Sanity checks of explanations: does a map depend on the model's weights and on the class it explains?

Model parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018) and the
random logit test (Sixt et al., ICML 2020), for every explanation of :func:`analysis.explainers`
(:func:`analysis.explain.registry.method_rows`). An explanation that barely changes when the weights
are drawn afresh, or when it is asked about another class, explains the image, not the model.

The protocol:

- **parts** (:func:`parts`): the classifier ``head`` (the final norm and the head), then every block
  from the last to the first (``S4.0`` .. ``S1.0``), then the stem ``S0``;
- **cascading**: the model with the head randomised, then the head and the last block, and so on down
  to every part; **independent**: one part randomised at a time, the rest as trained;
- **randomise**: :func:`coatnet.model.network.reinitialise` on a copy (the initialiser the model uses at
  creation; zero initialisers replaced by N(0, 0.02^2); BatchNorm statistics reset to mean 0, variance
  1), each part drawn from a generator seeded by the check's ``seed`` and the part's name, so a part is
  drawn the same in both tests and at every cascading step. The shared model is never changed;
- **the class**: every map explains the class the trained model predicts; the random logit test draws
  another class (seeded) and compares the trained model's maps of the two;
- **the random map** of a model copy has a seed made from the copy it stands for (the trained model's
  differs from each randomised one's) and from nothing else (the same for every class);
- **similarity** of the trained model's map and another: the measures of :mod:`analysis.explain.similarity`
  (Spearman of the signed and of the absolute values, SSIM, HOG); never NaN.

Examples:
    >>> report = sanity_checks(model, image)
    >>> [(r.name, r.randomised, round(r.spearman_abs, 2)) for r in report.results if r.test == "cascading"]
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from analysis.core.inputs import as_batch
from analysis.core.running import call_model, input_gradient_model, plain_model, twin
from analysis.explain.faithfulness import Explanation, explanation_maps
from analysis.explain.pixels import (
    N_STEPS,
    NOISE_LEVEL,
    NT_SAMPLES,
    integrated_gradients_map,
    integrated_gradients_rows,
    occlusion_map,
    occlusion_windows,
    pass_size,
)
from analysis.explain.registry import explainer, method_rows, row_name
from analysis.explain.similarity import MapFeatures, compare_features, map_features
from coatnet.model.network import CoAtNet, reinitialise
from coatnet.model.parts import PartName
from coatnet.weights.checkpoint import class_names

TESTS = ("cascading", "independent", "random_logit")


def parts(model: CoAtNet) -> list[str]:
    """The parts randomised, in cascading order: ``head``, the blocks from the last to the first
    (``S4.0`` .. ``S1.0``), then the stem ``S0``."""
    return ["head", *(str(name) for name in reversed(model.block_names())), "S0"]


def part_modules(model: CoAtNet, name: str) -> list[nn.Module]:
    """The modules of one part of :func:`parts` (the head is the final norm and the classifier)."""
    if name == "head":
        return [model.norm, model.head]
    if name == "S0":
        return [model.stem]
    part = PartName(name)
    return [model.stages[part.stage - 1].blocks[part.block]]


def part_seed(seed: int, name: str) -> int:
    """The seed one part is drawn with: the same in every test and at every cascading step."""
    return zlib.crc32(f"{seed}:{name}".encode())


def randomised(
    model: CoAtNet,
    names: Sequence[str],
    *,
    seed: int = 0,
    drawn: dict[str, list[nn.Module]] | None = None,
) -> CoAtNet:
    """A copy of ``model`` with the parts ``names`` re-initialised (module docstring): a
    :func:`analysis.core.running.twin` whose randomised parts own new parameters and buffers, the others
    viewing the model's (so a copy costs only what it randomises); ``model`` is left exactly as found.

    ``drawn``: the parts drawn so far (name: its modules), shared by the copies of one check: a part is
    drawn the same in every copy (its generator is seeded by ``seed`` and its name alone), so the copies
    hold one randomised module tree between them, not one each."""
    own = twin(model)
    for name in names:
        if drawn is not None and name in drawn:
            _put_part(own, name, drawn[name])
            continue
        for module in part_modules(own, name):
            for part in module.modules():
                for key, p in part._parameters.items():
                    if p is not None:
                        part._parameters[key] = nn.Parameter(
                            p.detach().clone(), requires_grad=p.requires_grad
                        )
                for key, b in part._buffers.items():
                    if b is not None:
                        part._buffers[key] = b.clone()
            device = next(module.parameters(), torch.empty(0)).device
            reinitialise(module, torch.Generator(device=device).manual_seed(part_seed(seed, name)))
        if drawn is not None:
            drawn[name] = part_modules(own, name)
    return own


def _put_part(model: CoAtNet, name: str, modules: list[nn.Module]) -> None:
    """Make ``modules`` (as :func:`part_modules` lists them) the part ``name`` of ``model``."""
    if name == "head":
        model.norm, model.head = modules
    elif name == "S0":
        (model.stem,) = modules
    else:
        part = PartName(name)
        (model.stages[part.stage - 1].blocks[part.block],) = modules


@dataclass(frozen=True)
class SanityResult:
    """One explanation compared with the trained model's, under one test.

    Attributes:
        method: the name of one of :func:`analysis.explainers`.
        stage: Grad-CAM's stage, else None.
        test: ``cascading``, ``independent`` or ``random_logit``.
        randomised: the last part randomised (``head``, ``S3.1``, ``S0``); None for random_logit.
        spearman: Spearman rank correlation with the trained model's map (signed maps).
        spearman_abs: the same of |map|.
        ssim: structural similarity.
        hog: the correlation of the maps' histograms of oriented gradients.
        constant: either map is constant (its correlations are 0).
        map: the map compared (the randomised model's, or the other class's).

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> image = torch.randn(1, 28, 28)
        >>> report = analysis.sanity_checks(model, image, tests=("random_logit",), rows=[("gradcam", "S3")])
        >>> result = report.results[0]
        >>> result.test, result.randomised, -1 <= result.spearman_abs <= 1
        ('random_logit', None, True)
    """

    method: str
    stage: str | None
    test: str
    randomised: str | None
    spearman: float
    spearman_abs: float
    ssim: float
    hog: float
    constant: bool
    map: np.ndarray

    @property
    def name(self) -> str:
        return row_name(self.method, self.stage)


@dataclass(frozen=True)
class SanityReport:
    """The sanity checks of one image (:func:`sanity_checks`).

    Attributes:
        target: the class the trained model predicts (every map explains it).
        other: the random logit test's other class.
        target_name: the target's name, or None.
        other_name: the other class's name, or None.
        parts: :func:`parts`, in cascading order.
        trained: the trained model's explanations, in the order of the rows.
        other_maps: the trained model's explanations of ``other``.
        results: one :class:`SanityResult` per row, test and part (random_logit: per row).
        seed: the check's seed.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> image = torch.randn(1, 28, 28)
        >>> report = analysis.sanity_checks(model, image, tests=("random_logit",), rows=[("gradcam", "S3")])
        >>> report.parts[:3], report.other != report.target
        (('head', 'S4.0', 'S3.1'), True)
    """

    target: int
    other: int
    target_name: str | None
    other_name: str | None
    parts: tuple[str, ...]
    trained: tuple[Explanation, ...]
    other_maps: tuple[Explanation, ...]
    results: tuple[SanityResult, ...]
    seed: int

    def select(self, test: str, method: str, stage: str | None = None) -> list[SanityResult]:
        """The results of one test for one (method, stage) row, in cascading order of their parts."""
        return [r for r in self.results if r.test == test and r.method == method and r.stage == stage]


def sanity_checks(
    model: CoAtNet,
    image: torch.Tensor | Image.Image,
    *,
    tests: Sequence[str] = TESTS,
    rows: Sequence[tuple[str, str | None]] | None = None,
    seed: int = 0,
    custom: Mapping[str, Callable[[CoAtNet, torch.Tensor, int], np.ndarray]] | None = None,
    other: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> SanityReport:
    """Model parameter randomisation (cascading and independent) and the random logit test of every
    explanation of one image (module docstring).

    Args:
        model: a CoAtNet, analysed as it is and left exactly as found (each randomised model is a copy).
        image: one image: a (1, C, H, W) or (C, H, W) preprocessed tensor, or a PIL image.
        tests: which of :data:`TESTS` to run.
        rows: the (method, stage) rows (default :func:`method_rows`).
        seed: seeds the randomised parts, the other class and the random maps.
        custom: explanations of your own, checked beside the rows: name -> a function of (model,
            batch (1, C, H, W), class) returning an (H, W) map; called with each randomised copy.
        other: the random logit test's other class (default: drawn with ``seed`` from the classes but
            the predicted one).
        progress: called with the share of the work done (0 .. 1).

    Returns:
        A :class:`SanityReport`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> image, rows = torch.randn(1, 28, 28), [("gradcam", "S3")]
        >>> report = analysis.sanity_checks(model, image, tests=("random_logit",), rows=rows, other=2)
        >>> report.other_name, [(r.method, r.test) for r in report.results]
        ('Pullover', [('gradcam', 'random_logit')])
    """
    unknown = set(tests) - set(TESTS)
    if unknown:
        raise ValueError(f"unknown test(s) {sorted(unknown)}; choose from {', '.join(TESTS)}")
    batch = as_batch(image, model)
    if batch.shape[0] != 1:
        raise ValueError(f"sanity checks take one image at a time; got a batch of {batch.shape[0]}")
    rows = list(method_rows(model) if rows is None else rows)
    rows += [(name, None) for name in custom or {}]
    with call_model(model) as own, torch.inference_mode():
        logits = own(batch).float()[0]
    target = int(logits.argmax())
    classes = logits.shape[0]
    others = [c for c in range(classes) if c != target]
    if other is None:
        other = others[int(np.random.default_rng(seed).integers(len(others)))] if others else target
    elif not 0 <= other < classes or other == target:
        raise ValueError(f"other must be a class 0..{classes - 1} but the predicted {target}; got {other}")
    order = parts(model)
    copies: list[tuple[str, str | None, tuple[str, ...]]] = []  # (test, last part, parts randomised)
    if "cascading" in tests:
        copies += [("cascading", name, tuple(order[: k + 1])) for k, name in enumerate(order)]
    if "independent" in tests:
        copies += [("independent", name, (name,)) for name in order]
    # the head alone is both tests' first copy; the copies share each randomised part's one draw
    drawn: dict[str, list[nn.Module]] = {}
    models = {
        names: randomised(model, names, seed=seed, drawn=drawn)
        for names in dict.fromkeys(c[2] for c in copies)
    }
    for copy in models.values():
        copy.requires_grad_(False)  # the copy's own parameters: no map needs a weight's gradient
    # in eval mode the pixel methods run every model at once, sharing the trained blocks' forward passes
    eval_mode = not any(m.training for m in model.modules())
    shared = [m for m in SHARED if (m, None) in rows and m not in (custom or {}) and eval_mode]
    classes = [target, other] if "random_logit" in tests else [target]
    steps = 1 + len(copies) + ("random_logit" in tests) + len(shared)
    done = [0]

    def step(share: float) -> None:
        if progress is not None:
            progress(min(1.0, (done[0] + share) / steps))

    given: dict[tuple[str, ...] | int, dict[str, torch.Tensor]] = {}
    for method in shared:
        for key, found in SHARED[method](model, models, batch, classes, step).items():
            given.setdefault(key, {})[method] = found
        done[0] += 1
    trained = _maps(model, batch, target, rows, seed, (), custom, given.get(target, {}), step)
    done[0] += 1
    features = [map_features(e.map, e.signed_map) for e in trained]
    results: list[SanityResult] = []
    made: dict[tuple[str, ...], list[Explanation]] = {}
    for test, last, names in copies:
        if names not in made:
            with plain_model():  # a copy serves one image: building its inference build would cost more
                made[names] = _maps(models[names], batch, target, rows, seed, names, custom,
                                    given.get(names, {}), step)  # fmt: skip
        results += _compared(trained, made[names], test, last, features)
        done[0] += 1
    other_maps: list[Explanation] = []
    if "random_logit" in tests:
        other_maps = _maps(model, batch, other, rows, seed, (), custom, given.get(other, {}), step)
        results += _compared(trained, other_maps, "random_logit", None, features)
    if progress is not None:
        progress(1.0)
    names = class_names(model)
    return SanityReport(
        target=target, other=other, target_name=names[target] if names else None,
        other_name=names[other] if names else None, parts=tuple(order), trained=tuple(trained),
        other_maps=tuple(other_maps), results=tuple(results), seed=seed,
    )  # fmt: skip


def random_seed(seed: int, names: Sequence[str]) -> int:
    """The random map's seed for the model with ``names`` randomised (none: the trained model)."""
    return zlib.crc32(f"random:{seed}:{','.join(names)}".encode())


def _maps(model, batch, target, rows, seed, names, custom, given, progress) -> list[Explanation]:
    """Every row's map for ``target``, the random one seeded for this model copy, the pixel methods'
    signed (H, W) maps ``given`` (method: map) where they were made already."""
    custom = custom or {}
    baseline = {m for m, _ in rows if m not in custom and explainer(m).baseline}
    others = [r for r in rows if r[0] not in {*baseline, *custom, *given}]
    (found,) = explanation_maps(model, batch, [target], rows=others, progress=progress) if others else ([],)
    made = iter(found)
    out = []
    for method, _stage in rows:
        if method in baseline:
            s = random_seed(seed, names)
            chosen = torch.tensor([target], device=batch.device)
            out.append(Explanation(method, None, explainer(method).maps(model, batch, chosen, seed=s)[0], s))
        elif method in custom:
            out.append(
                Explanation(method, None, np.asarray(custom[method](model, batch, target), np.float32))
            )
        elif method in given:
            signed = given[method].detach().cpu().numpy().astype(np.float32)
            out.append(Explanation(method, None, np.maximum(signed, 0), signed=signed))
        else:
            out.append(next(made))
    return out


def _occlusion_maps(
    model: CoAtNet,
    copies: Mapping[tuple[str, ...], CoAtNet],
    batch: torch.Tensor,
    classes: Sequence[int],
    progress: Callable[[float], None],
) -> dict[tuple[str, ...] | int, torch.Tensor]:
    """Occlusion as :func:`analysis.explain.pixels.pixel_maps` makes it (its windows, the target's
    logit drop spread over them) of the trained model for each of ``classes`` (keyed by the class) and of
    every randomised copy for ``classes[0]`` (keyed by its parts), all (H, W) signed maps, at the cost of
    one trained forward pass of the occluded images and, per copy, the blocks from its earliest
    randomised part on: the activations before that part are the trained model's. Eval mode only."""
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    masks = occlusion_windows(size).to(batch)
    keep = torch.cat([torch.ones_like(masks[:1]), 1 - masks])[:, None]  # row 0 the image, then each window
    starts = _starts(model, copies)
    logits: dict[tuple[str, ...] | None, list[torch.Tensor]] = {key: [] for key in [None, *copies]}
    per_pass = pass_size(size)
    passes = range(0, keep.shape[0], per_pass)
    with call_model(model) as own, torch.inference_mode():
        for k, first in enumerate(passes):
            chunk = batch * keep[first : first + per_pass]

            def keep_logits(names: tuple[str, ...], out: torch.Tensor) -> None:
                logits[names].append(out[:, classes[0]].float())

            trained = _through_copies(own, copies, starts, chunk, keep_logits)
            logits[None].append(trained[:, list(classes)].float())
            progress((k + 1) / len(passes))
    out: dict[tuple[str, ...] | int, torch.Tensor] = {}
    for key, found in logits.items():
        values = torch.cat(found).reshape(keep.shape[0], -1)  # (1 + windows, classes asked)
        maps = occlusion_map((values[:1] - values[1:]).T, masks)
        if key is None:
            out |= {int(c): maps[i] for i, c in enumerate(classes)}
        else:
            out[key] = maps[0]
    return out


def _integrated_gradients_maps(
    model: CoAtNet,
    copies: Mapping[tuple[str, ...], CoAtNet],
    batch: torch.Tensor,
    classes: Sequence[int],
    progress: Callable[[float], None],
) -> dict[tuple[str, ...] | int, torch.Tensor]:
    """Integrated Gradients as :func:`analysis.explain.pixels.pixel_maps` makes it (its SmoothGrad
    copies, steps and seed) of the trained model for each of ``classes`` and of every randomised copy
    for ``classes[0]``, keyed as :func:`_occlusion_maps`: each row's forward pass through the trained
    blocks is made once and kept for the backward passes of every copy that enters after them. Eval mode
    only."""
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    starts = _starts(model, copies)
    per_pass = pass_size(size)
    with input_gradient_model(model) as own, torch.inference_mode(False), torch.enable_grad():
        samples, alpha, weights = integrated_gradients_rows(
            batch.detach().clone(), noise_tunnel=True, nt_samples=NT_SAMPLES, noise_level=NOISE_LEVEL,
            n_steps=N_STEPS, seed=0,
        )  # fmt: skip
        totals = {
            key: torch.zeros_like(samples) for key in [*dict.fromkeys(int(c) for c in classes), *copies]
        }
        rows = samples.shape[0] * N_STEPS  # row r: noisy copy r // N_STEPS at step r % N_STEPS
        passes = range(0, rows, per_pass)
        for k, first in enumerate(passes):
            index = torch.arange(first, min(first + per_pass, rows), device=batch.device)
            sample, step = index // N_STEPS, index % N_STEPS
            scaled = (alpha[step].view(-1, 1, 1, 1) * samples[sample]).requires_grad_()
            weight = weights[step].view(-1, 1, 1, 1)

            def take(key, logits, cls: int, keep: bool, scaled=scaled, sample=sample, weight=weight) -> None:
                (gradient,) = torch.autograd.grad(logits[:, cls].sum(), scaled, retain_graph=keep)
                totals[key].index_add_(0, sample, gradient * weight)

            # the trained passes' graph is kept for every copy's backward pass, freed by the last class's
            logits = _through_copies(
                own, copies, starts, scaled, lambda names, out: take(names, out, classes[0], True)
            )  # fmt: skip
            for i, cls in enumerate(dict.fromkeys(int(c) for c in classes)):
                take(cls, logits, cls, i < len(set(classes)) - 1)
            progress((k + 1) / len(passes))
    return {key: integrated_gradients_map(total, samples, 1)[0] for key, total in totals.items()}


def _through_copies(
    own: CoAtNet,
    copies: Mapping[tuple[str, ...], CoAtNet],
    starts: Mapping[tuple[str, ...], int],
    x: torch.Tensor,
    each: Callable[[tuple[str, ...], torch.Tensor], None],
) -> torch.Tensor:
    """The trained model's logits of ``x`` (``own``: the trained model's runner), its blocks run once:
    each copy's logits handed to ``each(parts, logits)`` as soon as made, the copy run from its earliest
    randomised part (:func:`_starts`) on the trained activations entering it."""
    for names in (n for n, start in starts.items() if start == -1):
        each(names, copies[names](x))
    count = len(own.block_names())
    x = own.forward_to(x, 0)
    for position in range(count + 1):
        for names in (n for n, start in starts.items() if start == position):
            each(names, copies[names].forward_from(x, position))
        if position < count:
            x = own.forward_blocks(x, position, position + 1)
    return own.forward_from(x, count)


def _starts(model: CoAtNet, copies: Mapping[tuple[str, ...], CoAtNet]) -> dict[tuple[str, ...], int]:
    """Each copy's earliest randomised part as a forward position: -1 the stem, ``i`` the block
    ``block_names()[i]``, ``len(block_names())`` the head."""
    blocks = model.block_names()
    position = {"S0": -1, "head": len(blocks)} | {name: i for i, name in enumerate(blocks)}
    return {names: min(position[n] for n in names) for names in copies}


# where two built-in pixel methods make every copy's maps faster than one copy at a time: a fast path
# keyed by the method, each equal to its record's maps (tests hold them to it); any other method's maps
# are made copy by copy through its record
SHARED = {"integrated_gradients": _integrated_gradients_maps, "occlusion": _occlusion_maps}


def _compared(trained, maps, test, last, features: list[MapFeatures]) -> list[SanityResult]:
    """Each of ``maps`` compared with the trained map of its row (``features``: the trained maps')."""
    out = []
    for base, other, known in zip(trained, maps, features, strict=True):
        found = compare_features(known, map_features(other.map, other.signed_map))
        out.append(SanityResult(base.method, base.stage, test, last, map=other.map, **found))
    return out
