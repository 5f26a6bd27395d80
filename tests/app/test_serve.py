"""``python -m app.serve``: the pages' code imported and the default model run before Streamlit serves; a
model that cannot be warmed is named in one line and the server starts all the same."""

from __future__ import annotations

import sys

import pytest

from tests.support import processes

WARMED = """import sys
from app.serve import warm
seconds = warm({spec!r})
wanted = ("torch", "analysis", "analysis.figures", "plotly.graph_objects")
print(sorted(m for m in wanted if m in sys.modules))
print("app.cache:", "app.cache" in sys.modules)
"""


@pytest.mark.slow
def test_warming_imports_the_pages_code_without_a_streamlit_runtime() -> None:
    done = processes.run([sys.executable, "-c", WARMED.format(spec="demo-pre")], timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['analysis', 'analysis.figures', 'plotly.graph_objects', 'torch']"
    assert lines[1] == "app.cache: False"  # its caches belong to the runtime Streamlit starts after this
    assert done.stderr == ""


def test_a_model_that_cannot_be_warmed_is_named_and_skipped() -> None:
    done = processes.run([sys.executable, "-c", WARMED.format(spec="demo-nonexistent")], timeout=120)
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("app.serve: warming up skipped (") and "demo-nonexistent" in line
