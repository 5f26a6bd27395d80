"""Every report section built from a result: ``coatnet analyze``'s (the model, each image, two models),
the dataset study's, faithfulness's and the layout study's. The commands compute; these say it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.figures import explanations as explanation_figures
from analysis.figures import maps as map_figures
from analysis.figures import sanity as sanity_figures
from analysis.figures.compare import comparison_figures
from analysis.figures.kernels import kernel_figures
from analysis.figures.layouts import gap_figure, size_figure
from analysis.figures.stages import frequency_figure, receptive_field_figure
from analysis.figures.studies import (
    distance_figure,
    entropy_figure,
    faithfulness_figure,
    interventions_figure,
    stage_figure,
    study_frequency_figure,
)
from analysis.report.html import Section
from analysis.studies.summaries import LayoutStudy, Study


def layout_sections(study: LayoutStudy) -> list[Section]:
    """The sections of layouts.html."""
    settings = study.settings
    wall_s = "?" if study.wall_s is None else study.wall_s
    return [
        Section(
            "The layout study",
            f"{len(study.runs)} runs on {settings['data']}: every layout trained for {settings['steps']} "
            f"steps of {settings['batch_size']} images at each size "
            f"({', '.join(map(str, settings['sizes']))}); "
            f"{wall_s} s of training in all on {study.device or '?'}.",
            figures=[size_figure(study), gap_figure(study)],
        )
    ]


def study_sections(study: Study) -> list[Section]:
    """The sections of study.html (a sanity-only study has only the sanity checks)."""
    sanity = [sanity_section(study)] if study.sanity else []
    if study.baseline is None:
        return sanity
    base = study.baseline
    return [
        Section(
            "Baseline",
            f"{study.described} on {study.data} "
            f"({base.n_images} images): top-1 {100 * base.top1:.2f}%, loss {base.loss:.4f}.",
        ),
        Section(
            "Interventions",
            "Each intervention alone, over every image. swap_normalization runs the weights in the other "
            "normalization (an untrained combination); softmax(w) is renormalised over each query's keys "
            "and equals a convolution only away from the borders.",
            figures=[interventions_figure(study), interventions_figure(study, metric="mean_logit_drop")],
        ),
        Section(
            "Heads",
            (study.conventions or {}).get("post", ""),
            figures=[distance_figure(study), entropy_figure(study)],
        ),
        Section("Stages", figures=[stage_figure(study), study_frequency_figure(study)]),
        *([faithfulness_section(study)] if study.faithfulness else []),
        *sanity,
    ]


def sanity_section(study: Study) -> Section:
    """study.json's ``sanity`` and ``robustness``: the similarity curves of both randomisation tests, the
    random logit test and the robustness of every explanation."""
    protocol = study.sanity_protocol or {}
    images = "?" if study.sanity_images is None else study.sanity_images
    return Section(
        "Sanity checks",
        f"{study.described}, {images} images of {study.data}: "
        "does each explanation change when the model's parts are re-initialised as at "
        "creation (from the head down, and one at a time), when it is asked about another class, and how "
        f"far it moves under noise of radius {protocol.get('radius', '?')} "
        f"({protocol.get('n_samples', '?')} samples). Seed {protocol.get('seed', 0)}; docs/explanations.md.",
        figures=[
            sanity_figures.study_sanity_figure(study, test="cascading"),
            sanity_figures.study_sanity_figure(study, test="independent"),
            sanity_figures.study_random_logit_figure(study),
            sanity_figures.robustness_figure(study),
        ],
    )


def faithfulness_section(study: Study) -> Section:
    protocol = study.faithfulness_protocol or {}
    return Section(
        "Faithfulness",
        "Which explanation the model's own behaviour supports: the predicted class's probability as pixels "
        f"are deleted or inserted in {protocol.get('steps', 16)} steps in the order of each map, and ROAD "
        "(noisy linear imputation at percentiles 10..90). The random map is the floor (its seeds' range "
        "as error bars).",
        figures=[faithfulness_figure(study)],
    )


def model_section(
    description: str,
    kernels,
    fields,
    profile,
    shown: np.ndarray,
    *,
    similarity=None,
    images: int,
    cka_min: int,
) -> Section:
    """What belongs to the model rather than one image: its kernels, receptive fields (drawn on ``shown``),
    frequency profile and, from ``cka_min`` images on, the CKA between its stages (``similarity``)."""
    section = Section(
        f"The model: {description}",
        "Relative-bias kernels (the attention's global static convolution) beside the MBConv depthwise "
        "kernels; receptive fields averaged over the images; frequency content of every block's output.",
        figures=[
            *kernel_figures(kernels),
            receptive_field_figure(fields, shown),
            frequency_figure(profile),
        ],
    )
    if similarity is not None:
        section.figures.append(map_figures.cka_figure(similarity))
    else:
        section.text += f" CKA between stages needs at least {cka_min} images; {images} given."
    return section


def attention_parts(mode: str) -> tuple[str, ...]:
    """The parts of a block's attention a report shows: softmax(w) only where the bias is pre-normalized."""
    return ("effective", "content", "bias") + (("bias_softmax",) if mode == "pre" else ())


