"""Shared fixtures and marker handling: gpu tests skip without CUDA, browser tests without Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_browser = pytest.mark.skip(reason="needs /usr/bin/chromium")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "browser" in item.keywords and not (CHROMIUM.exists() or shutil.which("chromium")):
            item.add_marker(skip_browser)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
