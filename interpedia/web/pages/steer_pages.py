"""The steering pages: ``/{model}/steer`` (pick features and strengths, default vs steered side by side) and
``/steer/{id}`` (a saved result, the share link).

The form posts to ``/{model}/steer`` (CSRF-checked); it is checked with the webapp API's own bodies and runs the
API's own workflow (:mod:`interpedia.inference.steer_outputs`, so outputs are cached and saved exactly as
``/api/steer`` and ``/api/steer-chat`` do), then redirects to the saved result's share page. ``/steer`` redirects
to the first model that has SAEs the viewer may list. Chat steering is offered when the model's tokenizer has a
chat template; otherwise the page says why it is missing.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.errors import Invalid, NotFound, Unavailable, UserError
from interpedia.inference import steer_outputs
from interpedia.inference.availability import has_chat_template, model_availability
from interpedia.inference.steer_presets import steer_presets
from interpedia.store.catalogue import get_model, listed_catalogue, listed_source_names
from interpedia.store.steering import load_shared
from interpedia.web.api.steer import SteerBody, SteerChatBody
from interpedia.web.deps import SessionDep, SettingsDep, inference_service
from interpedia.web.pages.inference_pages import parse_body
from interpedia.web.pages.render import done, form_page, page_url, redirect, split_json
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user

router = APIRouter(route_class=PageRoute, include_in_schema=False)

METHODS = ("SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP")
DEFAULTS: dict[str, Any] = {
    "mode": "completion",
    "prompt": "",
    "temperature": 0.5,
    "n_tokens": 32,
    "seed": 16,
    "strength_multiplier": 1.0,
    "freq_penalty": 0.0,
    "steer_method": "SIMPLE_ADDITIVE",
    "steer_special_tokens": True,
    "n_logprobs": 0,
}
BLANK_ROWS = 2
FormList = Annotated[list[str], Form()]
FormText = Annotated[str, Form()]


def _model_context(request: Request, session: Session, settings: Settings, model_id: str, hosts: Any) -> dict[str, Any]:
    """The model the form steers: its listed SAEs, whether live inference and chat can run (and why not), and its
    presets (``/api/steer/presets``)."""
    model = get_model(session, model_id)
    status = model_availability(session, settings, model, hosts)
    sources = listed_source_names(session, model.id)
    chat = has_chat_template(status.get("spec"), model) if status["available"] else False
    presets = steer_presets(session, settings.steer_presets, model.id, current_user(request, session))
    return {
        "modelId": model.id,
        "displayName": model.display_name or model.id,
        "sources": sources,
        "available": status["available"],
        "reason": status["reason"],
        "chat": chat,
        "chatNote": None if chat else f"Chat steering is not offered: model {model.id} has no chat template.",
        "presets": {k: presets[k] for k in ("defaultPrompt", "promptPresets", "featurePresets")},
    }


def _preset_links(ctx: dict[str, Any], prompt: str) -> dict[str, list[dict[str, str]]]:
    """Presets as links that fill the form (``?prompt=&source=&index=&strength=&method=``): no script needed."""
    base = page_url(ctx["modelId"], "steer")
    prompts = [
        {"name": p["name"], "url": f"{base}?{urlencode({'prompt': p['prompt']})}", "title": p["prompt"]}
        for p in ctx["presets"]["promptPresets"]
    ]
    features = []
    for preset in ctx["presets"]["featurePresets"]:
        query: list[tuple[str, Any]] = [("prompt", prompt or ctx["presets"]["defaultPrompt"])]
        for f in preset["features"]:
            query += [("source", f["layer"]), ("index", f["index"]), ("strength", f["strength"])]
        if preset.get("steerMethod"):
            query.append(("method", preset["steerMethod"]))
        title = "; ".join(f"{f['layer']}/{f['index']} {f.get('explanation') or ''}".strip() for f in preset["features"])
        features.append({"name": preset["name"], "url": f"{base}?{urlencode(query)}", "title": title})
    return {"prompts": prompts, "features": features}


def _logprob_view(logprobs: Any) -> list[dict[str, Any]] | None:
    """Generated tokens with their probability (shade) and the top alternatives (hover), from stored logprobs."""
    if not logprobs:
        return None
    out = []
    for lp in logprobs:
        prob = math.exp(lp["logprob"])
        alternatives = ", ".join(f"{t['token']!r} {math.exp(t['logprob']):.1%}" for t in lp.get("top_logprobs") or [])
        out.append(
            {
                "token": lp["token"],
                "prob": prob,
                "level": min(10, max(1, math.ceil(prob * 10))),
                "title": f"{lp['token']!r} {prob:.1%}" + (f" · top: {alternatives}" if alternatives else ""),
            }
        )
    return out


def _number(raw: str, name: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise Invalid(f"{name} must be {word}, not {raw!r}", name) from None


def _features(model_id: str, sources: list[str], indexes: list[str], strengths: list[str]) -> list[dict[str, Any]]:
    """Feature rows of the form; rows without an index are blank and skipped."""
    out = []
    for n, raw_index in enumerate(indexes):
        raw_index = raw_index.strip()
        if not raw_index:
            continue
        source = sources[n].strip() if n < len(sources) else ""
        if not source:
            raise Invalid(f"feature {n + 1}: choose an SAE", "source")
        if not raw_index.isdigit():
            raise Invalid(f"feature {n + 1}: the index must be a whole number >= 0, not {raw_index!r}", "index")
        raw_strength = strengths[n].strip() if n < len(strengths) else ""
        if not raw_strength:
            raise Invalid(f"feature {n + 1}: give a strength", "strength")
        out.append(
            {
                "modelId": model_id,
                "layer": source,
                "index": int(raw_index),
                "strength": _number(raw_strength, f"feature {n + 1} strength", float),
            }
        )
    if not out:
        raise Invalid("pick at least one feature to steer with (an SAE and an index)", "index")
    return out


def _prefill(request: Request) -> list[dict[str, Any]]:
    """Features named in the query (``?source=&index=&strength=``), e.g. from a feature page's link."""
    q = request.query_params
    rows = []
    for n, index in enumerate(q.getlist("index")):
        sources, strengths = q.getlist("source"), q.getlist("strength")
        rows.append(
            {
                "layer": sources[n] if n < len(sources) else "",
                "index": index,
                "strength": strengths[n] if n < len(strengths) else "10",
            }
        )
    return rows