def image_section(
    name: str,
    shown: np.ndarray,
    *,
    predictions: Sequence[dict],
    maps,
    queries: dict[str, int],
    rollout,
    statistics,
    attributions: Sequence = (),
    relevances: Sequence = (),
    faithfulness=None,
    sanity=None,
    comparison=None,
    ledgers: Sequence = (),
) -> Section:
    """One image's section of ``coatnet analyze``'s report: its predictions, each block's attention from
    its query (``queries``: block name -> query index), rollout and statistics, attributions, class
    relevance, the layer-wise relevance ledgers (:func:`analysis.lrp`, one per rule asked for), and where
    computed faithfulness and the comparison with a second model."""
    section = Section(
        name,
        "Top predictions: " + ", ".join(f"{p['name']} {100 * p['probability']:.1f}%" for p in predictions),
    )
    for block in maps.blocks:
        section.children.append(
            Section(
                f"{block.name} attention",
                figures=[
                    map_figures.attention_heads_figure(block, shown, queries[block.name], part=part)
                    for part in attention_parts(block.mode)
                ],
            )
        )
    section.children.append(
        Section(
            "Rollout and statistics",
            figures=[map_figures.rollout_figure(rollout, shown), *map_figures.statistics_figures(statistics)],
        )
    )
    section.children.append(
        Section("Attributions", figures=[map_figures.attribution_figure(a, shown) for a in attributions])
    )
    if relevances:
        section.children.append(
            Section(
                "Class-specific relevance",
                "Chefer et al. 2021 and gradient-weighted rollout through the attention blocks, for the "
                "class named in each title; the map is the mean over the pooled output's positions.",
                figures=[explanation_figures.relevance_figure(r, shown) for r in relevances],
            )
        )
    if ledgers:
        section.children.append(
            Section(
                "Where the prediction's relevance flows (LRP)",
                "Layer-wise relevance of the explained class: at each residual addition what enters the "
                "branch and what passes the skip, inside each attention what reaches the content term and "
                "the relative-position bias, in % of the logit (docs/explanations.md).",
                figures=[explanation_figures.ledger_figure(found) for found in ledgers],
            )
        )
    if faithfulness is not None:
        section.children.append(
            Section(
                "Faithfulness of each explanation",
                f"For the predicted class ({faithfulness.target_name or faithfulness.target}); protocol: "
                f"{faithfulness.protocol['steps']} steps, ROAD at percentiles 10..90 (docs/explanations.md).",
                figures=[
                    explanation_figures.curves_figure(faithfulness, "deletion"),
                    explanation_figures.curves_figure(faithfulness, "insertion"),
                    explanation_figures.scores_figure(
                        faithfulness.results, "Faithfulness of each explanation"
                    ),
                ],
            )
        )
    if sanity is not None:
        section.children.append(
            Section(
                "Sanity checks of each explanation",
                f"For the predicted class ({sanity.target_name or sanity.target}), against another "
                f"({sanity.other_name or sanity.other}); the parts re-initialised as at creation, seed "
                f"{sanity.seed} (docs/explanations.md).",
                figures=[
                    sanity_figures.sanity_cascade_figure(sanity),
                    sanity_figures.sanity_curves_figure(sanity, test="cascading"),
                    sanity_figures.sanity_curves_figure(sanity, test="independent"),
                    sanity_figures.random_logit_figure(sanity),
                ],
            )
        )
    if comparison is not None:
        section.children.append(
            Section(
                f"{comparison.labels[0]} vs {comparison.labels[1]}",
                f"Predictions agree: {bool(comparison.agreement[0])}. " + (comparison.blocks[0].note or ""),
                figures=comparison_figures(comparison, shown),
            )
        )
    return section


def models_cka_section(similarity) -> Section:
    """The CKA between the same stages of two models."""
    return Section("CKA between the two models", figures=[map_figures.cka_figure(similarity)])
