"""Steering vectors: ``/api/vector/new``, ``/get``, ``/list-owned``, ``/delete`` with neuronpedia.org's bodies.

A vector is a feature with ``has_vector`` in the auto-created source ``<layer>-neuronpedia-<hook suffix>``;
it can then be steered with (``/api/steer``) and tested on text (``/api/activation/new``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field, StrictStr
from sqlalchemy.exc import IntegrityError

from interpedia.errors import Conflict, NotFound
from interpedia.store.formats import parse_index
from interpedia.store.vectors import (
    MAX_VECTOR_LENGTH,
    create_vector,
    delete_vector,
    get_vector_feature,
    owned_vectors,
    vector_json,
)
from interpedia.web.deps import OptionalUser, RequiredUser, SessionDep, SettingsDep, write_transaction
from interpedia.web.urls import absolute_url, page_path
from interpedia.web.wire import Body, Finite, Index, Int, json_response

router = APIRouter(tags=["vectors"])


class VectorNewBody(Body):
    """``/api/vector/new``."""

    modelId: StrictStr
    layerNumber: Int
    hookType: StrictStr
    vector: Annotated[list[Finite], Field(min_length=1, max_length=MAX_VECTOR_LENGTH)]
    vectorDefaultSteerStrength: Finite | None = 10.0
    vectorLabel: StrictStr


class VectorRefBody(Body):
    """``/api/vector/get`` and ``/delete``."""

    modelId: StrictStr
    source: StrictStr
    index: Index


def _forget(request: Request) -> None:
    service = getattr(request.app.state, "inference", None)
    if service is not None:
        service.forget()  # the inference service caches which features are vectors


@router.post("/vector/new", summary="Upload a steering vector")
def vector_new(body: VectorNewBody, request: Request, user: RequiredUser, settings: SettingsDep) -> Response:
    """``{message, url, id: {modelId, source, index}, vector: {...}}``."""
    strength = 10.0 if body.vectorDefaultSteerStrength is None else body.vectorDefaultSteerStrength
    for attempt in range(5):
        try:
            with write_transaction(request) as session:
                source, feature = create_vector(
                    session,
                    user,
                    body.modelId,
                    body.layerNumber,
                    body.hookType,
                    body.vector,
                    body.vectorLabel,
                    strength,
                )
                doc = vector_json(body.modelId, source.name, feature)
            break
        except IntegrityError:  # another upload took the same index
            if attempt == 4:
                raise Conflict("could not allocate an index for the vector; try again") from None
    _forget(request)
    url = absolute_url(request, page_path(body.modelId, doc["source"], doc["index"]))
    return json_response(
        {
            "message": "vector created",
            "url": url,
            "id": {"modelId": body.modelId, "source": doc["source"], "index": doc["index"]},
            "vector": doc,
        }
    )


@router.post("/vector/get", summary="A steering vector")
def vector_get(body: VectorRefBody, session: SessionDep, user: OptionalUser) -> Response:
    """``{vector: {modelId, layer, index, vectorLabel, hookName, vector, vectorDefaultSteerStrength}}``."""
    index = parse_index(body.index)
    feature = get_vector_feature(session, body.modelId, body.source, index)
    if feature is None:
        raise NotFound(f"vector {body.modelId}/{body.source}/{index} not found", "index")
    return json_response({"vector": vector_json(body.modelId, body.source, feature)})


@router.post("/vector/list-owned", summary="Your steering vectors")
def vector_list_owned(session: SessionDep, user: RequiredUser) -> Response:
    """``{vectors: [...]}``, newest first."""
    return json_response({"vectors": owned_vectors(session, user)})


@router.post("/vector/delete", summary="Delete one of your steering vectors")
def vector_delete(body: VectorRefBody, request: Request, user: RequiredUser) -> Response:
    """``{message}``; 404 when there is no such vector, 403 when it is someone else's."""
    index = parse_index(body.index)
    with write_transaction(request) as session:
        delete_vector(session, user, body.modelId, body.source, index)
    _forget(request)
    return json_response({"message": f"deleted vector {body.modelId}/{body.source}/{index}"})
