"""Results and figures as files: JSON and NPZ for results, self-contained HTML and PNG for figures.

HTML carries plotly.js inside, so a saved figure opens offline. PNG goes through kaleido, which drives a
Chromium-based browser (Debian's ``chromium`` works); without one, :class:`ExportError` says what to install.
"""

from __future__ import annotations

import io
import json
import shutil
from typing import Any

import numpy as np
import plotly.graph_objects as go

from analysis.core.summaries import result_items, to_jsonable

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class ExportError(RuntimeError):
    """An export that cannot be made on this machine; the message says what to install."""


def result_json(result: Any, about: dict[str, Any] | None = None) -> str:
    """A result (dataclasses of numpy arrays, tuples, dicts) as indented JSON; with ``about`` (the model,
    its provenance, the image, the block, the query...) as ``{"about": ..., "result": ...}``."""
    value = to_jsonable(result)
    return json.dumps(value if about is None else {"about": to_jsonable(about), "result": value}, indent=1)


def result_npz(result: Any, about: dict[str, Any] | None = None) -> bytes:
    """A result's arrays and numbers as a compressed ``.npz``, keyed by their path in the result
    (``blocks.0.effective``); strings become 0-d unicode arrays; None is left out. ``about`` goes in as
    the JSON string ``about`` (a unicode array: it loads without pickle)."""
    arrays: dict[str, np.ndarray] = {}
    _flatten(result, "", arrays)
    if about is not None:
        arrays["about"] = np.asarray(json.dumps(to_jsonable(about)))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _flatten(value: Any, path: str, out: dict[str, np.ndarray]) -> None:
    if value is None:
        return
    if hasattr(value, "__dataclass_fields__"):
        for name, item in result_items(value):
            _flatten(item, f"{path}.{name}" if path else name, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list | tuple) and any(
        hasattr(v, "__dataclass_fields__") or isinstance(v, np.ndarray | dict | list | tuple) for v in value
    ):
        for i, item in enumerate(value):
            _flatten(item, f"{path}.{i}" if path else str(i), out)
    else:
        out[path or "value"] = np.asarray(value)


def figure_html(figure: go.Figure) -> str:
    """A self-contained HTML page of the figure (plotly.js inlined: it opens offline)."""
    return figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})


def browser_available() -> bool:
    """Whether a Chromium-based browser for kaleido's PNG export is on the PATH."""
    return any(shutil.which(name) for name in BROWSERS)


def figure_png(figure: go.Figure, *, scale: float = 2.0) -> bytes:
    """The figure as a PNG, at its own size (or 900x600) times ``scale``.

    Raises:
        ExportError: no Chromium-based browser here, or kaleido failed; HTML export still works.
    """
    if not browser_available():
        raise ExportError(
            "PNG export needs Chromium (Debian: `apt-get install chromium`); download the HTML instead"
        )
    width = figure.layout.width or 900
    height = figure.layout.height or 600
    try:
        return figure.to_image(format="png", width=width, height=height, scale=scale)
    except Exception as error:  # kaleido reports browser failures with several exception types
        raise ExportError(
            f"PNG export failed ({type(error).__name__}: {error}); download the HTML instead"
        ) from error
