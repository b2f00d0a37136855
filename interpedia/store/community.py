"""Community data for a list page in one call: its comments (the feature page's is ``store.feature_page``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from interpedia.db.tables import User
from interpedia.store.comments import MAX_COMMENT_CHARS, list_comments


def list_community(session: Session, list_id: str, user: User | None) -> dict[str, Any]:
    """What a list page shows of its comments (``data["community"]``, read by ``_list_comments.html``)."""
    return {"comments": list_comments(session, list_id, user), "maxCommentChars": MAX_COMMENT_CHARS}
