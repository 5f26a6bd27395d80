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


@pytest.fixture(scope="module")
def served():
    """The app's server, started once for the module, and one headless Chromium (the browser tests)."""
    from playwright.sync_api import sync_playwright

    from tests.app.server import CHROMIUM_ARGS, running_app
    from tests.app.test_browser import Served

    with running_app() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield Served(url, browser)
        finally:
            browser.close()
