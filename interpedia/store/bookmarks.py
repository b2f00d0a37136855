"""Bookmarks: a user's saved features (private to the user)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from interpedia.db.tables import Bookmark, Explanation, Feature, Model, Source, SourceSet, User
from interpedia.store.catalogue import VISIBILITY_COLUMNS, chain_visible
from interpedia.store.formats import iso


def add_bookmark(session: Session, user: User, feature: Feature) -> tuple[Bookmark, bool]:
    """Bookmark the feature; bookmarking it again changes nothing. Returns the row and whether it is new."""
    row = session.get(Bookmark, (user.id, feature.id))
    if row is not None:
        return row, False
    row = Bookmark(user_id=user.id, feature_id=feature.id)
    try:
        # A savepoint: a concurrent request that bookmarked the same feature first is not an error.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = session.get(Bookmark, (user.id, feature.id))
        if found is None:
            raise
        return found, False
    return row, True


def delete_bookmark(session: Session, user: User, feature: Feature) -> bool:
    """Remove the bookmark; False when there was none."""
    row = session.get(Bookmark, (user.id, feature.id))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def user_bookmarks(session: Session, user: User) -> list[dict[str, Any]]:
    """The user's bookmarks (of features they may still open), newest first, each with the feature's address and
    top explanation."""
    rows = [
        r
        for r in session.execute(
            select(Bookmark.created_at, Feature.id, Feature.index, Source.model_id, Source.name, *VISIBILITY_COLUMNS)
            .join(Feature, Feature.id == Bookmark.feature_id)
            .join(Source, Source.id == Feature.source_id)
            .join(Model, Model.id == Source.model_id)
            .outerjoin(SourceSet, SourceSet.id == Source.set_id)
            .where(Bookmark.user_id == user.id)
            .order_by(Bookmark.created_at.desc(), Feature.id)
        ).all()
        if chain_visible(r)  # a feature made private since it was bookmarked is not listed
    ]
    tops: dict[int, str] = {}
    if rows:
        # The first explanation by score, as the feature page's headline shows it.
        for fid, desc in session.execute(
            select(Explanation.feature_id, Explanation.description)
            .where(Explanation.feature_id.in_([r[1] for r in rows]))
            .order_by(
                Explanation.feature_id,
                Explanation.score_v2.desc().nulls_last(),
                Explanation.score_v1.desc(),
                Explanation.created_at,
            )
        ):
            tops.setdefault(fid, desc)
    return [
        {"modelId": r[3], "layer": r[4], "index": str(r[2]), "createdAt": iso(r[0]), "description": tops.get(r[1])}
        for r in rows
    ]
