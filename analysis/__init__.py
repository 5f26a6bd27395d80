"""CoAtNet Lens analysis layer: pure functions from a model and images to small frozen dataclasses of
numpy arrays (docs/architecture.md, "What an analysis returns"). Each function leaves the model as it
found it and is safe when several threads analyse through one model at once.

Figures of every result: :mod:`analysis.figures`; the ``coatnet analyze`` report:
:mod:`analysis.cli.analyze`.
"""

from __future__ import annotations

from analysis.causal.patching import (
    Corruption,
    PatchedPair,
    Patching,
    PositionPatching,
    activation_patching,
    position_patching,
)
from analysis.core.image_sets import (
    IMAGE_SET_LIMITS,
    ImageSet,
    ImageSetError,
    SetImage,
    SkippedFile,
    read_folder,
    read_uploads,
    read_zip,
)
from analysis.core.images import ImageError, load_image
from analysis.core.inputs import as_batch, display_image, preparation_note, preprocessing_of, size_note
from analysis.core.models import ModelSpecError, describe, load_model
from analysis.core.predictions import Prediction, top_k
from analysis.core.query import (
    PictureView,
    Query,
    cell_centre,
    middle_point,
    picture_view,
    pixel_cell,
    query_from_cell,
    query_index,
)
from analysis.core.running import plain_model
from analysis.explain.attributions import Attribution, attributions, gradcam_stages
from analysis.explain.faithfulness import Explanation, Faithfulness, FaithfulnessReport, faithfulness
from analysis.explain.lrp import LRP, LedgerRow, lrp
from analysis.explain.lrp import RULE_LABELS as LRP_RULES
from analysis.explain.registry import Explainer, explainers, register_explainer
from analysis.explain.relevance import ClassRelevance, class_relevance
from analysis.explain.robustness import Robustness, robustness
from analysis.explain.sanity import SanityReport, SanityResult, sanity_checks
from analysis.explain.similarity import similarity
from analysis.maps.attention import (
    AttentionMaps,
    BlockAttention,
    attention_maps,
    fuse_heads,
    query_map,
    upsample_to_image,
)
from analysis.maps.cka import CKAResult, cka, linear_cka
from analysis.maps.compare import BlockComparison, Comparison, compare, shared_blocks
from analysis.maps.features import FeatureMaps, feature_maps
from analysis.maps.frequency import BlockFrequency, FrequencyProfile, frequency_profile, log_amplitude_profile
from analysis.maps.kernels import BiasKernel, DepthwiseKernel, Kernels, relative_bias_kernels
from analysis.maps.receptive_field import (
    ReceptiveFields,
    StageReceptiveField,
    effective_receptive_field,
    mass_sides,
    receptive_fields,
    theoretical_receptive_field,
)
from analysis.maps.rollout import Rollout, attention_rollout, pooling_link
from analysis.maps.statistics import AttentionStatistics, BlockStatistics, attention_statistics
from analysis.studies.interventions import (
    HeadImportance,
    InterventionEffect,
    head_importance,
    intervention_effect,
)
from analysis.studies.layouts import (
    LayoutSimilarity,
    LayoutStage,
    compare_layouts,
    layout_similarity,
    load_layouts,
)
from analysis.studies.probes import generalisation_ranking, layout_probes, load_probes, shipped_probes
from analysis.studies.set_study import SetPrediction, SetStudy, study_image_set
from analysis.studies.study import load_study, shipped_studies
from analysis.studies.summaries import LayoutStudy, Probes, Study
from analysis.studies.verdicts import VERDICT_RULE, Verdict, explanation_verdicts
from coatnet.model.interventions import Intervention

__all__ = [
    "shared_blocks",
    "generalisation_ranking",
    "layout_probes",
    "load_probes",
    "shipped_probes",
    "Corruption",
    "PatchedPair",
    "Patching",
    "PositionPatching",
    "activation_patching",
    "position_patching",
    "FeatureMaps",
    "LayoutSimilarity",
    "LayoutStage",
    "Prediction",
    "compare_layouts",
    "feature_maps",
    "layout_similarity",
    "load_layouts",
    "top_k",
    "ClassRelevance",
    "LRP",
    "LRP_RULES",
    "LedgerRow",
    "lrp",
    "Explanation",
    "Faithfulness",
    "FaithfulnessReport",
    "class_relevance",
    "faithfulness",
    "Explainer",
    "explainers",
    "register_explainer",
    "Robustness",
    "robustness",
    "SanityReport",
    "SanityResult",
    "sanity_checks",
    "similarity",
    "HeadImportance",
    "Intervention",
    "InterventionEffect",
    "head_importance",
    "intervention_effect",
    "load_study",
    "Study",
    "Probes",
    "LayoutStudy",
    "explanation_verdicts",
    "Verdict",
    "VERDICT_RULE",
    "shipped_studies",
    "IMAGE_SET_LIMITS",
    "ImageSet",
    "ImageSetError",
    "SetImage",
    "SkippedFile",
    "read_folder",
    "read_uploads",
    "read_zip",
    "SetPrediction",
    "SetStudy",
    "study_image_set",
    "Attribution",
    "BlockComparison",
    "CKAResult",
    "Comparison",
    "ImageError",
    "ModelSpecError",
    "as_batch",
    "display_image",
    "preparation_note",
    "size_note",
    "preprocessing_of",
    "PictureView",
    "Query",
    "cell_centre",
    "middle_point",
    "picture_view",
    "pixel_cell",
    "attributions",
    "gradcam_stages",
    "cka",
    "compare",
    "describe",
    "linear_cka",
    "load_image",
    "load_model",
    "plain_model",
    "AttentionMaps",
    "AttentionStatistics",
    "BiasKernel",
    "BlockAttention",
    "BlockFrequency",
    "BlockStatistics",
    "DepthwiseKernel",
    "FrequencyProfile",
    "Kernels",
    "ReceptiveFields",
    "Rollout",
    "StageReceptiveField",
    "attention_maps",
    "attention_rollout",
    "attention_statistics",
    "effective_receptive_field",
    "frequency_profile",
    "fuse_heads",
    "log_amplitude_profile",
    "mass_sides",
    "pooling_link",
    "query_from_cell",
    "query_index",
    "query_map",
    "receptive_fields",
    "relative_bias_kernels",
    "theoretical_receptive_field",
    "upsample_to_image",
]
