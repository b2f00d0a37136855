"""Feature documents stored in the database, so that a read of a feature need not build its document.

Building a dashboard's JSON (~45 examples of 128 tokens to decode, explanations, scores, comments) costs a server
several milliseconds; reading it back as one value costs a fraction of one. ``feature_documents`` keeps each
feature's document (without its catalogue parts, which are added per read) beside the versions it was built from
(``store.versions``): a row is current while they equal the feature's and its source's ``doc_version`` and its
``format`` is :data:`DOCUMENT_FORMAT`. Every write that changes a document already replaces a version, so a
stale row is never served; it is replaced when the document is next built.

Who fills it: ``interpedia documents build`` (all features of a model or source, in batches of a few statements
each: after a bulk import), and on Postgres each ``GET /api/feature`` that had to build a document. The per-
process cache (``store.feature_cache``) stays in front of it for the pages, which also need the document's parts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, ColumnElement, Integer, Select, bindparam, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from interpedia import __version__
from interpedia.db import transaction
from interpedia.db.documents import FeatureDocument
from interpedia.db.tables import Feature, Model, Source, User
from interpedia.store.activations import list_top_activations
from interpedia.store.annotations import FeatureAnnotations, features_annotations
from interpedia.store.catalogue import get_model, get_source
from interpedia.store.documents.catalogue import model_json, source_json
from interpedia.store.documents.feature import ActivationDoc, FeatureDoc, feature_doc

__all__ = [
    "DOCUMENT_FORMAT",
    "StoredDocument",
    "build_documents",
    "count_documents",
    "document_of",
    "save_documents",
    "stored_document",
    "fill_source_documents",
    "next_features",
    "stored_document_column",
]

# What a stored document was written by: another interpedia (or a change to the document's shape, which must
# bump the number) makes every stored document stale, so an upgrade never serves the old shape.
DOCUMENT_FORMAT = f"{__version__}/1"

_CATALOGUE_KEYS = ("model", "source", "sourceSet")


@dataclass(frozen=True)
class StoredDocument:
    """One row of ``feature_documents``: the feature, the versions its document was built from, the JSON."""

    feature_id: int
    feature_version: int
    source_version: int
    body: bytes


def document_of(
    model: Model,
    source: Source,
    feature: Feature,
    activations: list[ActivationDoc],
    annotations: FeatureAnnotations,
    creator_name: str | None,
) -> FeatureDoc:
    """A feature's document without its catalogue parts (model, source, set), which every read adds afresh."""
    address = (model.id, source.name, feature.index)
    doc = feature_doc(
        model.id,
        source.name,
        source.set_name,
        feature,
        activations,
        annotations.explanations,
        catalogue=(model_json(model), source_json(source), None),
        comments=annotations.comment_docs(address, None),
        creator_name=creator_name,
    )
    for key in _CATALOGUE_KEYS:
        doc.pop(key)  # type: ignore[misc]
    return doc


def stored_document_column() -> ColumnElement[Any]:
    """The feature's stored document while it is current, else NULL: a column of the catalogue row (which joins
    ``Feature`` and ``Source``), so a read finds it without a statement of its own."""
    return _stored_document_column()


@functools.cache
def _stored_document_column() -> ColumnElement[Any]:
    fd = FeatureDocument
    return (
        select(fd.body)
        .where(
            fd.feature_id == Feature.id,
            fd.feature_version == Feature.doc_version,
            fd.source_version == Source.doc_version,
            fd.format == DOCUMENT_FORMAT,
        )
        .scalar_subquery()
        .label("stored_document")
    )


def stored_document(session: Session, feature_id: int, feature_version: int, source_version: int) -> bytes | None:
    """The feature's stored document if it was built from these versions (one statement), else None."""
    fd = FeatureDocument
    body = session.scalar(
        select(fd.body).where(
            fd.feature_id == feature_id,
            fd.feature_version == feature_version,
            fd.source_version == source_version,
            fd.format == DOCUMENT_FORMAT,
        )
    )
    return bytes(body) if body is not None else None


