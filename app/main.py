"""CoAtNet Lens: ``streamlit run app/main.py``, or warmed first: ``python -m app.serve`` (``make app``).

The sidebar picks the model and the image; ``st.navigation`` runs one page module from ``views/``.
"""

from __future__ import annotations

import streamlit as st

from analysis import ImageError, ModelSpecError, describe
from analysis.figures import drawn_at
from app import cache, errors, gallery, render, urlstate, widgets
from app.pages import KEPT, PAGES
from app.progress import streamlit_bar
from app.session import Selection, remember
from coatnet import CheckpointError
from coatnet.weights import HubUnavailableError, cached_timm_weights, check_hub


def keep(names: tuple[str, ...]) -> None:
    """Streamlit forgets a widget's value once a run (another page) does not draw it: copy each value to a
    key of our own while its widget lives, and hand it back when the widget is drawn again."""
    state = st.session_state
    for name in names:
        if name in state:
            state[f"kept_{name}"] = state[name]
        elif f"kept_{name}" in state:
            state[name] = state[f"kept_{name}"]


def download(tag: str) -> bool:
    """Fetch a timm tag's weights with a progress bar; False after a message.

    The hub is asked first whether it answers at all (:func:`coatnet.weights.hub.check_hub`, a few seconds at
    most), so an offline machine hears so at once instead of after the hub client's retries; the
    failure is remembered for this session, with a button to try again."""
    failures = st.session_state.setdefault("hub_failures", {})
    if tag not in failures:
        try:
            check_hub(tag)
            placeholder = st.empty()
            cache.timm_weights(tag, streamlit_bar(placeholder))
            placeholder.empty()
            return True
        except HubUnavailableError as error:
            failures[tag] = errors.message(error)
    st.error(failures[tag], icon=":material/cloud_off:")
    if st.button("Try again", key="hub_try_again", help="Ask the Hugging Face hub again"):
        failures.pop(tag, None)
        st.rerun()
    return False


def load(choice: widgets.ModelChoice):
    """The chosen model (downloading timm weights first, with a progress bar); None after a message."""
    try:
        tag = choice.timm_tag
        if tag is not None and cached_timm_weights(tag) is None and not download(tag):
            return None
        return cache.model(choice.key)
    except errors.INPUT_ERRORS as error:
        st.error(errors.message(error), icon=":material/error:")
    except Exception as error:
        st.error(errors.unexpected(error, "Loading the model"), icon=":material/error:")
    return None


def sidebar() -> Selection | None:
    """Model and image pickers; None (after saying what to do) until both are usable."""
    with st.sidebar:
        st.markdown("## CoAtNet Lens")
        choice = widgets.model_picker()
    if choice is None:
        st.info("Choose a model in the sidebar.", icon=":material/arrow_back:")
        return None
    model = load(choice)
    if model is None:
        return None
    with st.sidebar:
        st.caption(describe(model))
        kind = gallery.kind_for(model.config.num_classes, model.config.in_chans)
        image = widgets.image_picker(kind)
        widgets.opacity_slider()  # drawn on every run: it shows the value the maps use, whatever the image
    if image is None:
        st.info("Upload an image in the sidebar, or pick one from the gallery.", icon=":material/arrow_back:")
        return None
    try:
        cache.prepared(choice.key, image.data, image.file_name)
    except errors.INPUT_ERRORS as error:
        st.error(errors.message(error), icon=":material/error:")
        return None
    return Selection(choice.key, describe(model), image, kind)


def main() -> None:
    # the icon is an emoji (inlined): a :material/...: page icon makes the browser fetch it from Google
    st.set_page_config(page_title="CoAtNet Lens", page_icon="🔍", layout="wide")
    pages = {p.title: p for p in PAGES}
    routes = [st.Page(p.path, title=p.title, icon=p.icon, default=p.default) for p in PAGES]
    # the sidebar's page links are drawn by the app, last (into this place at the sidebar's top), each
    # carrying the view as the run leaves it: Streamlit's own menu dropped the URL's parameters on a page
    # change and the app wrote them back, two history entries, so Back needed two presses
    page = st.navigation(routes, position="hidden")
    menu = st.sidebar.container()
    st.title(page.title)
    st.caption(pages[page.title].intro)
    urlstate.restore()
    keep(KEPT)
    render.start_view()  # what the page draws this run, for "Download this view"
    notices = st.container()  # what a link named that was not found: drawn once the sidebar has chosen
    selection = width = None
    try:
        selection = sidebar()
        shown = {"model": selection.key.spec, "image": selection.image.name} if selection else {}
        with notices:
            urlstate.notices(shown)
        if selection is not None:
            remember(selection)
            width = widgets.column_width()
        if selection is not None and width is None:
            # a new browser's first run: its column's width comes back at once, and the page is drawn for
            # it then, once (drawn at a guess first, a new visit drew every figure twice)
            st.caption("Laying the page out for this window...")
        elif selection is not None:  # else the sidebar said what to do; the page links are drawn all the same
            try:
                with drawn_at(width):  # every figure laid out for the column it is in
                    page.run()
            except (ImageError, CheckpointError, ModelSpecError) as error:
                st.error(errors.message(error), icon=":material/error:")
            except Exception as error:
                st.error(errors.unexpected(error, page.title), icon=":material/error:")
    finally:  # the view so far goes in the URL, even when the run stopped early
        kind = selection.gallery_kind if selection is not None else None
        shown = pages[page.title] if selection is not None else None
        waiting = selection is not None and width is None
        # a run waiting for the width draws none of the page's choices: the link stays as it came
        params = urlstate.view(kind, shown, shown=False) if waiting else urlstate.save(kind, shown)
        render.drawn().params = params  # the view's link, which a part rerun alone updates (app.fragments)
        with menu:  # each link carries the view its page will show: one history entry per page change
            for route, target in zip(routes, PAGES, strict=True):
                linked = params if target is shown else urlstate.view(kind, target, shown=False)
                st.page_link(route, label=route.title, icon=route.icon, query_params=linked, width="stretch")
            if selection is not None and not waiting:  # the page ran: its figures and results, and its link
                title = f"{page.title}: {selection.description}; image {selection.image.name}"
                url_path = page.url_path
                render.view_download(lambda now: urlstate.link(url_path, now), title, name=shown.view)
            st.divider()


main()