def _render(
    request: Request,
    session: Session,
    ctx: dict[str, Any],
    form: dict[str, Any],
    features: list[dict[str, Any]],
    result: dict[str, Any] | None,
    error: UserError | None,
    as_json: bool = False,
) -> Response:
    data = {
        "page": "steer",
        "model": ctx,
        "form": form,
        "features": features,
        "result": result,
        "error": None if error is None else {"message": error.message, "field": error.field},
    }
    blank_source = features[0]["layer"] if features else ""
    rows = [*features, *({"layer": blank_source, "index": "", "strength": ""} for _ in range(BLANK_ROWS))]
    logprobs = {}
    if result is not None:
        for kind, key in (("DEFAULT", "defaultLogProbs"), ("STEERED", "steeredLogProbs")):
            out = result.get(kind)
            logprobs[kind] = _logprob_view(out.get("logprobs") if isinstance(out, dict) else result.get(key))
    return form_page(
        request,
        session,
        "steer.html",
        data,
        error,
        as_json=as_json,
        rows=rows,
        methods=METHODS,
        logprobs=logprobs,
        preset_links=_preset_links(ctx, str(form.get("prompt") or "")),
    )


@router.get("/steer")
def steer_default(request: Request, session: SessionDep) -> Response:
    """The first model that has SAEs (neuronpedia.org sends ``/steer`` to its default model)."""
    for model in listed_catalogue(session):
        if any(s["sources"] for s in model["sourceSets"]):
            return redirect(request, page_url(model["id"], "steer"), status=302)
    raise NotFound("no model with SAEs to steer yet: import or generate some first", field="modelId")


@router.get("/steer/{output_id}")
def steer_shared(request: Request, session: SessionDep, settings: SettingsDep, output_id: str) -> Response:
    """A saved steering result (the share link): both outputs, the features and every setting."""
    output_id, as_json = split_json(output_id)
    doc = load_shared(session, output_id)
    ctx = _model_context(request, session, settings, doc["modelId"], inference_service(request))
    prompt = doc.get("prompt") or ""
    if doc["isChat"]:
        messages = doc.get("steeredChatMessages") or doc.get("defaultChatMessages") or []
        prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    shown_logprobs = doc.get("steeredLogProbs") or doc.get("defaultLogProbs") or []
    form = {
        **DEFAULTS,
        **{k: v for k, v in doc["settings"].items() if v is not None},
        "mode": "chat" if doc["isChat"] else "completion",
        "prompt": prompt,
        "n_logprobs": len(shown_logprobs[0].get("top_logprobs") or []) if shown_logprobs else 0,
    }
    result = {
        "id": doc["id"],
        "shareUrl": page_url("steer", doc["id"]),
        "isChat": doc["isChat"],
        "DEFAULT": doc.get("DEFAULT"),
        "STEERED": doc.get("STEERED"),
        "defaultLogProbs": doc.get("defaultLogProbs"),
        "steeredLogProbs": doc.get("steeredLogProbs"),
        "createdAt": doc.get("createdAt"),
    }
    return _render(request, session, ctx, form, list(doc["features"]), result, None, as_json)


