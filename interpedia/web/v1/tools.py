"""The rest of Neuronpedia's inference server under ``/v1``: ``capabilities``, ``steer/health``, ``activation/raw``
(a hook's raw activations, for probes), ``activation/attention`` (one head's pattern) and ``apply-chat-template``.
Answers are snake_case like interpedia's other ``/v1`` answers; the workflows are :mod:`interpedia.inference.probes`
and :mod:`interpedia.inference.capabilities`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import Field, StrictBool, StrictInt, StrictStr

from interpedia.errors import Invalid
from interpedia.inference.availability import servable_models, servable_source_sets
from interpedia.store.catalogue import get_model
from interpedia.web.deps import LocalInferenceDep, SessionDep, SettingsDep
from interpedia.web.v1.deps import require_secret
from interpedia.web.wire import CamelBody, json_response

router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Depends(require_secret)])

HookPoint = Literal["residual_stream", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_post", "z"]
MAX_RAW_PROMPTS = 16  # as upstream


class RawBody(CamelBody):
    """``/activation/raw``."""

    prompts: Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1, max_length=MAX_RAW_PROMPTS)]
    model: StrictStr | None = Field(default=None, description="Model id; may be left out when only one is served.")
    layers: Annotated[
        list[Annotated[StrictInt, Field(ge=0, le=1023)]] | None,
        Field(max_length=1024, description="Layers to return; absent or empty: every layer."),
    ] = None
    hook_point: HookPoint = Field(
        default="residual_stream",
        description="residual_stream (the residual after the block, upstream's only point) or another per-layer hook.",
    )
    type: Literal["final_output_token", "all_tokens"] = Field(
        default="final_output_token", description="Each prompt's last token (upstream's only type), or every token."
    )


class AttentionBody(CamelBody):
    """``/activation/attention``."""

    prompt: Annotated[StrictStr, Field(min_length=1)]
    model: StrictStr
    layer: Annotated[StrictInt, Field(ge=0, le=1023)]
    head: Annotated[StrictInt, Field(ge=0, le=1023)]


class ChatMessageIn(CamelBody):
    """One message to render through the model's chat template."""

    role: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    content: Annotated[StrictStr, Field(max_length=65536)]
    channel: Annotated[StrictStr, Field(max_length=64)] | None = None


class ChatTemplateBody(CamelBody):
    """``/apply-chat-template``."""

    model: StrictStr | None = Field(default=None, description="Model id; may be left out when only one is served.")
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=200)]
    add_generation_prompt: StrictBool = True
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the tokenizer's chat template (e.g. enable_thinking)."
    )


def _model(session: Any, settings: Any, model_id: str | None) -> str:
    """The model asked for (visible to the caller), or the only one served when none is named."""
    if model_id is not None:
        return get_model(session, model_id).id
    models = servable_models(session, settings)
    if len(models) != 1:
        raise Invalid(f"name the model: this server serves {len(models)} models", field="model")
    return models[0]


@router.get("/capabilities", summary="What this server (and a model on it) can serve")
def capabilities(
    session: SessionDep,
    settings: SettingsDep,
    svc: LocalInferenceDep,
    model: Annotated[str | None, Query(max_length=256, description="A model id to describe (loaded if cold).")] = None,
) -> Response:
    """Limits, the models it serves, and per-endpoint support; with ``model``, that model's layers, hook points,
    source sets, chat template and whether a Jacobian lens is fitted."""
    from interpedia.inference.capabilities import capabilities as describe

    model_id = get_model(session, model).id if model is not None else None
    sets = servable_source_sets(session, model_id) if model_id is not None else []
    return json_response(describe(svc, servable_models(session, settings), model_id, sets))


@router.get("/steer/health", summary="Loaded models and SAEs, device and memory")
def steer_health(svc: LocalInferenceDep) -> Response:
    """``{status, stats, summary}``."""
    from interpedia.inference.capabilities import health

    return json_response(health(svc))


@router.post("/activation/raw", summary="A hook's raw activations (no SAE), for probes")
def activation_raw(body: RawBody, session: SessionDep, settings: SettingsDep, svc: LocalInferenceDep) -> Response:
    """``{hook_point, type, dtype, device, results: [{token_strings, token_ids, activations: [{layer,
    token_indices, values}]}]}``."""
    from interpedia.inference.probes import raw_activations

    model_id = _model(session, settings, body.model)
    return json_response(raw_activations(svc, model_id, body.prompts, body.layers, body.hook_point, body.type))


@router.post("/activation/attention", summary="One attention head's pattern on a prompt (sparse)")
def activation_attention(body: AttentionBody, session: SessionDep, svc: LocalInferenceDep) -> Response:
    """``{tokens, seq_len, attention_indices, attention_values, max_activation}``: per query row the 8 largest
    weights of at least 0.005, as flat indices ``q * seq_len + k`` (upstream's HeadVis form)."""
    from interpedia.inference.probes import attention_pattern

    model_id = get_model(session, body.model).id
    return json_response(attention_pattern(svc, model_id, body.prompt, body.layer, body.head))


@router.post("/apply-chat-template", summary="Render chat messages; per-token message spans")
def apply_chat_template(
    body: ChatTemplateBody, session: SessionDep, settings: SettingsDep, svc: LocalInferenceDep
) -> Response:
    """``{prompt, tokens, spans: [{position, token_id, token_str, message_index, role, channel, section}]}``;
    422 for a model without a chat template."""
    from interpedia.inference.probes import chat_template_spans

    model_id = _model(session, settings, body.model)
    messages = [m.model_dump() for m in body.messages]
    return json_response(
        chat_template_spans(svc, model_id, messages, body.add_generation_prompt, body.chat_template_kwargs)
    )
