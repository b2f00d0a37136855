"""The quick-list page: ``/quick-list?name=...&features=[{modelId, layer, index}, ...]``, as SAELens's
``get_neuronpedia_quick_list`` opens it. It shows the features, each with its top explanation and a compact
dashboard (top examples, top logits, density), and offers a signed-in user to save them as a list.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from interpedia.errors import Invalid
from interpedia.store import lists as list_store
from interpedia.store.formats import parse_index
from interpedia.store.lists import FeatureRef
from interpedia.store.quick_lists import QUICK_LIST_MAX, QuickFeatureDoc, quick_list_features
from interpedia.web.deps import SessionDep, write_transaction
from interpedia.web.pages.dashboard import display_token, token_strip
from interpedia.web.pages.render import done, page, page_url, signin_first, twin_url
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DEFAULT_NAME = "Quick list"
FEATURES_HELP = 'features must be a JSON list of {"modelId", "layer", "index"} objects'


def _indices(value: Any, field: str) -> list[int]:
    # SAELens passes one index per feature; neuronpedia.org also reads "[[1, 2], [3]]" (a string) as several.
    if isinstance(value, str) and value.strip().startswith("[["):
        try:
            nested = json.loads(value)
        except ValueError:
            raise Invalid(f"{field} is not a JSON list of lists of indices", field=field) from None
        if not isinstance(nested, list) or not all(isinstance(inner, list) for inner in nested):
            raise Invalid(f"{field} is not a JSON list of lists of indices", field=field)
        return [parse_index(i) for inner in nested for i in inner]
    try:
        return [parse_index(value)]
    except Invalid as exc:
        raise Invalid(f"{field}: {exc.message}", field=field) from None


def parse_features(raw: str) -> list[FeatureRef]:
    """The ``features`` parameter as feature refs (at most ``QUICK_LIST_MAX``); 422 naming what is wrong."""
    try:
        items = json.loads(raw)
    except ValueError:
        raise Invalid(f"{FEATURES_HELP}; it is not JSON", field="features") from None
    if not isinstance(items, list) or not items:
        raise Invalid(f"{FEATURES_HELP}, with at least one", field="features")
    refs: list[FeatureRef] = []
    for i, item in enumerate(items):
        field = f"features[{i}]"
        if not isinstance(item, dict):
            raise Invalid(f"{field} must be an object: {FEATURES_HELP}", field=field)
        model_id, layer = item.get("modelId"), item.get("layer")
        for name, value in (("modelId", model_id), ("layer", layer)):
            if not isinstance(value, str) or not value:
                raise Invalid(f"{field}.{name} must be a non-empty string", field=f"{field}.{name}")
        refs.extend(FeatureRef(str(model_id), str(layer), idx) for idx in _indices(item.get("index"), f"{field}.index"))
    if len(refs) > QUICK_LIST_MAX:
        raise Invalid(f"a quick list shows at most {QUICK_LIST_MAX} features; {len(refs)} were named", "features")
    return refs


def _strips(doc: QuickFeatureDoc) -> list[Any]:
    scale = doc.get("maxActApprox") or 0.0
    out = []
    for act in doc["activations"]:
        values = act.get("values") or []
        if values:
            peak = max(values)
            top = scale or peak or 1.0
            out.append(token_strip(act["tokens"], values, values.index(peak), 1.0 / top if top > 0 else 1.0))
    return out


@router.get("/quick-list")
@router.get("/quick-list/")
@router.get("/quick-list.json")
def quick_list_page(request: Request, session: SessionDep, features: str = "", name: str = "") -> Response:
    """The named features with their explanations and compact dashboards; a form saves them as a list."""
    as_json = request.url.path.endswith(".json")
    if not features:
        raise Invalid(f"name the features: ?features=[...] ({FEATURES_HELP})", field="features")
    refs = parse_features(features)
    docs, missing = quick_list_features(session, refs)
    user = current_user(request)
    data = {
        "page": "quickList",
        "name": name.strip()[: list_store.MAX_NAME] or DEFAULT_NAME,
        "features": docs,
        "missing": [{"modelId": r.model_id, "layer": r.layer, "index": str(r.index)} for r in missing],
    }
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return page(
        request,
        session,
        "quick_list.html",
        data,
        as_json=as_json,
        html_view=lambda: {
            "strips": [_strips(d) for d in docs],
            "logits": [[(display_token(t["token"]), t["value"]) for t in d["topLogits"]] for d in docs],
            "features_json": json.dumps(
                [{"modelId": d["modelId"], "layer": d["layer"], "index": d["index"]} for d in docs]
            ),
            "signin_url": "/signin?" + urlencode({"next": here}),
            "signed_in": user is not None,
            "twin_url": twin_url(request),
        },
    )


@router.post("/quick-list/save")
def quick_list_save(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    features: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Save a quick list's features as a new list of the signed-in user; to the list's page after."""
    user = current_user(request)
    if user is None:
        return signin_first(request, "/signin", message="sign in to save a list (/signin)")
    check_csrf(request, session, csrf_token)
    refs = parse_features(features)
    settings = request.app.state.settings
    with write_transaction(request) as tx:
        lst = list_store.create_list(tx, user, name.strip() or DEFAULT_NAME, description)
        list_store.add_features(tx, lst, user, refs, max_features=settings.list_max_features, field="features")
        doc = list_store.list_json(lst, user.name)
    url = page_url("list", doc["id"])
    return done(request, url, {**doc, "url": url}, status=201)
