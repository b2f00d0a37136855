"""Reads only the pages need: the catalogue overview, a source's feature browser, neighbours, random features.

They return plain JSON-able dicts (the JSON twins serve them as they are). Each is a handful of
indexed queries whatever the number of features: counts are one GROUP BY, neighbours and random
picks walk the ``(source_id, index)`` and primary-key indexes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interpedia.db.tables import Explanation, Feature, Model, Source, SourceSet
from interpedia.store.access import listed_condition
from interpedia.store.catalogue import count_features, list_models, list_source_sets, list_sources
from interpedia.store.features import model_json, source_json, source_set_json


def _sources_doc(sources: list[Source], counts: dict[int, int]) -> list[dict[str, Any]]:
    return [{**source_json(s), "featureCount": counts.get(s.id, 0)} for s in sources]


def source_set_doc(session: Session, set_row: SourceSet, counts: dict[int, int] | None = None) -> dict[str, Any]:
    """A source set with its sources and feature counts."""
    sources = list_sources(session, set_row)
    counts = counts if counts is not None else count_features(session, [s.id for s in sources])
    docs = _sources_doc(sources, counts)
    return {**source_set_json(set_row), "featureCount": sum(d["featureCount"] for d in docs), "sources": docs}


def model_doc(session: Session, model: Model) -> dict[str, Any]:
    """A model with its source sets, their sources and feature counts."""
    sets = list_source_sets(session, model.id)
    all_sources = list(session.scalars(select(Source).where(Source.model_id == model.id)))
    counts = count_features(session, [s.id for s in all_sources])
    set_docs = [source_set_doc(session, s, counts) for s in sets]
    return {**model_json(model), "featureCount": sum(d["featureCount"] for d in set_docs), "sourceSets": set_docs}


def catalogue(session: Session) -> list[dict[str, Any]]:
    """Every visible model with its source sets and feature counts (the home page)."""
    models = list_models(session)
    sets: dict[str, list[SourceSet]] = defaultdict(list)
    for row in session.scalars(
        select(SourceSet)
        .where(listed_condition(SourceSet.visibility, SourceSet.creator_id))
        .order_by(SourceSet.model_id, SourceSet.name)
    ):
        sets[row.model_id].append(row)
    by_set: dict[int, list[Source]] = defaultdict(list)
    for src in session.scalars(select(Source).where(listed_condition(Source.visibility, Source.creator_id))):
        by_set[src.set_id].append(src)
    counts = dict(session.execute(select(Feature.source_id, func.count()).group_by(Feature.source_id)).all())
    out = []
    for model in models:
        set_docs = []
        for set_row in sets.get(model.id, []):
            sources = sorted(
                by_set.get(set_row.id, []), key=lambda s: (s.layer_num if s.layer_num is not None else 1 << 30, s.name)
            )
            docs = _sources_doc(sources, counts)
            set_docs.append(
                {**source_set_json(set_row), "featureCount": sum(d["featureCount"] for d in docs), "sources": docs}
            )
        out.append(
            {**model_json(model), "featureCount": sum(d["featureCount"] for d in set_docs), "sourceSets": set_docs}
        )
    return out


def browse(session: Session, source: Source, offset: int, limit: int) -> dict[str, Any]:
    """One page of a source's features by index: max activation, density and the best explanation."""
    total = int(session.scalar(select(func.count()).select_from(Feature).where(Feature.source_id == source.id)) or 0)
    rows = session.execute(
        select(Feature.id, Feature.index, Feature.max_act_approx, Feature.frac_nonzero)
        .where(Feature.source_id == source.id)
        .order_by(Feature.index)
        .offset(offset)
        .limit(limit)
    ).all()
    best: dict[int, str] = {}
    if rows:
        for fid, description in session.execute(
            select(Explanation.feature_id, Explanation.description)
            .where(Explanation.feature_id.in_([r[0] for r in rows]))
            .order_by(
                Explanation.feature_id,
                Explanation.score_v2.desc().nulls_last(),
                Explanation.score_v1.desc(),
                Explanation.created_at,
            )
        ):
            best.setdefault(fid, description)
    features = [
        {"index": str(index), "maxActApprox": max_act, "frac_nonzero": density, "explanation": best.get(fid)}
        for fid, index, max_act, density in rows
    ]
    return {"offset": offset, "limit": limit, "total": total, "features": features}


def neighbours(session: Session, source_id: int, index: int) -> tuple[int | None, int | None]:
    """The indexes just before and after ``index`` in the source (None at either end)."""
    prev = session.scalar(select(func.max(Feature.index)).where(Feature.source_id == source_id, Feature.index < index))
    nxt = session.scalar(select(func.min(Feature.index)).where(Feature.source_id == source_id, Feature.index > index))
    return prev, nxt


def random_feature(
    session: Session, model_id: str, source_name: str | None = None, rng: random.Random | None = None
) -> tuple[str, int] | None:
    """A random live feature (one with activations) of the model, or of one of its sources.

    Picks a random point in the primary-key range and takes the first feature at or after it, which
    is one index probe instead of ``ORDER BY random()`` over every row.
    """
    rng = rng or random.Random()
    stmt = select(Source.id, Source.name).where(Source.model_id == model_id)
    if source_name is not None:
        stmt = stmt.where(Source.name == source_name)
    names = dict(session.execute(stmt).all())
    if not names:
        return None
    ids = list(names)
    lo, hi = session.execute(select(func.min(Feature.id), func.max(Feature.id)).where(Feature.source_id.in_(ids))).one()
    if lo is None:
        return None
    pivot = rng.randint(lo, hi)
    # Live features after the pivot, then from the start (wrap around), then dead ones too.
    for start, live_only in ((pivot, True), (lo, True), (lo, False)):
        cond = [Feature.source_id.in_(ids), Feature.id >= start]
        if live_only:
            cond.append(Feature.max_act_approx > 0)
        row = session.execute(
            select(Feature.source_id, Feature.index).where(*cond).order_by(Feature.id).limit(1)
        ).first()
        if row is not None:
            source_id, index = row  # (not row.index: that is tuple.index)
            return names[source_id], int(index)
    return None


def evals(session: Session, source_id: int) -> list[dict[str, Any]]:
    """The source's eval results (SAEBench), with their type's display name and metrics by category."""
    from interpedia.analysis.queries import source_evals

    return source_evals(session, source_id)
