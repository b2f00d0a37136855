"""The ``/search-explanations`` page: explanations found by meaning, across everything, a model (some of its
sources) or a release, 20 per page, each with its cosine similarity and a link to its feature.

The search itself is :func:`interpedia.search.query.search_explanations`, the API's code path. The
embedder is the process-wide one from :func:`get_embedder`: the local model is loaded once and stays
in memory, and showing the empty form starts loading it in the background so the first query does
not pay for it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.errors import UserError
from interpedia.search.embeddings import EmbeddingError, get_embedder, preload_embedder
from interpedia.search.index import MAX_CANDIDATES
from interpedia.search.query import MAX_QUERY, MIN_QUERY, PAGE_SIZE, SearchScope, search_explanations
from interpedia.store.catalogue import list_models, listed_release_names
from interpedia.store.explanations import explanation_presence
from interpedia.web.deps import SessionDep, SettingsDep
from interpedia.web.pages.render import form_page, wants_json
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import current_user

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PATH = "/search-explanations"
MAX_SOURCES = 100


def _split_sources(values: list[str]) -> tuple[str, ...]:
    """``?sources=a&sources=b`` and ``?sources=a,b`` both give ``('a', 'b')``, blanks dropped, order kept."""
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return tuple(out)


def _scope(model_id: str, release: str, sources: tuple[str, ...]) -> SearchScope:
    if model_id and release:
        raise UserError("search either a model or a release, not both", field="releaseName")
    if sources and not model_id:
        raise UserError("sources belong to a model: choose the model too", field="modelId")
    if len(sources) > MAX_SOURCES:
        raise UserError(f"at most {MAX_SOURCES} sources", field="sources")
    return SearchScope(model_id=model_id or None, source_names=sources, release=release or None)


def _choices(session: Session) -> dict[str, list[str]]:
    """The models and releases the scope selectors offer (the ones the viewer may list)."""
    return {"models": [m.id for m in list_models(session)], "releases": listed_release_names(session)}


def _page_link(params: dict[str, Any], offset: int) -> str:
    query = {k: v for k, v in params.items() if v not in ("", None, ())}
    if query.get("sources"):
        query["sources"] = ",".join(query["sources"])
    query["offset"] = offset
    return f"{PATH}?{urlencode(query)}"


def _empty_reason(session: Session) -> str | None:
    """Why a search found nothing, when the reason is that no explanation has an embedding yet."""
    any_explanation, any_embedded = explanation_presence(session)
    if any_embedded:
        return None
    if not any_explanation:
        return "There are no explanations yet: run `interpedia explain --source MODEL/SOURCE` to make some."
    return "No explanation has an embedding yet, so none can be found by meaning: run `interpedia embed --missing`."


@router.get(PATH)
@router.get(PATH + ".json")
def search_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    q: str = "",
    modelId: str = "",
    releaseName: str = "",
    sources: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    offset: Annotated[int, Query(ge=0, le=MAX_CANDIDATES - PAGE_SIZE)] = 0,
) -> Response:
    """Search explanations by meaning; without ``q`` the page shows the empty form."""
    q, model_id, release = q.strip(), modelId.strip(), releaseName.strip()
    source_names = _split_sources(sources)
    params = {"q": q, "modelId": model_id, "releaseName": release, "sources": source_names}
    data: dict[str, Any] = {
        "page": "searchExplanations",
        "request": {**params, "sources": list(source_names), "offset": offset},
        "search": None,
        "error": None,
        "notice": None,
    }
    error: UserError | None = None
    if q:
        try:
            if len(q) > MAX_QUERY or len(q) < MIN_QUERY:  # checked here too: the form echoes the field
                raise UserError(f"a query has {MIN_QUERY} to {MAX_QUERY} characters", field="q")
            scope = _scope(model_id, release, source_names)
            doc = search_explanations(
                session,
                settings,
                get_embedder(settings),
                query=q,
                scope=scope,
                offset=offset,
                user=current_user(request, session),
                request=data["request"],
            )
        except EmbeddingError as exc:  # first: it is a UserError too, with a message of its own here
            error = UserError(f"Explanation search is unavailable: {exc}", status=503)
        except UserError as exc:
            # The form's names: the search code calls the query 'query' and the sources 'layers' (the API's).
            field = {"query": "q", "layers": "sources"}.get(exc.field or "", exc.field)
            error = UserError(exc.message, field, status=exc.status if exc.status != 422 else 400)
        else:
            data["search"] = doc
            if not doc["results"] and offset == 0:
                data["notice"] = _empty_reason(session)
        if error is not None:
            data["error"] = {"message": error.message, "field": error.field}
    as_json = request.url.path.endswith(".json")
    if not q and not wants_json(request, as_json):
        preload_embedder(settings)  # a person looking at the empty form types a query next
    search = data["search"]
    links = {
        "prev": _page_link(params, max(0, offset - PAGE_SIZE)) if search and offset > 0 else None,
        "next": _page_link(params, search["nextOffset"]) if search and search["hasMore"] else None,
    }
    return form_page(
        request,
        session,
        "search_explanations.html",
        data,
        error,
        as_json=as_json,
        choices=_choices(session),
        links=links,
        min_query=MIN_QUERY,
        max_query=MAX_QUERY,
        page_size=PAGE_SIZE,
    )
