"""The view in the URL (``st.query_params``): a reload or a shared link restores the model, the image
and every choice the page shows; the page is the URL's path (``st.navigation``).

Parameters: ``source`` (``demo``, ``timm`` or ``path``) and ``model``; ``attention`` (``pre`` / ``post``
when switched); ``device``; ``image`` (a gallery sample); ``q`` (the query point as fractions ``fy,fx`` of
the picture), where the page shows the query; and every choice of the page (:data:`LINKED`, under its
widget key: ``block``, ``head``, ``rollout_from``, ``explain_class``, ``compare_how``, the interventions
applied as ``iv``...), only those the run drew: a choice that does not apply to the view (a block of a
model without attention) is left out. An uploaded model or image never goes in a link. A path in a link
is honoured only inside the folders this server shares: the folder it was started in, or those listed in
``COATNET_LENS_ALLOWED_DIRS`` (separated by ``os.pathsep``). A link that names something missing leaves
one line saying what was not found and what was opened instead (:func:`notices`), until that choice is
changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from analysis import Query
from analysis.figures import DEFAULT_OPACITY
from app import widgets
from app.pages import PAGES, Page
from app.widgets import ATTENTION, MODEL_SOURCES, QUERY_POINT, TIMM_TAGS
from coatnet import Intervention, available_devices
from coatnet.weights import NAMES

RESTORED = "url_restored"  # the session has read its URL once
CHOSEN = "url_chosen"  # the choices a link gave: they stay in the link
PENDING_IMAGE = widgets.LINKED_IMAGE  # a gallery sample named by a link, applied when the gallery is drawn
NOTICES = widgets.LINK_NOTICES  # what a link named that was not found: kept until that choice changes
SOURCES = {"demo": MODEL_SOURCES[0], "timm": MODEL_SOURCES[1], "path": MODEL_SOURCES[2]}
INTERVENTIONS = "iv"  # the parameter of the interventions applied (the Interventions page's ACTIVE)


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _numbers(text: str) -> list[int] | None:
    parts = [p for p in text.split(",") if p]
    return [int(p) for p in parts] if all(p.isdigit() for p in parts) else None


def _opacity(text: str) -> float | None:
    """An opacity the sidebar's slider offers (0.1 to 1 in steps of 0.05), or None."""
    try:
        value = round(float(text) * 20) / 20
    except ValueError:
        return None
    return value if 0.1 <= value <= 1.0 else None


# how a choice is written in the link and read back (None: not a value this key takes); strings otherwise
CODECS: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    **dict.fromkeys(("explain_class", "gradcam_class", "iv_target", "pt_target", "pt_foil"), (str, _number)),
    "iv_heads": (lambda heads: ",".join(map(str, heads)), _numbers),
    widgets.OPACITY: (lambda value: f"{value:g}", _opacity),
}
QUERY = "q"  # the one query point, on the pages that show it (app.pages.Page.shared)


def linked(page: Page) -> tuple[str, ...]:
    """The choices a link to ``page`` carries, by widget key: its own and the shared ones it draws (the
    query's row and column go as the one query point, ``q``; the interventions applied as ``iv``)."""
    keys = (*page.kept, *page.shared)
    return tuple(
        key for key in keys
        if key not in (widgets.QUERY_ROW, widgets.QUERY_COL, QUERY) and not key.endswith("_for")
    )  # fmt: skip


# every choice a link may carry (a page checks each value against what it offers)
LINKED = tuple(dict.fromkeys((widgets.OPACITY, *(key for page in PAGES for key in linked(page)))))


def allowed_folders() -> list[Path]:
    listed = os.environ.get("COATNET_LENS_ALLOWED_DIRS", "")
    folders = [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()] or [Path.cwd()]
    return [folder.resolve() for folder in folders]


def shared(path: str) -> bool:
    """Whether a path given by a link lies inside a folder this server shares."""
    target = Path(path).expanduser().resolve()
    return any(target.is_relative_to(folder) for folder in allowed_folders())


def notice(topic: str, message: str, opened: str | None = None) -> None:
    """Say, until the user changes it, that a link named something missing: ``message`` (which may name what
    was opened instead as ``{opened}``) for ``topic`` (``model`` or ``image``); ``opened``, when known, is
    the choice shown instead (else the first one the page shows)."""
    st.session_state.setdefault(NOTICES, {})[topic] = (message, opened)


