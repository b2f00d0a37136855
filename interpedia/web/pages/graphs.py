"""The graph pages: ``/{model}/graph`` lists a model's attribution graphs and opens one by ``?slug=``
(``static/graph-*.js`` draws it), ``/graph`` goes to the default model's, and each has a ``.json`` twin.

The browser's writes (generate a graph, upload one in the API's two steps, save or delete a subgraph) post JSON
to the API's paths without ``/api`` and authenticate by the session cookie plus its CSRF token; the API's own
routes take an ``x-api-key``. The same store and tracer calls do the work in both cases.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import StrictStr, ValidationError
from sqlalchemy.orm import Session

from interpedia.errors import Unauthorized
from interpedia.store import graphs as store
from interpedia.store.catalogue import Model, get_model
from interpedia.store.graph_features import default_graph_model, graph_feature_info
from interpedia.store.graphs import GRAPH_VISIBILITIES, GraphMetadata, User
from interpedia.web.api.graphs import (
    GenerateBody,
    SaveToDbBody,
    SignedPutBody,
    SubgraphDeleteBody,
    SubgraphSaveBody,
    generated_doc,
    trace_graph,
)
from interpedia.web.deps import SessionDep, SettingsDep
from interpedia.web.pages.embeds import is_embed
from interpedia.web.pages.graph_lists import graph_page_url, graph_summary
from interpedia.web.pages.render import json_page, page, page_url, redirect
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user
from interpedia.web.security import allow_framing
from interpedia.web.urls import absolute_url
from interpedia.web.wire import Body

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The new-graph form's fields: (min, max, default), as neuronpedia.org clamps them (reference/circuits.md).
GENERATE_LIMITS = {
    "maxNLogits": (5, 15, 10),
    "desiredLogitProb": (0.6, 0.99, 0.95),
    "nodeThreshold": (0.5, 0.95, 0.8),
    "edgeThreshold": (0.65, 0.98, 0.85),
    "maxFeatureNodes": (1500, 10000, 5000),
}


class SaveToDbForm(SaveToDbBody):
    """``/graph/save-to-db``, with the graph's visibility."""

    visibility: StrictStr = "PUBLIC"


B = TypeVar("B", bound=Body)


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object (empty when the body is no JSON object: the CSRF check then refuses it)."""
    try:
        doc = await request.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


JsonObject = Annotated[dict[str, Any], Depends(_json_object)]


def _signed_in(request: Request, session: Session, raw: dict[str, Any], kind: type[B], what: str) -> tuple[User, B]:
    """The signed-in user and the body, checked in this order: who, the CSRF token, then the fields (so a
    post without its token is a 403 whatever else it holds)."""
    user = current_user(request, session)
    if user is None:
        raise Unauthorized(f"sign in first (/signin) to {what}")
    check_csrf(request, session, raw.get("csrf_token"))
    session.commit()  # end the lookup's read transaction: the write below runs in its own
    try:
        return user, kind.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


@router.get("/graph")
@router.get("/graph.json")
def graph_home(request: Request, session: SessionDep) -> Response:
    """``/graph``: the default model's graph page (the model of the newest featured graph)."""
    model_id = default_graph_model(session)
    suffix = ".json" if request.url.path.endswith(".json") else ""
    query = f"?{request.url.query}" if request.url.query else ""
    return redirect(request, page_url(model_id, "graph" + suffix) + query, status=302)


def _model_brief(model: Model) -> dict[str, Any]:
    return {"id": model.id, "displayName": model.display_name or model.id, "layers": model.layers}


def _list_data(request: Request, session: Session, model: Model, query: str) -> dict[str, Any]:
    rows = store.list_graphs(session, model.id, query=query or None)
    user = current_user(request, session)
    mine: list[GraphMetadata] = []
    if user is not None:
        needle = query.strip().lower()
        mine = [
            r
            for r in store.list_owned_graphs(session, user)
            if r.model_id == model.id and (not needle or needle in r.slug.lower() or needle in r.prompt.lower())
        ]
    return {
        "page": "graphs",
        "model": _model_brief(model),
        "query": query,
        "featured": [graph_summary(r) for r in rows if r.is_featured],
        "graphs": [graph_summary(r) for r in rows if not r.is_featured],
        "mine": [graph_summary(r) for r in mine],
        "transcoderSets": store.transcoder_sets(session, model.id),
        "generateLimits": {k: {"min": lo, "max": hi, "default": d} for k, (lo, hi, d) in GENERATE_LIMITS.items()},
    }


