"""Feature lists: every ``/api/list/*`` route of neuronpedia.org, with its bodies and answers.

``new``, ``new-with-features``, ``add-features``, ``remove``, ``edit-feature``, ``update``, ``delete``
and ``list`` need an API key; ``get`` does not. Writes check everything first and then run in one
transaction, so a bad request writes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import StrictStr

from interpedia.errors import UserError
from interpedia.store import lists as store
from interpedia.store.formats import parse_index
from interpedia.web.deps import OptionalUser, RequiredUser, SessionDep, SettingsDep, write_transaction
from interpedia.web.urls import public_origin
from interpedia.web.wire import Body, Index, NonBlank, json_response

router = APIRouter(tags=["lists"])


class ListFeatureIn(Body):
    """A feature to put in a list, with an optional note."""

    modelId: StrictStr
    layer: StrictStr
    index: Index
    description: StrictStr | None = None


class ListNewBody(Body):
    """``/api/list/new``."""

    name: NonBlank
    description: StrictStr | None = ""
    testText: NonBlank | None = None


class ListNewWithFeaturesBody(ListNewBody):
    """``/api/list/new-with-features``."""

    features: list[ListFeatureIn] = []


class ListAddBody(Body):
    """``/api/list/add-features``."""

    listId: StrictStr
    featuresToAdd: list[ListFeatureIn]


class ListFeatureRefBody(Body):
    """``/api/list/remove``."""

    listId: StrictStr
    modelId: StrictStr
    layer: StrictStr
    index: Index


class ListEditFeatureBody(ListFeatureRefBody):
    """``/api/list/edit-feature``."""

    description: StrictStr | None = ""


class ListUpdateBody(Body):
    """``/api/list/update``."""

    listId: StrictStr
    name: NonBlank
    description: StrictStr | None = ""
    defaultTestText: StrictStr | None = None


class ListIdBody(Body):
    """``/api/list/get`` and ``/api/list/delete``."""

    listId: StrictStr


def _refs(items: list[ListFeatureIn], field: str) -> list[store.FeatureRef]:
    out = []
    for i, item in enumerate(items):
        try:
            index = parse_index(item.index)
        except UserError as exc:
            exc.field = f"{field}[{i}].index"
            raise
        out.append(store.FeatureRef(item.modelId, item.layer, index, item.description))
    return out


@router.post("/list/new", summary="Create an empty list")
def list_new(body: ListNewBody, request: Request, user: RequiredUser) -> Response:
    """The new list with its ``url``."""
    with write_transaction(request) as session:
        lst = store.create_list(session, user, body.name, body.description, body.testText)
        doc = store.list_json(lst, user.name, public_origin(request))
    return json_response(doc)


@router.post("/list/new-with-features", summary="Create a list holding the given features")
def list_new_with_features(
    body: ListNewWithFeaturesBody, request: Request, user: RequiredUser, settings: SettingsDep
) -> Response:
    """The new list with its ``url``; an unknown feature or too many features is a 4xx and creates nothing."""
    refs = _refs(body.features, "features")
    if len(refs) > settings.list_max_features:
        raise store.TooMany(
            f"a list holds at most {settings.list_max_features:,} features "
            f"(INTERPEDIA_LIST_MAX_FEATURES); {len(refs):,} were sent",
            field="features",
        )
    with write_transaction(request) as session:
        lst = store.create_list(session, user, body.name, body.description, body.testText)
        store.add_features(session, lst, user, refs, max_features=settings.list_max_features, field="features")
        doc = store.list_json(lst, user.name, public_origin(request))
    return json_response(doc)


@router.post("/list/add-features", summary="Add features to one of your lists (at most 100 per call)")
def list_add_features(body: ListAddBody, request: Request, user: RequiredUser, settings: SettingsDep) -> Response:
    """The memberships added (features already in the list are skipped)."""
    if len(body.featuresToAdd) > store.MAX_ADD_PER_CALL:
        raise store.TooMany(
            f"Too many features to add. Max is {store.MAX_ADD_PER_CALL} at a time.", field="featuresToAdd"
        )
    refs = _refs(body.featuresToAdd, "featuresToAdd")
    with write_transaction(request) as session:
        lst = store.list_for_change(session, body.listId, user)
        added = store.add_features(session, lst, user, refs, max_features=settings.list_max_features)
    return json_response(added)


@router.post("/list/remove", summary="Remove a feature from a list")
def list_remove(body: ListFeatureRefBody, request: Request, user: RequiredUser) -> Response:
    """The removed membership (an admin may remove from anyone's list)."""
    with write_transaction(request) as session:
        lst = store.list_for_change(session, body.listId, user, removal=True)
        doc = store.remove_feature(session, lst, body.modelId, body.layer, body.index)
    return json_response(doc)


@router.post("/list/edit-feature", summary="Change the note on a feature of your list")
def list_edit_feature(body: ListEditFeatureBody, request: Request, user: RequiredUser) -> Response:
    """The updated membership."""
    with write_transaction(request) as session:
        lst = store.list_for_change(session, body.listId, user)
        doc = store.edit_feature(session, lst, body.modelId, body.layer, body.index, body.description)
    return json_response(doc)


@router.post("/list/update", summary="Rename a list, change its description or shared test text")
def list_update(body: ListUpdateBody, request: Request, user: RequiredUser) -> Response:
    """The updated list."""
    with write_transaction(request) as session:
        lst = store.list_for_change(session, body.listId, user)
        store.update_list(session, lst, body.name, body.description, body.defaultTestText)
        doc = store.list_json(lst, None, public_origin(request))
    return json_response(doc)


@router.post("/list/delete", summary="Delete a list")
def list_delete(body: ListIdBody, request: Request, user: RequiredUser) -> Response:
    """``true`` (an admin may delete anyone's list)."""
    with write_transaction(request) as session:
        store.delete_list(session, store.list_for_change(session, body.listId, user, removal=True))
    return json_response(True)


@router.post("/list/get", summary="A list with its features, their explanations and top examples")
def list_get(body: ListIdBody, request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """The list, its ``neurons`` (memberships, each with its ``neuron``) and ``url``."""
    return json_response(store.list_details(session, store.get_list(session, body.listId), public_origin(request)))


@router.post("/list/list", summary="Your lists")
def list_list(session: SessionDep, user: RequiredUser) -> Response:
    """A JSON list of your lists, oldest first."""
    return json_response([store.list_json(lst) for lst in store.user_lists(session, user)])
