"""The optional system packages (scripts/system_packages.py): installed with apt-get where we may, else one
line that names what is missing and how to install it; never a failure of the set-up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.system import system_packages

PARTS = system_packages.PARTS


def absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, part in PARTS.items():
        monkeypatch.setitem(PARTS, name, system_packages.Part(part.package, part.used_for, tmp_path / name))


def test_the_script_looks_where_the_product_looks() -> None:
    """The script runs before the virtual environment exists, so it cannot import the product: it keeps
    the product's own places (the dataset's folder, Debian's Chromium among the browsers export tries)."""
    from analysis.report.export import BROWSERS
    from coatnet.data.datasets import FASHION_MNIST_DIR

    if not os.environ.get("COATNET_FASHION_MNIST"):
        assert PARTS["fashion-mnist"].marker.parent == FASHION_MNIST_DIR
    assert PARTS["chromium"].package in BROWSERS


def test_without_rights_one_line_names_what_is_missing_and_the_set_up_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent(monkeypatch, tmp_path)
    monkeypatch.setattr(system_packages, "_privilege", lambda: None)
    assert system_packages.install() == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("missing: chromium (browser tests and PNG export); dataset-fashion-mnist")
    assert "install with `sudo apt-get install chromium dataset-fashion-mnist`" in out
    assert system_packages.missing_line() in out  # the very line a test that needs them skips with


def test_with_rights_it_says_what_it_installs_then_runs_apt_get_quietly_and_without_prompts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apt-get is a stand-in that records its arguments and environment; the settings go through env, so
    that sudo's reset environment keeps them."""
    absent(monkeypatch, tmp_path)
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $DEBCONF_NOWARNINGS $*" >> {log}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(system_packages, "_privilege", lambda: [])
    assert system_packages.install() == 0
    calls = log.read_text().splitlines()
    assert calls == [
        "noninteractive yes update -qq",
        "noninteractive yes install -y -qq chromium dataset-fashion-mnist",
    ]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("installing with apt-get: chromium for browser tests and PNG export")
    # the stand-in installed nothing: the one line says so, and the set-up goes on
    assert lines[1].startswith("missing: chromium") and "apt-get failed" in lines[1] and len(lines) == 2


def test_nothing_is_said_or_run_when_everything_is_there(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(system_packages, "missing", lambda: [])
    monkeypatch.setattr(system_packages, "_privilege", lambda: pytest.fail("asked for rights"))
    assert system_packages.install() == 0 and capsys.readouterr().out == ""
