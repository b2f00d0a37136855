"""Search via inference pages: ``/search`` (top features for a text across a source set) and
``/search-topk-by-token`` (top features at each token of a text).

Both are GET forms whose URL is the search (``?modelId=&sourceSet=&q=&sortIndexes=&ignoreBos=``, as on
neuronpedia.org), so a result can be shared and reloaded. The form is checked with the webapp API's own bodies
and runs the API's own workflow (:mod:`interpedia.inference.searches`), so the page shows exactly what
``/api/search-all`` and ``/api/search-topk-by-token`` answer, cached the same way. Bad input comes back on the
form as a sentence (and as the one JSON error shape for the JSON twin). The pickers list only what the viewer
may list.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from interpedia.errors import Invalid, UserError
from interpedia.inference import searches
from interpedia.inference.availability import require_model
from interpedia.store.catalogue import listed_catalogue
from interpedia.web.api.inference import SearchAllBody, SearchTopkBody
from interpedia.web.deps import SessionDep, SettingsDep, inference_service
from interpedia.web.pages.dashboard import display_token, token_strip
from interpedia.web.pages.render import form_page, page_url
from interpedia.web.pages.routes import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
B = TypeVar("B", bound=BaseModel)

MAX_QUERY_CHARS = 4000


def _last(request: Request, name: str) -> str | None:
    """The last value of a query parameter (a checkbox after its hidden 'false' sends two)."""
    values = request.query_params.getlist(name)
    return values[-1] if values else None


def _flag(request: Request, name: str, default: bool) -> bool:
    value = _last(request, name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "on", "yes"):
        return True
    if value.lower() in ("false", "0", "off", "no"):
        return False
    raise Invalid(f"{name} must be true or false, not {value!r}", name)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = _last(request, name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise Invalid(f"{name} must be a whole number, not {value!r}", name) from None
    if not low <= number <= high:
        raise Invalid(f"{name} must be between {low} and {high}", name)
    return number


def _float(request: Request, name: str, default: float) -> float:
    value = _last(request, name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise Invalid(f"{name} must be a number, not {value!r}", name) from None
    if not math.isfinite(number):
        raise Invalid(f"{name} must be a finite number", name)
    return number


def _positions(request: Request) -> list[int]:
    """``sortIndexes`` as a comma list (``1,4``) or repeated parameters, deduplicated in order."""
    out: list[int] = []
    for raw in request.query_params.getlist("sortIndexes"):
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise Invalid(f"sortIndexes must be token positions (whole numbers >= 0), not {part!r}", "sortIndexes")
            if int(part) not in out:
                out.append(int(part))
    return out


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or None
    return (f"{field}: {err.get('msg', 'invalid value')}" if field else str(err.get("msg"))), field


def parse_body(body_cls: type[B], fields: dict[str, Any]) -> B:
    """A form's fields checked as the webapp API checks its body; the first problem becomes Invalid."""
    try:
        return body_cls(**fields)
    except ValidationError as exc:
        message, field = _validation_message(exc)
        raise Invalid(message, field) from None


def _pick_model(models: list[dict[str, Any]], wanted: str | None) -> str | None:
    if wanted:
        return wanted
    for m in models:  # the first model that has something to search
        if m["sourceSets"]:
            return str(m["id"])
    return None


def _scale(values: list[float], feature: dict[str, Any] | None) -> float:
    top = max((abs(v) for v in values), default=0.0)
    approx = (feature or {}).get("maxActApprox") or 0.0
    scale = max(top, approx)
    return 1.0 / scale if scale > 0 else 1.0


def _explanation(feature: dict[str, Any] | None) -> str | None:
    explanations = (feature or {}).get("explanations") or []
    return explanations[0]["description"] if explanations else None


def _shown(data: dict[str, Any], error: UserError) -> UserError:
    """Put the error where the search templates show it, next to the field it names."""
    data["error"] = {"message": error.message, "field": error.field, "status": error.status}
    return error


def _twin(request: Request) -> bool:
    return request.url.path.endswith(".json")


def _sort_link(params: dict[str, Any], sort: list[int], position: int) -> str:
    chosen = [p for p in sort if p != position] if position in sort else [*sort, position]
    query = {**params, "sortIndexes": ",".join(str(p) for p in chosen)}
    return "/search?" + urlencode({k: v for k, v in query.items() if v not in (None, "")})


