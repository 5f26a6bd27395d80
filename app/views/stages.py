"""Stage inspector: S0..S4 side by side, what each is and what it does to this image."""

from __future__ import annotations

import streamlit as st

from analysis import LRP_RULES, explainers
from analysis.figures import (
    MEASURE_LABELS,
    TEST_LABELS,
    attribution_figure,
    cka_figure,
    feature_channels_figure,
    frequency_figure,
    ledger_figure,
    random_logit_figure,
    receptive_field_figure,
    sanity_cascade_figure,
    sanity_curves_figure,
    stages_figure,
    statistics_figures,
)
from app import cache, gallery, render, session, widgets

ALL_CLASSES = widgets.ALL_CLASSES
KINDS = {
    "conv": "conv stem",
    "patch": "patch stem",
    "C": "MBConv",
    "T": "Transformer",
    "C+T": "MBConv + Transformer",
}


def stage_caption(info, field, *, pending: bool = False) -> str:
    """What a stage is (from its info) and its receptive field (``field``; ``pending``: still computing)."""
    head = (
        f"**{info.name}** · {KINDS.get(info.kind, info.kind)}  \n"
        f"{info.blocks} block{'s' * (info.blocks != 1)}, {info.grid[0]}x{info.grid[1]} grid, "
        f"{info.channels} channels, 1/{info.reduction}  \n"
    )
    if pending:
        return head + "RF: computing..."
    theory = "whole image" if field is None or field.is_global else "x".join(map(str, field.theoretical))
    half = f"{field.mass_sides.get(0.5, 0)} px" if field is not None else "-"
    return head + f"RF: theory {theory}, half the effective mass within {half}"


def render_page() -> None:
    chosen = session.selection()
    key, data, name = chosen.key, chosen.image.data, chosen.image.name
    picture = cache.prepared(key, data)
    render.image_header(
        picture, cache.predictions(key, data), name=name,
        label=chosen.image.label,
    )  # fmt: skip
    # the first figure first: the receptive fields (gradients to the input from every stage, the page's
    # slowest part) fill the captions and their figure once it is drawn
    infos = cache.stages(key)
    captions = [column.empty() for column in st.columns(len(infos))]
    for caption, info in zip(captions, infos, strict=True):
        caption.markdown(stage_caption(info, None, pending=True))
    target = widgets.class_picker(
        cache.predictions(key, data, k=ALL_CLASSES), (key, cache.image_id(data)),
        label="Grad-CAM (bottom row) explains the class", key="gradcam_class",
    )  # fmt: skip
    cams = cache.gradcams(key, data, target)
    opacity = widgets.opacity()
    figure = stages_figure(cache.features(key, data), picture.seen, cams, opacity=opacity)
    render.figure(figure, f"{name}-stages")
    with render.folded("The strongest channels of each stage", key="stages_channels") as shown:
        if shown:
            render.figure(feature_channels_figure(cache.features(key, data)), f"{name}-channels")
    with st.spinner("Receptive fields: one gradient per stage..."):
        fields = cache.fields(key, data)
    by_stage = {s.name: s for s in fields.stages}
    for caption, info in zip(captions, infos, strict=True):
        caption.markdown(stage_caption(info, by_stage.get(info.name)))
    render.figure(receptive_field_figure(fields, picture.seen), f"{name}-receptive-fields")
    with render.folded("Attention heads: distance, entropy, position share", key="stages_heads") as shown:
        if shown:
            attention_heads(key, data, name)
    with render.folded("Frequency profile of every block's output", key="stages_frequency") as shown:
        if shown:
            with st.spinner("Frequency profile..."):
                frequency = cache.frequency(key, data)
            render.figure(frequency_figure(frequency), f"{name}-frequency")
    pixel_attributions(chosen, picture.seen, target, opacity)
    with render.folded("Where the prediction's relevance flows (LRP)", key="stages_ledger") as shown:
        if shown:
            relevance_ledger(chosen, target)
    sanity_check(chosen)
    similarity(chosen)
    with render.folded("Download the results", key="stages_downloads") as shown:
        if shown:
            for label, result, what in (
                ("features", cache.features(key, data),
                 "Each stage's output: mean |activation| and strongest channels"),
                (f"gradcam-class-{target}", cams, f"Grad-CAM of class {target} at every stage"),
                ("receptive-fields", fields, "Theoretical and effective receptive field of every stage"),
                ("statistics", cache.statistics(key, data),
                 "Per head: mean attention distance, entropy, position share"),
                ("frequency", cache.frequency(key, data), "Frequency profile of every block's output"),
            ):  # fmt: skip
                render.result_downloads(result, f"{name}-{label}", label=what, about=session.about(chosen))


def attention_heads(key, data, name: str) -> None:
    """Per head of every attention block: mean distance, entropy and position share, or a line saying the
    model has no attention."""
    with st.spinner("Attention statistics..."):
        statistics = cache.statistics(key, data)
    if not statistics.blocks:
        st.caption("This model has no attention blocks.")
        return
    if any(b.note for b in statistics.blocks):
        st.caption(next(b.note for b in statistics.blocks if b.note))
    distance, entropy, share = statistics_figures(statistics)
    render.figure(distance, f"{name}-distance")
    render.figure(entropy, f"{name}-entropy")
    render.figure(share, f"{name}-position-share")


