"""Reading features: the address lookup, their examples and explanations, and the feature document.

The feature document (``documents.feature``) is what ``GET /api/feature/{model}/{source}/{index}`` answers, the
JSON twin's ``feature`` and what the HTML dashboard draws; :func:`read_feature` builds it in three statements
(the catalogue row, the examples, the explanations with their scores and the comments).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, Row, Select, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from interpedia.db.codec import decode_activation
from interpedia.db.tables import Activation, Explanation, ExplanationScore, Feature, Model, Source, SourceSet, User
from interpedia.errors import Invalid, NotFound
from interpedia.store.annotations import FeatureAnnotations, feature_annotations
from interpedia.store.catalogue import get_model, get_source, remember_source, source_visible
from interpedia.store.documents.catalogue import model_json, source_json, source_set_json
from interpedia.store.documents.explanation import ExplanationDoc, explanation_doc, score_json
from interpedia.store.documents.feature import (
    ActivationDoc,
    FeatureDoc,
    api_activation_doc,
    feature_doc,
    feature_stats_json,
)
from interpedia.store.formats import parse_index
from interpedia.store.vocab import vocab_cache

__all__ = [
    "FeatureRead",
    "activation_json",
    "count_activations",
    "feature_address",
    "feature_json",
    "feature_stats_json",
    "features_offset",
    "get_feature_row",
    "list_activations",
    "list_explanations",
    "locate_feature",
    "read_feature",
]


def activation_json(
    session: Session,
    model_id: str,
    source_name: str,
    index: int,
    act: Activation | Row[Any],
    decoded: tuple[Any, list[float]] | None = None,
) -> ActivationDoc:
    """One stored example as the API returns it, decoded into token strings and values."""
    ids, values = decoded if decoded is not None else decode_activation(act.data)
    return api_activation_doc(model_id, source_name, index, act, vocab_cache.decode(session, model_id, ids), values)


@functools.cache
def _activations_statement(limited: bool) -> Select[Any]:
    # Plain rows, not ORM objects: a page reads ~45 of them and identity-map bookkeeping costs more than the query.
    stmt = (
        select(*Activation.__table__.columns)
        .where(Activation.feature_id == bindparam("feature_id"))
        .order_by(Activation.max_value.desc(), Activation.id)
    )
    return stmt.limit(bindparam("limit", type_=Integer())) if limited else stmt


def list_activations(
    session: Session, model_id: str, source_name: str, feature: Feature, limit: int | None = None
) -> list[ActivationDoc]:
    """A feature's examples, largest first (top group before quantile groups, as SAEDashboard orders)."""
    acts = list(session.execute(_activations_statement(limit is not None), {"feature_id": feature.id, "limit": limit}))
    decoded = [decode_activation(act.data) for act in acts]
    id_lists = [ids.tolist() for ids, _ in decoded]
    all_ids: set[int] = set()
    for ids in id_lists:
        all_ids.update(ids)
    # One vocabulary lookup for the whole feature (a per-example lookup costs a pass over the cache each).
    table = vocab_cache.strings(session, model_id, all_ids)
    token_of = cast(Callable[[int], str], table.__getitem__)  # ids below the table's end all have strings
    return [
        api_activation_doc(model_id, source_name, feature.index, act, list(map(token_of, ids)), values)
        for act, ids, (_, values) in zip(acts, id_lists, decoded, strict=True)
    ]


# Named columns, not the entity: the embedding column is large (and a pgvector value to parse on Postgres).
_EXPLANATION_COLUMNS = [c for c in Explanation.__table__.columns if c.key != "embedding"]


