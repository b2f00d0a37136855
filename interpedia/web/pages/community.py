"""The page side of comments, bookmarks and votes: plain HTML forms (no script needed) and ``/account/bookmarks``.

Each form posts to the API's path without ``/api`` (``/comment/new``, ``/bookmark/add``,
``/explanation/{id}/vote``...) with the session's CSRF token, and is answered with a redirect back
to the page it came from, so a reload shows the result. Where to go back to is worked out here from
the object acted on, never taken from the form, so these routes cannot be used as open redirects.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.errors import Unauthorized
from interpedia.store.bookmarks import add_bookmark, delete_bookmark, user_bookmarks
from interpedia.store.comments import add_feature_comment, add_list_comment, delete_comment
from interpedia.store.explanations import get_explanation
from interpedia.store.features import feature_address, get_feature_row
from interpedia.store.rows import User
from interpedia.store.votes import unvote, vote, vote_state
from interpedia.web.deps import SessionDep
from interpedia.web.pages.render import done, page, page_url, signin_first
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Field = Annotated[str, Form()]
BOOKMARKS_URL = "/account/bookmarks"


def _user(request: Request, session: Session, token: str) -> User:
    user = current_user(request)
    if user is None:
        raise Unauthorized("sign in first (/signin) to comment, bookmark or vote")
    check_csrf(request, session, token)
    session.commit()  # end the lookup's read transaction: the write below runs in its own
    return user


def _done(request: Request, url: str, doc: dict[str, Any]) -> Response:
    """JSON for a client that asked for it, else back to the page (303: the reload is a GET)."""
    return done(request, url, {**doc, "url": url})


@router.post("/comment/new")
def comment_form(
    request: Request,
    session: SessionDep,
    text: Field = "",
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    listId: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Post a comment on a feature (``modelId``, ``layer``, ``index``) or on a list (``listId``)."""
    user = _user(request, session, csrf_token)
    with session.begin():
        if listId:
            row = add_list_comment(session, user, listId, text)
            url = page_url("list", listId)
        else:
            model, source, feature = get_feature_row(session, modelId, layer, index)
            row = add_feature_comment(session, user, feature, text)
            url = page_url(model.id, source.name, feature.index)
        comment_id = row.id
    return _done(request, url + "#comments", {"commentId": comment_id})


@router.post("/comment/delete")
def comment_delete_form(
    request: Request, session: SessionDep, commentId: Field = "", csrf_token: Field = ""
) -> Response:
    """Delete a comment (its author or an admin), then go back to what it was on."""
    user = _user(request, session, csrf_token)
    with session.begin():
        row = delete_comment(session, user, commentId)
        if row.list_id is not None:
            url = page_url("list", row.list_id)
        else:
            url = _feature_url(session, row.feature_id)
    return _done(request, url + "#comments", {"deleted": commentId})


def _feature_url(session: Session, feature_id: int | None) -> str:
    address = feature_address(session, feature_id) if feature_id is not None else None
    return page_url(*address) if address is not None else "/"


@router.post("/bookmark/add")
@router.post("/bookmark/delete")
def bookmark_form(
    request: Request,
    session: SessionDep,
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    back: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Bookmark or un-bookmark a feature; ``back=bookmarks`` returns to the bookmarks page."""
    user = _user(request, session, csrf_token)
    adding = request.url.path.endswith("/add")
    with session.begin():
        model, source, feature = get_feature_row(session, modelId, layer, index)
        if adding:
            add_bookmark(session, user, feature)
        else:
            delete_bookmark(session, user, feature)
    url = BOOKMARKS_URL if back == "bookmarks" else page_url(model.id, source.name, feature.index)
    return _done(request, url, {"bookmarked": adding})


@router.post("/explanation/{explanation_id}/vote")
@router.post("/explanation/{explanation_id}/unvote")
def vote_form(request: Request, session: SessionDep, explanation_id: str, csrf_token: Field = "") -> Response:
    """Vote for an explanation or take the vote back, then return to its feature page."""
    user = _user(request, session, csrf_token)
    with session.begin():
        exp = get_explanation(session, explanation_id, user)
        if request.url.path.endswith("/unvote"):
            unvote(session, user, exp)
        else:
            vote(session, user, exp)
        url = _feature_url(session, exp.feature_id)
    state = vote_state(session, user, [explanation_id])[explanation_id]
    return _done(request, f"{url}#explanation-{explanation_id}", {"explanationId": explanation_id, **state})


@router.get(BOOKMARKS_URL)
@router.get(BOOKMARKS_URL + ".json")
def bookmarks_page(request: Request, session: SessionDep) -> Response:
    """The signed-in user's bookmarked features (private: only they see them)."""
    as_json = request.url.path.endswith(".json")
    user = current_user(request)
    if user is None:
        return signin_first(
            request, "/signin?next=" + BOOKMARKS_URL, as_json=as_json, message="sign in to see your bookmarks"
        )
    data = {"page": "bookmarks", "user": {"name": user.name}, "bookmarks": user_bookmarks(session, user)}
    return page(request, session, "bookmarks.html", data, as_json=as_json)