def pixel_methods() -> dict[str, str]:
    """The methods of the picker, name: label: every attribution method of the registry that takes no
    stage (Grad-CAM's stages are the figure above): Integrated Gradients, occlusion and any registered."""
    return {e.name: e.label for e in explainers() if e.attribution and e.stages is None}


def pixel_attributions(chosen, seen, target: int, opacity: float) -> None:
    """Integrated Gradients, occlusion or another method of the registry, of the Grad-CAM class, asked
    for with a button (tens of seconds at 224 on a CPU), with a progress bar; kept on screen once
    computed."""
    st.subheader("Which pixels the prediction rests on")
    methods = pixel_methods()
    method = st.radio(
        "Method", tuple(methods), key="pixel_method", format_func=methods.get, horizontal=True,
        help="Both explain the class chosen for Grad-CAM above; each costs many forward passes",
    )  # fmt: skip
    result = widgets.on_request(
        cache.pixel_attribution, chosen.key, chosen.image.data, method, target, working=methods[method],
        button=f"Compute {methods[method]}", button_key="pixel_go",
        note="Costs tens of seconds for a 224 px model on a CPU: computed when asked.",
    )  # fmt: skip
    if result is None:
        return
    figure = attribution_figure(result, seen, opacity=opacity)
    render.figure(figure, f"{chosen.image.name}-{method}-class-{target}")


def relevance_ledger(chosen, target: int) -> None:
    """Layer-wise relevance of the Grad-CAM class (one backward pass: computed when the fold opens) and
    its ledger: at each residual addition how much enters the branch and the skip, inside each attention
    how much reaches the content term and the relative-position bias."""
    rule = st.radio(
        "Rule", tuple(LRP_RULES), key="lrp_rule", format_func=LRP_RULES.get, horizontal=True,
        help="AttnLRP: relevance through the attention weights too (softmax and q k rules); CP-LRP: the "
        "weights held constant, relevance through the values only (docs/explanations.md)",
    )  # fmt: skip
    found = cache.relevance_ledger(chosen.key, chosen.image.data, target, rule)
    render.figure(ledger_figure(found), f"{chosen.image.name}-lrp-ledger-{rule}-class-{target}")


def sanity_check(chosen) -> None:
    """Model parameter randomisation (Adebayo et al. 2018) and the random logit test (Sixt et al. 2020)
    of every explanation of the predicted class, asked for with a button, with a progress bar; kept on
    screen once computed."""
    key, data, name = chosen.key, chosen.image.data, chosen.image.name
    st.subheader("Sanity check: does each explanation depend on the model and on the class?")
    report = widgets.on_request(
        cache.sanity, key, data, working="Sanity check", button="Run the sanity check",
        button_key="sanity_go",
        note="Re-initialises the head, then each block from the last down to the stem (cumulatively, and one "
        "at a time), remakes every explanation of the predicted class on each copy of the model, and "
        "compares the maps for the predicted class and another: about 12 s at 28 px, over ten minutes "
        "at 224 px on a CPU. Computed when asked.",
    )  # fmt: skip
    if report is None:
        return
    render.figure(sanity_cascade_figure(report), f"{name}-sanity-cascade")
    pick_test, pick_measure = st.columns(2)
    with pick_test:
        test = st.radio("Randomisation", tuple(TEST_LABELS), key="sanity_test", format_func=TEST_LABELS.get)
    with pick_measure:
        measure = st.radio(
            "Similarity", tuple(MEASURE_LABELS), key="sanity_measure", format_func=MEASURE_LABELS.get
        )  # fmt: skip
    curves, logit = st.columns(2)
    with curves:
        render.figure(sanity_curves_figure(report, measure=measure, test=test), f"{name}-sanity-{test}")
    with logit:
        render.figure(random_logit_figure(report, measure=measure), f"{name}-random-logit")
    st.caption(
        f"The parts re-initialised as at creation, seed {report.seed}; the protocol and what passes over "
        "whole datasets: docs/explanations.md."
    )
    render.result_downloads(
        report, f"{name}-sanity-check", label="Sanity check: every map and similarity",
        about=session.about(chosen),
    )  # fmt: skip


def similarity(chosen) -> None:
    """Linear CKA between the stages over a whole gallery, or why it is absent."""
    st.subheader("How alike the stages' representations are (linear CKA)")
    result = cache.gallery_cka(chosen.key, chosen.gallery_kind)
    if result is None:
        count = len(gallery.samples(chosen.gallery_kind))
        st.info(
            f"CKA needs at least {cache.CKA_IMAGES} images, and this model's gallery ({chosen.gallery_kind}) "
            f"holds {count}: it is drawn for models that take the 40-image Fashion-MNIST gallery.",
            icon=":material/info:",
        )
        return
    render.figure(cka_figure(result), f"{chosen.gallery_kind}-cka")


if __name__ == "__main__":
    render_page()