def list_explanations(
    session: Session, model_id: str, source_name: str, features: Sequence[Feature]
) -> dict[int, list[ExplanationDoc]]:
    """Explanations per feature id, best scored first, each with its scores (oldest first)."""
    out: dict[int, list[ExplanationDoc]] = defaultdict(list)
    if not features:
        return out
    by_id = {f.id: f for f in features}
    rows = list(
        session.execute(
            select(
                *_EXPLANATION_COLUMNS,
                Explanation.embedding.is_not(None).label("has_embedding"),
                User.name.label("author_name"),
            )
            .outerjoin(User, User.id == Explanation.author_id)
            .where(Explanation.feature_id.in_(list(by_id)))
            .order_by(Explanation.score_v2.desc().nulls_last(), Explanation.score_v1.desc(), Explanation.created_at)
        )
    )
    scores: dict[str, list[Any]] = defaultdict(list)
    if rows:
        for score in session.execute(
            select(*ExplanationScore.__table__.columns)
            .where(ExplanationScore.explanation_id.in_([e.id for e in rows]))
            .order_by(ExplanationScore.created_at, ExplanationScore.id)
        ):
            scores[score.explanation_id].append(score_json(score))
    for exp in rows:
        address = (model_id, source_name, by_id[exp.feature_id].index)
        out[exp.feature_id].append(
            explanation_doc(
                exp,
                address,
                author_name=exp.author_name,
                has_embedding=bool(exp.has_embedding),
                scores=scores.get(exp.id, []),
            )
        )
    return out


@functools.lru_cache(maxsize=16)
def _locate_statement(extra: tuple[ColumnElement[Any], ...]) -> Select[Any]:
    # Built once per set of extra columns (the callers keep theirs): parameters model_id, source_name, index.
    return (
        select(Model, Source, Feature, SourceSet, *extra)
        .join(Source, Source.model_id == Model.id)
        .join(Feature, Feature.source_id == Source.id)
        .outerjoin(SourceSet, SourceSet.id == Source.set_id)
        .where(
            Model.id == bindparam("model_id"),
            Source.name == bindparam("source_name"),
            Feature.index == bindparam("index", type_=Integer()),
        )
    )


def locate_feature(
    session: Session,
    model_id: str,
    source_name: str,
    index: Any,
    extra: tuple[ColumnElement[Any], ...] = (),
    params: dict[str, Any] | None = None,
) -> tuple[Model, Source, Feature, SourceSet | None, Row[Any]]:
    """Resolve ``/{model}/{source}/{index}`` to rows in one statement (the source set too), with ``extra``
    columns computed alongside (their bound ``params`` given); NotFound naming the missing part, also for what
    the viewer may not open. Keep ``extra`` the same objects from call to call: the statement is built once
    for each such tuple."""
    idx = parse_index(index)
    params = {"model_id": model_id, "source_name": source_name, "index": idx, **(params or {})}
    found = session.execute(_locate_statement(extra), params).first()
    # The set is in the identity map now: the visibility check below reads it without a query.
    if found is not None and source_visible(session, found[1], found[0]):
        remember_source(session, found[1])
        return found[0], found[1], found[2], found[3], found
    # The step-by-step lookups only to name what is missing.
    get_model(session, model_id)
    get_source(session, model_id, source_name)
    raise NotFound(f"feature {model_id}/{source_name}/{idx} not found", field="index")


