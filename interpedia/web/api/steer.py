"""Steering in the webapp API: ``/api/steer``, ``/api/steer-chat`` and ``/api/steer-load``, with neuronpedia.org's
bodies (camelCase, except the snake_case settings ``n_tokens``, ``freq_penalty``, ``strength_multiplier``,
``steer_special_tokens``, ``steer_method``).

Each output (DEFAULT, STEERED) is cached in ``steer_outputs`` under a hash of every setting, the input, the
features (STEERED only) and the weights; the STEERED output's id is the share link (``/steer/{id}``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import Field, StrictBool, StrictInt, StrictStr, model_validator

from interpedia.errors import Invalid
from interpedia.store.formats import parse_index
from interpedia.store.steering import find_output, load_shared, output_chat, output_logprobs, save_output, steer_key
from interpedia.web.deps import OptionalUser, SessionDep, SettingsDep
from interpedia.web.v1.inference import service
from interpedia.web.wire import Body, Finite, json_response

router = APIRouter(tags=["steering"])

Service = Annotated[Any, Depends(service)]
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

    @model_validator(mode="after")
    def _no_stream(self) -> _SteerSettingsBody:
        if self.stream:
            raise ValueError("stream: true is not supported; send stream: false for one JSON answer")
        return self


class SteerBody(_SteerSettingsBody):
    """``/api/steer``."""

    prompt: Annotated[StrictStr, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]


class SteerChatBody(_SteerSettingsBody):
    """``/api/steer-chat``."""

    defaultChatMessages: Annotated[list[ChatMessageBody], Field(min_length=1, max_length=200)]
    steeredChatMessages: Annotated[list[ChatMessageBody], Field(min_length=1, max_length=200)]
    steer_special_tokens: StrictBool = True


class SteerLoadBody(Body):
    """``/api/steer-load``."""

    steerOutputId: Annotated[StrictStr, Field(min_length=1, max_length=64)]


def _settings(body: _SteerSettingsBody, chat: bool) -> dict[str, Any]:
    out = {
        "temperature": body.temperature,
        "n_tokens": body.n_tokens,
        "freq_penalty": body.freq_penalty,
        "seed": body.seed,
        "strength_multiplier": body.strength_multiplier,
        "steer_method": body.steer_method,
        "n_logprobs": body.n_logprobs,
    }
    if chat:
        out["steer_special_tokens"] = getattr(body, "steer_special_tokens", True)
    return out


def _features(body: _SteerSettingsBody) -> list[dict[str, Any]]:
    feats = []
    for n, f in enumerate(body.features):
        if f.modelId != body.modelId:
            raise Invalid(f"feature {n} is of model {f.modelId!r}, not {body.modelId!r}", f"features[{n}].modelId")
        feats.append(
            {"modelId": f.modelId, "layer": f.layer, "index": str(parse_index(f.index)), "strength": f.strength}
        )
    return sorted(feats, key=lambda f: (f["layer"], int(f["index"]), f["strength"]))


def _directions(svc: Any, body: _SteerSettingsBody, feats: list[dict[str, Any]]) -> list[Any]:
    from interpedia.inference.service import FeatureRef

    kinds = {svc.stored_vector(body.modelId, f["layer"], int(f["index"])) is not None for f in feats}
    if len(kinds) > 1:
        raise Invalid("can't steer with vectors and SAE features together", "features")
    return svc.directions(body.modelId, [FeatureRef(f["layer"], int(f["index"]), f["strength"]) for f in feats])


def _steer_settings(settings: dict[str, Any]) -> Any:
    from interpedia.inference.steering import SteerSettings

    return SteerSettings(
        method=settings["steer_method"],
        strength_multiplier=settings["strength_multiplier"],
        n_tokens=settings["n_tokens"],
        temperature=settings["temperature"],
        freq_penalty=settings["freq_penalty"],
        seed=int(settings["seed"]),
        n_logprobs=settings["n_logprobs"],
        steer_special_tokens=settings.get("steer_special_tokens", True),
    )


def _sae_sources(svc: Any, body: _SteerSettingsBody, feats: list[dict[str, Any]]) -> list[str]:
    return [f["layer"] for f in feats if svc.stored_vector(body.modelId, f["layer"], int(f["index"])) is None]


def _check_tokens(settings: SettingsDep, n_tokens: int) -> None:
    if n_tokens > settings.steer_max_tokens:
        raise Invalid(f"n_tokens must be at most {settings.steer_max_tokens} (INTERPEDIA_STEER_MAX_TOKENS)", "n_tokens")


@router.post("/steer", summary="Steer a completion with features; default and steered side by side")
def steer(body: SteerBody, session: SessionDep, svc: Service, settings: SettingsDep, user: OptionalUser) -> Response:
    """``{STEERED, DEFAULT, steeredLogProbs, defaultLogProbs, id, shareUrl, limit}``; cached per setting."""
    _check_tokens(settings, body.n_tokens)
    feats = _features(body)
    params = _settings(body, chat=False)
    weights = svc.weights_id(body.modelId, _sae_sources(svc, body, feats))
    key_params = {**params, "weights": weights}
    keys = {
        kind: steer_key(kind, body.modelId, key_params, {"prompt": body.prompt}, feats)
        for kind in ("DEFAULT", "STEERED")
    }
    rows = {kind: find_output(session, key) for kind, key in keys.items()}
    missing = [kind for kind in ("STEERED", "DEFAULT") if rows[kind] is None]
    if missing:
        directions = _directions(svc, body, feats) if "STEERED" in missing else []
        result = svc.steer_completion(body.modelId, body.prompt, directions, missing, _steer_settings(params))
        made = {o["type"]: o for o in result["outputs"]}
        for kind in ("DEFAULT", "STEERED"):
            if kind in made:
                default_id = rows["DEFAULT"].id if kind == "STEERED" and rows["DEFAULT"] is not None else None
                rows[kind] = save_output(
                    session,
                    keys[kind],
                    kind=kind,
                    model_id=body.modelId,
                    settings=params,
                    input_text=body.prompt,
                    output_text=made[kind]["output"],
                    features=feats,
                    logprobs=made[kind].get("logprobs"),
                    creator_id=user.id if user else None,
                    default_id=default_id,
                )
        session.commit()
    steered, default = rows["STEERED"], rows["DEFAULT"]
    assert steered is not None and default is not None
    base = settings.public_base_url.rstrip("/")
    return json_response(
        {
            "STEERED": steered.output_text,
            "DEFAULT": default.output_text,
            "steeredLogProbs": output_logprobs(steered),
            "defaultLogProbs": output_logprobs(default),
            "id": steered.id,
            "shareUrl": f"{base}/steer/{steered.id}",
            "limit": None,
            "settings": params,
            "features": feats,
        }
    )


@router.post("/steer-chat", summary="Steer a chat with features; default and steered side by side")
def steer_chat(
    body: SteerChatBody, session: SessionDep, svc: Service, settings: SettingsDep, user: OptionalUser
) -> Response:
    """``{STEERED: {raw, chatTemplate}, DEFAULT: {...}, id, shareUrl, limit, settings}``; 422 for a model
    without a chat template."""
    _check_tokens(settings, body.n_tokens)
    feats = _features(body)
    params = _settings(body, chat=True)
    weights = svc.weights_id(body.modelId, _sae_sources(svc, body, feats))
    key_params = {**params, "weights": weights}
    chats = {
        "DEFAULT": [m.model_dump() for m in body.defaultChatMessages],
        "STEERED": [m.model_dump() for m in body.steeredChatMessages],
    }
    keys = {kind: steer_key(kind, body.modelId, key_params, {"chat": chats[kind]}, feats) for kind in chats}
    rows = {kind: find_output(session, key) for kind, key in keys.items()}
    made_any = False
    for kind in ("DEFAULT", "STEERED"):
        if rows[kind] is not None:
            continue
        directions = _directions(svc, body, feats) if kind == "STEERED" else []
        result = svc.steer_chat(body.modelId, chats[kind], directions, [kind], _steer_settings(params))
        out = result["outputs"][0]
        default_row = rows["DEFAULT"]
        rows[kind] = save_output(
            session,
            keys[kind],
            kind=kind,
            model_id=body.modelId,
            settings=params,
            input_text=result["input"]["raw"],
            output_text=out["raw"],
            features=feats,
            logprobs=out.get("logprobs"),
            creator_id=user.id if user else None,
            input_chat=chats[kind],
            output_chat=out["chat_template"],
            default_id=default_row.id if kind == "STEERED" and default_row else None,
        )
        made_any = True
    if made_any:
        session.commit()
    steered, default = rows["STEERED"], rows["DEFAULT"]
    assert steered is not None and default is not None
    base = settings.public_base_url.rstrip("/")
    return json_response(
        {
            "STEERED": output_chat(steered),
            "DEFAULT": output_chat(default),
            "id": steered.id,
            "shareUrl": f"{base}/steer/{steered.id}",
            "limit": None,
            "settings": params,
            "features": feats,
        }
    )


@router.post("/steer-load", summary="A saved steering result, by its share id")
def steer_load(body: SteerLoadBody, session: SessionDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """Both outputs, the features, the settings and the prompt (or chat messages) of a share link."""
    doc = load_shared(session, body.steerOutputId)
    doc["shareUrl"] = f"{settings.public_base_url.rstrip('/')}/steer/{doc['id']}"
    return json_response(doc)
