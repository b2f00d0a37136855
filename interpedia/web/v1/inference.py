"""The inference server API (Neuronpedia's ``apps/inference``, spec 1.9.0) under ``/v1``.

Responses use the snake_case names and strict types the official ``neuronpedia-inference-client`` parses
(``max_value_index`` is an integer, ``tokens_is_special`` is present); requests are accepted in snake_case
and camelCase. ``X-SECRET-KEY`` is required when ``INTERPEDIA_SECRET`` is set. Models load on first use
(``interpedia.inference``), so this module imports no torch.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from interpedia import __version__
from interpedia.errors import Invalid
from interpedia.inference.searches import MAX_SOURCE_PROMPTS
from interpedia.store.formats import parse_index
from interpedia.web.deps import LocalInferenceDep, SettingsDep
from interpedia.web.v1.deps import require_secret
from interpedia.web.wire import (
    SSE_RESPONSES,
    CamelBody,
    Finite,
    Index,
    Int,
    integral,
    json_response,
    setting_limit,
    sse_response,
)

if TYPE_CHECKING:
    from interpedia.inference.service import InferenceService

router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Depends(require_secret)])

SteerMethod = Literal["SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP"]
SteerType = Literal["STEERED", "DEFAULT"]
# A batch of prompts (at most INTERPEDIA_INFERENCE_MAX_BATCH_PROMPTS).
Prompts = Annotated[
    list[StrictStr], Field(min_length=1, json_schema_extra=setting_limit("maxItems", "inference_max_batch_prompts"))
]


def _exactly_one(*groups: dict[str, Any]) -> ConfigDict:
    """A body that needs exactly one of these groups of fields, each given and not null (``{field: schema}``)."""
    return ConfigDict(json_schema_extra={"oneOf": [{"required": list(g), "properties": g} for g in groups]})


_NUMBER_LIST = {"type": "array", "items": {"type": "number"}}
_INDEX = {"anyOf": [{"type": "integer"}, {"type": "string"}]}


class SingleBody(CamelBody):
    """``/activation/single``: a feature (``source`` + ``index``) or a ``vector`` at a ``hook``."""

    model_config = CamelBody.model_config | _exactly_one(
        {"source": {"type": "string"}, "index": _INDEX}, {"vector": _NUMBER_LIST, "hook": {"type": "string"}}
    )

    prompt: StrictStr
    model: StrictStr
    source: StrictStr | None = None
    index: Index | None = None
    vector: list[Finite] | None = None
    hook: StrictStr | None = None

    @model_validator(mode="after")
    def _one_target(self) -> SingleBody:
        if (self.source is not None and self.index is not None) == (self.vector is not None and self.hook is not None):
            raise ValueError("give exactly one of source with index, or vector with hook")
        return self


class SingleBatchBody(SingleBody):
    """``/activation/single-batch``."""

    prompt: StrictStr = ""
    prompts: Prompts


class AllBody(CamelBody):
    """``/activation/all``."""

    prompt: StrictStr
    model: StrictStr
    source_set: StrictStr
    selected_sources: list[StrictStr] = []
    sort_by_token_indexes: list[Int] = []
    ignore_bos: StrictBool = True
    num_results: Annotated[
        StrictInt,
        Field(ge=1, json_schema_extra=setting_limit("maximum", "inference_max_results")),
        BeforeValidator(integral),
    ] = 25


class AllBatchBody(AllBody):
    """``/activation/all-batch``."""

    prompt: StrictStr = ""
    prompts: Prompts


class TopkBody(CamelBody):
    """``/activation/topk-by-token``."""

    prompt: StrictStr
    model: StrictStr
    source: StrictStr
    top_k: Annotated[
        StrictInt,
        Field(ge=1, json_schema_extra=setting_limit("maximum", "inference_max_top_k")),
        BeforeValidator(integral),
    ] = 5
    ignore_bos: StrictBool = True


class TopkBatchBody(TopkBody):
    """``/activation/topk-by-token-batch``."""

    prompt: StrictStr = ""
    prompts: Prompts


class SourceBody(CamelBody):
    """``/activation/source``."""

    prompts: Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_SOURCE_PROMPTS)]
    model: StrictStr
    source: StrictStr


class SteerFeatureIn(CamelBody):
    """A feature to steer with."""

    model: StrictStr
    source: StrictStr
    index: Index
    strength: Finite
    steering_vector: list[Finite] | None = None


class SteerVectorIn(CamelBody):
    """A raw vector to steer with."""

    steering_vector: Annotated[list[Finite], Field(min_length=1)]
    strength: Finite
    hook: StrictStr


class ChatMessage(CamelBody):
    """One chat message."""

    role: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    content: StrictStr


class _SteerBody(CamelBody):
    model: StrictStr
    steer_method: SteerMethod = "SIMPLE_ADDITIVE"
    normalize_steering: StrictBool = False
    types: Annotated[list[SteerType], Field(min_length=1, max_length=2)] = ["STEERED", "DEFAULT"]
    features: list[SteerFeatureIn] | None = None
    vectors: list[SteerVectorIn] | None = None
    n_completion_tokens: Annotated[StrictInt, Field(ge=1)]
    temperature: Annotated[Finite, Field(ge=0)]
    strength_multiplier: Finite = 1.0
    freq_penalty: Finite = 0.0
    seed: Finite = 0
    stream: StrictBool = False
    n_logprobs: Annotated[StrictInt, Field(ge=0, le=10)] = 0

    @model_validator(mode="after")
    def _one_kind(self) -> _SteerBody:
        if (self.features is None) == (self.vectors is None):
            raise ValueError("exactly one of features or vectors must be provided")
        if len(set(self.types)) != len(self.types):
            raise ValueError("types lists the same type twice")
        return self


class SteerCompletionBody(_SteerBody):
    """``/steer/completion``."""

    prompt: StrictStr


class SteerChatBody(_SteerBody):
    """``/steer/completion-chat``."""

    prompt: Annotated[list[ChatMessage], Field(min_length=1, max_length=200)]
    steer_special_tokens: StrictBool = True
    is_assistant_axis: StrictBool = False


class TokenizeBody(CamelBody):
    """``/tokenize``."""

    model: StrictStr
    text: StrictStr
    prepend_bos: StrictBool | None = None


class SaeVectorBody(CamelBody):
    """``/util/sae-vector``."""

    model: StrictStr
    source: StrictStr
    index: Index


class NPFeatureIn(CamelBody):
    """A feature address."""

    model: StrictStr
    source: StrictStr
    index: Index


class CossimBody(CamelBody):
    """``/util/sae-topk-by-decoder-cossim``."""

    model_config = CamelBody.model_config | _exactly_one({"feature": {"type": "object"}}, {"vector": _NUMBER_LIST})

    feature: NPFeatureIn | None = None
    vector: list[Finite] | None = None
    model: StrictStr
    source: StrictStr
    num_results: Annotated[StrictInt, Field(ge=1), BeforeValidator(integral)]


def _check_batch(prompts: list[str], settings: Any) -> None:
    if len(prompts) > settings.inference_max_batch_prompts:
        raise Invalid(
            f"at most {settings.inference_max_batch_prompts} prompts per request "
            "(INTERPEDIA_INFERENCE_MAX_BATCH_PROMPTS)",
            "prompts",
        )


def _single(svc: InferenceService, body: SingleBody, prompt: str) -> dict[str, Any]:
    if body.vector is not None and body.hook is not None:
        return svc.activation_vector(body.model, prompt, body.vector, body.hook)
    return svc.activation_single(body.model, prompt, str(body.source), parse_index(body.index))


@router.get("/health", summary="Whether this inference server is up, and what it has loaded")
def health(request: Request, settings: SettingsDep) -> Response:
    """``{status, version, role, device, warm: {models, sources}}``; behind X-SECRET-KEY like every /v1 route, so a
    web server's health check also checks its secret. Loads nothing."""
    service = getattr(request.app.state, "inference", None)
    warm = service.registry.warm() if service is not None else {"models": [], "sources": []}
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "role": getattr(request.app.state, "role", "all"),
            "device": settings.inference_device,
            "warm": warm,
        }
    )


