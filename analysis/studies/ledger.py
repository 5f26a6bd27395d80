"""The relevance ledger over a dataset (``coatnet study --ledger N``): every image's layer-wise relevance
of its predicted class under both rules (:func:`analysis.lrp`), each part's branch, skip, content and
position as shares of the logit explained, then their mean and spread over the images."""

from __future__ import annotations

import numpy as np
import torch

from analysis.explain.lrp import RULES, SOURCES, lrp
from coatnet import CoAtNet

FIELDS = ("branch", "skip", "content", "position")
STAGES = ("S0", "S1", "S2", "S3", "S4")
EPSILON = 1e-6


def ledger_protocol() -> dict:
    """What the ledger's numbers are, in words and numbers (study.json's ``ledger_protocol``)."""
    return {
        "rules": list(RULES),
        "epsilon": EPSILON,
        "target": "each image's predicted class",
        "units": "shares of the explained logit: mean, the sum over the images over the sum of their logits; "
        "std, the spread of each image's own share where |its logit| is at least a tenth of the mean",
        "fields": "branch and skip: the relevance entering a part's residual branch and its skip at its "
        "addition (the stem's and the head's: entering them); content and position: inside an attention, "
        "the relevance reaching q k^T and the relative-position bias (0 under cp); absorbed: what each "
        "source kept on the way; stages: each stage output's relevance",
    }


def measure_ledger(model: CoAtNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each image's ledger under each rule: ``ledger_{rule}_logit`` (B,), ``ledger_{rule}_{field}``
    (B, parts) for :data:`FIELDS` (0 where a part has no such term), ``ledger_{rule}_absorbed``
    (B, sources) in :data:`analysis.explain.lrp.SOURCES` order, ``ledger_{rule}_stages`` (B, 5)."""
    out = {}
    for rule in RULES:
        found = lrp(model, x, rule=rule, epsilon=EPSILON)
        out[f"ledger_{rule}_logit"] = found.logit
        for name in FIELDS:
            columns = [getattr(row, name) for row in found.ledger]
            out[f"ledger_{rule}_{name}"] = np.stack(
                [np.zeros_like(found.logit) if c is None else c for c in columns], axis=1
            )
        out[f"ledger_{rule}_absorbed"] = np.stack([found.absorbed[s] for s in SOURCES], axis=1)
        out[f"ledger_{rule}_stages"] = np.stack(
            [found.stages[s].reshape(len(x), -1).sum(1) for s in STAGES], axis=1
        )
    return out


STEADY = 0.1  # an image's share enters the spread where |its logit| is at least this much of the mean


def _spread(values: np.ndarray, logit: np.ndarray) -> dict[str, float]:
    """The share of the logit ``values`` (one per image) take: ``mean`` the ratio of their sums (an image
    whose logit is near 0 cannot swing it), ``std`` the spread of each image's own share over the images
    whose logit is not near 0 (:data:`STEADY`)."""
    steady = np.abs(logit) >= STEADY * np.abs(logit).mean()
    shares = values[steady] / logit[steady]
    return {"mean": float(values.sum() / logit.sum()), "std": float(shares.std()) if shares.size else 0.0}


def summarise_ledger(model: CoAtNet, arrays: dict[str, np.ndarray]) -> dict:
    """study.json's ``ledger``: per rule, one row per part (its name and kind, and the mean and spread over
    the images of each field's share of the logit: ``content`` and ``position`` for attention alone), what
    each source kept, and each stage's share."""
    parts = [(str(p.name), p.kind) for p in model.parts()]
    summary = {}
    for rule in RULES:
        logit = arrays[f"ledger_{rule}_logit"]
        rows = []
        for j, (part, kind) in enumerate(parts):
            row = {"part": part, "kind": kind}
            for name in FIELDS:
                if name in ("content", "position") and kind != "attention":
                    continue
                row[name] = _spread(arrays[f"ledger_{rule}_{name}"][:, j], logit)
            rows.append(row)
        absorbed, stages = arrays[f"ledger_{rule}_absorbed"], arrays[f"ledger_{rule}_stages"]
        summary[rule] = {
            "rows": rows,
            "absorbed": {s: _spread(absorbed[:, k], logit) for k, s in enumerate(SOURCES)},
            "stages": {s: _spread(stages[:, k], logit) for k, s in enumerate(STAGES)},
        }
    return summary
