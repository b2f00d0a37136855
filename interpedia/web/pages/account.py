"""Local accounts: sign-up, sign-in with a password, and the account page (API keys, password).

Plain HTML forms with the session's CSRF token, like :mod:`interpedia.web.pages.forms`; each also
answers as JSON (``Accept: application/json``) with the API's one error shape on bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.errors import NotFound, Unauthorized, UserError
from interpedia.store.formats import iso
from interpedia.store.lists import owned_lists
from interpedia.store.rows import ApiKey, User
from interpedia.store.users import (
    authenticate,
    create_account,
    create_api_key,
    get_user,
    list_api_keys,
    revoke_api_key,
    set_password,
)
from interpedia.web.deps import SessionDep
from interpedia.web.pages.forms import RESERVED_IDS, _safe_next, _signin_url
from interpedia.web.pages.render import done, form_error, form_page, signin_first
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user, manager

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute, include_in_schema=False)

Field = Annotated[str, Form()]
MAX_LABEL = 100
T = TypeVar("T")


def user_json(user: User) -> dict[str, Any]:
    """The public part of a user."""
    return {"id": user.id, "name": user.name, "admin": user.admin, "bot": user.bot, "createdAt": iso(user.created_at)}


def _key_json(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "prefix": row.prefix,
        "label": row.label,
        "createdAt": iso(row.created_at),
        "lastUsedAt": iso(row.last_used_at),
        "revokedAt": iso(row.revoked_at),
    }


def _account_data(session: Session, user: User, **extra: Any) -> dict[str, Any]:
    return {
        "page": "account",
        "user": user_json(user),
        "hasPassword": bool(user.password_hash),
        "apiKeys": [_key_json(k) for k in list_api_keys(session, user)],
        "lists": owned_lists(session, user),
        "newKey": None,
        "errors": {},
        **extra,
    }


def _signed_in(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise Unauthorized("sign in first (/signin)")
    return user


# --- sign up --------------------------------------------------------------------------------------


@router.get("/signup")
@router.get("/signup.json")
def signup_form(request: Request, session: SessionDep, next: str = "/") -> Response:
    """The sign-up form: a user name and a password."""
    data = {"page": "signup", "next": _safe_next(next), "values": {"name": "", "email": ""}, "errors": {}}
    return form_page(request, session, "signup.html", data, as_json=request.url.path.endswith(".json"))


@router.post("/signup")
def signup(
    request: Request,
    session: SessionDep,
    name: Field = "",
    password: Field = "",
    email: Field = "",
    csrf_token: Field = "",
    next: Field = "/",
) -> Response:
    """Create a local account and sign the browser in."""
    check_csrf(request, session, csrf_token)
    values = {"name": name.strip(), "email": email.strip()}
    errors: dict[str, str] = {}
    status = 422
    user: User | None = None
    if values["name"].lower() in RESERVED_IDS:
        errors["name"] = f"'{values['name']}' is reserved; choose another name."
    else:
        session.commit()  # end the read transaction the CSRF check may have opened
        try:
            with session.begin():
                user = create_account(session, values["name"], password, email=values["email"] or None)
        except UserError as exc:
            errors[exc.field or "name"] = exc.message
            status = exc.status
    if user is None:
        data = {"page": "signup", "next": _safe_next(next), "values": values, "errors": errors}
        return form_page(request, session, "signup.html", data, form_error(errors, status))
    log.info("new account %s", user.name)
    manager(request).load(request).sign_in_password(user)
    target = _safe_next(next)
    data = {"page": "signup", "user": user_json(user), "next": target}
    return done(request, target if target != "/" else "/account", data, status=201)


# --- sign in with a password ----------------------------------------------------------------------


@router.post("/signin/password")
def signin_password(
    request: Request,
    session: SessionDep,
    name: Field = "",
    password: Field = "",
    csrf_token: Field = "",
    next: Field = "/",
) -> Response:
    """Check the name and password (argon2) and remember the user in the signed session cookie."""
    check_csrf(request, session, csrf_token)
    user = authenticate(session, name.strip(), password) if name.strip() and password else None
    if user is None:
        missing = not name.strip() or not password
        message = "Enter your user name and password." if missing else "Wrong user name or password."
        errors = {"password": message}
        data = {
            "page": "signin",
            "next": _safe_next(next),
            "user": None,
            "errors": errors,
            "values": {"name": name.strip()},
        }
        return form_page(request, session, "signin.html", data, form_error(errors, 422 if missing else 401))
    session.commit()  # a rehashed password is saved
    manager(request).load(request).sign_in_password(user)
    target = _safe_next(next)
    return done(request, target, {"page": "signin", "user": user_json(user), "next": target})


# --- the account page -----------------------------------------------------------------------------


@router.get("/account")
@router.get("/account.json")
def account(request: Request, session: SessionDep) -> Response:
    """The signed-in user's account: API keys (create, revoke), password, lists."""
    as_json = request.url.path.endswith(".json")
    user = current_user(request)
    if user is None:
        return signin_first(request, _signin_url("/account"), as_json=as_json)
    return form_page(request, session, "account.html", _account_data(session, user), as_json=as_json)


