"""``python -m app.serve``: the pages' code imported and the default model run before Streamlit serves; a
model that cannot be warmed is named in one line and the server starts all the same."""

from __future__ import annotations

import sys

import pytest

from tests.support import processes

WARMED = """import sys
from app.serve import warm
warm("demo-nonexistent")
wanted = ("torch", "analysis", "analysis.figures", "plotly.graph_objects")
print(sorted(m for m in wanted if m in sys.modules))
print("warmed", warm("demo-pre") > 0)
print("app.cache:", "app.cache" in sys.modules)
"""


@pytest.mark.slow
def test_warming_imports_the_pages_code_and_names_a_model_it_cannot_run() -> None:
    done = processes.run([sys.executable, "-c", WARMED], timeout=120)
    assert done.returncode == 0, done.stderr
    # a model that cannot be loaded: one line, and the imports are done all the same
    [line] = done.stderr.splitlines()
    assert line.startswith("app.serve: warming up skipped (") and "demo-nonexistent" in line
    assert done.stdout.splitlines() == [
        "['analysis', 'analysis.figures', 'plotly.graph_objects', 'torch']",
        "warmed True",  # the default model, with nothing said
        "app.cache: False",  # its caches belong to the runtime Streamlit starts after this
    ]
