"""A feature's examples: read as the API shows them (decoded together, one vocabulary lookup per feature),
and added one upload at a time (vectors) without duplicates."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Integer, Row, Select, bindparam, func, insert, select
from sqlalchemy.orm import Session

from interpedia.db.codec import decode_activation, decode_activations, example_peaks, float32_to_floats
from interpedia.db.tables import Activation, Feature
from interpedia.store.documents.feature import ActivationDoc, api_activation_doc
from interpedia.store.records import ActivationRecord
from interpedia.store.versions import touch_features
from interpedia.store.vocab import vocab_cache
from interpedia.store.writer import ACT_COLUMNS, activation_row

__all__ = [
    "activation_json",
    "append_activations",
    "list_activations",
    "list_top_activations",
]


def append_activations(
    session: Session,
    feature_id: int,
    creator_id: str | None,
    acts: Sequence[ActivationRecord],
    token_ids: dict[str, int],
) -> int:
    """Add examples to a feature, skipping any identical to one already stored; returns how many were added."""
    existing = {bytes(d) for d in session.scalars(select(Activation.data).where(Activation.feature_id == feature_id))}
    rows = []
    for act in acts:
        row = activation_row(feature_id, creator_id, act, token_ids)
        blob = row[ACT_COLUMNS.index("data")]
        if blob in existing:
            continue
        existing.add(blob)
        rows.append(dict(zip(ACT_COLUMNS, row, strict=True)))
    if rows:
        session.execute(insert(Activation), rows)
        touch_features(session, [feature_id])
    return len(rows)


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
    return _activation_docs(session, model_id, source_name, feature.index, acts)


@functools.cache
def _top_activations_statement() -> Select[Any]:
    # Ranked on the narrow columns first, the rows' data read only for the ranks kept.
    ranked = (
        select(
            Activation.id,
            func.row_number()
            .over(partition_by=Activation.feature_id, order_by=(Activation.max_value.desc(), Activation.id))
            .label("rank"),
        )
        .where(Activation.feature_id.in_(bindparam("feature_ids", expanding=True)))
        .subquery()
    )
    return (
        select(*Activation.__table__.columns)
        .join(ranked, ranked.c.id == Activation.id)
        .where(ranked.c.rank <= bindparam("limit", type_=Integer()))
        .order_by(Activation.feature_id, ranked.c.rank)
    )


@functools.cache
def _all_activations_statement() -> Select[Any]:
    return (
        select(*Activation.__table__.columns)
        .where(Activation.feature_id.in_(bindparam("feature_ids", expanding=True)))
        .order_by(Activation.feature_id, Activation.max_value.desc(), Activation.id)
    )


def list_top_activations(
    session: Session, features: Sequence[tuple[str, str, Feature]], limit: int | None
) -> dict[int, list[ActivationDoc]]:
    """The ``limit`` largest examples (None: all, as :func:`list_activations` orders them) of each ``(model id,
    source name, feature)``, by feature id, in one statement (a page of search results, or documents built in
    bulk, would otherwise ask once per feature)."""
    if not features:
        return {}
    ids = [feature.id for _, _, feature in features]
    by_feature: dict[int, list[Any]] = defaultdict(list)
    if limit is None:
        found = session.execute(_all_activations_statement(), {"feature_ids": ids})
    else:
        found = session.execute(_top_activations_statement(), {"feature_ids": ids, "limit": limit})
    for act in found:
        by_feature[act.feature_id].append(act)
    return {
        feature.id: _activation_docs(session, model_id, source_name, feature.index, by_feature.get(feature.id, []))
        for model_id, source_name, feature in features
    }


def _activation_docs(
    session: Session, model_id: str, source_name: str, index: int, acts: Sequence[Any]
) -> list[ActivationDoc]:
    if not acts:
        return []
    # All examples decoded together, their values written as floats once, and one vocabulary lookup for the
    # feature: per-example calls cost more than the work (a dashboard has ~45 x 128 tokens).
    ids, values, offsets = decode_activations([act.data for act in acts])
    table = vocab_cache.strings_upto(session, model_id, int(ids.max()) if len(ids) else -1)
    tokens = list(map(cast(Callable[[int], str], table.__getitem__), ids.tolist()))
    floats = float32_to_floats(values)
    bounds = offsets.tolist()
    peaks = example_peaks(values, offsets)
    return [
        api_activation_doc(
            model_id,
            source_name,
            index,
            act,
            tokens[a:b],
            floats[a:b],
            peak=(floats[a + hi], hi, floats[a + lo]),
        )
        if b > a
        else api_activation_doc(model_id, source_name, index, act, [], [])
        for act, a, b, (hi, lo) in zip(acts, bounds[:-1], bounds[1:], peaks, strict=True)
    ]
