"""Plotly figures of every result, for the app, the report and the docs; the figure language itself lies in
:mod:`analysis.figures.panels` (sizes, panels, titles), :mod:`analysis.figures.style` (colour scales,
palette, legend) and :mod:`analysis.figures.plots` (the traces and plots built with them). Imports the
results' modules; never the report.

This face hands on the figures of every result; a dataset study's frequency figure is
``study_frequency_figure`` here (``frequency_figure`` draws one image's), and the layout study's views
(Grad-CAM, receptive field, attention) are ``LAYOUT_VIEWS``.
"""

from __future__ import annotations

from analysis.figures.explanations import curves_figure, relevance_figure, scores_figure
from analysis.figures.layouts import WHAT as LAYOUT_VIEWS
from analysis.figures.layouts import gap_figure, layout_similarity_figure, layout_stages_figure, size_figure
from analysis.figures.maps import (
    attention_heads_figure,
    attribution_figure,
    bias_kernel_figure,
    block_comparison_figures,
    cka_figure,
    comparison_figures,
    comparison_summary_figures,
    depthwise_kernel_figure,
    feature_channels_figure,
    frequency_figure,
    fused_attention_figure,
    kernel_figures,
    predictions_figure,
    receptive_field_figure,
    rollout_figure,
    stages_figure,
    statistics_figures,
    training_curves,
)
from analysis.figures.panels import DEFAULT_OPACITY
from analysis.figures.studies import (
    distance_figure,
    entropy_figure,
    faithfulness_figure,
    head_importance_figure,
    interventions_figure,
    stage_figure,
)
from analysis.figures.studies import frequency_figure as study_frequency_figure

__all__ = [
    "DEFAULT_OPACITY",
    "LAYOUT_VIEWS",
    "attention_heads_figure",
    "attribution_figure",
    "bias_kernel_figure",
    "block_comparison_figures",
    "cka_figure",
    "comparison_figures",
    "comparison_summary_figures",
    "curves_figure",
    "depthwise_kernel_figure",
    "distance_figure",
    "entropy_figure",
    "faithfulness_figure",
    "feature_channels_figure",
    "frequency_figure",
    "fused_attention_figure",
    "gap_figure",
    "head_importance_figure",
    "interventions_figure",
    "kernel_figures",
    "layout_similarity_figure",
    "layout_stages_figure",
    "predictions_figure",
    "receptive_field_figure",
    "relevance_figure",
    "rollout_figure",
    "scores_figure",
    "size_figure",
    "stage_figure",
    "stages_figure",
    "statistics_figures",
    "study_frequency_figure",
    "training_curves",
]
