"""List pages: ``/list/{id}`` (features with their notes, explanations, top example, and the shared
test text run live), and the forms that create and edit lists (CSRF-checked, owner only; an admin
may also remove features and delete a list).

The JSON twin of ``/list/{id}`` is the ``/api/list/get`` document plus what the page shows about
permissions and live inference.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.errors import Unauthorized
from interpedia.inference.availability import inference_availability
from interpedia.store import lists as store
from interpedia.store.catalogue import get_model, get_source
from interpedia.store.community import list_community
from interpedia.store.documents.list import ListNeuronDoc, MemberWithNeuronDoc
from interpedia.store.formats import parse_index
from interpedia.store.rows import User
from interpedia.store.users import can_modify
from interpedia.web.deps import SessionDep, inference_service, write_transaction
from interpedia.web.pages.dashboard import token_strip
from interpedia.web.pages.forms import _safe_next
from interpedia.web.pages.render import done, page, page_url, split_json
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user
from interpedia.web.urls import public_origin

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute, include_in_schema=False)

Field = Annotated[str, Form()]


def _user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise Unauthorized("sign in first (/signin)")
    return user


def _done(request: Request, url: str, doc: Any, status: int = 200) -> Response:
    """After a form: the JSON result for API-style callers, else a redirect (post/redirect/get)."""
    return done(request, url, doc, status=status)


def _mark_live(session: Session, settings: Settings, neurons: list[MemberWithNeuronDoc], hosts: Any) -> str | None:
    """Set each feature's ``inferenceEnabled`` from what this server can run; the first reason why not."""
    status: dict[tuple[str, str], dict[str, Any]] = {}
    for item in neurons:
        neuron = item["neuron"]
        key = (neuron["modelId"], neuron["layer"])
        if key not in status:
            status[key] = inference_availability(
                session, settings, get_model(session, key[0]), get_source(session, *key), hosts
            )
        neuron["inferenceEnabled"] = status[key]["available"]
    return next((s["reason"] for s in status.values() if not s["available"]), None)


def _live_note(neurons: list[MemberWithNeuronDoc], test_text: str | None, reason: str | None) -> str | None:
    """Why the shared test text is not run live, or None when it is."""
    if not neurons:
        return "Add features to this list to test text on them."
    if not any(n["neuron"]["inferenceEnabled"] for n in neurons):
        return f"Live activations are off for these features. {reason or ''}".strip()
    if not test_text:
        return "This list has no test text yet; its owner can set one below."
    return None


def _top_strip(neuron: ListNeuronDoc) -> Any:
    acts = neuron.get("activations") or []
    if not acts:
        return None
    act = acts[0]
    values = act.get("values") or []
    if not values:
        return None
    peak = max(values)
    scale = neuron.get("maxActApprox") or peak or 1.0
    return token_strip(act["tokens"], values, values.index(peak), 1.0 / scale if scale > 0 else 1.0)


@router.get("/list/{list_id}")
def list_page(request: Request, session: SessionDep, list_id: str) -> Response:
    """A list: its features with notes and explanations; the shared test text run live where possible."""
    list_id, as_json = split_json(list_id)
    lst = store.get_list(session, list_id)
    user = current_user(request)
    doc = store.list_details(session, lst, public_origin(request))
    reason = _mark_live(session, request.app.state.settings, doc["neurons"], inference_service(request))
    live_note = _live_note(doc["neurons"], lst.default_test_text, reason)
    data = {
        "page": "list",
        "list": doc,
        "canEdit": user is not None and user.id == lst.user_id,
        "canRemove": can_modify(user, lst.user_id),
        "liveNote": live_note,
        "community": list_community(session, lst.id, user),
    }
    return page(
        request,
        session,
        "list.html",
        data,
        as_json=as_json,
        html_view=lambda: {
            "strips": {i: _top_strip(n["neuron"]) for i, n in enumerate(doc["neurons"])},
            "page_data": {"testText": lst.default_test_text if live_note is None else None},
        },
    )


@router.post("/list/new")
def list_new(
    request: Request,
    session: SessionDep,
    name: Field = "",
    description: Field = "",
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    next: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Create a list (and put the feature named by ``modelId``/``layer``/``index`` in it, when given)."""
    user = _user(request)
    check_csrf(request, session, csrf_token)
    settings = request.app.state.settings
    refs = [store.FeatureRef(modelId, layer, _index(index))] if modelId or layer or index else []
    with write_transaction(request) as tx:
        lst = store.create_list(tx, user, name, description)
        if refs:
            store.add_features(tx, lst, user, refs, max_features=settings.list_max_features, field="feature")
        doc = store.list_json(lst, user.name, public_origin(request))
    log.info("user %s created list %s", user.name, doc["id"])
    return _done(request, _safe_next(next) if next else page_url("list", doc["id"]), doc, status=201)


def _index(value: str) -> int:
    return parse_index(value.strip())


@router.post("/list/add")
def list_add(
    request: Request,
    session: SessionDep,
    listId: Field = "",
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    description: Field = "",
    next: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Put a feature in one of your lists (the feature page's "add to list")."""
    list_id = listId
    user = _user(request)
    check_csrf(request, session, csrf_token)
    settings = request.app.state.settings
    ref = store.FeatureRef(modelId, layer, _index(index), description or None)
    with write_transaction(request) as tx:
        lst = store.list_for_change(tx, list_id, user)
        added = store.add_features(tx, lst, user, [ref], max_features=settings.list_max_features, field="feature")
    return _done(request, _safe_next(next) if next else page_url("list", list_id), added)


@router.post("/list/{list_id}/remove")
def list_remove(
    request: Request,
    session: SessionDep,
    list_id: str,
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Take a feature out of the list (owner or admin)."""
    user = _user(request)
    check_csrf(request, session, csrf_token)
    with write_transaction(request) as tx:
        lst = store.list_for_change(tx, list_id, user, removal=True)
        doc = store.remove_feature(tx, lst, modelId, layer, index)
    return _done(request, page_url("list", list_id), doc)


@router.post("/list/{list_id}/edit-feature")
def list_edit_feature(
    request: Request,
    session: SessionDep,
    list_id: str,
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    description: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Change the note on one of the list's features (owner only)."""
    user = _user(request)
    check_csrf(request, session, csrf_token)
    with write_transaction(request) as tx:
        lst = store.list_for_change(tx, list_id, user)
        doc = store.edit_feature(tx, lst, modelId, layer, index, description)
    return _done(request, page_url("list", list_id), doc)


@router.post("/list/{list_id}/update")
def list_update(
    request: Request,
    session: SessionDep,
    list_id: str,
    name: Field = "",
    description: Field = "",
    defaultTestText: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Rename the list, change its description or its shared test text (owner only)."""
    user = _user(request)
    check_csrf(request, session, csrf_token)
    with write_transaction(request) as tx:
        lst = store.list_for_change(tx, list_id, user)
        store.update_list(tx, lst, name, description, defaultTestText)
        doc = store.list_json(lst)
    return _done(request, page_url("list", list_id), doc)


@router.post("/list/{list_id}/delete")
def list_delete(request: Request, session: SessionDep, list_id: str, csrf_token: Field = "") -> Response:
    """Delete the list (owner or admin)."""
    user = _user(request)
    check_csrf(request, session, csrf_token)
    with write_transaction(request) as tx:
        store.delete_list(tx, store.list_for_change(tx, list_id, user, removal=True))
    log.info("user %s deleted list %s", user.name, list_id)
    return _done(request, "/account", True)
