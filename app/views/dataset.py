"""Dataset: a ``coatnet study`` over many images, drawn: how far each head attends and whether from its
content or its bias, which interventions cost the most accuracy, and what each stage does."""

from __future__ import annotations

import streamlit as st

from analysis import LRP_RULES, VERDICT_RULE, Study, explanation_verdicts, shipped_studies
from analysis.figures import (
    MEASURE_LABELS,
    TEST_LABELS,
    distance_figure,
    entropy_figure,
    faithfulness_figure,
    interventions_figure,
    layouts_ledger_figure,
    robustness_figure,
    stage_figure,
    study_frequency_figure,
    study_random_logit_figure,
    study_sanity_figure,
)
from analysis.report import faithfulness_section, sanity_section
from app import cache, errors, render, session

OTHER = "a study folder..."


STUDY_FOR = "study_for"  # the sidebar's model the study choice was last made for
STAGES_FOLD = "study_stages"  # a fold made only while open


def render_page() -> None:
    shipped = shipped_studies()
    chosen = session.selection()
    own = study_of(chosen.key, shipped)
    state = st.session_state
    if state.get(STUDY_FOR) != chosen.key:  # a new model in the sidebar: its own study, where there is one
        state[STUDY_FOR] = chosen.key
        if own is not None:
            state["study_choice"] = own
    if own is None:
        st.info(
            f"No study of {chosen.description} is shipped: make one with `coatnet study --model "
            f"{chosen.key.spec} --out runs/my-study` and open its folder with \"{OTHER}\" below; the "
            "shipped studies of the demo models are here to compare with.",
            icon=":material/info:",
        )  # fmt: skip
    choice = st.selectbox("Study", [*shipped, OTHER], key="study_choice")
    spec = choice
    if choice == OTHER:
        spec = st.text_input(
            "Folder", key="study_folder", placeholder="runs/my-study",
            help="A folder written by coatnet study --out (its study.json)",
        ).strip()  # fmt: skip
        if not spec:
            st.caption("Type the folder a `coatnet study --out DIR` wrote.")
            return
    try:
        study = cache.study(spec)
    except ValueError as error:
        st.error(errors.message(error), icon=":material/error:")
        return
    name = study.model
    split = study.split or ""
    if study.baseline is None:  # coatnet study --sanity-only
        st.caption(
            f"{study.described} on {study.data} {split}: the sanity checks alone "
            "(`coatnet study --sanity-only`)."
        )
        sanity_checks(study, name)
        relevance_ledger(study, shipped)
        return
    base = study.baseline
    compute_s = "?" if study.compute_s is None else study.compute_s
    st.caption(
        f"{study.described} on {study.data} {split}: "
        f"{base.n_images} images, top-1 {100 * base.top1:.2f}%, loss {base.loss:.4f}; "
        f"{compute_s} s of compute on {study.device or '?'}."
    )
    st.subheader("Where each head's locality comes from")
    st.caption(
        "Mean attention distance per head against depth, of the weights the block used, of its content "
        "alone and of its bias alone: a head whose effective distance follows its bias attends by position. "
        + (study.conventions or {}).get("post", "")
    )
    render.figure(distance_figure(study), f"{name}-study-distance")
    render.figure(entropy_figure(study), f"{name}-study-entropy")
    st.subheader("What each intervention costs")
    st.caption(
        "Each intervention alone over every image, most harmful first. swap_normalization runs the weights "
        "in the other normalization: an untrained combination. softmax(w) equals a convolution only away "
        "from the borders."
    )
    metric = st.radio(
        "Sort by", ("delta_top1", "mean_logit_drop"), key="study_metric", horizontal=True,
        format_func={"delta_top1": "change of top-1", "mean_logit_drop": "mean logit drop"}.get,
    )  # fmt: skip
    render.figure(interventions_figure(study, metric=metric), f"{name}-study-interventions-{metric}")
    # made when opened: the page opens on the heads and the interventions
    label = "Stages: activation, receptive field and frequencies of each stage's output"
    with render.folded(label, key=STAGES_FOLD) as shown:
        if shown:
            render.figure(stage_figure(study), f"{name}-study-stages")
            render.figure(study_frequency_figure(study), f"{name}-study-frequency")
    st.subheader("Which explanation to trust")
    if not study.faithfulness:
        st.caption("This study did not measure faithfulness: run `coatnet study --faithfulness [N]`.")
    else:
        st.caption(faithfulness_section(study).text + " Protocol: docs/explanations.md.")
        render.figure(faithfulness_figure(study), f"{name}-study-faithfulness")
    sanity_checks(study, name)
    relevance_ledger(study, shipped)


