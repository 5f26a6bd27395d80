"""Comparing study summaries (study.json and what :func:`analysis.studies.study.summarise` returns)."""

from __future__ import annotations

import pytest


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