def _graph_data(session: Session, model: Model, slug: str, embed: bool) -> dict[str, Any]:
    row = store.get_graph(session, model.id, slug)
    graph, subgraphs = store.list_subgraphs(session, model.id, slug)
    return {
        "page": "graph",
        "model": _model_brief(model),
        "graph": graph_summary(row),
        "sourceSet": row.source_set_name,
        "features": graph_feature_info(session, row),
        "subgraphs": [store.subgraph_doc(r, graph, name) for r, name in subgraphs],
        "embed": embed,
    }


@router.get("/{model_id}/graph")
@router.get("/{model_id}/graph.json")
def graph_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    model_id: str,
    slug: str | None = None,
    q: str = "",
    embed: str = "",
) -> Response:
    """A model's graphs (featured first, the viewer's own, search by prompt or slug), or one graph by ``?slug=``."""
    as_json = request.url.path.endswith(".json")
    model = get_model(session, model_id)
    if not slug:
        data = _list_data(request, session, model, q[:200])
        return page(request, session, "graphs.html", data, as_json=as_json, max_upload=settings.graph_max_upload_bytes)
    embedded = is_embed(embed)
    data = _graph_data(session, model, slug, embedded)
    twin = f"{page_url(model.id, 'graph.json')}?{urlencode({'slug': slug})}"
    template = "graph_embed.html" if embedded else "graph.html"
    if embedded:
        allow_framing(request)  # INTERPEDIA_EMBED_ORIGINS may frame it, beside the site's own frame_ancestors
    return page(request, session, template, data, as_json=as_json, twin_url=twin)


@router.post("/graph/signed-put")
def signed_put_form(raw: JsonObject, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Book an upload for a signed-in browser: ``{url, putRequestId}``, the URL to PUT the file to once."""
    user, body = _signed_in(request, session, raw, SignedPutBody, "upload graphs")
    row, token = store.create_upload(session, user, body.filename, body.contentLength, settings.graph_max_upload_bytes)
    session.commit()
    url = absolute_url(request, f"{page_url('api', 'graph', 'upload', row.id)}?{urlencode({'token': token})}")
    return json_page({"url": url, "putRequestId": row.id})


@router.post("/graph/save-to-db")
def save_to_db_form(raw: JsonObject, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Store the uploaded graph; ``{url, path}`` of its page (a 422 names the first bad field of the JSON)."""
    user, body = _signed_in(request, session, raw, SaveToDbForm, "upload graphs")
    visibility = body.visibility if body.visibility in GRAPH_VISIBILITIES else "PUBLIC"
    how = store.GraphSave(creator=user, visibility=visibility)
    row = store.finish_upload(session, user, body.putRequestId, how, settings.graph_max_json_bytes)
    session.commit()
    path = graph_page_url(row.model_id, row.slug)
    return json_page({"url": absolute_url(request, path), "path": path, "id": row.id})


@router.post("/graph/generate")
def generate_form(raw: JsonObject, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Trace a graph for a signed-in browser (``/api/graph/generate``'s answer); 503 while another is traced."""
    user, body = _signed_in(request, session, raw, GenerateBody, "generate graphs")
    return json_page(generated_doc(request, trace_graph(request, settings, body, user)))


@router.post("/graph/subgraph/save")
def subgraph_save_form(raw: JsonObject, request: Request, session: SessionDep) -> Response:
    """Save the browser's view of a graph as a subgraph: ``{subgraph, subgraphId}``."""
    user, body = _signed_in(request, session, raw, SubgraphSaveBody, "save subgraphs")
    row, graph = store.save_subgraph(
        session,
        user,
        body.modelId,
        body.slug,
        display_name=body.displayName or "",
        pinned_ids=body.pinnedIds,
        supernodes=body.supernodes,
        clerps=body.clerps,
        pruning_threshold=body.pruningThreshold,
        density_threshold=body.densityThreshold,
        overwrite_id=body.overwriteId,
    )
    session.commit()
    return json_page({"subgraph": store.subgraph_doc(row, graph, user.name), "subgraphId": row.id})


@router.post("/graph/subgraph/delete")
def subgraph_delete_form(raw: JsonObject, request: Request, session: SessionDep) -> Response:
    """Delete one of the signed-in user's subgraphs."""
    user, body = _signed_in(request, session, raw, SubgraphDeleteBody, "delete subgraphs")
    store.delete_subgraph(session, user, body.subgraphId)
    session.commit()
    return json_page({"message": "deleted"})