LEDGER_FOLD = "dataset_ledger"


def relevance_ledger(study: Study, shipped: list[str]) -> None:
    """study.json's ``ledger`` (``coatnet study --ledger``) beside every shipped study's, by layout: where
    predictions' relevance flows; computed when its fold opens."""
    with render.folded(
        "Where predictions' relevance flows, by layout (LRP ledger)", key=LEDGER_FOLD
    ) as shown:
        if not shown:
            return
        if not study.ledger:
            st.caption(
                "This study has no ledger: `coatnet study --ledger [N] --out DIR --resume` on its folder "
                "adds it (and computes nothing else). The shipped studies' are drawn below."
            )
        rule = st.radio(
            "Rule", tuple(LRP_RULES), key="dataset_ledger_rule", horizontal=True, format_func=LRP_RULES.get,
        )  # fmt: skip
        st.caption(
            "Per addition: the mean share of the logit entering a branch of that kind at its residual "
            "addition; all attention: summed over the attention blocks; kept: what the rule holds back "
            "(docs/explanations.md)."
        )
        studies = {n: cache.study(n) for n in shipped}
        if study.ledger and study.model not in {s.model for s in studies.values()}:
            studies = {study.model: study, **studies}
        render.figure(layouts_ledger_figure(studies, rule), f"layouts-ledger-{rule}")


def sanity_checks(study: Study, name: str) -> None:
    """study.json's ``sanity`` and ``robustness``: both randomisation tests, the random logit test and
    the robustness of every explanation, or how to add them."""
    st.subheader("Sanity checks")
    if not study.sanity:
        st.caption(
            "This study did not run the sanity checks: `coatnet study --sanity [N] --out DIR --resume` on "
            "its folder adds them (and computes nothing else)."
        )
        return
    st.caption(sanity_section(study).text)
    pick_test, pick_measure = st.columns(2)
    with pick_test:
        test = st.radio(
            "Randomisation", tuple(TEST_LABELS), key="study_sanity_test", format_func=TEST_LABELS.get
        )
    with pick_measure:
        measure = st.radio(
            "Similarity", tuple(MEASURE_LABELS), key="study_sanity_measure", format_func=MEASURE_LABELS.get
        )  # fmt: skip
    render.figure(
        study_sanity_figure(study, measure=measure, test=test), f"{name}-study-sanity-{test}-{measure}"
    )
    render.figure(study_random_logit_figure(study, measure=measure), f"{name}-study-random-logit-{measure}")
    if study.robustness:
        render.figure(robustness_figure(study), f"{name}-study-robustness")
    verdicts(study)


def verdicts(study: Study) -> None:
    """Faithfulness and the sanity checks joined: one verdict per explanation, with its evidence."""
    found = explanation_verdicts(study)
    if not found:
        return
    st.markdown(f"**Which explanation to trust**, faithfulness and sanity joined ({VERDICT_RULE}; "
                "docs/explanations.md).")  # fmt: skip
    number = lambda value: None if value is None else round(value, 3)  # noqa: E731
    st.dataframe(
        [
            {"explanation": v.name, "verdict": v.verdict, "ROAD": number(v.road),
             "alike after the head": number(v.after_head), "alike after every part": number(v.after_all),
             "alike to another class": number(v.random_logit)}
            for v in found
        ],
        hide_index=True, key="study_verdicts",
    )  # fmt: skip


def study_of(key, shipped: list[str]) -> str | None:
    """The shipped study of the sidebar's model (its spec, and its normalization when it is switched),
    or None."""
    for name in shipped:
        study = cache.study(name)
        if study.model == key.spec and key.attention in (None, study.attention):
            return name
    return None


if __name__ == "__main__":
    render_page()
