"""The code cites only files a reader of the repository has: every ``docs/*.md`` or ``*.md`` page it names
exists, and no design file from outside the repository is cited (docs/architecture.md took their place)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("DESIGN.md", "PAPER.md", "STYLE.md", "DEVELOPERS.md")


def tracked(*suffixes: str) -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / n for n in names.splitlines() if n.endswith(suffixes) and (ROOT / n).exists()]


def test_no_file_cites_a_design_file_outside_the_repository() -> None:
    cited = {
        str(path.relative_to(ROOT)): name
        for path in tracked(".py", ".md", ".toml", ".sh", ".ipynb", "Makefile")
        for name in OUTSIDE
        if name in path.read_text(errors="replace") and path.name != "test_citations.py"
    }
    assert not cited, f"cites a file that is not in the repository: {cited}"


def test_every_docs_page_the_code_names_exists() -> None:
    missing = {}
    for path in tracked(".py"):
        for page in re.findall(r"\bdocs/([\w./-]+?\.md)\b", path.read_text()):
            if not (ROOT / "docs" / page).exists():
                missing[str(path.relative_to(ROOT))] = f"docs/{page}"
    assert not missing, f"names a docs page that does not exist: {missing}"


def test_the_docs_describe_the_project_as_it_is_and_the_history_lives_in_the_changelog() -> None:
    """No issue numbers, "this round" or tables of moved modules in README.md and docs/*.md: the docs say
    what is; what changed when is CHANGELOG.md's."""
    history = re.compile(
        r"\bissues? \d+|\bthis round\b|\(issue \d+\)|where each module went|\bthe issue's|\bissues'", re.I
    )
    # the docs pages, and the code whose docstrings the reference renders
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pages += [p for package in ("coatnet", "analysis", "app") for p in sorted((ROOT / package).rglob("*.py"))]
    found = {
        f"{page.relative_to(ROOT)}:{n}": line.strip()[:80]
        for page in pages
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if history.search(line)
    }
    assert not found, f"history in the docs (move it to CHANGELOG.md): {found}"
    assert "Where each module went" in (ROOT / "CHANGELOG.md").read_text()
