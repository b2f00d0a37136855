"""The lens page ``/{model}/lens`` (Neuronpedia's J-lens family): for a prompt, every layer's residual stream read
out as next-token predictions at every position, as a grid (layers down, positions across), by the logit lens and,
where one is fitted (``interpedia lens fit``), the Jacobian lens. A GET form, so a run is a link; the JSON twin
(``/{model}/lens.json?prompt=...``) carries the run as ``/api/lens/prompt`` answers it with ``stream: false``.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.errors import Invalid, Unavailable, UserError
from interpedia.inference.availability import model_availability
from interpedia.store.catalogue import get_model
from interpedia.web.deps import SessionDep, SettingsDep, local_inference
from interpedia.web.pages.dashboard import display_token
from interpedia.web.pages.render import form_page
from interpedia.web.pages.routes import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

TYPES = {"LOGIT_LENS": "Logit lens", "JACOBIAN_LENS": "Jacobian lens"}
MAX_PROMPT_CHARS = 2000
TOP_N = 5


def _jacobian_status(request: Request, model_id: str, available: bool) -> dict[str, Any]:
    if not available:
        return {"available": False, "reason": None, "meta": None}
    from interpedia.inference.lens import jacobian_lens

    try:
        lens, why = jacobian_lens(local_inference(request), model_id)
    except UserError as exc:
        return {"available": False, "reason": exc.message, "meta": None}
    if lens is None:
        return {"available": False, "reason": why, "meta": None}
    keep = ("positions", "n_prompts", "context_size", "dataset", "fitted_at")
    return {"available": True, "reason": None, "meta": {k: lens.meta[k] for k in keep if k in lens.meta}}


def _model_context(request: Request, session: Session, settings: Settings, model_id: str) -> dict[str, Any]:
    model = get_model(session, model_id)
    status = model_availability(session, settings, model)
    return {
        "modelId": model.id,
        "displayName": model.display_name or model.id,
        "available": status["available"],
        "reason": status["reason"],
        "jacobian": _jacobian_status(request, model.id, status["available"]),
    }


def _grid(run: dict[str, Any], kind: str) -> dict[str, Any]:
    """One lens as rows of cells: layers from the output down, each cell a position's top prediction."""
    layers: list[int] = run["meta"]["layers_by_type"][kind]
    tokens = run["tokens"]
    rows = []
    for li in range(len(layers) - 1, -1, -1):
        cells = []
        for frame in tokens:
            res = next(r for r in frame["results"] if r["type"] == kind)
            words, probs = res["top_tokens"][li], res["top_probs"][li]
            top = probs[0] if probs else 0.0
            cells.append(
                {
                    "token": display_token(words[0]) if words else "",
                    "prob": top,
                    "level": min(10, max(1, math.ceil(top * 10))) if top > 0 else 0,
                    "title": ", ".join(f"{display_token(w)!r} {p:.1%}" for w, p in zip(words, probs, strict=False)),
                }
            )
        rows.append({"layer": layers[li], "output": li == len(layers) - 1, "cells": cells})
    columns = [
        {"position": f["position"], "token": display_token(f["token"]), "generated": f["is_generated"]} for f in tokens
    ]
    return {"type": kind, "title": TYPES[kind], "columns": columns, "rows": rows}


@router.get("/{model_id}/lens")
@router.get("/{model_id}/lens.json")
def lens_page(request: Request, session: SessionDep, settings: SettingsDep, model_id: str) -> Response:
    """The lens form for a model and, with ``?prompt=``, the readout grid."""
    as_json = request.url.path.endswith(".json")
    ctx = _model_context(request, session, settings, model_id)
    q = request.query_params
    types = [t for t in q.getlist("type") if t in TYPES] or ["LOGIT_LENS"]
    form: dict[str, Any] = {
        "prompt": q.get("prompt", ""),
        "types": types,
        "topN": TOP_N,
        "filterNonWordTokens": q.get("filter", "true") != "false",
    }
    data: dict[str, Any] = {"page": "lens", "model": ctx, "form": form, "result": None, "error": None}
    error: UserError | None = None
    grids: list[dict[str, Any]] = []
    try:
        raw_top = q.get("topN")
        if raw_top:
            if not raw_top.isdigit() or not 1 <= int(raw_top) <= 20:
                raise Invalid("topN must be a whole number from 1 to 20", "topN")
            form["topN"] = int(raw_top)
        prompt = form["prompt"]
        if prompt.strip():
            if len(prompt) > MAX_PROMPT_CHARS:
                raise Invalid(f"the prompt is longer than {MAX_PROMPT_CHARS} characters", "prompt")
            if not ctx["available"]:
                raise Unavailable(ctx["reason"], "modelId")
            if "JACOBIAN_LENS" in types and not ctx["jacobian"]["available"]:
                raise Invalid(ctx["jacobian"]["reason"] or "no Jacobian lens for this model", "type")
            from interpedia.inference.lens import buffered, run_lens

            frames = run_lens(
                local_inference(request),
                ctx["modelId"],
                prompt=prompt,
                chat=None,
                types=types,
                layers=[],
                top_n=form["topN"],
                prepend_bos=True,
                num_completion_tokens=0,
                temperature=1.0,
                seed=0,
                filter_non_word=form["filterNonWordTokens"],
            )
            data["result"] = buffered(iter(frames))
            grids = [_grid(data["result"], kind) for kind in types]
    except UserError as exc:
        error = exc
        data["error"] = {"message": exc.message, "field": exc.field}
    return form_page(request, session, "lens.html", data, error, as_json=as_json, grids=grids, types=TYPES)
