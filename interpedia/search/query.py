"""Explanation search by meaning: the query is embedded, the nearest explanations are found within a
scope (some sources of a model, a model, a release, or everything visible), and each result comes
with its feature and a few of the feature's top examples, 20 per page, as neuronpedia.org returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, or_, select
from sqlalchemy.orm import Session, defer

from interpedia.config import Settings
from interpedia.db.tables import Explanation, Feature, Model, Source, SourceRelease, SourceSet, User
from interpedia.errors import Invalid, NotFound
from interpedia.search.embeddings import Embedder, embed_query
from interpedia.search.index import MAX_CANDIDATES, search_vectors
from interpedia.store.access import listed_condition
from interpedia.store.activations import list_top_activations
from interpedia.store.catalogue import get_model
from interpedia.store.documents.feature import ActivationDoc
from interpedia.store.features import feature_stats_json
from interpedia.store.formats import iso
from interpedia.store.releases import in_release

PAGE_SIZE = 20
ACTS_PER_RESULT = 3
MIN_QUERY = 3
MAX_QUERY = 1000


@dataclass(frozen=True)
class SearchScope:
    """Where to search: sources of a model, a whole model, a release, or (all None) everything."""

    model_id: str | None = None
    source_names: tuple[str, ...] = ()
    release: str | None = None


def _visible_sources(session: Session, scope: SearchScope, user: User | None) -> list[Row[int, str]] | None:
    """The sources to search (id and name), or None for 'every source' (no filter needed)."""
    admin = user is not None and user.admin
    # Two narrow columns, not Source rows: a search of everything would load every source's ~40 columns.
    stmt = (
        select(Source.id, Source.name)
        .join(Model, Model.id == Source.model_id)
        .join(SourceSet, SourceSet.id == Source.set_id)
    )
    if not admin:
        uid = user.id if user is not None else None
        # Private rows are searched for their creator only: the source, its set and its model all count.
        stmt = stmt.where(
            or_(Source.visibility != "PRIVATE", Source.creator_id == uid),
            or_(SourceSet.visibility != "PRIVATE", SourceSet.creator_id == uid),
            or_(Model.visibility != "PRIVATE", Model.creator_id == uid),
        )
    if scope.model_id is None and scope.release is None:
        # Search across everything lists only what is listed: unlisted rows are found through their URL alone.
        stmt = stmt.where(
            listed_condition(Model.visibility, Model.creator_id),
            listed_condition(SourceSet.visibility, SourceSet.creator_id),
            listed_condition(Source.visibility, Source.creator_id),
        )
    release: SourceRelease | None = None
    if scope.release is not None:
        release = session.get(SourceRelease, scope.release)
        if release is not None and (
            release.visibility == "PRIVATE" and not admin and (user is None or release.creator_id != user.id)
        ):
            release = None
        # A SAELens release name (sources generated from it record it) is a release too.
        stmt = stmt.where(in_release(scope.release, release))
    if scope.model_id is not None:
        model = get_model(session, scope.model_id)
        if model.visibility == "PRIVATE" and not admin and (user is None or model.creator_id != user.id):
            raise NotFound(f"model {scope.model_id!r} not found", field="modelId")
        stmt = stmt.where(Source.model_id == scope.model_id)
    if scope.source_names:
        stmt = stmt.where(Source.name.in_(list(scope.source_names)))
    rows = list(session.execute(stmt))
    if scope.release is not None and release is None and not rows:
        raise NotFound(f"release {scope.release!r} not found", field="releaseName")
    if scope.source_names:
        missing = set(scope.source_names) - {s.name for s in rows}
        if missing:
            raise NotFound(f"source {scope.model_id}/{sorted(missing)[0]} not found", field="layers")
    if scope.model_id is None and scope.release is None:
        if len(rows) == session.scalar(select(func.count()).select_from(Source)):
            return None
    return rows


def _result(
    exp: Explanation,
    feature: Feature,
    source: Source,
    similarity: float,
    author: str | None,
    acts: list[ActivationDoc],
) -> dict[str, Any]:
    return {
        "id": exp.id,
        "modelId": source.model_id,
        "layer": source.name,
        "index": str(feature.index),
        "description": exp.description,
        "typeName": exp.type_name,
        "explanationModelName": exp.explanation_model_name,
        "authorId": exp.author_id,
        "author": {"name": author} if author else None,
        "scoreV1": exp.score_v1,
        "scoreV2": exp.score_v2,
        "createdAt": iso(exp.created_at),
        "cosine_similarity": round(similarity, 6),
        "neuron": {
            "modelId": source.model_id,
            "layer": source.name,
            "index": str(feature.index),
            "sourceSetName": source.set_name,
            **feature_stats_json(feature),
            "activations": acts,
        },
    }


def search_explanations(
    session: Session,
    settings: Settings,
    embedder: Embedder,
    *,
    query: str,
    scope: SearchScope,
    offset: int = 0,
    user: User | None = None,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One page of explanations nearest ``query`` in meaning: ``{request, results, resultsCount, hasMore,
    nextOffset}``; each result carries ``cosine_similarity`` and its feature (``neuron``) with top examples."""
    query = (query or "").strip()
    if len(query) < MIN_QUERY:
        raise Invalid(f"query must be at least {MIN_QUERY} characters", field="query")
    if len(query) > MAX_QUERY:
        raise Invalid(f"query must be at most {MAX_QUERY} characters", field="query")
    if offset < 0 or offset + PAGE_SIZE > MAX_CANDIDATES:
        raise Invalid(f"offset must be from 0 to {MAX_CANDIDATES - PAGE_SIZE}", field="offset")
    sources = _visible_sources(session, scope, user)
    page: list[dict[str, Any]] = []
    has_more = False
    if sources is None or sources:
        vec = embed_query(embedder, query, cache_size=settings.embedding_cache_size)
        ids = None if sources is None else [s.id for s in sources]
        hits = search_vectors(session, settings, vec, source_ids=ids, n=offset + PAGE_SIZE + 1)
        window = hits[offset : offset + PAGE_SIZE + 1]
        has_more = len(window) > PAGE_SIZE
        page = _hydrate(session, window[:PAGE_SIZE])
    return {
        "request": request if request is not None else {"query": query, "offset": offset},
        "results": page,
        "resultsCount": len(page),
        "hasMore": has_more,
        "nextOffset": offset + PAGE_SIZE if has_more else None,
    }


def _hydrate(session: Session, hits: Sequence[Any]) -> list[dict[str, Any]]:
    if not hits:
        return []
    rows = session.execute(
        select(Explanation, Feature, Source, User.name)
        .join(Feature, Feature.id == Explanation.feature_id)
        .join(Source, Source.id == Feature.source_id)
        .outerjoin(User, User.id == Explanation.author_id)
        .where(Explanation.id.in_([h.explanation_id for h in hits]))
        # A result does not show the vector, and parsing 20 of them costs more than the rest of the row.
        .options(defer(Explanation.embedding))
    ).all()
    by_id = {exp.id: (exp, feature, source, author) for exp, feature, source, author in rows}
    examples = list_top_activations(
        session, [(source.model_id, source.name, feature) for _, feature, source, _ in rows], ACTS_PER_RESULT
    )
    out = []
    for hit in hits:
        found = by_id.get(hit.explanation_id)
        if found is not None:  # deleted between the vector search and now
            exp, feature, source, author = found
            out.append(_result(exp, feature, source, hit.similarity, author, examples[feature.id]))
    return out
