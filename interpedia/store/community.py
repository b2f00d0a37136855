"""Community data for a page in one call: a feature's comments, bookmark and votes; a list's comments."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from interpedia.db.tables import Feature, User
from interpedia.store.bookmarks import is_bookmarked
from interpedia.store.comments import MAX_COMMENT_CHARS, feature_comments, list_comments
from interpedia.store.votes import vote_state


def feature_community(
    session: Session, feature: Feature, explanation_ids: list[str], user: User | None
) -> dict[str, Any]:
    """What the feature page shows of comments, the viewer's bookmark and the votes on each explanation."""
    return {
        "comments": feature_comments(session, feature.id, user),
        "bookmarked": is_bookmarked(session, user, feature.id),
        "votes": vote_state(session, user, explanation_ids),
        "maxCommentChars": MAX_COMMENT_CHARS,
    }


def list_community(session: Session, list_id: str, user: User | None) -> dict[str, Any]:
    """What a list page shows of its comments (``data["community"]``, read by ``_list_comments.html``)."""
    return {"comments": list_comments(session, list_id, user), "maxCommentChars": MAX_COMMENT_CHARS}
