"""``/api/umap`` (a source's UMAP map) and ``/api/cossim`` (decoder neighbours in another source)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field, StrictStr

from interpedia.analysis.cossim import MAX_RESULTS, topk_cossim
from interpedia.analysis.decoder import DirectionCache
from interpedia.analysis.queries import MAX_UMAP_LAYERS, umap_points
from interpedia.store.formats import parse_index
from interpedia.web.deps import OptionalUser, SessionDep
from interpedia.web.wire import Body, Index, json_response

router = APIRouter(tags=["analysis"])
_cache_lock = threading.Lock()


class UmapBody(Body):
    """``POST /api/umap``."""

    modelId: StrictStr
    layers: Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_UMAP_LAYERS)]


class CossimBody(Body):
    """``POST /api/cossim``."""

    modelId: StrictStr
    source: StrictStr
    index: Index
    targetModelId: StrictStr
    targetSourceId: StrictStr
    numResults: Annotated[int, Field(ge=1, le=MAX_RESULTS)] = 10


def _directions(request: Request) -> DirectionCache:
    with _cache_lock:
        cache = getattr(request.app.state, "decoder_directions", None)
        if cache is None:
            cache = DirectionCache()
            request.app.state.decoder_directions = cache
        return cache  # type: ignore[no-any-return]


@router.post("/umap", summary="UMAP coordinates of sources' features")
def umap(body: UmapBody, session: SessionDep, user: OptionalUser) -> Response:
    """``{layer: [{id, layer, index, description, umap_cluster, umap_x, umap_y, umap_log_feature_sparsity}]}``.

    One point per feature with coordinates (``interpedia umap``), with its best explanation;
    ``id`` and ``description`` are null for a feature with no explanation.
    """
    return json_response(umap_points(session, body.modelId, body.layers))


@router.post("/cossim", summary="Top features of another source by decoder cosine similarity")
def cossim(body: CossimBody, request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """``{feature, topk_decoder_cossim_features: [{feature: {model, source, index}, cosine_similarity}]}``."""
    return json_response(
        topk_cossim(
            session,
            _directions(request),
            body.modelId,
            body.source,
            parse_index(body.index),
            body.targetModelId,
            body.targetSourceId,
            body.numResults,
        )
    )
