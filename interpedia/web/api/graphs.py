"""Attribution graphs in the webapp API: neuronpedia.org's ``/api/graph/*`` routes, as its official client calls them.

Uploads take neuronpedia.org's two steps: ``signed-put`` books an upload and answers a one-shot URL of this
server (``PUT /api/graph/upload/{putRequestId}?token=...``, no API key needed: the token is the permission,
as S3's signature is upstream), the client PUTs the gzip'd JSON there, then ``save-to-db`` validates it and
stores the graph. ``GET /api/graph/{modelId}/{slug}`` answers the metadata, whose ``url`` is where the JSON
is served (``.../json``, gzip'd).
"""

from __future__ import annotations

import gzip
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BeforeValidator, Field, StrictInt, StrictStr

from interpedia.config import Settings
from interpedia.store import graphs as store
from interpedia.store.graph_schema import SLUG_RE
from interpedia.store.graphs import MIN_UPLOAD_BYTES, GraphMetadata, User
from interpedia.web.deps import OptionalUser, RequiredUser, SessionDep, SettingsDep, graph_tracer
from interpedia.web.urls import absolute_url, page_path
from interpedia.web.wire import Body, Finite, integral, json_response, setting_limit

router = APIRouter(prefix="/graph", tags=["graphs"])

Slug = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=SLUG_RE.pattern)]
NodeIds = Annotated[list[StrictStr], Field(max_length=10_000)]


class SignedPutBody(Body):
    """``/api/graph/signed-put``."""

    filename: Annotated[StrictStr, Field(min_length=6, max_length=300, pattern=r"\.json$")]
    contentLength: Annotated[
        StrictInt,
        Field(ge=MIN_UPLOAD_BYTES, json_schema_extra=setting_limit("maximum", "graph_max_upload_bytes")),
        BeforeValidator(integral),
    ]
    contentType: StrictStr | None = None


class SaveToDbBody(Body):
    """``/api/graph/save-to-db``."""

    putRequestId: StrictStr


class GraphRef(Body):
    """A graph: its model and slug."""

    modelId: StrictStr
    slug: Slug


class GenerateBody(Body):
    """``/api/graph/generate`` (the official client sends the first seven fields)."""

    modelId: StrictStr
    prompt: Annotated[StrictStr, Field(min_length=1, max_length=10_000)]
    slug: Slug | None = None
    sourceSetName: StrictStr | None = None
    maxNLogits: Annotated[int, Field(ge=1, le=50)] = 10
    desiredLogitProb: Annotated[Finite, Field(gt=0, le=1)] = 0.95
    nodeThreshold: Annotated[Finite, Field(ge=0, le=1)] = 0.8
    edgeThreshold: Annotated[Finite, Field(ge=0, le=1)] = 0.98
    maxFeatureNodes: Annotated[int, Field(ge=1, le=100_000)] = 10000
    batchSize: Annotated[int, Field(ge=1, le=1024)] = 48


class SubgraphSaveBody(GraphRef):
    """``/api/graph/subgraph/save``."""

    displayName: Annotated[StrictStr, Field(max_length=200)] | None = None
    pinnedIds: NodeIds = []
    supernodes: Annotated[list[Annotated[list[StrictStr], Field(max_length=10_000)]], Field(max_length=1000)] = []
    clerps: Annotated[list[Annotated[list[StrictStr], Field(max_length=2)]], Field(max_length=10_000)] = []
    pruningThreshold: Annotated[Finite, Field(ge=0, le=1)] | None = None
    densityThreshold: Annotated[Finite, Field(ge=0, le=1)] | None = None
    overwriteId: StrictStr | None = None


class SubgraphDeleteBody(Body):
    """``/api/graph/subgraph/delete``."""

    subgraphId: StrictStr


def _json_url(request: Request, model_id: str, slug: str) -> str:
    return absolute_url(request, page_path("api", "graph", model_id, slug, "json"))


def _page_url(request: Request, model_id: str, slug: str) -> str:
    return absolute_url(request, f"{page_path(model_id, 'graph')}?{urlencode({'slug': slug})}")


@router.post("/signed-put", summary="Book a graph upload; answers the URL to PUT the gzip'd JSON to")
def signed_put(
    body: SignedPutBody, request: Request, session: SessionDep, settings: SettingsDep, user: RequiredUser
) -> Response:
    """``{url, putRequestId}``; the URL is good for one PUT of exactly ``contentLength`` bytes, for an hour."""
    row, token = store.create_upload(session, user, body.filename, body.contentLength, settings.graph_max_upload_bytes)
    session.commit()
    url = absolute_url(request, f"{page_path('api', 'graph', 'upload', row.id)}?{urlencode({'token': token})}")
    return json_response({"url": url, "putRequestId": row.id})


@router.put("/upload/{put_request_id}", name="graph_upload_put", summary="The upload URL signed-put answered")
async def upload_put(put_request_id: str, token: str, request: Request, session: SessionDep) -> Response:
    """Keep the body (gzip'd graph JSON) for ``save-to-db``; 200 with ``{}``."""
    store.receive_upload(session, put_request_id, token, await request.body())
    session.commit()
    return json_response({})


