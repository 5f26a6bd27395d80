"""The optional system packages, as the tests see them: scripts/system_packages.py owns the list, and a test
that needs a missing one skips with the very line ``make`` printed for it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("system_packages", ROOT / "scripts" / "system_packages.py")
system_packages = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("system_packages", system_packages)  # dataclasses look their module up there
_spec.loader.exec_module(system_packages)

PARTS = system_packages.PARTS
CHROMIUM = PARTS["chromium"].marker


def skip_reason(names: list[str]) -> str:
    """'' when every named part is present, else the line that names what is missing and how to install it."""
    return system_packages.missing_line([PARTS[n] for n in names if not PARTS[n].present()])


def have(name: str) -> bool:
    return PARTS[name].present()


def skip_unless(name: str) -> None:
    """Skip the calling test or fixture, with ``make``'s line, when the part is missing."""
    import pytest

    if reason := skip_reason([name]):
        pytest.skip(reason)
