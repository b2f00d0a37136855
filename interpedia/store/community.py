"""A feature's community data in one call: its comments, the viewer's bookmark, the votes on its explanations."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from interpedia.db.tables import Feature, User
from interpedia.store.bookmarks import is_bookmarked
from interpedia.store.comments import MAX_COMMENT_CHARS, feature_comments
from interpedia.store.votes import vote_state


def feature_community(session: Session, feature: Feature, explanation_ids: list[str],
                      user: User | None) -> dict[str, Any]:
    """What the feature page shows of comments, the viewer's bookmark and the votes on each explanation."""
    return {"comments": feature_comments(session, feature.id, user),
            "bookmarked": is_bookmarked(session, user, feature.id),
            "votes": vote_state(session, user, explanation_ids),
            "maxCommentChars": MAX_COMMENT_CHARS}