def notices(shown: dict[str, str]) -> None:
    """Draw each notice left by a link while its choice is still the one opened instead (``shown``: topic ->
    the choice this run shows, as the model's spec or the image's name); a changed choice drops it."""
    kept = st.session_state.get(NOTICES, {})
    for topic, (message, opened) in list(kept.items()):
        now = shown.get(topic)
        if opened is None and now is not None:  # the first run that shows something in its place
            kept[topic] = (message, opened := now)
        if opened is not None and now != opened:
            del kept[topic]
            continue
        st.warning(message.format(opened=opened or "the default"), icon=":material/link_off:")


def restore() -> None:
    """On a session's first run, set the sidebar's and the pages' choices from the URL."""
    state, params = st.session_state, st.query_params
    if state.get(RESTORED):
        return
    state[RESTORED] = True
    source, model = params.get("source"), params.get("model")
    if source is None and model:  # a link typed by hand: the name says which source it is
        source = "demo" if model in NAMES else "timm" if model in TIMM_TAGS else None
    if source in (None, "demo", "timm") and model and model not in NAMES + TIMM_TAGS:
        notice("model", (
            f"The link names the model {model!r}, which is neither a built-in demo ({', '.join(NAMES)}) nor "
            "a timm tag this app knows: showing {opened} instead (choose another in the sidebar)."
        ))  # fmt: skip
    if source == "demo" and model in NAMES:
        state[widgets.MODEL_SOURCE], state[widgets.DEMO_NAME] = SOURCES["demo"], model
    elif source == "timm" and model in TIMM_TAGS:
        state[widgets.MODEL_SOURCE], state[widgets.TIMM_TAG] = SOURCES["timm"], model
    elif source == "path" and model:
        if shared(model):
            state[widgets.MODEL_SOURCE], state[widgets.MODEL_PATH] = SOURCES["path"], model
        else:
            folders = ", ".join(str(f) for f in allowed_folders())
            notice("model", (
                f"The link names {model}, outside the folders this server shares ({folders}): showing "
                "{opened} instead (choose the model in the sidebar, or start the server with "
                "COATNET_LENS_ALLOWED_DIRS)."
            ))  # fmt: skip
    if params.get("device") in available_devices():  # a link made on a GPU machine opens on a CPU one
        state[widgets.DEVICE] = params["device"]
    labels = {mode: label for label, mode in ATTENTION.items() if mode}
    if params.get("attention") in labels:
        state[widgets.ATTENTION_MODE] = labels[params["attention"]]
    if params.get("image"):
        state[widgets.IMAGE_SOURCE], state[PENDING_IMAGE] = "Gallery", params["image"]
    for key in LINKED:  # a page checks each value against what it offers (a class against its model)
        if key == widgets.INTERVENTIONS_ACTIVE:
            continue
        if params.get(key):
            value = CODECS.get(key, (str, str))[1](params[key])
            if value is not None:
                state[key] = value
                state.setdefault(CHOSEN, set()).add(key)  # in the link whatever its value
                if key == widgets.BLOCK:  # the block every page opens on, where it has it
                    state[widgets.LAST_BLOCK] = value
    if params.get(INTERVENTIONS):
        restore_interventions(params[INTERVENTIONS])
    query = Query.from_text(params.get(QUERY, ""))
    if query is not None:
        state[QUERY_POINT] = query


def restore_interventions(text: str) -> None:
    """The interventions a link applies (``iv``, each :attr:`coatnet.Intervention.text`, ``;`` between),
    as the Interventions page holds them; one it cannot read is named in a notice and left out."""
    state = st.session_state
    items, active, unread = state.setdefault(widgets.INTERVENTION_ITEMS, {}), [], []
    for part in filter(None, text.split(";")):
        try:
            item = Intervention.from_text(part)
        except ValueError:
            unread.append(part)
            continue
        items[item.label] = item
        active.append(item.label)
    state[widgets.INTERVENTIONS_ACTIVE] = active
    if unread:
        notice("interventions", f"The link's intervention {', '.join(map(repr, unread))} is not one this "
               "app reads (kind:block[:heads], as knockout:S3.0:1,2): it is left out.")  # fmt: skip


