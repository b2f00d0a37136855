"""The feature document of ``GET /api/feature/{model}/{source}/{index}``: the feature's statistics, its examples,
its explanations and, with its catalogue, its model, source set, source, comments and creator.

The same document is the JSON twin's ``feature`` and what the HTML dashboard is drawn from.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

from sqlalchemy import Row

from interpedia.db.tables import Activation, Feature
from interpedia.store.documents.catalogue import ModelDoc, SourceDoc, SourceSetDoc
from interpedia.store.documents.comment import CommentDoc
from interpedia.store.documents.explanation import ExplanationDoc
from interpedia.store.formats import f32, iso
from interpedia.store.records import NP_FEATURE_NAMES

__all__ = [
    "ActivationDoc",
    "CreatorDoc",
    "FeatureDoc",
    "FeatureStatsDoc",
    "activation_doc",
    "api_activation_doc",
    "feature_doc",
    "feature_stats_json",
]


class ActivationDoc(TypedDict):
    """One example, as a row of Neuronpedia's ``Activation`` table (``source`` in API answers)."""

    id: str
    modelId: str
    layer: str
    index: str
    tokens: list[str]
    values: list[float]
    maxValue: float
    maxValueTokenIndex: int
    minValue: float
    binMin: float | None
    binMax: float | None
    binContains: float | None
    qualifyingTokenIndex: int | None
    dfaValues: list[Any]
    dfaTargetIndex: int | None
    dfaMaxValue: float | None
    lossValues: list[Any]
    logitContributions: Any
    zQIndices: list[Any]
    zKIndices: list[Any]
    zValues: list[Any]
    creatorId: str | None
    dataSource: str | None
    dataIndex: Any
    source: NotRequired[str]


class FeatureStatsDoc(TypedDict):
    """The feature's own columns, Neuronpedia-named (``NP_FEATURE_NAMES``)."""

    maxActApprox: float | None
    frac_nonzero: float | None
    hasVector: bool
    vector: list[Any] | None
    vectorLabel: str | None
    vectorDefaultSteerStrength: float | None
    hookName: str | None
    topkCosSimIndices: list[Any] | None
    topkCosSimValues: list[Any] | None
    neuron_alignment_indices: list[Any] | None
    neuron_alignment_values: list[Any] | None
    neuron_alignment_l1: list[Any] | None
    correlated_neurons_indices: list[Any] | None
    correlated_neurons_pearson: list[Any] | None
    correlated_neurons_l1: list[Any] | None
    correlated_features_indices: list[Any] | None
    correlated_features_pearson: list[Any] | None
    correlated_features_l1: list[Any] | None
    pos_str: list[Any] | None
    pos_values: list[Any] | None
    neg_str: list[Any] | None
    neg_values: list[Any] | None
    freq_hist_data_bar_heights: list[Any] | None
    freq_hist_data_bar_values: list[Any] | None
    logits_hist_data_bar_heights: list[Any] | None
    logits_hist_data_bar_values: list[Any] | None
    decoder_weights_dist: list[Any] | None
    umap_cluster: int | None
    umap_log_feature_sparsity: float | None
    umap_x: float | None
    umap_y: float | None


class CreatorDoc(TypedDict):
    """Who created the feature."""

    id: str
    name: str


class FeatureDoc(FeatureStatsDoc):
    """The whole feature document (the catalogue keys only when asked for, as ``/api/feature`` does)."""

    modelId: str
    layer: str
    index: str
    sourceSetName: str
    creatorId: str | None
    createdAt: str | None
    model: NotRequired[ModelDoc]
    source: NotRequired[SourceDoc]
    sourceSet: NotRequired[SourceSetDoc | None]
    lists: NotRequired[list[Any]]
    comments: NotRequired[list[CommentDoc]]
    creator: NotRequired[CreatorDoc | None]
    activations: list[ActivationDoc]
    explanations: list[ExplanationDoc]


def feature_stats_json(feature: Feature) -> FeatureStatsDoc:
    """The feature's own columns, Neuronpedia-named."""
    return cast(FeatureStatsDoc, {np_name: getattr(feature, col) for col, np_name in NP_FEATURE_NAMES.items()})