def _as_owner(session: Session, user: User, write: Callable[[User], T]) -> T:
    """Run ``write`` on the user's row in a transaction of its own (ending the request's read first)."""
    user_id = user.id
    session.commit()
    with session.begin():
        owner = get_user(session, user_id)
        assert owner is not None
        return write(owner)


@router.post("/account/keys")
def account_new_key(request: Request, session: SessionDep, label: Field = "", csrf_token: Field = "") -> Response:
    """Create an API key and show it this once (the database keeps only its hash)."""
    user = _signed_in(request)
    check_csrf(request, session, csrf_token)
    label = label.strip()
    if len(label) > MAX_LABEL:
        errors = {"label": f"the label must be at most {MAX_LABEL} characters"}
        data = _account_data(session, user, errors=errors)
        return form_page(request, session, "account.html", data, form_error(errors, 422))
    key = _as_owner(session, user, lambda owner: create_api_key(session, owner, label or None))
    log.info("user %s created an API key", user.name)
    # "key" for API-style callers; the page shows "newKey" (the same key) once.
    response = form_page(
        request, session, "account.html", _account_data(session, user, newKey=key, key=key), status=201
    )
    response.headers["Cache-Control"] = "no-store"  # the answer holds a secret
    return response


@router.post("/account/keys/{key_id}/revoke")
def account_revoke_key(request: Request, session: SessionDep, key_id: str, csrf_token: Field = "") -> Response:
    """Revoke one of the user's keys (browsers signed in with it are signed out)."""
    user = _signed_in(request)
    check_csrf(request, session, csrf_token)
    if not _as_owner(session, user, lambda owner: revoke_api_key(session, owner, key_id)):
        raise NotFound("no such API key of yours", field="keyId")
    return done(request, "/account", {"page": "account", "revoked": key_id})


@router.post("/account/password")
def account_password(
    request: Request, session: SessionDep, password: Field = "", new_password: Field = "", csrf_token: Field = ""
) -> Response:
    """Set a new password (the current one is needed when there is one); other browsers are signed out."""
    user = _signed_in(request)
    check_csrf(request, session, csrf_token)
    errors: dict[str, str] = {}
    status = 422
    if user.password_hash and authenticate(session, user.name, password) is None:
        errors["password"], status = "The current password is wrong.", 403
    else:
        try:
            _as_owner(session, user, lambda owner: set_password(session, owner, new_password))
        except UserError as exc:
            errors["new_password"] = exc.message
    if errors:
        data = _account_data(session, user, errors=errors)
        return form_page(request, session, "account.html", data, form_error(errors, status))
    fresh = get_user(session, user.id)
    assert fresh is not None
    sess = manager(request).load(request)
    if sess.user_id:
        sess.sign_in_password(fresh)  # keep this browser signed in under the new fingerprint
    return done(request, "/account", {"page": "account", "passwordChanged": True})
