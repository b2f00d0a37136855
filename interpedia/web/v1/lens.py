"""``/v1/lens/prompt``: the logit lens and the Jacobian lens over a prompt, as Neuronpedia's inference server
answers it (NDJSON frames ``meta``, ``prompt``, ``token`` per position, ``done``; or one buffered document with
``stream: false``). The webapp's ``/api/lens/prompt`` takes the same run with camelCase fields.

Not supported here (a request asking for them is refused, not silently ignored): steering, ablating or swapping
lens tokens (``steer_tokens``, ``swap_token``); ``cached_token_ids`` is accepted and ignored (every position is
read out again, ``reuse_len`` is 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse
from pydantic import Field, StrictBool, StrictInt, StrictStr, model_validator

from interpedia.web.deps import LocalInferenceDep
from interpedia.web.v1.deps import require_secret
from interpedia.web.wire import CamelBody, Finite, json_response

router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Depends(require_secret)])

LensType = Literal["LOGIT_LENS", "JACOBIAN_LENS"]
MAX_TOP_N = 20
MAX_COMPLETION_TOKENS = 256
NDJSON = "application/x-ndjson"
LENS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "NDJSON frames (stream: true), or {meta, prompt, tokens, done} (stream: false)",
        "content": {NDJSON: {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
    }
}


class LensChatMessage(CamelBody):
    """One message of a chat-formatted lens prompt."""

    role: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    content: Annotated[StrictStr, Field(max_length=16384)]


class LensSteerToken(CamelBody):
    """A lens readout to steer on (not supported by this server)."""

    token: StrictStr
    type: LensType


class LensRun(CamelBody):
    """What one lens run reads out, shared by ``/v1/lens/prompt`` and ``/api/lens/prompt``."""

    type: Annotated[list[LensType], Field(min_length=1, max_length=2, description="Lenses to read out.")]
    prompt: Annotated[StrictStr, Field(min_length=1, max_length=16384)] | None = None
    chat: Annotated[list[LensChatMessage], Field(min_length=1, max_length=64)] | None = None
    input_token_ids: Annotated[
        list[Annotated[StrictInt, Field(ge=0)]],
        Field(max_length=4096, description="Exact token ids to read out over (instead of prompt or chat)."),
    ] = []
    top_n: Annotated[StrictInt, Field(ge=1, le=MAX_TOP_N)] = 10
    layers: Annotated[
        list[Annotated[StrictInt, Field(ge=0, le=1023)]],
        Field(max_length=1024, description="Layers to read out; empty: every layer. The last is always included."),
    ] = []
    prepend_bos: StrictBool = True
    stream: StrictBool = True
    temperature: Annotated[Finite, Field(ge=0, le=2)] = 1.0
    num_completion_tokens: Annotated[StrictInt, Field(ge=0, le=MAX_COMPLETION_TOKENS)] = 0
    seed: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] = 0
    filter_non_word_tokens: StrictBool = True
    cached_token_ids: Annotated[list[StrictInt], Field(max_length=4096)] = []
    steer_tokens: Annotated[
        list[LensSteerToken], Field(max_length=0, description="Steering on lens tokens is not supported here.")
    ] = []
    swap_token: Annotated[None, Field(description="Swapping lens tokens is not supported here.")] = None

    @model_validator(mode="after")
    def _one_input(self) -> LensRun:
        given = [self.prompt is not None, self.chat is not None, bool(self.input_token_ids)]
        if sum(given) != 1:
            raise ValueError("give exactly one of prompt, chat and input_token_ids")
        return self


class LensPromptBody(LensRun):
    """``/v1/lens/prompt``."""

    model: StrictStr


def lens_response(svc: Any, model_id: str, body: LensRun) -> Response:
    """The run's frames as NDJSON (``stream``) or one JSON document."""
    from interpedia.inference.lens import buffered, run_lens

    frames = run_lens(
        svc,
        model_id,
        prompt=body.prompt,
        chat=[m.model_dump() for m in body.chat] if body.chat is not None else None,
        token_ids=body.input_token_ids or None,
        types=list(body.type),
        layers=body.layers,
        top_n=body.top_n,
        prepend_bos=body.prepend_bos,
        num_completion_tokens=body.num_completion_tokens if not body.input_token_ids else 0,
        temperature=body.temperature,
        seed=body.seed,
        filter_non_word=body.filter_non_word_tokens,
    )
    if not body.stream:
        return json_response(buffered(iter(frames)))

    def lines() -> Iterator[bytes]:
        for frame in frames:
            yield orjson.dumps(frame) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)


@router.post("/lens/prompt", summary="Logit and Jacobian lens over a prompt", responses=LENS_RESPONSES)
def lens_prompt(body: LensPromptBody, svc: LocalInferenceDep) -> Response:
    """Per position and layer, the top next-token predictions of the residual stream read out by each lens."""
    return lens_response(svc, body.model, body)