@router.get("/search")
@router.get("/search.json")
def search_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Search via inference: the top features of a source set for a text, sortable by token positions."""
    models = listed_catalogue(session)
    query = (_last(request, "q") or "").strip("\n")
    form: dict[str, Any] = {
        "modelId": _pick_model(models, _last(request, "modelId")),
        "sourceSet": _last(request, "sourceSet") or "",
        "q": query,
        "ignoreBos": True,
        "sortIndexes": [],
        "numResults": 50,
        "densityThreshold": -1.0,
    }
    data: dict[str, Any] = {"page": "search", "form": form, "models": models, "result": None}
    view: dict[str, Any] = {"rows": [], "tokens": []}
    error: UserError | None = None
    try:
        form["ignoreBos"] = _flag(request, "ignoreBos", True)
        form["sortIndexes"] = _positions(request)
        form["numResults"] = _int(request, "numResults", 50, 1, 100)
        form["densityThreshold"] = _float(request, "densityThreshold", -1.0)
        if query.strip():
            if len(query) > MAX_QUERY_CHARS:
                raise Invalid(f"the text is longer than {MAX_QUERY_CHARS} characters", "q")
            if not form["modelId"]:
                raise Invalid("choose a model", "modelId")
            if not form["sourceSet"]:
                raise Invalid("choose a source set to search", "sourceSet")
            require_model(
                session, settings, form["modelId"], source_set=form["sourceSet"], hosts=inference_service(request)
            )
            body = {
                "modelId": form["modelId"],
                "sourceSet": form["sourceSet"],
                "text": query,
                "sortIndexes": form["sortIndexes"],
                "ignoreBos": form["ignoreBos"],
                "numResults": form["numResults"],
                "densityThreshold": form["densityThreshold"],
            }
            result = searches.search_all(
                session, settings, inference_service(request), **parse_body(SearchAllBody, body).args()
            )
            data["result"] = result
            view = _search_view(form, result)
    except UserError as exc:
        error = _shown(data, exc)
    return form_page(
        request, session, "search.html", data, error, as_json=_twin(request), request_query=request.url.query, **view
    )


def _search_view(form: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    params = {
        "modelId": form["modelId"],
        "sourceSet": form["sourceSet"],
        "q": form["q"],
        "ignoreBos": "true" if form["ignoreBos"] else "false",
        "numResults": form["numResults"],
        "densityThreshold": "" if form["densityThreshold"] == -1 else form["densityThreshold"],
    }
    sort = form["sortIndexes"]
    tokens = [
        {"position": i, "text": display_token(t), "chosen": i in sort, "link": _sort_link(params, sort, i)}
        for i, t in enumerate(result["tokens"])
    ]
    rows = []
    for r in result["result"]:
        values = [float(v) for v in r["values"]]
        rows.append(
            {
                "layer": r["layer"],
                "index": r["index"],
                "url": page_url(r["modelId"], r["layer"], r["index"]),
                "maxValue": r["maxValue"],
                "sortValue": sum(values[p] for p in sort if p < len(values)) if sort else r["maxValue"],
                "explanation": _explanation(r.get("neuron")),
                "strip": token_strip(
                    result["tokens"], values, int(r["maxValueIndex"]), _scale(values, r.get("neuron"))
                ),
            }
        )
    return {"rows": rows, "tokens": tokens, "clear_sort": _sort_link(params, [], -1) if sort else None}


@router.get("/search-topk-by-token")
@router.get("/search-topk-by-token.json")
def topk_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The top-k features at each token of a text, for one source."""
    models = listed_catalogue(session)
    query = (_last(request, "q") or "").strip("\n")
    form: dict[str, Any] = {
        "modelId": _pick_model(models, _last(request, "modelId")),
        "source": _last(request, "source") or "",
        "q": query,
        "ignoreBos": True,
        "numResults": 5,
        "densityThreshold": -1.0,
    }
    data: dict[str, Any] = {"page": "searchTopkByToken", "form": form, "models": models, "result": None}
    view: dict[str, Any] = {"columns": []}
    error: UserError | None = None
    try:
        form["ignoreBos"] = _flag(request, "ignoreBos", True)
        form["numResults"] = _int(request, "numResults", 5, 1, 20)
        form["densityThreshold"] = _float(request, "densityThreshold", -1.0)
        if query.strip():
            if len(query) > MAX_QUERY_CHARS:
                raise Invalid(f"the text is longer than {MAX_QUERY_CHARS} characters", "q")
            if not form["modelId"]:
                raise Invalid("choose a model", "modelId")
            if not form["source"]:
                raise Invalid("choose a source (SAE) to search", "source")
            require_model(session, settings, form["modelId"], hosts=inference_service(request))
            body = {
                "modelId": form["modelId"],
                "source": form["source"],
                "text": query,
                "numResults": form["numResults"],
                "ignoreBos": form["ignoreBos"],
                "densityThreshold": form["densityThreshold"],
            }
            result = searches.search_topk_by_token(
                session, settings, inference_service(request), **parse_body(SearchTopkBody, body).args()
            )
            data["result"] = result
            view = {"columns": _topk_view(form, result)}
    except UserError as exc:
        error = _shown(data, exc)
    return form_page(
        request,
        session,
        "search_topk.html",
        data,
        error,
        as_json=_twin(request),
        request_query=request.url.query,
        **view,
    )


def _topk_view(form: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    columns = []
    for item in result["results"]:
        top = max((abs(f["activationValue"]) for f in item["topFeatures"]), default=0.0)
        feats = []
        for f in item["topFeatures"]:
            level = min(10, max(1, math.ceil(abs(f["activationValue"]) / top * 10))) if top > 0 else 1
            feats.append(
                {
                    "index": f["featureIndex"],
                    "value": f["activationValue"],
                    "level": level,
                    "url": page_url(form["modelId"], result["source"], f["featureIndex"]),
                    "explanation": _explanation(f.get("feature")),
                }
            )
        columns.append(
            {
                "position": item["position"],
                "token": display_token(item["token"]),
                "special": item["isSpecial"],
                "features": feats,
            }
        )
    return columns
