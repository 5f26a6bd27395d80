"""The view in the URL (``st.query_params``): a reload or a shared link restores the model, the image, the
block, the query and the choices; the page is the URL's path (``st.navigation``).

Parameters: ``source`` (``demo``, ``timm`` or ``path``) and ``model``; ``attention`` (``pre`` / ``post``
when switched); ``image`` (a gallery sample); ``block``, ``part``, ``head``; ``q`` (the query point as
fractions ``fy,fx`` of the picture); the Patching page's choices (``pt_...``). An uploaded model or image
never goes in a link. A path in a link is honoured only inside the folders this server shares: the folder
it was started in, or those listed in ``COATNET_LENS_ALLOWED_DIRS`` (separated by ``os.pathsep``).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from analysis import Query
from app import widgets
from app.widgets import ATTENTION, MODEL_SOURCES, QUERY_POINT, TIMM_TAGS
from coatnet import available_devices
from coatnet.weights import NAMES

RESTORED = "url_restored"  # the session has read its URL once
PENDING_IMAGE = widgets.LINKED_IMAGE  # a gallery sample named by the URL, applied when the gallery is drawn
REFUSED = "url_refused"  # why a path in the link was not honoured
SOURCES = {"demo": MODEL_SOURCES[0], "timm": MODEL_SOURCES[1], "path": MODEL_SOURCES[2]}
CHOICES = (widgets.BLOCK, widgets.PART, widgets.HEAD)  # widget keys whose values go in the URL as they are
# the Patching page's choices (app/views/patching.py): strings as they are, class indices as numbers
PATCHING = ("pt_how", "pt_kind", "pt_sigma", "pt_other", "pt_direction", "pt_metric", "pt_block")
NUMBERS = ("pt_target", "pt_foil")


def allowed_folders() -> list[Path]:
    listed = os.environ.get("COATNET_LENS_ALLOWED_DIRS", "")
    folders = [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()] or [Path.cwd()]
    return [folder.resolve() for folder in folders]


def shared(path: str) -> bool:
    """Whether a path given by a link lies inside a folder this server shares."""
    target = Path(path).expanduser().resolve()
    return any(target.is_relative_to(folder) for folder in allowed_folders())


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
        state[REFUSED] = (
            f"The link names the model {model}, which is neither a built-in demo ({', '.join(NAMES)}) nor a "
            "timm tag this app knows: choose the model in the sidebar."
        )
    if source == "demo" and model in NAMES:
        state[widgets.MODEL_SOURCE], state[widgets.DEMO_NAME] = SOURCES["demo"], model
    elif source == "timm" and model in TIMM_TAGS:
        state[widgets.MODEL_SOURCE], state[widgets.TIMM_TAG] = SOURCES["timm"], model
    elif source == "path" and model:
        if shared(model):
            state[widgets.MODEL_SOURCE], state[widgets.MODEL_PATH] = SOURCES["path"], model
        else:
            folders = ", ".join(str(f) for f in allowed_folders())
            state[REFUSED] = (
                f"The link names {model}, outside the folders this server shares ({folders}): choose the "
                "model in the sidebar (or start the server with COATNET_LENS_ALLOWED_DIRS)."
            )
    if params.get("device") in available_devices():  # a link made on a GPU machine opens on a CPU one
        state[widgets.DEVICE] = params["device"]
    labels = {mode: label for label, mode in ATTENTION.items() if mode}
    if params.get("attention") in labels:
        state[widgets.ATTENTION_MODE] = labels[params["attention"]]
    if params.get("image"):
        state[widgets.IMAGE_SOURCE], state[PENDING_IMAGE] = "Gallery", params["image"]
    for key in CHOICES + PATCHING:
        if params.get(key):
            state[key] = params[key]
    for key in NUMBERS:
        if params.get(key, "").isdigit():  # a page checks the class against its model
            state[key] = int(params[key])
    query = Query.from_text(params.get("q", ""))
    if query is not None:
        state[QUERY_POINT] = query


def save(gallery_kind: str | None) -> dict[str, str]:
    """Write the view as it is now into the URL (uploads left out); returns the parameters written."""
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
    for key in CHOICES + PATCHING + NUMBERS:
        if state.get(key) is not None:
            params[key] = str(state[key])
    if state.get(QUERY_POINT) is not None:
        params["q"] = Query(*state[QUERY_POINT]).text()
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
    return params
