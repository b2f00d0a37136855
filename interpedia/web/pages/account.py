"""Local accounts: sign-up, sign-in with a password, and the account page (API keys, password).

Plain HTML forms with the session's CSRF token, like :mod:`interpedia.web.pages.forms`; each also
answers as JSON (``Accept: application/json``) with the API's one error shape on bad input.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interpedia.db.community import FeatureList, ListFeature
from interpedia.db.tables import ApiKey, User
from interpedia.errors import NotFound, Unauthorized, UserError
from interpedia.store.formats import iso
from interpedia.store.users import (
    authenticate,
    create_account,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    set_password,
)
from interpedia.web.deps import SessionDep
from interpedia.web.errors import error_response
from interpedia.web.pages.forms import RESERVED_IDS, _safe_next, _signin_url
from interpedia.web.pages.render import json_page, redirect, renderer, wants_json
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user, manager

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute, include_in_schema=False)

Field = Annotated[str, Form()]
MAX_LABEL = 100


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


def _owned_lists(session: Session, user: User) -> list[dict[str, Any]]:
    counts = select(ListFeature.list_id, func.count().label("n")).group_by(ListFeature.list_id).subquery()
    rows = session.execute(
        select(FeatureList, counts.c.n)
        .outerjoin(counts, counts.c.list_id == FeatureList.id)
        .where(FeatureList.user_id == user.id)
        .order_by(FeatureList.created_at)
    ).all()
    return [
        {
            "id": lst.id,
            "name": lst.name,
            "description": lst.description,
            "featureCount": n or 0,
            "url": f"/list/{lst.id}",
        }
        for lst, n in rows
    ]


def _account_data(session: Session, user: User, **extra: Any) -> dict[str, Any]:
    return {
        "page": "account",
        "user": user_json(user),
        "hasPassword": bool(user.password_hash),
        "apiKeys": [_key_json(k) for k in list_api_keys(session, user)],
        "lists": _owned_lists(session, user),
        "newKey": None,
        "errors": {},
        **extra,
    }


def _signed_in(request: Request, session: Session) -> User:
    user = current_user(request, session)
    if user is None:
        raise Unauthorized("sign in first (/signin)")
    return user


# --- sign up --------------------------------------------------------------------------------------


@router.get("/signup")
@router.get("/signup.json")
def signup_form(request: Request, session: SessionDep, next: str = "/") -> Response:
    """The sign-up form: a user name and a password."""
    data = {"page": "signup", "next": _safe_next(next), "values": {"name": "", "email": ""}, "errors": {}}
    if wants_json(request, request.url.path.endswith(".json")):
        return json_page(data)
    return renderer(request).html(request, session, "signup.html", data)


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
    as_json = wants_json(request)
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
        if as_json:
            field, message = next_error(errors)
            return error_response(status, message, field)
        data = {"page": "signup", "next": _safe_next(next), "values": values, "errors": errors}
        return renderer(request).html(request, session, "signup.html", data, status=status)
    log.info("new account %s", user.name)
    manager(request).load(request).sign_in_password(user)
    target = _safe_next(next)
    if as_json:
        response = json_page({"page": "signup", "user": user_json(user), "next": target}, status=201)
        manager(request).save(request, response)
        return response
    return redirect(request, target if target != "/" else "/account")


def next_error(errors: dict[str, str]) -> tuple[str, str]:
    """The first (field, message) of a form's errors."""
    return next(iter(errors.items()))


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
    as_json = wants_json(request)
    check_csrf(request, session, csrf_token)
    user = authenticate(session, name.strip(), password) if name.strip() and password else None
    if user is None:
        missing = not name.strip() or not password
        message = "Enter your user name and password." if missing else "Wrong user name or password."
        status = 422 if missing else 401
        if as_json:
            return error_response(status, message, "password")
        data = {
            "page": "signin",
            "next": _safe_next(next),
            "user": None,
            "errors": {"password": message},
            "values": {"name": name.strip()},
        }
        return renderer(request).html(request, session, "signin.html", data, status=status)
    session.commit()  # a rehashed password is saved
    manager(request).load(request).sign_in_password(user)
    target = _safe_next(next)
    if as_json:
        response = json_page({"page": "signin", "user": user_json(user), "next": target})
        manager(request).save(request, response)
        return response
    return redirect(request, target)


