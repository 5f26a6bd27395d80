"""Linear probes per block: where the class becomes linearly readable (Alain and Bengio 2016; Raghu et al.
2021), for CoAtNet the conv-versus-attention question asked of the representation.

The protocol (:func:`probe_protocol`), for each block in forward order (the stem ``S0``, then every block
of S1..S4):

- **features**: the block's output (a name of the hook map, :mod:`coatnet.model.tracing`), globally
  average pooled (for a Transformer block the mean over its tokens), one vector per image;
- **classifier**: multinomial logistic regression on the features standardised with the training
  split's mean and standard deviation, fitted to its minimum by full-batch L-BFGS-B, one L2 weight decay
  chosen from :data:`WEIGHT_DECAYS` by the accuracy on a held-out :data:`HELD_OUT` of the training split
  (seeded), then refitted on the whole training split with that choice;
- **scores**: top-1 on the training split and on the test split, fractions in [0, 1].

For the blocks of S4, whose width is the head's, the *head lens* too: the model's own final norm and
classifier applied to the block's output (the last block's lens is the model's own prediction).

:func:`probe_features` measures one batch; :func:`fit_probes` fits every probe from the features;
:func:`load_probes` reads a ``probes.json`` (``coatnet probe``, :mod:`analysis.cli.probe`), shipped or not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from analysis.core.summaries import read_summary
from analysis.studies.study import STUDIES
from analysis.studies.summaries import LayoutStudy, Probes
from coatnet.model.layouts import LAYOUTS
from coatnet.model.network import CoAtNet
from coatnet.model.tracing import tracing

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)  # the one regularisation choice, on the held-out part
HELD_OUT = 0.1  # of the training split
SEED = 0
MAX_ITER = 1000  # L-BFGS-B iterations per fit at most


def probe_protocol() -> dict:
    """The probes' protocol as probes.json records it."""
    return {
        "features": "each block's output, globally average pooled (Transformer blocks: the mean over tokens)",
        "classifier": "multinomial logistic regression on standardised features, fitted to its minimum by "
        "full-batch L-BFGS-B",
        "weight_decays": list(WEIGHT_DECAYS), "held_out": HELD_OUT, "seed": SEED, "max_iter": MAX_ITER,
        "head_lens": "the model's own final norm and classifier applied to each S4 block's output",
    }  # fmt: skip


def probed_blocks(model: CoAtNet) -> list[dict]:
    """(block, stage, kind, the traced name) of every probed block, in forward order: the stem, then
    every block of S1..S4."""
    rows = [{"block": "S0", "stage": "S0", "kind": "stem", "name": "S0.output"}]
    for part in model.parts():
        name = part.name
        if part.block is not None and not any(row["block"] == name.base for row in rows):
            rows.append({"block": str(name.base), "stage": f"S{name.stage}", "kind": part.block_kind,
                         "name": str(name.base.child("output"))})  # fmt: skip
    return rows


def lens_blocks(model: CoAtNet) -> list[str]:
    """The blocks whose output the head reads as it is: those of the last stage."""
    blocks = model.block_names()
    return [str(name) for name in blocks if name.stage == blocks[-1].stage]


