"""Explanation search by meaning: ``/api/explanation/search``, ``/search-model``, ``/search-release``,
``/search-all`` (20 results per page, ``hasMore``/``nextOffset``, ``cosine_similarity`` per result)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BeforeValidator, Field, StrictInt, StrictStr

from interpedia.errors import Unavailable
from interpedia.search.embeddings import EmbeddingError, get_embedder
from interpedia.search.query import SearchScope, search_explanations
from interpedia.store.formats import dumps
from interpedia.web.deps import OptionalUser, SessionDep, SettingsDep
from interpedia.web.wire import Body, integral

router = APIRouter(tags=["explanation search"])

Query = Annotated[StrictStr, Field(min_length=3, max_length=1000, description="What to look for, in words.")]
Offset = Annotated[
    StrictInt, Field(ge=0, le=980, description="Results to skip (pages of 20)."), BeforeValidator(integral)
]


class SearchBody(Body):
    """``POST /api/explanation/search``: some sources (``layers``) of one model; ``[]`` means all of them."""

    modelId: StrictStr
    layers: list[StrictStr] = Field(default_factory=list, max_length=1000)
    query: Query
    offset: Offset = 0


class SearchModelBody(Body):
    """``POST /api/explanation/search-model``."""

    modelId: StrictStr
    query: Query
    offset: Offset = 0


class SearchReleaseBody(Body):
    """``POST /api/explanation/search-release``."""

    releaseName: StrictStr
    query: Query
    offset: Offset = 0


class SearchAllBody(Body):
    """``POST /api/explanation/search-all``."""

    query: Query
    offset: Offset = 0


def _run(session: Any, settings: Any, user: Any, body: Body, scope: SearchScope, query: str, offset: int) -> Response:
    try:
        doc = search_explanations(
            session,
            settings,
            get_embedder(settings),
            query=query,
            scope=scope,
            offset=offset,
            user=user,
            request=body.model_dump(),
        )
    except EmbeddingError as exc:
        raise Unavailable(f"explanation search is unavailable: {exc}") from None
    return Response(dumps(doc), media_type="application/json")


@router.post("/explanation/search", summary="Search explanations in some sources of a model")
def search(body: SearchBody, session: SessionDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """Explanations nearest the query in meaning within the given sources."""
    scope = SearchScope(model_id=body.modelId, source_names=tuple(body.layers))
    return _run(session, settings, user, body, scope, body.query, body.offset)


@router.post("/explanation/search-model", summary="Search explanations in a model")
def search_model(body: SearchModelBody, session: SessionDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """Explanations nearest the query in meaning within every source of the model."""
    return _run(session, settings, user, body, SearchScope(model_id=body.modelId), body.query, body.offset)


@router.post("/explanation/search-release", summary="Search explanations in a release")
def search_release(body: SearchReleaseBody, session: SessionDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """Explanations nearest the query in meaning within the release's source sets."""
    return _run(session, settings, user, body, SearchScope(release=body.releaseName), body.query, body.offset)


@router.post("/explanation/search-all", summary="Search every explanation")
def search_all(body: SearchAllBody, session: SessionDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """Explanations nearest the query in meaning, across everything visible."""
    return _run(session, settings, user, body, SearchScope(), body.query, body.offset)
