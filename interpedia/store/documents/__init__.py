"""The public documents, one typed builder each, in neuronpedia.org's JSON shape.

A document is a ``TypedDict`` (it *is* the JSON: no conversion step on the way out) built from rows by a
function here, without SQL; the reads that fetch the rows live with their resource (``store.features``,
``store.catalogue``, ``store.browse``, ``store.lists``, ``store.explanations``). The ``/api`` route, the page's
JSON twin and the HTML page of a document all get it from the same builder.
"""

from interpedia.store.documents.catalogue import (
    CountedModelDoc,
    CountedSourceDoc,
    CountedSourceSetDoc,
    ModelDoc,
    ModelWithSetsDoc,
    SourceDoc,
    SourceSetDoc,
    SourceSetWithSourcesDoc,
    counted_model_json,
    counted_source_set_json,
    model_json,
    model_with_sets_json,
    source_json,
    source_set_json,
    source_set_with_sources_json,
)
from interpedia.store.documents.comment import CommentDoc, comment_doc
from interpedia.store.documents.explanation import ExplanationDoc, ScoreDoc, explanation_doc, score_json
from interpedia.store.documents.feature import (
    ActivationDoc,
    FeatureDoc,
    FeatureStatsDoc,
    activation_doc,
    api_activation_doc,
    feature_doc,
    feature_stats_json,
)
from interpedia.store.documents.list import ListDetailsDoc, ListDoc, MemberDoc, list_json, member_json

__all__ = [
    "ActivationDoc",
    "CommentDoc",
    "CountedModelDoc",
    "CountedSourceDoc",
    "CountedSourceSetDoc",
    "ExplanationDoc",
    "FeatureDoc",
    "FeatureStatsDoc",
    "ListDetailsDoc",
    "ListDoc",
    "MemberDoc",
    "ModelDoc",
    "ModelWithSetsDoc",
    "ScoreDoc",
    "SourceDoc",
    "SourceSetDoc",
    "SourceSetWithSourcesDoc",
    "activation_doc",
    "api_activation_doc",
    "comment_doc",
    "counted_model_json",
    "counted_source_set_json",
    "explanation_doc",
    "feature_doc",
    "feature_stats_json",
    "list_json",
    "member_json",
    "model_json",
    "model_with_sets_json",
    "score_json",
    "source_json",
    "source_set_json",
    "source_set_with_sources_json",
]