@router.post("/save-to-db", summary="Store an uploaded graph (validated against the graph schema)")
def save_to_db(
    body: SaveToDbBody, request: Request, session: SessionDep, settings: SettingsDep, user: RequiredUser
) -> Response:
    """``{url}`` of the graph's page; a JSON that is not a graph is a 422 naming its first bad field."""
    graph = store.finish_upload(
        session, user, body.putRequestId, store.GraphSave(creator=user), settings.graph_max_json_bytes
    )
    session.commit()
    return json_response({"url": _page_url(request, graph.model_id, graph.slug), "id": graph.id})


def trace_graph(request: Request, settings: Settings, body: GenerateBody, user: User) -> GraphMetadata:
    """Trace and store the graph a generate body asks for (this route and the graph page's form)."""
    from interpedia.graph.tracer import GraphOptions, graph_request

    options = GraphOptions(
        max_n_logits=body.maxNLogits,
        desired_logit_prob=body.desiredLogitProb,
        node_threshold=body.nodeThreshold,
        edge_threshold=body.edgeThreshold,
        max_feature_nodes=body.maxFeatureNodes,
        batch_size=body.batchSize,
    )
    graph_req = graph_request(body.prompt, body.slug, options, settings.graph_token_limit)
    row: GraphMetadata = graph_tracer(request).trace_and_store(
        body.modelId, body.sourceSetName, graph_req, store.GraphSave(creator=user), wait=False
    )
    return row


def generated_doc(request: Request, row: GraphMetadata) -> dict[str, Any]:
    """What generate answers: ``{message, url, s3url, slug, numNodes, numLinks}``."""
    return {
        "message": f"graph {row.model_id}/{row.slug} generated",
        "url": _page_url(request, row.model_id, row.slug),
        "s3url": _json_url(request, row.model_id, row.slug),
        "slug": row.slug,
        "numNodes": row.n_nodes,
        "numLinks": row.n_links,
    }


@router.post("/generate", summary="Compute an attribution graph of a prompt and store it")
def generate(body: GenerateBody, request: Request, settings: SettingsDep, user: RequiredUser) -> Response:
    """``{message, url, s3url, numNodes, numLinks}``; 503 while another graph is being computed here."""
    return json_response(generated_doc(request, trace_graph(request, settings, body, user)))


@router.post("/list-owned", summary="The caller's graphs")
def list_owned(request: Request, session: SessionDep, user: RequiredUser) -> Response:
    """A list of graph metadata, newest first."""
    rows = store.list_owned_graphs(session, user)
    return json_response([store.graph_doc(r, _json_url(request, r.model_id, r.slug)) for r in rows])


@router.post("/delete", summary="Delete one of the caller's graphs")
def delete(body: GraphRef, session: SessionDep, user: RequiredUser) -> Response:
    """``{message}``; 403 for another user's graph, 404 for an unknown one."""
    store.delete_graph(session, user, body.modelId, body.slug)
    session.commit()
    return json_response({"message": f"deleted graph {body.modelId}/{body.slug}"})


@router.post("/subgraph/save", summary="Save a subgraph (pinned nodes, supernodes, labels, thresholds)")
def subgraph_save(body: SubgraphSaveBody, session: SessionDep, user: RequiredUser) -> Response:
    """The saved subgraph, with its ``id`` (``overwriteId`` replaces one of the caller's own)."""
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
    return json_response({"subgraph": store.subgraph_doc(row, graph, user.name), "subgraphId": row.id})


@router.post("/subgraph/list", summary="Saved subgraphs of a graph")
def subgraph_list(body: GraphRef, session: SessionDep, user: OptionalUser) -> Response:
    """Everyone's saved subgraphs of the graph, featured first."""
    graph, rows = store.list_subgraphs(session, body.modelId, body.slug)
    return json_response([store.subgraph_doc(r, graph, name) for r, name in rows])


@router.post("/subgraph/list-featured", summary="Featured subgraphs of a graph")
def subgraph_list_featured(body: GraphRef, session: SessionDep, user: OptionalUser) -> Response:
    """The graph's featured subgraphs."""
    graph, rows = store.list_subgraphs(session, body.modelId, body.slug, featured_only=True)
    return json_response([store.subgraph_doc(r, graph, name) for r, name in rows])


@router.post("/subgraph/delete", summary="Delete one of the caller's subgraphs")
def subgraph_delete(body: SubgraphDeleteBody, session: SessionDep, user: RequiredUser) -> Response:
    """``{message}``."""
    store.delete_subgraph(session, user, body.subgraphId)
    session.commit()
    return json_response({"message": "deleted"})


@router.get("/{model_id}/{slug}", summary="A graph's metadata")
def get_graph(model_id: str, slug: str, request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """``{id, modelId, slug, promptTokens, prompt, titlePrefix, url}`` (``url``: where the JSON is)."""
    row = store.get_graph(session, model_id, slug)
    return json_response(store.graph_doc(row, _json_url(request, row.model_id, row.slug)))


@router.get("/{model_id}/{slug}/json", name="graph_json", summary="A graph's JSON")
def graph_json(model_id: str, slug: str, request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """The graph JSON as stored, gzip'd (``Content-Encoding: gzip``; inflated for clients that do not accept it)."""
    data = store.graph_gz(session, model_id, slug)
    headers = {"Cache-Control": "private, max-age=60", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(data, media_type="application/json", headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(data), media_type="application/json", headers=headers)
