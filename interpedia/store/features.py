"""Reading features: the address lookup, their examples and explanations, and the feature document.

The feature document (``documents.feature``) is what ``GET /api/feature/{model}/{source}/{index}`` answers, the
JSON twin's ``feature`` and what the HTML dashboard draws; :func:`read_feature` builds it in three statements
(the catalogue row, the examples, the explanations with their scores and the comments).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import JSON, ColumnElement, Integer, Row, Select, bindparam, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased, defer
from sqlalchemy.orm.attributes import set_committed_value

from interpedia.db.tables import Explanation, ExplanationScore, Feature, Model, Source, SourceSet, User
from interpedia.errors import Invalid, NotFound
from interpedia.store.access import PRIVATE
from interpedia.store.activations import list_activations
from interpedia.store.annotations import FeatureAnnotations, feature_annotations, voted_explanations
from interpedia.store.catalogue import get_model, get_source, remember_source, source_visible
from interpedia.store.documents.catalogue import model_json, source_json, source_set_json
from interpedia.store.documents.explanation import ExplanationDoc, explanation_doc, score_json
from interpedia.store.documents.feature import (
    FeatureDoc,
    feature_doc,
    feature_stats_json,
)
from interpedia.store.feature_cache import CachedFeature, FeatureCache, FeatureKey, merged_json
from interpedia.store.feature_documents import StoredDocument, document_of, save_documents, stored_document
from interpedia.store.formats import parse_index

log = logging.getLogger(__name__)

__all__ = [
    "FeatureAt",
    "FeatureRead",
    "feature_address",
    "feature_body_at",
    "feature_json",
    "feature_stats_json",
    "features_offset",
    "find_feature",
    "get_feature_row",
    "list_explanations",
    "locate_feature",
    "read_feature",
    "read_feature_at",
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


# The feature's JSON lists (histograms, logits, alignment, vector...): only building its document reads them, so a
# read that may find the document cached leaves them out of the catalogue row (21 columns to decode fewer) and
# loads them only when it must build (:func:`_complete_feature`).
_FEATURE_LISTS = tuple(c.key for c in Feature.__table__.columns if isinstance(c.type, JSON))


@functools.lru_cache(maxsize=16)
def _locate_statement(extra: tuple[ColumnElement[Any], ...], light: bool = False) -> Select[Any]:
    # Built once per set of extra columns (the callers keep theirs): parameters model_id, source_name, index.
    stmt = (
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
    return stmt.options(*(defer(getattr(Feature, key)) for key in _FEATURE_LISTS)) if light else stmt


@functools.cache
def _lists_statement() -> Select[Any]:
    return select(*(Feature.__table__.c[key] for key in _FEATURE_LISTS)).where(Feature.id == bindparam("feature_id"))


def _complete_feature(session: Session, feature: Feature) -> None:
    """Load what a light catalogue row left out of ``feature`` (one statement; none when nothing is missing).
    A plain row set on the object as loaded: ``session.refresh`` cost four times as much CPU."""
    state = inspect(feature)
    if not state.unloaded & set(_FEATURE_LISTS):
        return
    row = session.execute(_lists_statement(), {"feature_id": feature.id}).one()
    for key, value in zip(_FEATURE_LISTS, row, strict=True):
        if key in state.unloaded:
            set_committed_value(feature, key, value)


def locate_feature(
    session: Session,
    model_id: str,
    source_name: str,
    index: Any,
    extra: tuple[ColumnElement[Any], ...] = (),
    params: dict[str, Any] | None = None,
    *,
    light: bool = False,
) -> tuple[Model, Source, Feature, SourceSet | None, Row[Any]]:
    """Resolve ``/{model}/{source}/{index}`` to rows in one statement (the source set too), with ``extra``
    columns computed alongside (their bound ``params`` given); NotFound naming the missing part, also for what
    the viewer may not open. Keep ``extra`` the same objects from call to call: the statement is built once
    for each such tuple. ``light``: the feature's JSON lists are not read (each one read later is a statement:
    only for a reader that may not need them, as :func:`read_feature_at` with a cache)."""
    idx = parse_index(index)
    params = {"model_id": model_id, "source_name": source_name, "index": idx, **(params or {})}
    found = session.execute(_locate_statement(extra, light), params).first()
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
class FeatureAt:
    """A feature's catalogue row: the rows it joins, the extra columns asked for, its document's cache key."""

    model: Model
    source: Source
    feature: Feature
    set_row: SourceSet | None
    row: Row[Any]  # the catalogue row with the extra columns the reader asked for

    @property
    def key(self) -> FeatureKey:
        """What the feature's document is cached under (``store.feature_cache``)."""
        return (self.feature.id, self.feature.doc_version, self.source.doc_version)

    @functools.cached_property
    def catalogue(self) -> dict[str, Any]:
        """The document's catalogue parts (never cached: built from the row, so edits show at once)."""
        set_doc = source_set_json(self.set_row) if self.set_row else None
        return {"model": model_json(self.model), "source": source_json(self.source), "sourceSet": set_doc}

    @property
    def private(self) -> bool:
        """Whether its model, source set or source is private (only their creator and admins may see it)."""
        chain = (self.model, self.set_row, self.source)
        return any(r is not None and r.visibility == PRIVATE for r in chain)

    def etag(self) -> str:
        """A validator of the document's JSON, known before the document is built: the cache key and a hash of
        the catalogue parts."""
        digest = hashlib.blake2b(orjson.dumps(self.catalogue), digest_size=8).hexdigest()
        return '"f{}-{:x}-{:x}-{}"'.format(*self.key, digest)