@router.post("/activation/single", summary="Activations of one SAE latent, or of a vector at a hook")
def activation_single(body: SingleBody, svc: LocalInferenceDep) -> Response:
    """Values at every token (BOS dropped for a latent), with the tokens and which are special."""
    return json_response(_single(svc, body, body.prompt))


@router.post("/activation/single-batch", summary="activation/single for several prompts")
def activation_single_batch(body: SingleBatchBody, svc: LocalInferenceDep, settings: SettingsDep) -> Response:
    """``{results: [...]}`` in prompt order."""
    _check_batch(body.prompts, settings)
    return json_response({"results": [_single(svc, body, p) for p in body.prompts]})


def _all(svc: InferenceService, body: AllBody, prompt: str) -> dict[str, Any]:
    return svc.activation_all(
        body.model,
        prompt,
        body.source_set,
        body.selected_sources,
        body.sort_by_token_indexes,
        body.ignore_bos,
        body.num_results,
    )


@router.post("/activation/all", summary="Top features of a prompt across the sources of a set")
def activation_all(body: AllBody, svc: LocalInferenceDep) -> Response:
    """The features with the highest max activation (or sum at ``sort_by_token_indexes``)."""
    return json_response(_all(svc, body, body.prompt))


@router.post("/activation/all-batch", summary="activation/all for several prompts")
def activation_all_batch(body: AllBatchBody, svc: LocalInferenceDep, settings: SettingsDep) -> Response:
    """``{results: [...]}`` in prompt order."""
    _check_batch(body.prompts, settings)
    return json_response({"results": [_all(svc, body, p) for p in body.prompts]})