def save_documents(session: Session, documents: Sequence[StoredDocument]) -> None:
    """Write these documents over whatever each feature had stored (in the caller's transaction)."""
    if not documents:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(FeatureDocument)
    stmt = stmt.on_conflict_do_update(
        index_elements=[FeatureDocument.feature_id],
        set_={c: stmt.excluded[c] for c in ("feature_version", "source_version", "format", "body")},
    )
    session.execute(
        stmt,
        [
            {
                "feature_id": d.feature_id,
                "feature_version": d.feature_version,
                "source_version": d.source_version,
                "format": DOCUMENT_FORMAT,
                "body": d.body,
            }
            for d in documents
        ],
    )


@functools.cache
def _batch_statement(missing_only: bool, parts: int) -> Select[Feature, str]:
    fd = FeatureDocument
    stmt = (
        select(Feature, User.name.label("creator_name"))
        .outerjoin(User, User.id == Feature.creator_id)
        .where(Feature.source_id == bindparam("source_id"), Feature.id > bindparam("after", type_=BigInteger()))
        .order_by(Feature.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if parts > 1:
        stmt = stmt.where(Feature.id % parts == bindparam("part", type_=Integer()))
    if missing_only:
        current = exists().where(
            fd.feature_id == Feature.id,
            fd.feature_version == Feature.doc_version,
            fd.source_version == bindparam("source_version", type_=BigInteger()),
            fd.format == DOCUMENT_FORMAT,
        )
        stmt = stmt.where(~current)
    return stmt


def next_features(
    session: Session,
    source: Source,
    after: int,
    size: int,
    *,
    missing_only: bool = True,
    part: tuple[int, int] = (0, 1),
) -> list[tuple[Feature, str | None]]:
    """Up to ``size`` of a source's features with ids above ``after``, by id, with their creators' names
    (``missing_only``: those without a current stored document; ``part=(k, n)``: ids equal to k modulo n)."""
    params = {
        "source_id": source.id,
        "after": after,
        "limit": size,
        "source_version": source.doc_version,
        "part": part[0],
    }
    return [(f, name) for f, name in session.execute(_batch_statement(missing_only, part[1]), params)]


def build_documents(
    session: Session, model: Model, source: Source, features: Sequence[tuple[Feature, str | None]]
) -> list[StoredDocument]:
    """The documents of features of one source (with their creators' names), in two statements for all of them:
    the same JSON a single read builds (``store.features.read_feature_at``)."""
    examples = list_top_activations(session, [(model.id, source.name, f) for f, _ in features], None)
    annotations = features_annotations(session, {f.id: (model.id, source.name, f.index) for f, _ in features})
    return [
        StoredDocument(
            f.id,
            f.doc_version,
            source.doc_version,
            orjson.dumps(document_of(model, source, f, examples[f.id], annotations[f.id], name)),
        )
        for f, name in features
    ]


def fill_source_documents(
    factory: sessionmaker[Session],
    model_id: str,
    source_name: str,
    *,
    size: int = 200,
    missing_only: bool = True,
    part: tuple[int, int] = (0, 1),
) -> int:
    """Build and store the documents of a source's features, one transaction per ``size`` features (a run cut
    short keeps what it stored; ``missing_only`` then goes on where it stopped). ``part=(k, n)``: only features
    whose id is k modulo n, so that n processes share a source. Returns how many were stored."""
    done, after = 0, -1
    while True:
        with transaction(factory) as session:
            model = get_model(session, model_id)
            source = get_source(session, model_id, source_name)
            rows = next_features(session, source, after, size, missing_only=missing_only, part=part)
            if not rows:
                return done
            save_documents(session, build_documents(session, model, source, rows))
        done += len(rows)
        after = rows[-1][0].id


def count_documents(session: Session, model_id: str | None = None) -> list[tuple[str, str, int, int]]:
    """``(model id, source name, features, features with a current stored document)`` of every source (of
    ``model_id``)."""
    fd = FeatureDocument
    current = (
        select(func.count())
        .select_from(Feature)
        .join(fd, fd.feature_id == Feature.id)
        .where(
            Feature.source_id == Source.id,
            fd.feature_version == Feature.doc_version,
            fd.source_version == Source.doc_version,
            fd.format == DOCUMENT_FORMAT,
        )
        .scalar_subquery()
    )
    total = select(func.count()).select_from(Feature).where(Feature.source_id == Source.id).scalar_subquery()
    stmt = select(Source.model_id, Source.name, total, current).order_by(Source.model_id, Source.id)
    if model_id is not None:
        stmt = stmt.where(Source.model_id == model_id)
    return [(m, s, int(t), int(c)) for m, s, t, c in session.execute(stmt)]
