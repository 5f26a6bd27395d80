"""The Python of the README and of the docs pages it links runs as written, block after block, in a
scratch directory: each page on its own, as a reader would paste it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path | None = None) -> list[str]:
    pages = PAGES if page is None else [page]
    return [b for p in pages for b in re.findall(r"```python\n(.*?)```", p.read_text(), flags=re.S)]


def test_the_readme_links_every_docs_page_and_its_first_screen_is_short() -> None:
    text = README.read_text()
    # the intro, the two commands, what the first run needs, the pip path, the screenshot and the links
    assert len(text.splitlines()) <= 45 and "make app" in text and "make test" in text
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in text, f"README does not link docs/{page.name}"


def test_readme_has_a_tour() -> None:
    assert len(python_blocks()) >= 3


def test_only_blocks_that_need_downloads_are_not_run() -> None:
    """``python no-run`` marks the blocks that need the hub or a downloaded file; nothing else."""
    skipped = [b for p in PAGES for b in re.findall(r"```python no-run\n(.*?)```", p.read_text(), flags=re.S)]
    assert skipped and all("from_timm" in block for block in skipped)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_the_python_of_each_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app").symlink_to(ROOT / "app")  # the examples read the gallery's pictures
    namespace: dict[str, object] = {}
    for i, block in enumerate(python_blocks(page)):
        exec(compile(block, f"{page.name} python block {i}", "exec"), namespace)
    if page.name == "library.md":
        assert (tmp_path / "my.safetensors").exists()
