"""The explanation document and its scores, as neuronpedia.org writes them.

One builder serves every reader: the explanations of a feature document (``/api/feature/...``, the feature
page), of a list's features, and one explanation alone (``/api/explanation/{id}``, the explain and score
answers). Each carries its feature's address (``modelId``/``layer``/``source``/``index``: the official client
reads them), its author, its scores, and whether it has an embedding (explanation search finds only those).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict

from sqlalchemy import Row

from interpedia.db.tables import Explanation, ExplanationScore
from interpedia.store.formats import iso

__all__ = ["AuthorDoc", "ExplanationDoc", "ScoreDoc", "explanation_doc", "score_doc", "score_json"]


class ScoreDoc(TypedDict):
    """One score of an explanation (``jsonDetails`` is a JSON string)."""

    id: str
    value: float
    explanationId: str
    explanationScoreTypeName: str
    explanationScoreModelName: str | None
    initiatedByUserId: str | None
    jsonDetails: str | None
    createdAt: str | None


class AuthorDoc(TypedDict):
    """Who wrote an explanation."""

    name: str


class ExplanationDoc(TypedDict):
    """An explanation with its feature's address, author and scores."""

    id: str
    modelId: str | None
    layer: str | None
    source: str | None
    index: str | None
    description: str
    authorId: str | None
    author: AuthorDoc | None
    typeName: str | None
    explanationModelName: str | None
    notes: str | None
    scoreV1: float
    scoreV2: float | None
    triggeredByUserId: str | None
    hasEmbedding: bool
    scores: list[ScoreDoc]
    umap_x: float | None
    umap_y: float | None
    umap_cluster: int | None
    umap_log_feature_sparsity: float | None
    createdAt: str | None
    updatedAt: str | None


def score_doc(
    *,
    score_id: str,
    value: float,
    explanation_id: str,
    type_name: str,
    model_name: str | None,
    initiated_by: str | None,
    json_details: str | None,
    created_at: dt.datetime | None,
) -> ScoreDoc:
    """A score the way Neuronpedia returns it."""
    return {
        "id": score_id,
        "value": value,
        "explanationId": explanation_id,
        "explanationScoreTypeName": type_name,
        "explanationScoreModelName": model_name,
        "initiatedByUserId": initiated_by,
        "jsonDetails": json_details,
        "createdAt": iso(created_at),
    }


def score_json(score: ExplanationScore | Row[Any]) -> ScoreDoc:
    """A score row (the entity, or a row of its columns) as Neuronpedia returns it."""
    return score_doc(
        score_id=score.id,
        value=score.value,
        explanation_id=score.explanation_id,
        type_name=score.explanation_score_type_name,
        model_name=score.explanation_score_model_name,
        initiated_by=score.initiated_by_user_id,
        json_details=score.json_details,
        created_at=score.created_at,
    )


def explanation_doc(
    exp: Explanation | Any,
    address: tuple[str, str, int] | None,
    *,
    author_name: str | None,
    has_embedding: bool,
    scores: list[ScoreDoc],
) -> ExplanationDoc:
    """The explanation document from its row (the entity, or anything with its attribute names: a row of its
    columns without the embedding, a namespace),
    its feature's ``(model id, source name, index)``, its author's name and its scores (oldest first)."""
    model_id, source_name, index = address if address is not None else (None, None, None)
    return {
        "id": exp.id,
        "modelId": model_id,
        "layer": source_name,
        "source": source_name,
        "index": None if index is None else str(index),
        "description": exp.description,
        "authorId": exp.author_id,
        "author": {"name": author_name} if author_name else None,
        "typeName": exp.type_name,
        "explanationModelName": exp.explanation_model_name,
        "notes": exp.notes,
        "scoreV1": exp.score_v1,
        "scoreV2": exp.score_v2,
        "triggeredByUserId": exp.triggered_by_user_id,
        "hasEmbedding": has_embedding,
        "scores": scores,
        "umap_x": exp.umap_x,
        "umap_y": exp.umap_y,
        "umap_cluster": exp.umap_cluster,
        "umap_log_feature_sparsity": exp.umap_log_feature_sparsity,
        "createdAt": iso(exp.created_at),
        "updatedAt": iso(exp.updated_at),
    }
