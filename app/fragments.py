"""A part of a page that reruns alone (``st.fragment``): a click on the explorer's map reruns the views of
the query, not the whole page. What app/main.py sets up around a page's run is set up again around the
part's own reruns: the column width its figures are laid out for, its place in "Download this view" (what
it drew before replaced), one line for what went wrong (never a traceback), and the query in the URL."""

from __future__ import annotations

import functools
from collections.abc import Callable

import streamlit as st

from analysis import ImageError, ModelSpecError
from analysis.figures import column_width, drawn_at
from app import errors, render, urlstate, widgets
from coatnet import CheckpointError


def rerun_alone(name: str, what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a function that draws part of a page (named ``name`` in the view's record, ``what`` in an
    error line) so that a widget inside it reruns it alone: ``st.fragment``, with its figures laid out for
    the page's column (drawn at the page's top level: alone, it has the width of the page's last run,
    :func:`app.widgets.drawn_width`), recorded as :func:`app.render.part` ``name``, a failure
    shown as one line, and the query point written into the URL after it (:func:`app.urlstate.save_query`).
    """

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        @st.fragment
        @functools.wraps(function)
        def alone(*args, **kwargs) -> None:
            # the page's run lays it out for its column; alone, for the width that run had
            with drawn_at(column_width() or widgets.drawn_width()), render.part(name):
                try:
                    function(*args, **kwargs)
                except (ImageError, CheckpointError, ModelSpecError) as error:
                    st.error(errors.message(error), icon=":material/error:")
                except Exception as error:
                    st.error(errors.unexpected(error, what), icon=":material/error:")
            urlstate.save_query(render.drawn().params)

        return alone

    return decorate