def probe_features(model: CoAtNet, runner: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """One batch's pooled features of every probed block (``features/<block>``, float32), the model's
    logits' top-1 (``predicted``) and each head lens's top-1 (``lens/<block>``).

    Args:
        model: the model (names its blocks).
        runner: what runs the passes (the model or its inference build, :func:`coatnet.for_inference`).
        x: a normalised batch.
    """
    blocks = probed_blocks(model)
    with torch.inference_mode(), tracing([b["name"] for b in blocks], model=model) as cache:
        logits = runner(x)
    out = {"predicted": logits.argmax(-1).cpu().numpy()}
    for b in blocks:
        out[f"features/{b['block']}"] = cache[b["name"]].float().mean(dim=(-2, -1)).cpu().numpy()
    with torch.inference_mode():
        for block in lens_blocks(model):
            lens = runner.forward_head(runner.norm(cache[f"{block}.output"]))
            out[f"lens/{block}"] = lens.argmax(-1).cpu().numpy()
    return out


def fit_probes(
    model: CoAtNet,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Every block's probe (module docstring) from the features of both splits (the arrays of
    :func:`probe_features`, concatenated, with ``labels``): ``rows``, ``head_lens`` and the model's own
    top-1 on both splits."""
    classes = model.config.num_classes
    rows = []
    for b in probed_blocks(model):
        if progress is not None:
            progress(b["block"])
        key = f"features/{b['block']}"
        found = fit_probe(train[key], train["labels"], test[key], test["labels"], classes=classes)
        rows.append({"block": b["block"], "stage": b["stage"], "kind": b["kind"],
                     "features": int(train[key].shape[1]), **found})  # fmt: skip
    lenses = [
        {"block": block, "train_top1": _top1(train[f"lens/{block}"], train["labels"]),
         "test_top1": _top1(test[f"lens/{block}"], test["labels"])}
        for block in lens_blocks(model)
    ]  # fmt: skip
    return {
        "rows": rows, "head_lens": lenses,
        "model_top1": _top1(test["predicted"], test["labels"]),
        "model_train_top1": _top1(train["predicted"], train["labels"]),
    }  # fmt: skip


def fit_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, classes: int
) -> dict:
    """One probe: the weight decay chosen on the held-out part, refitted on the whole training split;
    ``train_top1``, ``test_top1``, ``weight_decay`` and ``held_out_top1`` (of each choice)."""
    x = torch.as_tensor(train_x, dtype=torch.float64)
    y = torch.as_tensor(train_y, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED))
    cut = max(1, round(HELD_OUT * len(y)))
    held, fit = order[:cut], order[cut:]
    scores = []
    for decay in WEIGHT_DECAYS:
        probe = _fit(x[fit], y[fit], classes, decay)
        scores.append(_top1(probe(x[held]), y[held].numpy()))
    best = max(range(len(WEIGHT_DECAYS)), key=lambda i: (scores[i], WEIGHT_DECAYS[i]))  # ties: stronger
    probe = _fit(x, y, classes, WEIGHT_DECAYS[best])
    test = torch.as_tensor(test_x, dtype=torch.float64)
    return {
        "train_top1": _top1(probe(x), train_y), "test_top1": _top1(probe(test), test_y),
        "weight_decay": WEIGHT_DECAYS[best],
        "held_out_top1": dict(zip(map(str, WEIGHT_DECAYS), scores, strict=True)),
    }  # fmt: skip


def _fit(
    x: torch.Tensor, y: torch.Tensor, classes: int, decay: float
) -> Callable[[torch.Tensor], np.ndarray]:
    """A multinomial logistic regression fitted to (x, y) with L2 ``decay`` (the bias unpenalised),
    standardising with x's own statistics; returns a function of new features giving the top-1 class.

    The loss (mean cross-entropy plus ``decay / 2`` times the squared weights) is strictly convex: scipy's
    L-BFGS-B, given its exact gradient in float64, runs to its one minimum (at most :data:`MAX_ITER`
    iterations), so the probe does not depend on the solver."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = ((x - mean) / std).numpy()
    n, d = z.shape
    onehot = np.eye(classes)[y.numpy()]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight = theta[: d * classes].reshape(d, classes)
        logits = z @ weight + theta[d * classes :]
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        error = (np.exp(log_p) - onehot) / n  # the gradient of the mean cross-entropy at the logits
        value = -(onehot * log_p).sum() / n + 0.5 * decay * (weight * weight).sum()
        return value, np.concatenate([(z.T @ error + decay * weight).ravel(), error.sum(0)])

    found = minimize(loss, np.zeros(d * classes + classes), jac=True, method="L-BFGS-B",
                     options={"maxiter": MAX_ITER, "gtol": 1e-7, "ftol": 1e-12})  # fmt: skip
    weight = torch.as_tensor(found.x[: d * classes].reshape(d, classes))
    bias = torch.as_tensor(found.x[d * classes :])

    def predict(features: torch.Tensor) -> np.ndarray:
        return (((features - mean) / std) @ weight + bias).argmax(-1).numpy()

    return predict


def _top1(predicted: np.ndarray, labels: np.ndarray) -> float:
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return float((predicted == labels).mean()) if len(labels) else 0.0


def shipped_probes() -> list[str]:
    """The names of the probes shipped with the package (``probes-demo-pre``, ``probes-layout-c-c-t-t``).

    Returns:
        The names, sorted.

    Examples:
        >>> import analysis
        >>> "probes-demo-pre" in analysis.shipped_probes()
        True
    """
    return sorted(p.parent.name for p in STUDIES.glob("*/probes.json"))


def load_probes(spec: str | Path) -> Probes:
    """A probes.json (``coatnet probe``): a shipped one by name, a folder or the file.

    Args:
        spec: a shipped name (:func:`shipped_probes`), a folder written by ``coatnet probe``, or its
            probes.json.

    Returns:
        The summary (a :class:`analysis.Probes`): the model, the data, the protocol and one row per
        probed activation.

    Raises:
        ValueError: nothing readable there, with what to give instead.

    Examples:
        >>> import analysis
        >>> probes = analysis.load_probes("probes-demo-pre")
        >>> probes.model, probes.rows[-1].block
        ('demo-pre', 'S4.0')
    """
    name = str(spec).strip()
    path = STUDIES / name / "probes.json" if name in shipped_probes() else Path(name).expanduser()
    give = f"{', '.join(shipped_probes()) or 'a shipped name'} or a folder written by coatnet probe"
    found = read_summary(path, "probes.json", named=name, what="probes", give=give,
                         keys=("model", "rows", "model_top1"))  # fmt: skip
    return Probes.from_json(found, where=str(path))


def layout_probes() -> list[Probes]:
    """The shipped probes of the layout study's models (``probes-layout-*``), in the study's order.

    Returns:
        One probes.json summary per layout (:func:`load_probes`).

    Examples:
        >>> import analysis
        >>> probes = analysis.layout_probes()
        >>> len(probes), probes[0].model
        (5, 'layout-c-c-c-c')
    """
    order = [layout.checkpoint for layout in LAYOUTS]
    found = [load_probes(name) for name in shipped_probes() if name.startswith("probes-layout-")]
    return sorted(found, key=lambda p: order.index(p.model) if p.model in order else len(order))


def generalisation_ranking(layout_study: LayoutStudy) -> dict[str, float]:
    """Each layout's test top-1 at the largest training-set size of the layout study (layouts.json: issue
    16's ranking of how well each layout generalises), by layout (``C-C-T-T``).

    Args:
        layout_study: a layout study (:func:`load_layouts`).

    Returns:
        Layout -> test top-1, in [0, 1].

    Examples:
        >>> import analysis
        >>> ranking = analysis.generalisation_ranking(analysis.load_layouts())
        >>> sorted(ranking, key=ranking.get, reverse=True)[0], round(ranking["ViT_REL"], 2)
        ('C-C-C-C', 0.63)
    """
    best: dict[str, tuple[int, float]] = {}
    for run in layout_study.runs:
        size, top1 = int(run.size), float(run.test_top1)
        if run.layout not in best or size > best[run.layout][0]:
            best[run.layout] = (size, top1)
    return {layout: top1 for layout, (_, top1) in best.items()}
