"""Patching: take one component's activation from a clean run into a corrupted one (or back) and see how much
of the decision it carries: every block, branch and attention part, every head, and one block's positions
on the image (analysis.activation_patching)."""

from __future__ import annotations

import streamlit as st

from analysis.figures import head_patching_figure, patching_figure, position_patching_figure
from app import cache, errors, gallery, render, session, widgets
from coatnet import class_names

HOW = ("A corruption of this image", "A gallery image", "An upload")
KINDS = {"noise": "Gaussian noise", "blur": "Gaussian blur", "mask": "masked centre"}
SIGMAS = ("0.25", "0.5", "1", "1.5", "2", "3", "4")  # noise: normalized units; blur: pixels
DIRECTIONS = {
    "denoising": "denoising: the clean component into the corrupted run (does it suffice?)",
    "noising": "noising: the corrupted component into the clean run (is it needed?)",
}
METRICS = {
    "logit_diff": "logit difference (target - foil)",
    "logit": "the target's logit",
    "prob": "the target's probability",
}
MATRIX_KEY = "pt_matrix"  # the recovery matrix's chart: a click on a cell picks pt_block
AUTO_SIZE = (
    64  # the position map computes by itself for inputs up to this many pixels a side; beyond, on request
)


def render_page() -> None:
    chosen = session.selection()
    key, data = chosen.key, chosen.image.data
    net = cache.model(key)
    picture = cache.prepared(key, data)
    render.image_header(
        picture, cache.predictions(key, data), name=chosen.image.name, label=chosen.image.label
    )
    corrupted = corrupted_input(chosen.gallery_kind)
    if corrupted is None:
        return
    names = class_names(net, numbered=True)
    options = [None, *range(len(names))]
    left, middle, right = st.columns(3)
    direction = left.radio("Direction", tuple(DIRECTIONS), key="pt_direction", format_func=DIRECTIONS.get)
    metric = middle.selectbox("Metric", tuple(METRICS), key="pt_metric", format_func=METRICS.get)
    _valid("pt_target", options)
    target = right.selectbox(
        "Target class", options, key="pt_target",
        format_func=lambda c: "the clean prediction" if c is None else f"{c}: {names[c]}",
    )  # fmt: skip
    foil = None
    if metric == "logit_diff":
        _valid("pt_foil", options)
        foil = right.selectbox(
            "Foil class", options, key="pt_foil",
            format_func=lambda c: "the corrupted prediction" if c is None else f"{c}: {names[c]}",
        )  # fmt: skip
    args = (key, data, corrupted, direction, metric, (target, foil))
    try:
        result = widgets.on_request(cache.patching, *args, working="Patching every block, branch and head")
    except ValueError as error:  # a model whose parts patching does not map (timm's parallel MaxViT block)
        st.info(errors.message(error), icon=":material/info:")
        return
    clean, dirty = st.columns(2)
    clean.metric(f"clean run: {_metric_name(result, names)}", f"{result.clean_metric:.3f}")
    clean.caption(f"predicts {names[int(result.clean_logits.argmax())]}")
    dirty.metric(f"corrupted run ({result.corruption})", f"{result.corrupted_metric:.3f}")
    dirty.caption(f"predicts {names[int(result.corrupted_logits.argmax())]}")
    if not result.defined:
        st.warning(
            "The two runs' metrics differ by less than "
            f"{result.epsilon:g}, so no recovery is defined: pick a stronger corruption, another image or "
            "other classes.", icon=":material/do_not_disturb_on:",
        )  # fmt: skip
    blocks = result.blocks
    _valid("pt_block", list(blocks), default=_first_attention(result))
    render.figure(
        patching_figure(result), f"{chosen.image.name}-patching-{direction}", key=MATRIX_KEY,
        on_select=lambda: take_block(blocks),
    )  # fmt: skip
    st.caption("Click a cell to see that block's positions below.")
    render.figure(head_patching_figure(result), f"{chosen.image.name}-head-patching-{direction}")
    st.subheader("Which positions of a block carry it")
    block = widgets.block_picker(blocks, key="pt_block", label="Block (S0: the stem's output)")
    wanted = (*args, block)
    asked = f"Patch every position of {block}" if max(picture.size) > AUTO_SIZE else None
    positions = widgets.on_request(
        cache.position_patching, *wanted, working=f"Patching each position of {block}", button=asked,
        button_key="pt_positions",
    )  # fmt: skip
    if positions is None:
        return
    render.figure(
        position_patching_figure(positions, picture.seen),
        f"{chosen.image.name}-positions-{block}-{direction}",
    )


def corrupted_input(gallery_kind: str) -> tuple | None:
    """What the corrupted run sees: a corruption of the sidebar's image, another gallery image or an
    upload, as ``app.cache.patching`` takes it."""
    how = st.radio("Corrupted input", HOW, key="pt_how", horizontal=True)
    if how == HOW[0]:
        kind_col, sigma_col = st.columns(2)
        kind = kind_col.selectbox("Corruption", tuple(KINDS), key="pt_kind", format_func=KINDS.get)
        if kind == "mask":
            sigma_col.caption("The centre half of the image (height and width) set to the data's mean.")
            return ("corruption", kind, 1.0)
        _valid("pt_sigma", list(SIGMAS), default="1.5" if kind == "noise" else "2")
        unit = "standard deviations of the data" if kind == "noise" else "pixels"
        sigma = sigma_col.select_slider(f"Sigma ({unit})", SIGMAS, key="pt_sigma")
        return ("corruption", kind, float(sigma))
    if how == HOW[1]:
        samples = {s.name: s for s in gallery.samples(gallery_kind)}
        _valid("pt_other", list(samples), default=list(samples)[-1])
        name = st.selectbox(
            "Corrupted image", list(samples), key="pt_other", format_func=lambda n: samples[n].caption
        )
        return ("image", samples[name].read_bytes())
    upload = st.file_uploader("The corrupted image", type=widgets.IMAGE_TYPES, key="pt_upload")
    if upload is None:
        st.caption("The image whose run the components are patched into (prepared like the other).")
        return None
    return ("image", upload.getvalue())


def take_block(blocks: tuple[str, ...]) -> None:
    """``on_select`` of the recovery matrix: the clicked cell's block gets its position map."""
    cell = widgets.clicked(MATRIX_KEY)  # the matrix's customdata: [block, component]
    if cell is not None:
        st.session_state["pt_block"] = blocks[int(cell[0])]


def _valid(key: str, options: list, default=None) -> None:
    """The session's value for ``key`` one of ``options`` (a link or another model may have left another)."""
    state = st.session_state
    if key in state and state[key] not in options:
        del state[key]
    if key not in state and default is not None:
        state[key] = default


def _first_attention(result) -> str:
    return next((b for b, k in zip(result.blocks, result.kinds, strict=True) if k == "T"), result.blocks[-1])


def _metric_name(result, names: tuple[str, ...]) -> str:
    if result.metric == "logit_diff":
        return f"logit {names[result.target]} - logit {names[result.foil]}"
    return f"{'logit' if result.metric == 'logit' else 'p'}({names[result.target]})"


if __name__ == "__main__":
    render_page()