@dataclass
class FeatureRead:
    """A feature read for a document: its rows, the document, and what was read alongside."""

    at: FeatureAt
    doc: FeatureDoc
    annotations: FeatureAnnotations
    cached: CachedFeature  # the document without its catalogue parts, its JSON, what readers derived from it
    from_cache: bool  # whether that was found in the cache (else built by this read)

    @property
    def model(self) -> Model:
        """The feature's model row."""
        return self.at.model

    @property
    def source(self) -> Source:
        """The feature's source row."""
        return self.at.source

    @property
    def feature(self) -> Feature:
        """The feature row."""
        return self.at.feature

    @property
    def row(self) -> Row[Any]:
        """The catalogue row, with the extra columns the reader asked for."""
        return self.at.row

    @property
    def key(self) -> FeatureKey:
        """The document's cache key."""
        return self.at.key

    def body(self) -> bytes:
        """The document's JSON (the cached JSON with the catalogue parts added: nothing serialised twice)."""
        return merged_json(self.cached.body, self.at.catalogue)


@functools.cache
def creator_name_column() -> ColumnElement[Any]:
    """The feature creator's name, as a column of the catalogue row (``read_feature`` needs it first)."""
    creator = aliased(User, name="creator")
    return select(creator.name).where(creator.id == Feature.creator_id).scalar_subquery().label("creator_name")


def find_feature(
    session: Session,
    model_id: str,
    source_name: str,
    index: Any,
    extra: tuple[ColumnElement[Any], ...] | None = None,
    params: dict[str, Any] | None = None,
    *,
    light: bool = False,
) -> FeatureAt:
    """The catalogue row of ``/{model}/{source}/{index}`` (one statement; ``extra`` columns, which must start
    with :func:`creator_name_column`, and their ``params``); NotFound as :func:`locate_feature`, ``light`` too
    (for :func:`read_feature_at` with a cache: the document is then most often cached)."""
    extra = extra if extra is not None else (creator_name_column(),)
    return FeatureAt(*locate_feature(session, model_id, source_name, index, extra, params, light=light))


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
    cache: FeatureCache | None = None,
) -> FeatureRead:
    """The full feature document (catalogue, comments, creator) of ``/{model}/{source}/{index}``:
    :func:`find_feature`, then :func:`read_feature_at`."""
    light = cache is not None and cache.enabled
    at = find_feature(session, model_id, source_name, index, extra, params, light=light)
    return read_feature_at(session, at, viewer_id=viewer_id, with_votes=with_votes, cache=cache)


