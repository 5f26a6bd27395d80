"""Every report section built from a result: the study's, faithfulness's and the layout study's."""

from __future__ import annotations

from analysis.figures.layouts import gap_figure, size_figure
from analysis.figures.studies import (
    distance_figure,
    entropy_figure,
    faithfulness_figure,
    frequency_figure,
    interventions_figure,
    stage_figure,
)
from analysis.report.html import Section


def layout_sections(study: dict) -> list[Section]:
    """The sections of layouts.html."""
    settings = study["settings"]
    return [
        Section(
            "The layout study",
            f"{len(study['runs'])} runs on {settings['data']}: every layout trained for {settings['steps']} "
            f"steps of {settings['batch_size']} images at each size "
            f"({', '.join(map(str, settings['sizes']))}); "
            f"{study.get('wall_s', '?')} s of training in all on {study.get('device', '?')}.",
            figures=[size_figure(study), gap_figure(study)],
        )
    ]


def study_sections(study: dict) -> list[Section]:
    """The sections of study.html."""
    base = study["baseline"]
    return [
        Section(
            "Baseline",
            f"{study.get('model_description', study.get('model'))} on {study.get('data')} "
            f"({base['n_images']} images): top-1 {100 * base['top1']:.2f}%, loss {base['loss']:.4f}.",
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
            study.get("conventions", {}).get("post", ""),
            figures=[distance_figure(study), entropy_figure(study)],
        ),
        Section("Stages", figures=[stage_figure(study), frequency_figure(study)]),
        *([faithfulness_section(study)] if study.get("faithfulness") else []),
    ]


def faithfulness_section(study: dict) -> Section:
    protocol = study.get("faithfulness_protocol", {})
    return Section(
        "Faithfulness",
        "Which explanation the model's own behaviour supports: the predicted class's probability as pixels "
        f"are deleted or inserted in {protocol.get('steps', 16)} steps in the order of each map, and ROAD "
        "(noisy linear imputation at percentiles 10..90). The random map is the floor (its seeds' range "
        "as error bars).",
        figures=[faithfulness_figure(study)],
    )
