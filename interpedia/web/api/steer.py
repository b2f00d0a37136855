"""Steering in the webapp API: ``/api/steer``, ``/api/steer-chat`` and ``/api/steer-load``, with neuronpedia.org's
bodies (camelCase, except the snake_case settings ``n_tokens``, ``freq_penalty``, ``strength_multiplier``,
``steer_special_tokens``, ``steer_method``).

The workflow (cache lookup, inference, saving the shareable outputs) is
:mod:`interpedia.inference.steer_outputs`; the ``/{model}/steer`` page validates its form with these bodies.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field, StrictBool, StrictInt, StrictStr

from interpedia.inference import steer_outputs
from interpedia.inference.steer_outputs import SteerFeature, SteerOptions
from interpedia.store.steering import load_shared
from interpedia.web.deps import InferenceDep, OptionalUser, SessionDep, SettingsDep, session_factory
from interpedia.web.urls import absolute_url
from interpedia.web.wire import SSE_RESPONSES, Body, Finite, json_response, sse_response

router = APIRouter(tags=["steering"])
MAX_PROMPT_CHARS = 2048


class SteerFeatureBody(Body):
    """A feature (or stored vector) and how hard to steer with it."""

    modelId: StrictStr
    layer: StrictStr
    index: StrictInt | StrictStr
    strength: Finite


class ChatMessageBody(Body):
    """One chat message."""

    role: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    content: Annotated[StrictStr, Field(max_length=MAX_PROMPT_CHARS * 4)]


class _SteerSettingsBody(Body):
    modelId: StrictStr
    features: Annotated[list[SteerFeatureBody], Field(min_length=1, max_length=32)]
    temperature: Annotated[Finite, Field(ge=0, le=2)]
    n_tokens: Annotated[StrictInt, Field(ge=1)]
    freq_penalty: Annotated[Finite, Field(ge=-2, le=2)] = 0.0
    seed: Annotated[Finite, Field(ge=-100_000_000, le=100_000_000)] = 16
    strength_multiplier: Annotated[Finite, Field(ge=0, le=10)] = 1.0
    steer_method: Literal["SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP"] = "SIMPLE_ADDITIVE"
    n_logprobs: Annotated[StrictInt, Field(ge=0, le=10)] = 0
    stream: StrictBool = False

    def _common(self, options: dict[str, Any]) -> dict[str, Any]:
        features = [SteerFeature(f.modelId, f.layer, f.index, f.strength) for f in self.features]
        settings = {
            "temperature": self.temperature,
            "n_tokens": self.n_tokens,
            "freq_penalty": self.freq_penalty,
            "seed": self.seed,
            "strength_multiplier": self.strength_multiplier,
            "steer_method": self.steer_method,
            "n_logprobs": self.n_logprobs,
            **options,
        }
        return {"model_id": self.modelId, "features": features, "options": SteerOptions(**settings)}


class SteerBody(_SteerSettingsBody):
    """``/api/steer``."""

    prompt: Annotated[StrictStr, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]

    def args(self) -> dict[str, Any]:
        """The body as :func:`interpedia.inference.steer_outputs.steer_completion`'s keyword arguments."""
        return {**self._common({}), "prompt": self.prompt}


class SteerChatBody(_SteerSettingsBody):
    """``/api/steer-chat``."""

    defaultChatMessages: Annotated[list[ChatMessageBody], Field(min_length=1, max_length=200)]
    steeredChatMessages: Annotated[list[ChatMessageBody], Field(min_length=1, max_length=200)]
    steer_special_tokens: StrictBool = True

    def args(self) -> dict[str, Any]:
        """The body as :func:`interpedia.inference.steer_outputs.steer_chat`'s keyword arguments."""
        return {
            **self._common({"steer_special_tokens": self.steer_special_tokens}),
            "default_chat": [m.model_dump() for m in self.defaultChatMessages],
            "steered_chat": [m.model_dump() for m in self.steeredChatMessages],
        }


class SteerPresetsBody(Body):
    """``/api/steer/presets``."""

    modelId: Annotated[StrictStr, Field(min_length=1, max_length=256)]


class SteerLoadBody(Body):
    """``/api/steer-load``."""

    steerOutputId: Annotated[StrictStr, Field(min_length=1, max_length=64)]


@router.post(
    "/steer",
    summary="Steer a completion with features; default and steered side by side",
    responses=SSE_RESPONSES,
)
def steer(
    request: Request,
    body: SteerBody,
    session: SessionDep,
    svc: InferenceDep,
    settings: SettingsDep,
    user: OptionalUser,
) -> Response:
    """``{STEERED, DEFAULT, steeredLogProbs, defaultLogProbs, id, shareUrl, limit}``; cached per setting. With
    ``stream``: server-sent events of that result after every token, the last with ``id`` and ``shareUrl``."""
    creator_id = user.id if user else None
    if body.stream:
        factory = session_factory(request)
        return sse_response(
            steer_outputs.steer_completion_stream(session, factory, settings, svc, **body.args(), creator_id=creator_id)
        )
    doc = steer_outputs.steer_completion(session, settings, svc, **body.args(), creator_id=creator_id)
    return json_response(_with_share_url(request, doc))


@router.post(
    "/steer-chat",
    summary="Steer a chat with features; default and steered side by side",
    responses=SSE_RESPONSES,
)
def steer_chat(
    request: Request,
    body: SteerChatBody,
    session: SessionDep,
    svc: InferenceDep,
    settings: SettingsDep,
    user: OptionalUser,
) -> Response:
    """``{STEERED: {raw, chatTemplate}, DEFAULT: {...}, id, shareUrl, limit, settings}``; 422 for a model
    without a chat template. With ``stream``: server-sent events of that result after every token."""
    creator_id = user.id if user else None
    if body.stream:
        factory = session_factory(request)
        return sse_response(
            steer_outputs.steer_chat_stream(session, factory, settings, svc, **body.args(), creator_id=creator_id)
        )
    doc = steer_outputs.steer_chat(session, settings, svc, **body.args(), creator_id=creator_id)
    return json_response(_with_share_url(request, doc))


@router.post("/steer-load", summary="A saved steering result, by its share id")
def steer_load(body: SteerLoadBody, request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """Both outputs, the features, the settings and the prompt (or chat messages) of a share link."""
    doc = load_shared(session, body.steerOutputId)
    return json_response(_with_share_url(request, doc))


@router.post("/steer/presets", summary="Prompts and feature sets to steer a model with")
def steer_presets(body: SteerPresetsBody, session: SessionDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """``{model, defaultPrompt, promptPresets, featurePresets, defaultSelectedFeatures}``; the caller's own vectors
    of the model come first among the feature presets (INTERPEDIA_STEER_PRESETS names the rest)."""
    from interpedia.inference.steer_presets import steer_presets as presets

    return json_response(presets(session, settings.steer_presets, body.modelId, user))


def _with_share_url(request: Request, doc: dict[str, Any]) -> dict[str, Any]:
    # The share link opens on whatever host and port the caller reached.
    return {**doc, "shareUrl": absolute_url(request, steer_outputs.share_path(doc["id"]))}
