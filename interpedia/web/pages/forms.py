"""Sign-in with an API key, sign-out, and the creation forms ``/model/new`` and ``/sae/new``.

Forms are plain HTML posts with a CSRF token (see :mod:`interpedia.web.pages.session`); errors come
back next to their field. Each form also answers as JSON (``Accept: application/json``): the created
object, or the API's one error shape with ``field`` naming the wrong input.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.errors import Unauthorized, UserError
from interpedia.store.browse import source_set_with_counts
from interpedia.store.catalogue import (
    RESERVED_MODEL_IDS,
    create_model,
    create_source_set,
    ensure_source,
    get_model,
    list_models,
)
from interpedia.store.documents import model_json
from interpedia.store.rows import User
from interpedia.store.users import key_owner
from interpedia.web.deps import SessionDep
from interpedia.web.pages.render import done, form_error, form_page, page_url, redirect
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user, manager

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# First path segments the site uses itself: a model with one of these ids could never be reached.
RESERVED_IDS = RESERVED_MODEL_IDS
MAX_LAYERS = 127

Field = Annotated[str, Form()]


def _safe_next(target: str | None) -> str:
    """Only same-site paths: ``/x`` yes, ``//evil.example``, ``https://...`` and ``/\\t/evil`` no."""
    # Browsers drop tabs and newlines from URLs and read '\\' as '/', so those could make '//host'.
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)
    ):
        return "/"
    return target


def _signin_url(path: str) -> str:
    return "/signin?" + urlencode({"next": path})


def _form_page(
    request: Request,
    db: Session,
    template: str,
    name: str,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    **extra: Any,
) -> Response:
    data = {"page": name, "values": values, "errors": errors, **extra}
    return form_page(request, db, template, data, form_error(errors, status))


def _require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise Unauthorized("sign in first: paste an API key at /signin (interpedia apikey create --user NAME)")
    return user


# --- sign in / out --------------------------------------------------------------------------------


@router.get("/signin")
@router.get("/signin.json")
def signin_form(request: Request, session: SessionDep, next: str = "/") -> Response:
    """The sign-in form: paste an API key."""
    user = current_user(request)
    data = {"page": "signin", "next": _safe_next(next), "user": {"name": user.name} if user else None, "errors": {}}
    return form_page(request, session, "signin.html", data, as_json=request.url.path.endswith(".json"))


@router.post("/signin")
def signin(
    request: Request, session: SessionDep, api_key: Field = "", csrf_token: Field = "", next: Field = "/"
) -> Response:
    """Check the key and remember it in the signed session cookie."""
    check_csrf(request, session, csrf_token)
    key = api_key.strip()
    owner = key_owner(session, key) if key else None
    if owner is None:
        message = "Paste an API key." if not key else "This API key is not valid (or was revoked)."
        errors = {"api_key": message}
        data = {"page": "signin", "next": _safe_next(next), "user": None, "errors": errors}
        return form_page(request, session, "signin.html", data, form_error(errors, 401 if key else 422))
    manager(request).load(request).sign_in(owner.key_id, owner.user)
    data = {"page": "signin", "user": {"name": owner.user.name}, "next": _safe_next(next)}
    return done(request, _safe_next(next), data)


@router.post("/signout")
def signout(request: Request, session: SessionDep, csrf_token: Field = "") -> Response:
    """Forget the signed-in key."""
    check_csrf(request, session, csrf_token)
    manager(request).load(request).sign_out()
    return redirect(request, "/")


# --- new model ------------------------------------------------------------------------------------

_MODEL_FIELDS = ("id", "displayName", "owner", "layers")


@router.get("/model/new")
@router.get("/model/new.json")
def model_new_form(request: Request, session: SessionDep) -> Response:
    """The new-model form (sign-in needed: signed out, the page sends the browser to sign in)."""
    as_json = request.url.path.endswith(".json")
    user = current_user(request)
    values = {"id": "", "displayName": "", "owner": user.name if user else "", "layers": ""}
    data = {"page": "modelNew", "values": values, "errors": {}, "signedIn": user is not None}
    if user is None:
        return done(request, _signin_url("/model/new"), data, as_json=as_json)
    return form_page(request, session, "model_new.html", data, as_json=as_json)