def feature_address(session: Session, feature_id: int) -> tuple[str, str, int] | None:
    """``(model id, source name, index)`` of a feature, or None when it is gone."""
    row = session.execute(
        select(Source.model_id, Source.name, Feature.index)
        .join(Feature, Feature.source_id == Source.id)
        .where(Feature.id == feature_id)
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def get_feature_row(session: Session, model_id: str, source_name: str, index: Any) -> tuple[Model, Source, Feature]:
    """Resolve ``/{model}/{source}/{index}`` to rows, or NotFound naming the missing part."""
    model, source, feature, _, _ = locate_feature(session, model_id, source_name, index)
    return model, source, feature


@dataclass
class FeatureRead:
    """A feature read for a document: its rows, the document, and what was read alongside."""

    model: Model
    source: Source
    feature: Feature
    doc: FeatureDoc
    annotations: FeatureAnnotations
    row: Row[Any]  # the catalogue row with the extra columns the reader asked for


@functools.cache
def creator_name_column() -> ColumnElement[Any]:
    """The feature creator's name, as a column of the catalogue row (``read_feature`` needs it first)."""
    creator = aliased(User, name="creator")
    return select(creator.name).where(creator.id == Feature.creator_id).scalar_subquery().label("creator_name")


def read_feature(
    session: Session,
    model_id: str,
    source_name: str,
    index: Any,
    extra: tuple[ColumnElement[Any], ...] | None = None,
    params: dict[str, Any] | None = None,
    *,
    viewer_id: str | None = None,
    with_votes: bool = False,
) -> FeatureRead:
    """The full feature document (catalogue, comments, creator) of ``/{model}/{source}/{index}``: one statement
    for the catalogue row (with ``extra`` columns, which must start with :func:`creator_name_column`; their
    ``params``), one for the examples, one for explanations and comments (and their votes, ``voted`` by
    ``viewer_id``, with ``with_votes``)."""
    extra = extra if extra is not None else (creator_name_column(),)
    model, source, feature, set_row, row = locate_feature(session, model_id, source_name, index, extra, params)
    annotations = feature_annotations(
        session, feature.id, (model.id, source.name, feature.index), viewer_id=viewer_id, with_votes=with_votes
    )
    doc = _full_doc(session, model, source, feature, set_row, row.creator_name, annotations)
    return FeatureRead(model, source, feature, doc, annotations, row)


def feature_json(
    session: Session,
    model: Model,
    source: Source,
    feature: Feature,
    *,
    max_acts: int | None = None,
    with_catalogue: bool = True,
) -> FeatureDoc:
    """The feature document of rows already found (``with_catalogue``: model, set, source, comments, creator)."""
    if not with_catalogue:
        activations = list_activations(session, model.id, source.name, feature, max_acts)
        explanations = list_explanations(session, model.id, source.name, [feature]).get(feature.id, [])
        return feature_doc(model.id, source.name, source.set_name, feature, activations, explanations)
    annotations = feature_annotations(session, feature.id, (model.id, source.name, feature.index))
    creator = session.get(User, feature.creator_id) if feature.creator_id else None
    set_row = session.get(SourceSet, source.set_id)
    return _full_doc(session, model, source, feature, set_row, creator.name if creator else None, annotations, max_acts)


def _full_doc(
    session: Session,
    model: Model,
    source: Source,
    feature: Feature,
    set_row: SourceSet | None,
    creator_name: str | None,
    annotations: FeatureAnnotations,
    max_acts: int | None = None,
) -> FeatureDoc:
    return feature_doc(
        model.id,
        source.name,
        source.set_name,
        feature,
        list_activations(session, model.id, source.name, feature, max_acts),
        annotations.explanations,
        catalogue=(model_json(model), source_json(source), source_set_json(set_row) if set_row else None),
        comments=annotations.comment_docs((model.id, source.name, feature.index), None),
        creator_name=creator_name,
    )


def features_offset(
    session: Session, model_id: str, source_name: str, offset: int, limit: int = 20
) -> list[dict[str, Any]]:
    """A page of a source's features by index, each with its explanations (the Browser pane)."""
    if offset < 0:
        raise Invalid("offset must be >= 0", field="offset")
    get_model(session, model_id)
    source = get_source(session, model_id, source_name)
    feats = list(
        session.scalars(
            select(Feature).where(Feature.source_id == source.id).order_by(Feature.index).offset(offset).limit(limit)
        )
    )
    exps = list_explanations(session, model_id, source_name, feats)
    return [
        {
            "modelId": model_id,
            "layer": source_name,
            "index": str(f.index),
            **feature_stats_json(f),
            "explanations": exps.get(f.id, []),
        }
        for f in feats
    ]


def count_activations(session: Session, feature_ids: Sequence[int]) -> int:
    """How many examples these features have."""
    return int(
        session.scalar(select(func.count()).select_from(Activation).where(Activation.feature_id.in_(list(feature_ids))))
        or 0
    )
