"""Browsing pages: home, model, source set / source (feature browser), the feature dashboard, random, jump.

Handlers are thin: they resolve the URL to rows and documents (store), build the page's data (a plain dict,
served as is by the JSON twin) and hand it to the page helper (``render.page``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from interpedia.analysis.queries import source_evals
from interpedia.errors import Invalid, NotFound
from interpedia.inference.availability import inference_availability
from interpedia.store import browse
from interpedia.store.catalogue import find_source_set, get_model, get_source, list_sources
from interpedia.store.documents import model_json, source_json, source_set_json
from interpedia.store.feature_page import read_feature_page
from interpedia.store.formats import parse_index
from interpedia.store.lists import lists_with_feature
from interpedia.store.releases import find_release
from interpedia.web.deps import FeatureCacheDep, SessionDep, inference_service
from interpedia.web.pages.dashboard import activations_html, cached_view, doc_fragments
from interpedia.web.pages.embeds import embed_options
from interpedia.web.pages.graph_lists import feature_graphs, model_graphs
from interpedia.web.pages.releases import release_page_data
from interpedia.web.pages.render import NOT_PAGES, done, page, page_url, redirect, renderer, split_json
from interpedia.web.pages.session import current_user
from interpedia.web.security import allow_framing
from interpedia.web.wire import conditional

PAGE_SIZE = 50
CONTEXT_CHOICES = ("5", "16", "full")


class PageRoute(APIRoute):
    """A page route that never claims ``/api/...``, ``/v1/...``, ``/static/...`` and the like.

    The ``/{model}/...`` patterns would otherwise match them; this keeps the pages safe whatever
    order routers are included in.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """No match for paths whose first segment belongs to another part of the app."""
        if scope["type"] == "http" and scope["path"].lstrip("/").split("/", 1)[0] in NOT_PAGES:
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/")
@router.get("/index.json")
def home(request: Request, session: SessionDep) -> Response:
    """Models and their source sets, with feature counts."""
    data = {"page": "home", "models": browse.catalogue(session)}
    return page(request, session, "home.html", data, as_json=request.url.path == "/index.json")


@router.get("/jump")
def jump(request: Request, model: str = "", source: str = "", index: str = "") -> Response:
    """The jump-to-feature box: redirect to ``/{model}/{source}/{index}``."""
    if not model.strip() or not source.strip():
        raise Invalid("choose a model and a source", field="source" if model.strip() else "model")
    idx = parse_index(index.strip())
    return redirect(request, page_url(model.strip(), source.strip(), idx), status=302)


@router.get("/random/{model_id}")
def random_feature(request: Request, session: SessionDep, model_id: str, source: str | None = None) -> Response:
    """A random live feature of the model (or of ``?source=``); its JSON twin says which."""
    model_id, as_json = split_json(model_id)
    get_model(session, model_id)
    if source is not None:
        get_source(session, model_id, source)
    picked = browse.random_feature(session, model_id, source)
    if picked is None:
        raise NotFound(f"model {model_id!r} has no features yet", field="modelId")
    url = page_url(model_id, picked[0], picked[1])
    data = {"page": "random", "modelId": model_id, "layer": picked[0], "index": str(picked[1]), "url": url}
    return done(request, url, data, as_json=as_json, redirect_status=302)


@router.get("/{model_id}")
def model_page(request: Request, session: SessionDep, model_id: str, umap: str | None = None) -> Response:
    """A model: its source sets and sources with feature counts, and a jump-to-feature box; when the id is no model
    but a release (a SAELens release name, or a Neuronpedia source release), the release page."""
    model_id, as_json = split_json(model_id)
    try:
        model = get_model(session, model_id)
    except NotFound:
        release = find_release(session, model_id)
        if release is None:
            raise
        return page(request, session, "release.html", release_page_data(release, umap), as_json=as_json)
    data = {
        "page": "model",
        "model": browse.model_with_counts(session, model),
        "graphs": model_graphs(session, model.id),
    }
    return page(request, session, "model.html", data, as_json=as_json)


