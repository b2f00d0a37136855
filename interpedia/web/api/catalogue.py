"""Models, source sets and the global catalogue: ``/api/model/*``, ``/api/source-set/*``, ``/api/global``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from interpedia.db.tables import (
    ExplanationModelType,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    SourceRelease,
)
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
from interpedia.store.features import model_json, source_json, source_set_json
from interpedia.store.formats import iso
from interpedia.web.deps import OptionalUser, RequiredUser, SessionDep
from interpedia.web.schemas import ModelGetBody, ModelNewBody, SourceSetNewBody

router = APIRouter(tags=["catalogue"])


def _source_set_doc(session: Any, set_row: Any) -> dict[str, Any]:
    doc = source_set_json(set_row)
    doc["sources"] = [source_json(s) for s in list_sources(session, set_row)]
    return doc


@router.post("/model/new", summary="Create a model")
def model_new(body: ModelNewBody, session: SessionDep, user: RequiredUser) -> dict[str, Any]:
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
    return model_json(model)


@router.post("/model/get", summary="A model and its source sets")
def model_get(body: ModelGetBody, session: SessionDep, user: OptionalUser) -> dict[str, Any]:
    """The model with its source sets and their sources."""
    model = get_model(session, body.id)
    doc = model_json(model)
    doc["sourceSets"] = [_source_set_doc(session, s) for s in list_source_sets(session, model.id)]
    return doc


@router.post("/model/list", summary="All visible models")
def model_list(session: SessionDep, user: OptionalUser) -> list[dict[str, Any]]:
    """Every public or unlisted model."""
    return [model_json(m) for m in list_models(session)]


@router.get("/source-set/{modelId}/{name}", summary="A source set with its sources")
def source_set_get(modelId: str, name: str, session: SessionDep, user: OptionalUser) -> dict[str, Any]:
    """The source set ``name`` of model ``modelId``."""
    return _source_set_doc(session, get_source_set(session, modelId, name))


@router.post("/source-set/new", summary="Create a source set")
def source_set_new(body: SourceSetNewBody, session: SessionDep, user: RequiredUser) -> dict[str, Any]:
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
    return _source_set_doc(session, row)


def _rows(session: Any, table: Any) -> list[dict[str, Any]]:
    out = []
    for row in session.scalars(select(table).order_by(table.name)):
        doc = {}
        for col in table.__table__.columns:
            head, *rest = col.key.split("_")
            value = getattr(row, col.key)
            doc[head + "".join(p.title() for p in rest)] = iso(value) if hasattr(value, "isoformat") else value
        out.append(doc)
    return out


@router.post("/global", summary="Catalogue bootstrap")
@router.get("/global", include_in_schema=False)
def global_catalogue(session: SessionDep, user: OptionalUser) -> dict[str, Any]:
    """Models, releases, explanation types and models, score types and models."""
    return {
        "models": [model_json(m) for m in list_models(session)],
        "explanationTypes": _rows(session, ExplanationType),
        "explanationModels": _rows(session, ExplanationModelType),
        "releases": _rows(session, SourceRelease),
        "explanationScoreTypes": _rows(session, ExplanationScoreType),
        "explanationScoreModelTypes": _rows(session, ExplanationScoreModel),
    }