def read_feature_at(
    session: Session,
    at: FeatureAt,
    *,
    viewer_id: str | None = None,
    with_votes: bool = False,
    cache: FeatureCache | None = None,
) -> FeatureRead:
    """The document of a feature found: from ``cache`` when it holds the version the catalogue row carries, else
    read in two statements (the examples; explanations, scores and comments) and kept there. With
    ``with_votes``, the votes on each explanation and whether ``viewer_id`` gave one (a cached document knows
    the totals; whose they are costs one statement for a signed-in viewer)."""
    model, source, feature = at.model, at.source, at.feature
    address = (model.id, source.name, feature.index)
    cached = cache.get(at.key) if cache is not None and cache.enabled else None
    from_cache = cached is not None
    if cached is not None:
        annotations = cached.annotations
        if with_votes and viewer_id is not None and annotations.votes:
            annotations = annotations.voted_by(voted_explanations(session, viewer_id, list(annotations.votes)))
    else:
        # Built with the vote totals whenever it may be cached, so that every cached entry serves every reader.
        annotations = feature_annotations(
            session, feature.id, address, viewer_id=viewer_id, with_votes=with_votes or cache is not None
        )
        # A document stored in the database (store.feature_documents) saves building it: parsing its JSON costs
        # a tenth of decoding ~45 examples and writing them out again.
        stored = _stored_body(session, at) if cache is not None else None
        if stored is not None:
            cached = CachedFeature(cast(FeatureDoc, orjson.loads(stored)), stored, annotations.voted_by(set()))
        else:
            _complete_feature(session, feature)  # a light catalogue row (find_feature) lacks the JSON lists
            activations = list_activations(session, model.id, source.name, feature)
            doc = document_of(model, source, feature, activations, annotations, at.row.creator_name)
            cached = CachedFeature(doc, orjson.dumps(doc), annotations.voted_by(set()))
        if cache is not None:
            cache.put(at.key, cached)
    return FeatureRead(at, cast(FeatureDoc, {**cached.doc, **at.catalogue}), annotations, cached, from_cache)


def _stored_body(session: Session, at: FeatureAt) -> bytes | None:
    # The catalogue row carries it when its reader asked (the feature API); else one statement.
    if "stored_document" in at.row._fields:
        found = at.row.stored_document
        return bytes(found) if found is not None else None
    return stored_document(session, *at.key)


def feature_body_at(session: Session, at: FeatureAt, *, cache: FeatureCache) -> bytes:
    """The JSON of ``GET /api/feature`` for a feature found by :func:`find_feature` with
    :func:`~interpedia.store.feature_documents.stored_document_column` among its extra columns: from the process's
    cache, else the document stored in the database, else built (and then stored, on Postgres)."""
    cached = cache.get(at.key) if cache.enabled else None
    if cached is not None:
        return merged_json(cached.body, at.catalogue)
    stored = at.row.stored_document
    if stored is not None:
        return merged_json(bytes(stored), at.catalogue)
    read = read_feature_at(session, at, cache=cache)
    bind = session.get_bind()
    # SQLite has one writer at a time: there a read must not turn into a write (`interpedia documents build`).
    if bind.dialect.name == "postgresql":
        try:
            with Session(bind) as own, own.begin():
                save_documents(own, [StoredDocument(*at.key, read.cached.body)])
        except SQLAlchemyError as exc:  # the answer is right either way; the next read builds it again
            log.warning("could not store the document of feature %s: %s", at.feature.id, exc)
    return read.body()


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
