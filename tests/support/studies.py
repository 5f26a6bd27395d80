"""Comparing study summaries (study.json and what :func:`analysis.studies.study.summarise` returns), and
running a small study of a toy checkpoint (the sanity and ledger parts' tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coatnet.cli.commands import main
from coatnet.data.batches import iterate_batches, normalize, prepare_batch
from coatnet.data.datasets import open_for_model


def run_toy_study(checkpoint: Path, out: Path, *extra: str) -> int:
    """``coatnet study`` of ``checkpoint`` on the first 8 Fashion-MNIST test images into ``out``."""
    return main(["study", "--model", str(checkpoint), "--limit", "8", "--batch-size", "8", "--quiet",
                 "--out", str(out), *extra])  # fmt: skip


def first_images(checkpoint: Path, count: int):
    """The checkpoint's model and the first ``count`` test images as the study prepares them."""
    from analysis.cli import study

    model = study.load_model(str(checkpoint), device="cpu")
    pre = study.preprocessing_of(model)
    dataset = open_for_model("fashion-mnist", "test", model, pre)
    (pictures, _), *_ = iterate_batches(dataset, torch.arange(count), count, workers=0)
    return model, normalize(prepare_batch(pictures, pre, device="cpu"), pre)


def assert_close_json(a, b, path: str = "study", *, rel: float = 1e-5) -> None:
    """Equal JSON, numbers within ``rel`` (another thread count rounds differently), top-1s exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close_json(a[key], b[key], f"{path}.{key}", rel=rel)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close_json(x, y, f"{path}[{i}]", rel=rel)
    elif isinstance(a, float) and not path.endswith("top1"):
        assert b == pytest.approx(a, rel=rel, abs=1e-6, nan_ok=True), path
    else:
        assert a == b, path
