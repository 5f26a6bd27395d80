"""What the sidebar chose, handed from ``main.py`` to the page it runs (through this session's state,
never a global: one server serves many sessions at once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from app.cache import ModelKey
from app.widgets import ImageChoice

KEY = "selection"


@dataclass(frozen=True)
class Selection:
    """The model (its cache key and one-line description) and the image every page analyses."""

    key: ModelKey
    description: str
    image: ImageChoice
    gallery_kind: str


def remember(selection: Selection) -> None:
    st.session_state[KEY] = selection


def selection() -> Selection:
    """This run's selection; stops the page quietly when the sidebar has none (it says why)."""
    chosen = st.session_state.get(KEY)
    if chosen is None:
        st.stop()
    return chosen


def about(chosen: Selection, **extra: Any) -> dict[str, Any]:
    """What a downloaded result is about: the model (its description, spec, normalization and the
    checkpoint's provenance), the image, and ``extra`` (the block, the query...)."""
    from app import cache

    info = cache.model(chosen.key).checkpoint_info
    return {
        "made_with": "CoAtNet Lens",
        "model": chosen.description,
        "model_spec": chosen.key.spec,
        "attention": chosen.key.attention or "as trained",
        "device": chosen.key.device,
        "provenance": dict(info.provenance) if info is not None else {},
        "image": chosen.image.file_name,
        **extra,
    }