@router.post("/model/new")
def model_new(
    request: Request,
    session: SessionDep,
    id: Field = "",
    displayName: Field = "",
    owner: Field = "",
    layers: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Create a model owned by the signed-in user, then go to its page."""
    user = _require_user(request)
    check_csrf(request, session, csrf_token)
    values = {"id": id.strip(), "displayName": displayName.strip(), "owner": owner.strip(), "layers": layers.strip()}
    errors: dict[str, str] = {}
    if not values["id"]:
        errors["id"] = "Enter a model id, e.g. gpt2-small."
    elif values["id"] in RESERVED_IDS:
        errors["id"] = f"'{values['id']}' is a path the site uses itself; choose another id."
    try:
        n_layers = int(values["layers"])
        if not 1 <= n_layers <= MAX_LAYERS:
            raise ValueError
    except ValueError:
        n_layers = 0
        errors["layers"] = f"Enter the number of layers, a whole number from 1 to {MAX_LAYERS}."
    if len(values["displayName"]) > 200:
        errors["displayName"] = "At most 200 characters."
    if len(values["owner"]) > 200:
        errors["owner"] = "At most 200 characters."
    model = None
    if not errors:
        session.commit()  # end the read transaction the user lookup opened
        try:
            with session.begin():
                model = create_model(
                    session,
                    values["id"],
                    layers=n_layers,
                    display_name=values["displayName"] or None,
                    creator_id=user.id,
                    owner=values["owner"] or user.name,
                )
        except UserError as exc:
            errors[exc.field if exc.field in _MODEL_FIELDS else "id"] = exc.message
    if errors or model is None:
        status = 409 if any("already exists" in m for m in errors.values()) else 422
        return _form_page(request, session, "model_new.html", "modelNew", values, errors, status=status, signedIn=True)
    url = page_url(model.id)
    return done(request, url, {"page": "modelNew", "model": model_json(model), "url": url}, status=201)


# --- new SAE set ----------------------------------------------------------------------------------

_SAE_FIELDS = ("modelId", "name", "description", "type", "creatorName")


def _model_choices(session: Session) -> list[dict[str, str]]:
    return [{"id": m.id, "displayName": m.display_name} for m in list_models(session)]


@router.get("/sae/new")
@router.get("/sae/new.json")
def sae_new_form(request: Request, session: SessionDep, model: str = "") -> Response:
    """The new-SAE-set form (sign-in needed: signed out, the page sends the browser to sign in)."""
    as_json = request.url.path.endswith(".json")
    user = current_user(request)
    values = {"modelId": model, "name": "", "description": "", "type": "", "creatorName": user.name if user else ""}
    data = {
        "page": "saeNew",
        "values": values,
        "errors": {},
        "models": _model_choices(session),
        "signedIn": user is not None,
    }
    if user is None:
        here = "/sae/new" + (f"?{urlencode({'model': model})}" if model else "")
        return done(request, _signin_url(here), data, as_json=as_json)
    return form_page(request, session, "sae_new.html", data, as_json=as_json)


@router.post("/sae/new")
def sae_new(
    request: Request,
    session: SessionDep,
    modelId: Field = "",
    name: Field = "",
    description: Field = "",
    type: Field = "",
    creatorName: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Create a source set (one source per model layer, ready for uploads), then go to its page."""
    user = _require_user(request)
    check_csrf(request, session, csrf_token)
    values = {
        "modelId": modelId.strip(),
        "name": name.strip(),
        "description": description.strip(),
        "type": type.strip(),
        "creatorName": creatorName.strip(),
    }
    errors: dict[str, str] = {}
    if not values["modelId"]:
        errors["modelId"] = "Choose a model."
    if not values["name"]:
        errors["name"] = "Enter an SAE set id, e.g. res-jb."
    for key, limit in (("description", 128), ("type", 100), ("creatorName", 200)):
        if len(values[key]) > limit:
            errors[key] = f"At most {limit} characters."
    set_row = None
    if not errors:
        session.commit()
        try:
            with session.begin():
                model = get_model(session, values["modelId"])
                set_row = create_source_set(
                    session,
                    model.id,
                    values["name"],
                    description=values["description"],
                    type=values["type"] or None,
                    creator_id=user.id,
                    creator_name=values["creatorName"] or user.name,
                )
                for layer in range(model.layers):
                    ensure_source(session, model.id, f"{layer}-{set_row.name}", creator_id=user.id)
        except UserError as exc:
            errors[exc.field if exc.field in _SAE_FIELDS else "name"] = exc.message
    if errors or set_row is None:
        status = 409 if any("already exists" in m for m in errors.values()) else 422
        return _form_page(
            request,
            session,
            "sae_new.html",
            "saeNew",
            values,
            errors,
            status=status,
            models=_model_choices(session),
            signedIn=True,
        )
    url = page_url(set_row.model_id, set_row.name)
    data = {"page": "saeNew", "sourceSet": source_set_with_counts(session, set_row), "url": url}
    return done(request, url, data, status=201)
