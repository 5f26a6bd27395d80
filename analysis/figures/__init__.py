"""Plotly figures of every result, for the app, the report and the docs; the figure language itself (sizes,
panels, scales) lies in :mod:`analysis.figures.plots`. Imports the results' modules; never the report.

This face hands on the figures of maps and explanations; the studies' and the layout study's figures are in
:mod:`analysis.figures.studies` and :mod:`analysis.figures.layouts`.
"""

from __future__ import annotations

from analysis.figures.explanations import curves_figure, relevance_figure, scores_figure
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

__all__ = [
    "attention_heads_figure",
    "attribution_figure",
    "bias_kernel_figure",
    "block_comparison_figures",
    "cka_figure",
    "comparison_figures",
    "comparison_summary_figures",
    "curves_figure",
    "depthwise_kernel_figure",
    "feature_channels_figure",
    "frequency_figure",
    "fused_attention_figure",
    "kernel_figures",
    "predictions_figure",
    "receptive_field_figure",
    "relevance_figure",
    "rollout_figure",
    "scores_figure",
    "stages_figure",
    "statistics_figures",
    "training_curves",
]
