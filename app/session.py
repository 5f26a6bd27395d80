"""What the sidebar chose, handed from ``main.py`` to the page it runs (through this session's state,
never a global: one server serves many sessions at once)."""

from __future__ import annotations

from dataclasses import dataclass

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