@router.post("/activation/topk-by-token", summary="Top features at each token of a prompt")
def activation_topk_by_token(body: TopkBody, svc: LocalInferenceDep) -> Response:
    """Per token: position, string, whether special, and the ``top_k`` most active features."""
    return json_response(svc.topk_by_token(body.model, body.prompt, body.source, body.top_k, body.ignore_bos))


@router.post("/activation/topk-by-token-batch", summary="activation/topk-by-token for several prompts")
def activation_topk_by_token_batch(body: TopkBatchBody, svc: LocalInferenceDep, settings: SettingsDep) -> Response:
    """``{results: [...]}`` in prompt order."""
    _check_batch(body.prompts, settings)
    return json_response(
        {"results": [svc.topk_by_token(body.model, p, body.source, body.top_k, body.ignore_bos) for p in body.prompts]}
    )


@router.post("/activation/source", summary="Every active feature of a source, per prompt (sparse)")
def activation_source(body: SourceBody, svc: LocalInferenceDep) -> Response:
    """``{results: [{tokens, activeFeatures: {index: [[token, value], ...]}}]}``."""
    return json_response(svc.activation_source(body.model, body.prompts, body.source))


def _steer_parts(svc: InferenceService, body: _SteerBody) -> tuple[list[Any], Any]:
    from interpedia.inference.options import FeatureRef, SteerSettings

    if body.features is not None:
        for n, f in enumerate(body.features):
            if f.model != body.model:
                raise Invalid(f"feature {n} is of model {f.model!r}, not {body.model!r}", f"features[{n}].model")
        directions = svc.directions(
            body.model,
            [FeatureRef(f.source, parse_index(f.index), f.strength, f.steering_vector) for f in body.features],
        )
    else:
        directions = svc.vector_directions([(v.steering_vector, v.strength, v.hook) for v in body.vectors or []])
    settings = SteerSettings(
        method=body.steer_method,
        normalize=body.normalize_steering,
        strength_multiplier=body.strength_multiplier,
        n_tokens=body.n_completion_tokens,
        temperature=body.temperature,
        freq_penalty=body.freq_penalty,
        seed=int(body.seed),
        n_logprobs=body.n_logprobs,
        steer_special_tokens=getattr(body, "steer_special_tokens", True),
    )
    return directions, settings


@router.post("/steer/completion", summary="Complete a prompt with and without steering", responses=SSE_RESPONSES)
def steer_completion(body: SteerCompletionBody, svc: LocalInferenceDep) -> Response:
    """``{outputs: [{type, output, logprobs?}]}``, one per requested type; with ``stream``, server-sent events of
    that answer after every token (``data: {outputs: [...]}``), as Neuronpedia's inference server streams it."""
    directions, settings = _steer_parts(svc, body)
    chunks = svc.steer_completion_stream(body.model, body.prompt, directions, list(body.types), settings)
    return sse_response(chunks) if body.stream else json_response(deque(chunks, maxlen=1)[0])


@router.post("/steer/completion-chat", summary="Continue a chat with and without steering", responses=SSE_RESPONSES)
def steer_completion_chat(body: SteerChatBody, svc: LocalInferenceDep) -> Response:
    """``{input: {chat_template, raw}, outputs: [{chat_template, raw, type}]}``; 422 without a chat template; with
    ``stream``, server-sent events of that answer after every token."""
    if body.is_assistant_axis:
        raise Invalid("is_assistant_axis (persona monitoring) is not supported by this server", "is_assistant_axis")
    directions, settings = _steer_parts(svc, body)
    messages = [{"role": m.role, "content": m.content} for m in body.prompt]
    chunks = svc.steer_chat_stream(body.model, messages, directions, list(body.types), settings)
    return sse_response(chunks) if body.stream else json_response(deque(chunks, maxlen=1)[0])


@router.post("/tokenize", summary="Split text into the model's tokens")
def tokenize(body: TokenizeBody, svc: LocalInferenceDep) -> Response:
    """``{tokens, token_strings, prepend_bos}``."""
    return json_response(svc.tokenize(body.model, body.text, body.prepend_bos))


@router.post("/util/sae-vector", summary="An SAE latent's decoder vector")
def util_sae_vector(body: SaeVectorBody, svc: LocalInferenceDep) -> Response:
    """``{vector, hookName}``: the trained decoder row and the hook it writes to."""
    return json_response(svc.sae_vector(body.model, body.source, parse_index(body.index)))


@router.post("/util/sae-topk-by-decoder-cossim", summary="Latents of the same SAE nearest by decoder cosine")
def util_topk_by_decoder_cossim(body: CossimBody, svc: LocalInferenceDep) -> Response:
    """The ``num_results`` (at most 128) other latents whose decoder rows are nearest the feature's (or vector)."""
    if body.feature is not None and (body.feature.model != body.model or body.feature.source != body.source):
        raise Invalid("feature must be of the same model and source as the request", "feature")
    index = parse_index(body.feature.index) if body.feature is not None else None
    return json_response(svc.topk_by_decoder_cossim(body.model, body.source, body.num_results, index, body.vector))
