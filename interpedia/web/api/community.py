"""Comments, bookmarks and votes: ``/api/comment/*``, ``/api/list/comment/*``, ``/api/bookmark/*``,
``/api/user/bookmarks``, ``/api/explanation/{id}/vote`` and ``/unvote`` (neuronpedia.org's paths and bodies).

Callers authenticate with ``x-api-key`` or, from a page's script, with the session cookie plus its
CSRF token in the ``x-csrf-token`` header (a cookie alone could be replayed by another site's form).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ConfigDict, Field, StrictStr, model_validator
from sqlalchemy.orm import Session

from interpedia.errors import NotFound, Unauthorized
from interpedia.store.bookmarks import add_bookmark, delete_bookmark, user_bookmarks
from interpedia.store.comments import (
    MAX_COMMENT_CHARS,
    add_feature_comment,
    add_list_comment,
    comment_json,
    delete_comment,
)
from interpedia.store.explanations import get_explanation
from interpedia.store.features import get_feature_row
from interpedia.store.rows import User
from interpedia.store.votes import unvote, vote, vote_state
from interpedia.web.deps import AUTH_REQUIRED, SessionDep
from interpedia.web.pages.session import check_csrf, current_user
from interpedia.web.wire import SPACE_CHARS, Body, Index, json_response

router = APIRouter(tags=["community"])

CSRF_HEADER = "x-csrf-token"


def community_user(request: Request, session: SessionDep) -> User:
    """The caller (API key, or signed-in browser with a CSRF header on writes); 401 for nobody."""
    user = current_user(request)
    if user is None:
        raise Unauthorized(AUTH_REQUIRED)
    if not request.headers.get("x-api-key") and request.method not in ("GET", "HEAD"):
        check_csrf(request, session, request.headers.get(CSRF_HEADER))
    return user


CommunityUser = Annotated[User, Depends(community_user)]


class FeatureRef(Body):
    """A feature address, as ``/api/bookmark/add`` and ``/delete`` take it."""

    modelId: StrictStr
    layer: StrictStr
    index: Index


# Some text besides space and NUL (stored as a space), at most what the store keeps.
CommentText = Annotated[StrictStr, Field(pattern=f"[^\\u0000{SPACE_CHARS}]", max_length=MAX_COMMENT_CHARS)]


class CommentNew(FeatureRef):
    """``POST /api/comment/new``."""

    text: CommentText


class ListCommentNew(Body):
    """``POST /api/list/comment/new``."""

    listId: StrictStr
    text: CommentText


class CommentDelete(Body):
    """``POST /api/comment/delete`` (``commentId``; ``id`` is accepted too)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["commentId"], "properties": {"commentId": {"type": "string", "minLength": 1}}},
                {"required": ["id"], "properties": {"id": {"type": "string", "minLength": 1}}},
            ]
        }
    )

    commentId: StrictStr | None = None
    id: StrictStr | None = None

    @model_validator(mode="after")
    def _one_id(self) -> CommentDelete:
        if not (self.commentId or self.id):
            raise ValueError("commentId is required")
        return self

    @property
    def comment_id(self) -> str:
        """The comment's id, whichever field carried it."""
        return self.commentId or self.id or ""


def _fresh(session: Session) -> None:
    # The user lookup opened the request's read transaction; end it so the write below runs in its own.
    session.commit()


# --- comments -------------------------------------------------------------------------------------


@router.post("/comment/new", summary="Comment on a feature")
def comment_new(body: CommentNew, session: SessionDep, user: CommunityUser) -> Response:
    """Add a comment to the feature; 422 for an empty text or one over the length limit (nothing is stored)."""
    _fresh(session)
    with session.begin():
        _, _, feature = get_feature_row(session, body.modelId, body.layer, body.index)
        row = add_feature_comment(session, user, feature, body.text)
        doc = comment_json(session, row, user)
    return json_response(doc)