def drawn(key: str) -> bool:
    """Whether this run drew the widget kept under ``key`` (a choice the view shows, hence one its link
    carries)."""
    ctx = get_script_run_ctx()
    return ctx is not None and key in ctx.shared.widget_user_keys_this_run


def view(gallery_kind: str | None, page: Page, *, shown: bool) -> dict[str, str]:
    """The link of ``page`` as the session holds it: the sidebar's model, normalization, device, gallery
    image (uploads left out) and map opacity (where not the default), and the page's choices
    (:func:`linked`): with ``shown``, those this run drew (what the view shows), else every one the session
    keeps (what a visit to the page will show)."""
    state = st.session_state
    params: dict[str, str] = {}
    source = state.get(widgets.MODEL_SOURCE)
    model = {
        SOURCES["demo"]: state.get(widgets.DEMO_NAME),
        SOURCES["timm"]: state.get(widgets.TIMM_TAG),
        SOURCES["path"]: (state.get(widgets.MODEL_PATH) or "").strip(),
    }.get(source)
    if model:
        params["source"] = next(name for name, label in SOURCES.items() if label == source)
        params["model"] = model
    mode = ATTENTION.get(state.get(widgets.ATTENTION_MODE, "as trained"))
    if mode:
        params["attention"] = mode
    if state.get(widgets.DEVICE):
        params["device"] = state[widgets.DEVICE]
    if gallery_kind is not None and state.get(widgets.IMAGE_SOURCE, "Gallery") == "Gallery":
        sample = state.get(widgets.gallery_key(gallery_kind))
        if sample:
            params["image"] = sample
    if state.get(widgets.OPACITY, DEFAULT_OPACITY) != DEFAULT_OPACITY:
        params[widgets.OPACITY] = CODECS[widgets.OPACITY][0](state[widgets.OPACITY])

    defaults, chosen = state.setdefault(widgets.DEFAULTS, {}), state.get(CHOSEN, set())

    def value(key: str):  # as this run drew it, or as the session keeps it (app.main.keep), where chosen
        if shown and not drawn(key):
            return None
        found = state.get(key, state.get(f"kept_{key}"))
        if shown and key not in defaults and key not in chosen:  # a widget first drawn shows its default
            defaults[key] = found
        if key in chosen or key not in defaults or found != defaults[key]:
            return found
        return None  # what the page shows unchosen: the link leaves it out, and a page change adds nothing

    for key in linked(page):
        if key == widgets.INTERVENTIONS_ACTIVE:
            items = state.get(widgets.INTERVENTION_ITEMS, {})
            active = [items[label].text for label in value(key) or () if label in items]
            if active:
                params[INTERVENTIONS] = ";".join(active)
        elif value(key) is not None and value(key) != []:
            params[key] = CODECS.get(key, (str, str))[0](value(key))
    query_shown = not shown or drawn(widgets.QUERY_ROW)
    if QUERY in page.shared and state.get(QUERY_POINT) is not None and query_shown:
        params[QUERY] = Query(*state[QUERY_POINT]).text()
    return params


def save(gallery_kind: str | None, page: Page | None) -> dict[str, str]:
    """Write the view as this run shows it into the URL (:func:`view`); returns the parameters written."""
    params = view(gallery_kind, page or NO_PAGE, shown=True)
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
    return params


def save_query(params: dict[str, str]) -> None:
    """Write the session's query point into the URL and into ``params`` (the view's link as the page's run
    wrote it, :func:`save`), after a part of the page that shows the query reran alone (``st.fragment``):
    the rest of the view is as that run left it."""
    point = st.session_state.get(QUERY_POINT)
    if point is None:
        return
    text = Query(*point).text()
    params[QUERY] = text
    if st.query_params.get(QUERY) != text:
        st.query_params[QUERY] = text


def link(url_path: str, params: dict[str, str]) -> str:
    """The link of a view relative to this server: the page's URL path (``st.Page.url_path``, ``""`` for the
    default page) after the server's base path, then its parameters (:func:`save`):
    ``/stages?source=demo&model=demo-pre``. The server does not know the address it is reached by (a proxy
    may name it anything): the reader puts it before the link."""
    base = "/".join(part for part in (st.get_option("server.baseUrlPath").strip("/"), url_path) if part)
    query = urlencode(params)
    return f"/{base}" + (f"?{query}" if query else "")


NO_PAGE = Page("", "", "", "")  # a run that drew no page (no image yet): the sidebar's choices alone
