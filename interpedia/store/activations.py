"""Adding examples to a feature one upload at a time (vectors), without duplicates."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from interpedia.db.tables import Activation
from interpedia.store.records import ActivationRecord
from interpedia.store.versions import touch_features
from interpedia.store.writer import ACT_COLUMNS, activation_row


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