@router.post("/comment/delete", summary="Delete a comment")
def comment_delete(body: CommentDelete, session: SessionDep, user: CommunityUser) -> Response:
    """Delete a comment you wrote (admins: any); 403 for someone else's, 404 for an unknown id."""
    _fresh(session)
    with session.begin():
        delete_comment(session, user, body.comment_id)
    return json_response({"message": "Comment deleted.", "id": body.comment_id})


@router.post("/list/comment/new", summary="Comment on a list")
def list_comment_new(body: ListCommentNew, session: SessionDep, user: CommunityUser) -> Response:
    """Add a comment to the list; 404 for an unknown list, 422 for a bad text."""
    _fresh(session)
    with session.begin():
        row = add_list_comment(session, user, body.listId, body.text)
        doc = comment_json(session, row, user)
    return json_response(doc)


@router.post("/list/comment/delete", summary="Delete a list comment")
def list_comment_delete(body: CommentDelete, session: SessionDep, user: CommunityUser) -> Response:
    """Delete a list comment you wrote (admins: any)."""
    _fresh(session)
    with session.begin():
        delete_comment(session, user, body.comment_id, list_only=True)
    return json_response({"message": "Comment deleted.", "id": body.comment_id})


# --- bookmarks ------------------------------------------------------------------------------------


@router.post("/bookmark/add", summary="Bookmark a feature")
def bookmark_add(body: FeatureRef, session: SessionDep, user: CommunityUser) -> Response:
    """Bookmark the feature (again: no change)."""
    _fresh(session)
    with session.begin():
        model, source, feature = get_feature_row(session, body.modelId, body.layer, body.index)
        _, created = add_bookmark(session, user, feature)
    return json_response(
        {"modelId": model.id, "layer": source.name, "index": str(feature.index), "bookmarked": True, "created": created}
    )


@router.post("/bookmark/delete", summary="Remove a bookmark")
def bookmark_delete(body: FeatureRef, session: SessionDep, user: CommunityUser) -> Response:
    """Remove the bookmark; 404 when the feature was not bookmarked."""
    _fresh(session)
    with session.begin():
        model, source, feature = get_feature_row(session, body.modelId, body.layer, body.index)
        if not delete_bookmark(session, user, feature):
            raise NotFound(f"feature {model.id}/{source.name}/{feature.index} is not bookmarked", "index")
    return json_response({"modelId": model.id, "layer": source.name, "index": str(feature.index), "bookmarked": False})


@router.get("/user/bookmarks", summary="Your bookmarks", operation_id="user_bookmarks_get")
@router.post("/user/bookmarks", summary="Your bookmarks", operation_id="user_bookmarks_post")
def bookmarks_list(session: SessionDep, user: CommunityUser) -> Response:
    """The caller's bookmarked features, newest first."""
    return json_response({"bookmarks": user_bookmarks(session, user)})


# --- votes ----------------------------------------------------------------------------------------


def _vote_doc(session: Session, user: User, explanation_id: str) -> dict[str, Any]:
    return {"explanationId": explanation_id, **vote_state(session, user, [explanation_id])[explanation_id]}


@router.post("/explanation/{explanationId}/vote", summary="Up-vote an explanation")
def vote_one(explanationId: str, session: SessionDep, user: CommunityUser) -> Response:
    """Vote for the explanation (one vote per user: voting again changes nothing)."""
    _fresh(session)
    with session.begin():
        vote(session, user, get_explanation(session, explanationId, user))
    return json_response(_vote_doc(session, user, explanationId))


@router.post("/explanation/{explanationId}/unvote", summary="Take back your vote")
def unvote_one(explanationId: str, session: SessionDep, user: CommunityUser) -> Response:
    """Remove your vote from the explanation (no vote: no change)."""
    _fresh(session)
    with session.begin():
        unvote(session, user, get_explanation(session, explanationId, user))
    return json_response(_vote_doc(session, user, explanationId))
