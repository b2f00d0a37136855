"""Reads the browsing pages need: the catalogue overview, a model with counts, a source's feature browser,
neighbours and random features.

Each is a handful of indexed queries whatever the number of features: counts are one GROUP BY, neighbours
and random picks walk the ``(source_id, index)`` and primary-key indexes. What is listed follows the
visibility rules (``store.access``): private and unlisted models, sets and sources are left out for anyone but
their creator and admins.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, TypedDict

from sqlalchemy import Label, func, select
from sqlalchemy.orm import Session, aliased

from interpedia.db.tables import Explanation, Feature, Model, Source, SourceSet
from interpedia.store.access import listed_condition
from interpedia.store.catalogue import count_features, list_models, list_source_sets, list_sources
from interpedia.store.documents.catalogue import (
    CountedModelDoc,
    CountedSourceSetDoc,
    counted_model_json,
    counted_source_set_json,
)

__all__ = [
    "BrowserDoc",
    "BrowserFeatureDoc",
    "browse",
    "catalogue",
    "model_with_counts",
    "random_feature",
    "source_set_with_counts",
]


class BrowserFeatureDoc(TypedDict):
    """One row of a source's feature browser."""

    index: str
    maxActApprox: float | None
    frac_nonzero: float | None
    explanation: str | None


class BrowserDoc(TypedDict):
    """One page of a source's feature browser."""

    offset: int
    limit: int
    total: int
    features: list[BrowserFeatureDoc]


def _by_layer(sources: list[Source]) -> list[Source]:
    return sorted(sources, key=lambda s: (s.layer_num if s.layer_num is not None else 1 << 30, s.name))


def source_set_with_counts(
    session: Session, set_row: SourceSet, counts: dict[int, int] | None = None
) -> CountedSourceSetDoc:
    """A source set with its (listed) sources and feature counts."""
    sources = list_sources(session, set_row)
    counts = counts if counts is not None else count_features(session, [s.id for s in sources])
    return counted_source_set_json(set_row, sources, counts)


def model_with_counts(session: Session, model: Model) -> CountedModelDoc:
    """A model with its (listed) source sets, their sources and feature counts."""
    sets = list_source_sets(session, model.id)
    all_sources = list(session.scalars(select(Source.id).where(Source.model_id == model.id)))
    counts = count_features(session, all_sources)
    return counted_model_json(model, [source_set_with_counts(session, s, counts) for s in sets])


def catalogue(session: Session) -> list[CountedModelDoc]:
    """Every listed model with its listed source sets and sources, and feature counts (the home page)."""
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
    return [
        counted_model_json(
            model,
            [counted_source_set_json(s, _by_layer(by_set.get(s.id, [])), counts) for s in sets.get(model.id, [])],
        )
        for model in models
    ]


def browse(session: Session, source: Source, offset: int, limit: int) -> BrowserDoc:
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
    features: list[BrowserFeatureDoc] = [
        {"index": str(index), "maxActApprox": max_act, "frac_nonzero": density, "explanation": best.get(fid)}
        for fid, index, max_act, density in rows
    ]
    return {"offset": offset, "limit": limit, "total": total, "features": features}


def neighbour_columns(source_id: Any, index: Any) -> tuple[Label[Any], Label[Any]]:
    """Scalar subqueries for the indexes just before and after ``index`` in the source (columns or values)."""
    other = aliased(Feature)  # the outer query may be over features itself
    prev = select(func.max(other.index)).where(other.source_id == source_id, other.index < index)
    nxt = select(func.min(other.index)).where(other.source_id == source_id, other.index > index)
    return prev.scalar_subquery().label("prev_index"), nxt.scalar_subquery().label("next_index")


def random_feature(
    session: Session, model_id: str, source_name: str | None = None, rng: random.Random | None = None
) -> tuple[str, int] | None:
    """A random live feature (one with activations) of the model's listed sources, or of one source.

    Picks a random point in the primary-key range and takes the first feature at or after it, which
    is one index probe instead of ``ORDER BY random()`` over every row.
    """
    rng = rng or random.Random()
    stmt = select(Source.id, Source.name).where(Source.model_id == model_id)
    if source_name is not None:
        stmt = stmt.where(Source.name == source_name)  # the caller has checked the viewer may open it
    else:
        stmt = (
            stmt.join(SourceSet, SourceSet.id == Source.set_id)
            .where(listed_condition(Source.visibility, Source.creator_id))
            .where(listed_condition(SourceSet.visibility, SourceSet.creator_id))
        )
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
