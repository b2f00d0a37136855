"""Cached "search via inference" results (``saved_searches``) and the feature facts search results show."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from interpedia.db.tables import Feature, Model, SavedSearch, Source, SourceSet, new_id
from interpedia.store.catalogue import VISIBILITY_COLUMNS, chain_visible
from interpedia.store.features import list_explanations


def cache_key(kind: str, params: dict[str, Any]) -> str:
    """A hash of every setting of a search (and what model weights answered it)."""
    doc = json.dumps({"kind": kind, **params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def saved_result(session: Session, key: str) -> Any | None:
    """The cached result under ``key``, or None."""
    return session.scalar(select(SavedSearch.result).where(SavedSearch.cache_key == key))


def save_result(
    session: Session,
    key: str,
    *,
    kind: str,
    query: str,
    model_id: str,
    source_set: str | None,
    params: dict[str, Any],
    result: Any,
) -> None:
    """Cache a result (a concurrent identical search that saved first wins)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(SavedSearch)
        .values(
            id=new_id(),
            cache_key=key,
            kind=kind,
            query=query[:100_000].replace("\x00", "\ufffd"),
            model_id=model_id,
            source_set=source_set,
            params=params,
            result=result,
        )
        .on_conflict_do_nothing(index_elements=["cache_key"])
    )
    session.execute(stmt)


def feature_facts(
    session: Session, model_id: str, wanted: list[tuple[str, int]], with_explanations: bool = True
) -> dict[tuple[str, int], dict[str, Any]]:
    """Density, max activation and explanations of ``(source, index)`` features that exist in the database (and
    that the current viewer may open)."""
    by_source: dict[str, set[int]] = defaultdict(set)
    for source, index in wanted:
        by_source[source].add(index)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for source_name, indices in by_source.items():
        rows = [
            r.Feature
            for r in session.execute(
                select(Feature, *VISIBILITY_COLUMNS)
                .join(Source, Source.id == Feature.source_id)
                .join(Model, Model.id == Source.model_id)
                .outerjoin(SourceSet, SourceSet.id == Source.set_id)
                .where(Source.model_id == model_id, Source.name == source_name, Feature.index.in_(sorted(indices)))
            )
            if chain_visible(r)
        ]
        explanations = list_explanations(session, model_id, source_name, rows) if with_explanations and rows else {}
        for feature in rows:
            out[(source_name, feature.index)] = {
                "modelId": model_id,
                "layer": source_name,
                "index": str(feature.index),
                "frac_nonzero": feature.frac_nonzero,
                "maxActApprox": feature.max_act_approx,
                "hasVector": feature.has_vector,
                "explanations": [
                    {
                        "description": e["description"],
                        "typeName": e["typeName"],
                        "explanationModelName": e["explanationModelName"],
                    }
                    for e in explanations.get(feature.id, [])
                ],
            }
    return out