@router.get("/{model_id}/steer")
@router.get("/{model_id}/steer.json")
def steer_page(request: Request, session: SessionDep, settings: SettingsDep, model_id: str) -> Response:
    """The steering form for a model (prefilled from the query: ``prompt``, ``mode``, ``method``, and features as
    ``source``/``index``/``strength``, which is how the presets and a feature page's link fill it)."""
    ctx = _model_context(request, session, settings, model_id, inference_service(request))
    mode = request.query_params.get("mode", "completion")
    method = request.query_params.get("method", DEFAULTS["steer_method"])
    form = {
        **DEFAULTS,
        "mode": mode if mode == "chat" and ctx["chat"] else "completion",
        "prompt": request.query_params.get("prompt", ""),
        "steer_method": method if method in METHODS else DEFAULTS["steer_method"],
    }
    return _render(request, session, ctx, form, _prefill(request), None, None, request.url.path.endswith(".json"))


@router.post("/{model_id}/steer")
def steer_run(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    model_id: str,
    csrf_token: FormText = "",
    mode: FormText = "completion",
    prompt: FormText = "",
    source: FormList = [],  # noqa: B006
    index: FormList = [],  # noqa: B006
    strength: FormList = [],  # noqa: B006 (FastAPI copies)
    temperature: FormText = "0.5",
    n_tokens: FormText = "32",
    seed: FormText = "16",
    strength_multiplier: FormText = "1",
    freq_penalty: FormText = "0",
    steer_method: FormText = "SIMPLE_ADDITIVE",
    steer_special_tokens: FormList = [],  # noqa: B006
    n_logprobs: FormText = "0",
) -> Response:  # noqa: B006
    """Run the steering form and redirect to the saved result (``/steer/{id}``)."""
    check_csrf(request, session, csrf_token)
    ctx = _model_context(request, session, settings, model_id, inference_service(request))
    form: dict[str, Any] = {
        **DEFAULTS,
        "mode": mode,
        "prompt": prompt,
        "temperature": temperature,
        "n_tokens": n_tokens,
        "seed": seed,
        "strength_multiplier": strength_multiplier,
        "freq_penalty": freq_penalty,
        "steer_method": steer_method,
        "steer_special_tokens": (steer_special_tokens or ["true"])[-1] == "true",
        "n_logprobs": n_logprobs,
    }
    shown = [
        {"layer": s, "index": i, "strength": st} for s, i, st in zip(source, index, strength, strict=False) if i.strip()
    ]
    try:
        if not ctx["available"]:
            raise Unavailable(ctx["reason"], "modelId")
        if mode not in ("completion", "chat"):
            raise Invalid("mode must be completion or chat", "mode")
        if mode == "chat" and not ctx["chat"]:
            raise Invalid(ctx["chatNote"], "mode")
        if not prompt.strip():
            raise Invalid("type a prompt to complete" if mode == "completion" else "type a chat message", "prompt")
        feats = _features(ctx["modelId"], source, index, strength)
        body: dict[str, Any] = {
            "modelId": ctx["modelId"],
            "features": feats,
            "steer_method": steer_method,
            "temperature": _number(temperature, "temperature", float),
            "n_tokens": _number(n_tokens, "n_tokens", int),
            "seed": _number(seed, "seed", float),
            "strength_multiplier": _number(strength_multiplier, "strength_multiplier", float),
            "freq_penalty": _number(freq_penalty, "freq_penalty", float),
            "n_logprobs": _number(n_logprobs or "0", "n_logprobs", int),
        }
        user = current_user(request, session)
        creator_id = user.id if user is not None else None
        svc = inference_service(request)
        if mode == "chat":
            chat = [{"role": "user", "content": prompt}]
            body.update(
                defaultChatMessages=chat, steeredChatMessages=chat, steer_special_tokens=form["steer_special_tokens"]
            )
            args = parse_body(SteerChatBody, body).args()
            doc = steer_outputs.steer_chat(session, settings, svc, **args, creator_id=creator_id)
        else:
            args = parse_body(SteerBody, {**body, "prompt": prompt}).args()
            doc = steer_outputs.steer_completion(session, settings, svc, **args, creator_id=creator_id)
    except UserError as exc:
        return _render(request, session, ctx, form, shown, None, exc)
    return done(request, page_url("steer", doc["id"]), doc)