# --- the account page -----------------------------------------------------------------------------


@router.get("/account")
@router.get("/account.json")
def account(request: Request, session: SessionDep) -> Response:
    """The signed-in user's account: API keys (create, revoke), password, lists."""
    as_json = wants_json(request, request.url.path.endswith(".json"))
    user = current_user(request, session)
    if user is None:
        if as_json:
            raise Unauthorized("sign in first (/signin)")
        return redirect(request, _signin_url("/account"), status=303)
    data = _account_data(session, user)
    if as_json:
        return json_page(data)
    return renderer(request).html(request, session, "account.html", data)


@router.post("/account/keys")
def account_new_key(request: Request, session: SessionDep, label: Field = "", csrf_token: Field = "") -> Response:
    """Create an API key and show it this once (the database keeps only its hash)."""
    as_json = wants_json(request)
    user = _signed_in(request, session)
    check_csrf(request, session, csrf_token)
    label = label.strip()
    if len(label) > MAX_LABEL:
        if as_json:
            return error_response(422, f"the label must be at most {MAX_LABEL} characters", "label")
        data = _account_data(session, user, errors={"label": f"At most {MAX_LABEL} characters."})
        return renderer(request).html(request, session, "account.html", data, status=422)
    user_id = user.id
    session.commit()
    with session.begin():
        owner = session.get(User, user_id)
        assert owner is not None
        key = create_api_key(session, owner, label or None)
    log.info("user %s created an API key", user.name)
    data = _account_data(session, user, newKey=key)
    if as_json:
        return json_page({"page": "account", "key": key, "apiKeys": data["apiKeys"]}, status=201)
    response = renderer(request).html(request, session, "account.html", data, status=201)
    response.headers["Cache-Control"] = "no-store"  # the page holds a secret
    return response


@router.post("/account/keys/{key_id}/revoke")
def account_revoke_key(request: Request, session: SessionDep, key_id: str, csrf_token: Field = "") -> Response:
    """Revoke one of the user's keys (browsers signed in with it are signed out)."""
    as_json = wants_json(request)
    user = _signed_in(request, session)
    check_csrf(request, session, csrf_token)
    user_id = user.id
    session.commit()
    with session.begin():
        owner = session.get(User, user_id)
        assert owner is not None
        done = revoke_api_key(session, owner, key_id)
    if not done:
        raise NotFound("no such API key of yours", field="keyId")
    if as_json:
        return json_page({"page": "account", "revoked": key_id})
    return redirect(request, "/account")


@router.post("/account/password")
def account_password(
    request: Request, session: SessionDep, password: Field = "", new_password: Field = "", csrf_token: Field = ""
) -> Response:
    """Set a new password (the current one is needed when there is one); other browsers are signed out."""
    as_json = wants_json(request)
    user = _signed_in(request, session)
    check_csrf(request, session, csrf_token)
    errors: dict[str, str] = {}
    status = 422
    if user.password_hash and authenticate(session, user.name, password) is None:
        errors["password"], status = "The current password is wrong.", 403
    else:
        user_id = user.id
        session.commit()
        try:
            with session.begin():
                owner = session.get(User, user_id)
                assert owner is not None
                set_password(session, owner, new_password)
        except UserError as exc:
            errors["new_password"] = exc.message
    if errors:
        if as_json:
            field, message = next_error(errors)
            return error_response(status, message, field)
        return renderer(request).html(
            request, session, "account.html", _account_data(session, user, errors=errors), status=status
        )
    fresh = session.get(User, user.id)
    assert fresh is not None
    sess = manager(request).load(request)
    if sess.user_id:
        sess.sign_in_password(fresh)  # keep this browser signed in under the new fingerprint
    if as_json:
        response = json_page({"page": "account", "passwordChanged": True})
        manager(request).save(request, response)
        return response
    return redirect(request, "/account")
