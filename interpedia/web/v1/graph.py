"""``/v1/graph/generate``: an attribution graph of a prompt, computed here and answered as its JSON (not stored).

What a web server calls when the host map names this server as the graph host of a model and transcoder set
(``interpedia hosts add URL --model M --graph --source-set SET``), as Neuronpedia's webapp calls its graph server's
``/generate-graph``; the web server stores the graph. One graph at a time: a second request while one is computed
is a 503 ("busy"), as upstream. Behind ``X-SECRET-KEY`` like every /v1 route.
"""

from __future__ import annotations

import gzip
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field, StrictStr

from interpedia.web.deps import SettingsDep, graph_tracer
from interpedia.web.v1.deps import require_secret
from interpedia.web.wire import CamelBody, Finite

router = APIRouter(prefix="/v1", tags=["graphs"], dependencies=[Depends(require_secret)])


class GraphGenerateBody(CamelBody):
    """What to trace (the fields of ``/api/graph/generate``, snake_case as Neuronpedia's graph server takes them)."""

    model_id: StrictStr
    source_set: StrictStr
    prompt: Annotated[StrictStr, Field(min_length=1, max_length=10_000)]
    slug: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    max_n_logits: Annotated[int, Field(ge=1, le=50)] = 10
    desired_logit_prob: Annotated[Finite, Field(gt=0, le=1)] = 0.95
    node_threshold: Annotated[Finite, Field(ge=0, le=1)] = 0.8
    edge_threshold: Annotated[Finite, Field(ge=0, le=1)] = 0.98
    max_feature_nodes: Annotated[int, Field(ge=1, le=100_000)] = 10000
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 48


@router.post("/graph/generate", summary="Compute an attribution graph of a prompt and answer its JSON")
def graph_generate(body: GraphGenerateBody, request: Request, settings: SettingsDep) -> Response:
    """The graph JSON (gzip'd when the client accepts it); 503 while another graph is being computed here."""
    from interpedia.graph.tracer import GraphOptions, graph_request

    options = GraphOptions(
        max_n_logits=body.max_n_logits,
        desired_logit_prob=body.desired_logit_prob,
        node_threshold=body.node_threshold,
        edge_threshold=body.edge_threshold,
        max_feature_nodes=body.max_feature_nodes,
        batch_size=body.batch_size,
    )
    graph_req = graph_request(body.prompt, body.slug, options, settings.graph_token_limit)
    doc = graph_tracer(request).trace(body.model_id, body.source_set, graph_req, wait=False)
    data = orjson.dumps(doc)
    if "gzip" in request.headers.get("accept-encoding", ""):
        # a graph is megabytes of repetitive JSON: gzip shrinks it 5-10x on the wire
        return Response(gzip.compress(data, 6), media_type="application/json", headers={"Content-Encoding": "gzip"})
    return Response(data, media_type="application/json")
