"""Document versions: replacing a feature's (or a whole source's) ``doc_version`` says its document changed.

See ``store.feature_cache`` for what the versions key and who must call these. A module of its own, below
everything that writes: the writers (explanations, votes, comments, examples, imports) import it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from interpedia.db.tables import Explanation, Feature, Source

__all__ = ["new_version", "touch_explanation_sources", "touch_explanations", "touch_features", "touch_sources"]


def new_version() -> int:
    """A fresh document version: a random positive 62-bit integer (never the 0 of rows not yet touched)."""
    return secrets.randbits(62) | 1


def touch_features(session: Session, feature_ids: Iterable[int]) -> None:
    """Give these features' documents a new version (in the caller's transaction)."""
    ids = sorted(set(feature_ids))
    if ids:
        # The default synchronisation also updates Feature objects the session holds: a read later in the same
        # session must see the new version, not the one it loaded.
        session.execute(update(Feature).where(Feature.id.in_(ids)).values(doc_version=new_version()))


def touch_sources(session: Session, source_ids: Iterable[int]) -> None:
    """Give the documents of every feature of these sources a new version (bulk writes: one row per source)."""
    ids = sorted(set(source_ids))
    if ids:
        session.execute(update(Source).where(Source.id.in_(ids)).values(doc_version=new_version()))


def touch_explanation_sources(session: Session, explanation_ids: Iterable[str]) -> None:
    """A new version for the sources of these explanations' features (after a bulk change to explanations)."""
    ids = sorted(set(explanation_ids))
    if ids:
        sources = (
            select(Feature.source_id)
            .join(Explanation, Explanation.feature_id == Feature.id)
            .where(Explanation.id.in_(ids))
        )
        touch_sources(session, session.scalars(sources.distinct()))


def touch_explanations(session: Session, explanation_ids: Iterable[str]) -> None:
    """A new version for the features of these explanations (a vote, a score: changes to one explanation)."""
    ids = sorted(set(explanation_ids))
    if ids:
        touch_features(session, session.scalars(select(Explanation.feature_id).where(Explanation.id.in_(ids))))
