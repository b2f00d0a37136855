"""``/api/lens/prompt``: the lens run of ``/v1/lens/prompt`` through the webapp API (``modelId``, camelCase fields
such as ``topN`` and ``inputTokenIds``), for models the caller may see; NDJSON frames or, with ``stream: false``,
one ``{meta, prompt, tokens, done}`` document."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import StrictStr

from interpedia.store.catalogue import get_model
from interpedia.web.deps import LocalInferenceDep, SessionDep
from interpedia.web.v1.lens import LENS_RESPONSES, LensRun, lens_response

router = APIRouter(tags=["lens"])


class LensApiBody(LensRun):
    """``/api/lens/prompt``."""

    model_id: StrictStr


@router.post("/lens/prompt", summary="Logit and Jacobian lens over a prompt", responses=LENS_RESPONSES)
def lens_prompt(body: LensApiBody, session: SessionDep, svc: LocalInferenceDep) -> Response:
    """Per position and layer, the top next-token predictions of the residual stream read out by each lens."""
    model = get_model(session, body.model_id)  # hidden models are not found
    return lens_response(svc, model.id, body)
