"""Comments on features and on lists: add, delete (owner or admin), list in posting order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interpedia.db.tables import Comment, Feature, FeatureList, Source, User
from interpedia.errors import Forbidden, Invalid, NotFound
from interpedia.store.documents.comment import CommentDoc, comment_doc
from interpedia.store.users import can_modify
from interpedia.store.versions import touch_features

# Neuronpedia caps nothing explicitly; a comment is a remark, not a document, and this keeps one
# request from writing megabytes that every later page view would have to send.
MAX_COMMENT_CHARS = 5000


def clean_text(text: Any) -> str:
    """The comment text stripped of surrounding space; Invalid when empty, too long or not a string."""
    if not isinstance(text, str):
        raise Invalid("text must be a string", field="text")
    # NUL becomes a space, as the importers do: Postgres text cannot hold it.
    cleaned = text.replace("\x00", " ").strip()
    if not cleaned:
        raise Invalid("a comment needs some text", field="text")
    if len(cleaned) > MAX_COMMENT_CHARS:
        raise Invalid(
            f"a comment is at most {MAX_COMMENT_CHARS:,} characters (this one has {len(cleaned):,})", field="text"
        )
    return cleaned


def add_feature_comment(session: Session, user: User, feature: Feature, text: Any) -> Comment:
    """Add ``user``'s comment to a feature."""
    row = Comment(user_id=user.id, feature_id=feature.id, text=clean_text(text))
    session.add(row)
    session.flush()
    touch_features(session, [feature.id])
    return row


def add_list_comment(session: Session, user: User, list_id: str, text: Any) -> Comment:
    """Add ``user``'s comment to a list; NotFound when the list does not exist."""
    cleaned = clean_text(text)
    if session.get(FeatureList, list_id) is None:
        raise NotFound(f"list {list_id!r} not found", field="listId")
    row = Comment(user_id=user.id, list_id=list_id, text=cleaned)
    session.add(row)
    session.flush()
    return row


def can_delete(comment_user_id: str, user: User | None) -> bool:
    """Owners delete their own comments; admins delete anyone's."""
    return can_modify(user, comment_user_id)


def delete_comment(session: Session, user: User, comment_id: str, *, list_only: bool = False) -> Comment:
    """Delete a comment; NotFound when missing, Forbidden unless ``user`` wrote it or is an admin."""
    row = session.get(Comment, comment_id) if isinstance(comment_id, str) else None
    if row is None or (list_only and row.list_id is None):
        raise NotFound(f"comment {comment_id!r} not found", field="commentId")
    if not can_delete(row.user_id, user):
        raise Forbidden("only the comment's author or an admin can delete it", field="commentId")
    session.delete(row)
    session.flush()
    if row.feature_id is not None:
        touch_features(session, [row.feature_id])
    return row


def _addresses(session: Session, feature_ids: set[int]) -> dict[int, tuple[str, str, int]]:
    if not feature_ids:
        return {}
    rows = session.execute(
        select(Feature.id, Source.model_id, Source.name, Feature.index)
        .join(Source, Source.id == Feature.source_id)
        .where(Feature.id.in_(feature_ids))
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _docs(session: Session, rows: list[Comment], viewer: User | None) -> list[CommentDoc]:
    if not rows:
        return []
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_({r.user_id for r in rows}))).all())
    where = _addresses(session, {r.feature_id for r in rows if r.feature_id is not None})
    return [
        comment_doc(
            comment_id=r.id,
            text=r.text,
            user_id=r.user_id,
            user_name=names.get(r.user_id),
            created_at=r.created_at,
            can_delete=can_delete(r.user_id, viewer),
            address=where.get(r.feature_id) if r.feature_id is not None else None,
            list_id=r.list_id,
        )
        for r in rows
    ]


def comment_json(session: Session, row: Comment, viewer: User | None = None) -> CommentDoc:
    """A comment as the API shows it (Neuronpedia's field names), with ``canDelete`` for ``viewer``."""
    return _docs(session, [row], viewer)[0]


def list_comments(session: Session, list_id: str, viewer: User | None = None) -> list[CommentDoc]:
    """A list's comments, oldest first."""
    rows = list(
        session.scalars(select(Comment).where(Comment.list_id == list_id).order_by(Comment.created_at, Comment.id))
    )
    return _docs(session, rows, viewer)
