"""Feature and activation reads: ``/api/feature/...``, ``/api/features``, ``/api/activation/get``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from fastapi.responses import Response

from interpedia.errors import NotFound
from interpedia.store.features import feature_json, features_offset, get_feature_row, list_activations, read_feature
from interpedia.web.deps import OptionalUser, SessionDep
from interpedia.web.schemas import ActivationGetBody, FeatureRef, FeaturesOffsetBody
from interpedia.web.wire import INDEX_PATTERN, json_response

router = APIRouter(tags=["features"])


@router.get("/feature/{modelId}/{layer}/{index}", summary="A feature with its examples and explanations")
def get_feature(
    modelId: str,
    layer: str,
    index: Annotated[str, Path(pattern=INDEX_PATTERN)],
    session: SessionDep,
    user: OptionalUser,
) -> Response:
    """The whole dashboard of ``/{modelId}/{layer}/{index}``; 404 when any part is unknown."""
    return json_response(read_feature(session, modelId, layer, index).doc)


@router.post("/features", summary="Several features in one call (order preserved)")
def get_features(
    body: Annotated[list[FeatureRef], Body(max_length=1000)], session: SessionDep, user: OptionalUser
) -> Response:
    """Each requested feature that exists, in request order; unknown ones are left out."""
    out = []
    for ref in body:
        try:
            model, source, feature = get_feature_row(session, ref.modelId, ref.layer, ref.index)
        except NotFound:
            continue
        out.append(feature_json(session, model, source, feature, max_acts=ref.maxActsToReturn, with_catalogue=False))
    return json_response(out)


@router.post("/features-offset", summary="A page of a source's features")
def get_features_offset(body: FeaturesOffsetBody, session: SessionDep, user: OptionalUser) -> Response:
    """Features of a source from ``offset`` on, by index, with explanations (20 per page)."""
    return json_response(features_offset(session, body.modelId, body.layer, body.offset))


@router.post("/activation/get", summary="All examples of a feature")
def get_activations(body: ActivationGetBody, session: SessionDep, user: OptionalUser) -> Response:
    """Every stored example of the feature, largest first."""
    _, _, feature = get_feature_row(session, body.modelId, body.source, body.index)
    return json_response(list_activations(session, body.modelId, body.source, feature))
