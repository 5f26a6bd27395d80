"""The README's Python tour runs as written, block after block, in a scratch directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_tour() -> None:
    assert len(python_blocks()) >= 3


def test_only_blocks_that_need_downloads_are_not_run() -> None:
    """``python no-run`` marks the blocks that need the hub or a downloaded file; nothing else."""
    skipped = re.findall(r"```python no-run\n(.*?)```", README.read_text(), flags=re.S)
    assert skipped and all("from_timm" in block for block in skipped)


@pytest.mark.slow
def test_readme_python_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    assert (tmp_path / "my.safetensors").exists()
