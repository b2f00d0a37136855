"""Models, source sets and the global catalogue: ``/api/model/*``, ``/api/source-set/*``, ``/api/global``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.store.catalogue import (
    create_model,
    create_source_set,
    ensure_source,
    get_model,
    get_source_set,
    list_models,
    list_source_sets,
    list_sources,
)
from interpedia.store.catalogue import global_catalogue as store_global_catalogue
from interpedia.store.documents import (
    SourceSetWithSourcesDoc,
    model_json,
    model_with_sets_json,
    source_set_with_sources_json,
)
from interpedia.store.rows import SourceSet
from interpedia.web.deps import OptionalUser, RequiredUser, SessionDep
from interpedia.web.schemas import ModelGetBody, ModelNewBody, SourceSetNewBody
from interpedia.web.wire import json_response

router = APIRouter(tags=["catalogue"])


def _source_set_doc(session: Session, set_row: SourceSet) -> SourceSetWithSourcesDoc:
    return source_set_with_sources_json(set_row, list_sources(session, set_row))


@router.post("/model/new", summary="Create a model")
def model_new(body: ModelNewBody, session: SessionDep, user: RequiredUser) -> Response:
    """Create a model owned by the caller; 409 when the id is taken."""
    with session.begin_nested() if session.in_transaction() else session.begin():
        model = create_model(
            session,
            body.id,
            layers=body.layers,
            display_name=body.displayName,
            creator_id=user.id,
            website=body.url,
            owner=user.name,
        )
    session.commit()
    return json_response(model_json(model))


@router.post("/model/get", summary="A model and its source sets")
def model_get(body: ModelGetBody, session: SessionDep, user: OptionalUser) -> Response:
    """The model with its source sets and their sources."""
    model = get_model(session, body.id)
    sets = [_source_set_doc(session, s) for s in list_source_sets(session, model.id)]
    return json_response(model_with_sets_json(model, sets))


@router.post("/model/list", summary="All visible models")
def model_list(session: SessionDep, user: OptionalUser) -> Response:
    """Every public or unlisted model."""
    return json_response([model_json(m) for m in list_models(session)])


@router.get("/source-set/{modelId}/{name}", summary="A source set with its sources")
def source_set_get(modelId: str, name: str, session: SessionDep, user: OptionalUser) -> Response:
    """The source set ``name`` of model ``modelId``."""
    return json_response(_source_set_doc(session, get_source_set(session, modelId, name)))


@router.post("/source-set/new", summary="Create a source set")
def source_set_new(body: SourceSetNewBody, session: SessionDep, user: RequiredUser) -> Response:
    """Create a source set on an existing model, owned by the caller (who can then upload into it)."""
    with session.begin_nested() if session.in_transaction() else session.begin():
        row = create_source_set(
            session,
            body.modelId,
            body.name,
            description=body.description or "",
            creator_id=user.id,
            creator_name=user.name,
            urls=[body.url] if body.url else [],
        )
        # Like neuronpedia.org: one source per layer of the model, ready for uploads.
        for layer in range(get_model(session, body.modelId).layers):
            ensure_source(session, body.modelId, f"{layer}-{body.name}", creator_id=user.id)
    session.commit()
    return json_response(_source_set_doc(session, row))


@router.post("/global", summary="Catalogue bootstrap")
@router.get("/global", summary="Catalogue bootstrap (GET)")
def global_catalogue(session: SessionDep, user: OptionalUser) -> Response:
    """Models, releases, explanation types and models, score types and models."""
    return json_response(store_global_catalogue(session))
