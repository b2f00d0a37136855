"""Feature and activation reads: ``/api/feature/...``, ``/api/features``, ``/api/activation/get``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import Response

from interpedia.errors import NotFound
from interpedia.store.activations import list_activations
from interpedia.store.feature_answers import answer_feature
from interpedia.store.features import feature_json, features_offset, get_feature_row
from interpedia.web.deps import CatalogueCacheDep, FeatureCacheDep, OptionalUser, SessionDep, request_scope
from interpedia.web.schemas import ActivationGetBody, FeatureRef, FeaturesOffsetBody
from interpedia.web.wire import INDEX_PATTERN, cache_control, etag_matches, json_response

router = APIRouter(tags=["features"])


@router.get(
    "/feature/{modelId}/{layer}/{index}",
    summary="A feature with its examples and explanations",
    responses={304: {"description": "Not modified: the If-None-Match header names the current ETag."}},
)
def get_feature(
    modelId: str,
    layer: str,
    index: Annotated[str, Path(pattern=INDEX_PATTERN)],
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    cache: FeatureCacheDep,
    catalogue: CatalogueCacheDep,
) -> Response:
    """The whole dashboard of ``/{modelId}/{layer}/{index}``; 404 when any part is unknown. The answer carries an
    ``ETag``; asked again with it in ``If-None-Match``, an unchanged feature answers 304 without a body."""
    answer = answer_feature(session, modelId, layer, index, cache=cache, catalogue=catalogue)
    # Anyone may keep a public feature, but must ask again before using it (a write may change it any time);
    # a private one only the caller's own client.
    headers = {"ETag": answer.etag, "Cache-Control": cache_control(answer.private)}
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        response = Response(status_code=304, headers=headers)
    else:
        response = Response(answer.body(), media_type="application/json", headers=headers)
    # Done with the database: give the connection back here, in the handler's thread, rather than in one more
    # thread hop after the response (the site's most frequent request).
    request_scope(request).close()
    return response


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
