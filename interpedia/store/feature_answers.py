"""The answer of ``GET /api/feature/{model}/{source}/{index}``, the request a site answers most, in one narrow
statement when it can be.

The answer is the feature's document (stored in the database, ``store.feature_documents``, or cached in the
process, ``store.feature_cache``) with its catalogue parts (model, source set, source) added, and an ETag made
of the document's versions and a hash of those parts. Reading the catalogue rows through the ORM (four entities,
~90 columns) costs more than everything else together, and they change rarely; so on Postgres each process
keeps the parts' JSON per source, under the rows' ``xmin`` (the transaction that wrote the row version, which
every ``UPDATE`` replaces), and the statement reads only those, the visibility columns, the versions and the
stored document. Anything else (another database, parts not cached or changed, no document to answer with, a
feature not found) takes the general path (``store.features``), which also names what is missing.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Integer, Select, Text, bindparam, cast, literal_column, select
from sqlalchemy.orm import Session

from interpedia.db.tables import Feature, Model, Source, SourceSet
from interpedia.store.access import PRIVATE
from interpedia.store.catalogue import VISIBILITY_COLUMNS, chain_visible
from interpedia.store.feature_cache import FeatureCache, FeatureKey
from interpedia.store.feature_documents import stored_document_column
from interpedia.store.features import FeatureAt, creator_name_column, feature_body_at, find_feature
from interpedia.store.formats import parse_index

__all__ = ["CatalogueParts", "FeatureAnswer", "answer_feature"]


def _xmin(table: str, label: str) -> ColumnElement[Any]:
    return cast(literal_column(f"{table}.xmin"), Text).label(label)


# Postgres only: SQLite has no xmin (it always takes the general path).
_XMINS = (_xmin("models", "model_xmin"), _xmin("sources", "source_xmin"), _xmin("source_sets", "set_xmin"))
_GENERAL_EXTRA = (creator_name_column(), stored_document_column())
_GENERAL_EXTRA_PG = (*_GENERAL_EXTRA, *_XMINS)


@functools.cache
def _narrow_statement() -> Select[Any]:
    return (
        select(Feature.id, Feature.doc_version, Source.doc_version.label("source_version"), *_XMINS)
        .add_columns(*VISIBILITY_COLUMNS, stored_document_column())
        .join(Source, Source.model_id == Model.id)
        .join(Feature, Feature.source_id == Source.id)
        .outerjoin(SourceSet, SourceSet.id == Source.set_id)
        .where(
            Model.id == bindparam("model_id"),
            Source.name == bindparam("source_name"),
            Feature.index == bindparam("index", type_=Integer()),
        )
    )


@dataclass(frozen=True)
class CatalogueParts:
    """A source's catalogue parts as every feature answer of it carries them, and what they were read at."""

    xmins: tuple[str | None, str | None, str | None]  # of the model, source and source set rows
    json: bytes  # {"model": ..., "source": ..., "sourceSet": ...}
    digest: str  # what the ETag carries (FeatureAt.etag)


class CatalogueCache:
    """:class:`CatalogueParts` by (model id, source name); a process's sources are few, so nothing is evicted."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, str], CatalogueParts] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str, source_name: str) -> CatalogueParts | None:
        """The parts kept for this source, or None."""
        return self._parts.get((model_id, source_name))

    def put(self, model_id: str, source_name: str, parts: CatalogueParts) -> None:
        """Keep ``parts`` for this source (replacing older ones)."""
        with self._lock:
            self._parts[(model_id, source_name)] = parts


@dataclass
class FeatureAnswer:
    """What ``GET /api/feature`` answers: its ETag and privacy known first, the body built only when asked for
    (not for a 304)."""

    etag: str
    private: bool
    body: Callable[[], bytes]


def _etag(key: FeatureKey, digest: str) -> str:
    return '"f{}-{:x}-{:x}-{}"'.format(*key, digest)


def _with_parts(body: bytes, parts: bytes) -> bytes:
    # body and parts are JSON objects: the parts' keys go at the end of the body's (store.feature_cache.merged_json)
    return body[:-1] + (b"," if body != b"{}" else b"") + parts[1:]


def answer_feature(
    session: Session,
    model_id: str,
    source_name: str,
    index: Any,
    *,
    cache: FeatureCache,
    catalogue: CatalogueCache,
) -> FeatureAnswer:
    """The answer for ``/{model}/{source}/{index}``; NotFound naming the missing part (also for what the viewer
    may not open)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    parts = catalogue.get(model_id, source_name) if postgres else None
    if parts is not None:
        params = {"model_id": model_id, "source_name": source_name, "index": parse_index(index)}
        row = session.execute(_narrow_statement(), params).first()
        fresh = row is not None and parts.xmins == (row.model_xmin, row.source_xmin, row.set_xmin)
        if fresh and chain_visible(row):
            answer = _narrow_answer(row, parts, cache)
            if answer is not None:
                return answer
    extra = _GENERAL_EXTRA_PG if postgres else _GENERAL_EXTRA
    at = find_feature(session, model_id, source_name, index, extra, light=True)
    if postgres:
        catalogue.put(model_id, source_name, _parts_of(at))
    return FeatureAnswer(at.etag(), at.private, lambda: feature_body_at(session, at, cache=cache))


def _narrow_answer(row: Any, parts: CatalogueParts, cache: FeatureCache) -> FeatureAnswer | None:
    """The answer from the narrow row and the cached parts, or None when no document is at hand to answer with."""
    key: FeatureKey = (row.id, row.doc_version, row.source_version)
    cached = cache.get(key) if cache.enabled else None
    body = cached.body if cached is not None else row.stored_document
    if body is None:
        return None
    private = PRIVATE in (row.model_visibility, row.set_visibility, row.source_visibility)
    return FeatureAnswer(_etag(key, parts.digest), private, lambda: _with_parts(bytes(body), parts.json))


def _parts_of(at: FeatureAt) -> CatalogueParts:
    catalogue_json = orjson.dumps(at.catalogue)
    digest = hashlib.blake2b(catalogue_json, digest_size=8).hexdigest()
    return CatalogueParts((at.row.model_xmin, at.row.source_xmin, at.row.set_xmin), catalogue_json, digest)