def activation_doc(
    model_id: str,
    source_name: str,
    index: int,
    act: Activation | Row[Any],
    tokens: list[str],
    values: list[float],
    *,
    peak: tuple[float, int, float] | None = None,
) -> ActivationDoc:
    """An example as a row of Neuronpedia's ``Activation`` table (what exports carry); ``peak``: its largest
    value, that value's first position and its smallest value, when the caller has them already."""
    extras = act.extras or {}
    if peak is None:
        max_value = max(values) if values else 0.0
        peak = (max_value, values.index(max_value) if values else 0, min(values) if values else 0.0)
    return {
        "id": str(act.id),
        "modelId": model_id,
        "layer": source_name,
        "index": str(index),
        "tokens": tokens,
        "values": values,
        "maxValue": peak[0],
        "maxValueTokenIndex": peak[1],
        "minValue": peak[2],
        "binMin": f32(act.bin_min),
        "binMax": f32(act.bin_max),
        "binContains": f32(act.bin_contains),
        "qualifyingTokenIndex": act.qualifying_token_index,
        "dfaValues": extras.get("dfaValues", []),
        "dfaTargetIndex": extras.get("dfaTargetIndex"),
        "dfaMaxValue": extras.get("dfaMaxValue"),
        "lossValues": extras.get("lossValues", []),
        "logitContributions": extras.get("logitContributions"),
        "zQIndices": extras.get("zQIndices", []),
        "zKIndices": extras.get("zKIndices", []),
        "zValues": extras.get("zValues", []),
        "creatorId": act.creator_id,
        "dataSource": extras.get("dataSource"),
        "dataIndex": extras.get("dataIndex"),
    }


def _bin_contains(value: float | None) -> float | None:
    # SAEDashboard marks the top group with -1; the official client accepts only null or 0..1.
    return value if value is not None and 0.0 <= value <= 1.0 else None


def api_activation_doc(
    model_id: str,
    source_name: str,
    index: int,
    act: Activation | Row[Any],
    tokens: list[str],
    values: list[float],
    *,
    peak: tuple[float, int, float] | None = None,
) -> ActivationDoc:
    """An example as the API returns it: the export row plus its ``source``, ``binContains`` null or in 0..1."""
    doc = activation_doc(model_id, source_name, index, act, tokens, values, peak=peak)
    # The official client reads each activation's source, and accepts only null or 0..1 in binContains.
    doc["source"] = source_name
    doc["binContains"] = _bin_contains(doc["binContains"])
    return doc


def feature_doc(
    model_id: str,
    source_name: str,
    set_name: str,
    feature: Feature,
    activations: list[ActivationDoc],
    explanations: list[ExplanationDoc],
    *,
    catalogue: tuple[ModelDoc, SourceDoc, SourceSetDoc | None] | None = None,
    comments: list[CommentDoc] | None = None,
    creator_name: str | None = None,
) -> FeatureDoc:
    """The feature document; ``catalogue`` (model, source, set) adds those and the comments and creator."""
    doc = cast(
        FeatureDoc,
        {
            "modelId": model_id,
            "layer": source_name,
            "index": str(feature.index),
            "sourceSetName": set_name,
            "creatorId": feature.creator_id,
            "createdAt": iso(feature.created_at),
            **feature_stats_json(feature),
        },
    )
    # Neuronpedia blanks these: "this does not work correctly" (within-batch correlations).
    doc["correlated_features_indices"] = []
    doc["correlated_features_pearson"] = []
    doc["correlated_features_l1"] = []
    if catalogue is not None:
        doc["model"], doc["source"], doc["sourceSet"] = catalogue
        doc["lists"] = []
        doc["comments"] = comments or []
        creator: CreatorDoc | None = None
        if feature.creator_id is not None and creator_name is not None:
            creator = {"id": feature.creator_id, "name": creator_name}
        doc["creator"] = creator
    doc["activations"] = activations
    doc["explanations"] = explanations
    return doc