@router.get("/{model_id}/{layer}")
def source_page(
    request: Request,
    session: SessionDep,
    model_id: str,
    layer: str,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
    source: str | None = None,
) -> Response:
    """A source set (``/gpt2-small/res-jb``) or a source (``/gpt2-small/6-res-jb``) with its feature browser."""
    layer, as_json = split_json(layer)
    model = get_model(session, model_id)
    set_row = find_source_set(session, model.id, layer)
    data: dict[str, Any]
    if set_row is not None:
        set_doc = browse.source_set_with_counts(session, set_row)
        names = [s["id"] for s in set_doc["sources"]]
        if source is not None and source not in names:
            raise NotFound(f"source {model.id}/{source} is not in source set {layer}", field="source")
        chosen = (
            source
            or next((s["id"] for s in set_doc["sources"] if s["featureCount"]), None)
            or (names[0] if names else None)
        )
        browser = None
        if chosen is not None:
            src_row = next(s for s in list_sources(session, set_row) if s.name == chosen)
            browser = {"source": chosen, **browse.browse(session, src_row, offset, limit)}
        data = {"page": "sourceSet", "model": model_json(model), "sourceSet": set_doc, "browser": browser}
        template = "source_set.html"
    else:
        src = get_source(session, model.id, layer)
        src_set = find_source_set(session, model.id, src.set_name)
        browser = {"source": src.name, **browse.browse(session, src, offset, limit)}
        data = {
            "page": "source",
            "model": model_json(model),
            "sourceSet": source_set_json(src_set) if src_set else None,
            "source": {**source_json(src), "featureCount": browser["total"]},
            "evals": source_evals(session, src.id),
            "browser": browser,
        }
        template = "source.html"
    return page(request, session, template, data, as_json=as_json)


@router.get("/{model_id}/{layer}/{index}")
def feature_page(
    request: Request, session: SessionDep, cache: FeatureCacheDep, model_id: str, layer: str, index: str
) -> Response:
    """The feature dashboard; ``?embed=true`` (with neuronpedia.org's toggles, ``pages/embeds.py``) shows it alone,
    for other sites to frame."""
    index, as_json = split_json(index)
    embed = embed_options(request)
    user = current_user(request)
    read = read_feature_page(session, model_id, layer, index, user, cache=cache)
    model, source, feature, doc = read.read.model, read.read.source, read.read.feature, read.read.doc
    navigation = {
        "prev": None if read.prev_index is None else page_url(model.id, source.name, read.prev_index),
        "next": None if read.next_index is None else page_url(model.id, source.name, read.next_index),
        "random": f"{page_url('random', model.id)}?{urlencode({'source': source.name})}",
    }
    graphs = feature_graphs(session, model.id, source.name, feature.index) if read.in_graphs else []
    data = {
        "page": "feature",
        "feature": doc,
        "navigation": navigation,
        "community": read.community,
        "graphs": graphs,
    }
    if embed is not None:
        data["embed"] = embed
        allow_framing(request)

    def html_view() -> dict[str, Any]:
        set_doc: Mapping[str, Any] = doc.get("sourceSet") or {}
        default_range = set_doc.get("defaultRange", 1)
        live = inference_availability(
            session, request.app.state.settings, model, source, hosts=inference_service(request)
        )
        env = renderer(request).env
        return {
            "view": cached_view(read.read, cache),
            "activations_html": activations_html(env, read.read, cache),
            **doc_fragments(env, read.read, cache),
            "context": CONTEXT_CHOICES[default_range]
            if isinstance(default_range, int) and 0 <= default_range < 3
            else "16",
            "show_breaks": set_doc.get("defaultShowBreaks", True),
            "page_data": {
                "modelId": model.id,
                "layer": source.name,
                "index": str(feature.index),
                "maxActApprox": doc.get("maxActApprox"),
                "inferenceEnabled": live["available"],
            },
            "live": live,
            "my_lists": lists_with_feature(session, user, feature.id) if user is not None and embed is None else [],
            "embed": embed,
        }

    # The twin writes the document from its cached JSON instead of serialising it again.
    twin = {**data, "feature": orjson.Fragment(read.read.body())}
    template = "feature.html" if embed is None else "feature_embed.html"
    response = page(request, session, template, data, as_json=as_json, html_view=html_view, json_data=twin)
    # HTML and its twin share the URL (content negotiation); a signed-in viewer's page has their menus.
    response.headers["Vary"] = "Accept, Cookie, X-API-Key"
    return conditional(request, response, private=read.read.at.private or user is not None)
