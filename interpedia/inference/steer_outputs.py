"""Steering, cached and shareable: a completion or a chat steered with features, next to the default one, as the
webapp API (``/api/steer``, ``/api/steer-chat``) answers it and the ``/{model}/steer`` page shows it.

Each output (DEFAULT, STEERED) is looked up in ``steer_outputs`` under a hash of every setting, the input, the
features (STEERED only) and the weights; only a miss runs the model. The STEERED output's id is the share link
(``/steer/{id}``). Importing this module loads no torch: the service is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.errors import Invalid
from interpedia.store.catalogue import require_visible_sources
from interpedia.store.formats import parse_index
from interpedia.store.steering import find_output, output_chat, output_logprobs, save_output, steer_key

if TYPE_CHECKING:
    from interpedia.db.tables import SteerOutput
    from interpedia.inference.service import InferenceService
    from interpedia.inference.steering import Direction, SteerSettings

__all__ = ["SteerFeature", "SteerOptions", "share_url", "steer_chat", "steer_completion"]


@dataclass(frozen=True)
class SteerFeature:
    """A feature (or a stored vector) of ``model_id`` and how hard to steer with it."""

    model_id: str
    source: str
    index: int | str
    strength: float


@dataclass(frozen=True)
class SteerOptions:
    """The generation settings, named as neuronpedia.org's steering bodies name them."""

    temperature: float
    n_tokens: int
    freq_penalty: float = 0.0
    seed: float = 16
    strength_multiplier: float = 1.0
    steer_method: str = "SIMPLE_ADDITIVE"
    n_logprobs: int = 0
    steer_special_tokens: bool = True

    def as_dict(self, chat: bool) -> dict[str, Any]:
        """The settings as stored and answered (``steer_special_tokens`` only for a chat)."""
        out = asdict(self)
        if not chat:
            del out["steer_special_tokens"]
        return out


def share_url(settings: Settings, output_id: str) -> str:
    """The public link of a saved steering result."""
    return f"{settings.public_base_url.rstrip('/')}/steer/{output_id}"


def _check_tokens(settings: Settings, n_tokens: int) -> None:
    if n_tokens > settings.steer_max_tokens:
        raise Invalid(f"n_tokens must be at most {settings.steer_max_tokens} (INTERPEDIA_STEER_MAX_TOKENS)", "n_tokens")


def _features(model_id: str, features: Sequence[SteerFeature]) -> list[dict[str, Any]]:
    feats = []
    for n, f in enumerate(features):
        if f.model_id != model_id:
            raise Invalid(f"feature {n} is of model {f.model_id!r}, not {model_id!r}", f"features[{n}].modelId")
        feats.append(
            {"modelId": f.model_id, "layer": f.source, "index": str(parse_index(f.index)), "strength": f.strength}
        )
    return sorted(feats, key=lambda f: (f["layer"], int(f["index"]), f["strength"]))


def _directions(svc: InferenceService, model_id: str, feats: list[dict[str, Any]]) -> list[Direction]:
    from interpedia.inference.service import FeatureRef

    kinds = {svc.stored_vector(model_id, f["layer"], int(f["index"])) is not None for f in feats}
    if len(kinds) > 1:
        raise Invalid("can't steer with vectors and SAE features together", "features")
    return svc.directions(model_id, [FeatureRef(f["layer"], int(f["index"]), f["strength"]) for f in feats])


def _steer_settings(options: SteerOptions) -> SteerSettings:
    from interpedia.inference.steering import SteerSettings

    return SteerSettings(
        method=options.steer_method,
        strength_multiplier=options.strength_multiplier,
        n_tokens=options.n_tokens,
        temperature=options.temperature,
        freq_penalty=options.freq_penalty,
        seed=int(options.seed),
        n_logprobs=options.n_logprobs,
        steer_special_tokens=options.steer_special_tokens,
    )


def _weights(session: Session, svc: InferenceService, model_id: str, feats: list[dict[str, Any]]) -> list[str]:
    """What weights answer: the model's and the SAEs' of the features that are not stored vectors. A feature of a
    source hidden from the viewer is NotFound, before the cache is asked."""
    sae_sources = [f["layer"] for f in feats if svc.stored_vector(model_id, f["layer"], int(f["index"])) is None]
    weights = svc.weights_id(model_id, sae_sources)
    require_visible_sources(session, model_id, [f["layer"] for f in feats])
    return weights


def steer_completion(
    session: Session,
    settings: Settings,
    svc: InferenceService,
    *,
    model_id: str,
    prompt: str,
    features: Sequence[SteerFeature],
    options: SteerOptions,
    creator_id: str | None,
) -> dict[str, Any]:
    """``{STEERED, DEFAULT, steeredLogProbs, defaultLogProbs, id, shareUrl, limit, settings, features}``."""
    _check_tokens(settings, options.n_tokens)
    feats = _features(model_id, features)
    params = options.as_dict(chat=False)
    key_params = {**params, "weights": _weights(session, svc, model_id, feats)}
    keys = {kind: steer_key(kind, model_id, key_params, {"prompt": prompt}, feats) for kind in ("DEFAULT", "STEERED")}
    rows: dict[str, SteerOutput | None] = {kind: find_output(session, key) for kind, key in keys.items()}
    missing = [kind for kind in ("STEERED", "DEFAULT") if rows[kind] is None]
    if missing:
        directions = _directions(svc, model_id, feats) if "STEERED" in missing else []
        result = svc.steer_completion(model_id, prompt, directions, missing, _steer_settings(options))
        made = {o["type"]: o for o in result["outputs"]}
        for kind in ("DEFAULT", "STEERED"):
            if kind in made:
                default_row = rows["DEFAULT"]
                rows[kind] = save_output(
                    session,
                    keys[kind],
                    kind=kind,
                    model_id=model_id,
                    settings=params,
                    input_text=prompt,
                    output_text=made[kind]["output"],
                    features=feats,
                    logprobs=made[kind].get("logprobs"),
                    creator_id=creator_id,
                    default_id=default_row.id if kind == "STEERED" and default_row is not None else None,
                )
        session.commit()
    steered, default = rows["STEERED"], rows["DEFAULT"]
    assert steered is not None and default is not None
    return {
        "STEERED": steered.output_text,
        "DEFAULT": default.output_text,
        "steeredLogProbs": output_logprobs(steered),
        "defaultLogProbs": output_logprobs(default),
        "id": steered.id,
        "shareUrl": share_url(settings, steered.id),
        "limit": None,
        "settings": params,
        "features": feats,
    }


def steer_chat(
    session: Session,
    settings: Settings,
    svc: InferenceService,
    *,
    model_id: str,
    default_chat: list[dict[str, str]],
    steered_chat: list[dict[str, str]],
    features: Sequence[SteerFeature],
    options: SteerOptions,
    creator_id: str | None,
) -> dict[str, Any]:
    """``{STEERED: {raw, chatTemplate}, DEFAULT: {...}, id, shareUrl, limit, settings, features}``; 422 for a model
    without a chat template."""
    _check_tokens(settings, options.n_tokens)
    feats = _features(model_id, features)
    params = options.as_dict(chat=True)
    key_params = {**params, "weights": _weights(session, svc, model_id, feats)}
    chats = {"DEFAULT": default_chat, "STEERED": steered_chat}
    keys = {kind: steer_key(kind, model_id, key_params, {"chat": chats[kind]}, feats) for kind in chats}
    rows: dict[str, SteerOutput | None] = {kind: find_output(session, key) for kind, key in keys.items()}
    made_any = False
    for kind in ("DEFAULT", "STEERED"):
        if rows[kind] is not None:
            continue
        directions = _directions(svc, model_id, feats) if kind == "STEERED" else []
        result = svc.steer_chat(model_id, chats[kind], directions, [kind], _steer_settings(options))
        out = result["outputs"][0]
        default_row = rows["DEFAULT"]
        rows[kind] = save_output(
            session,
            keys[kind],
            kind=kind,
            model_id=model_id,
            settings=params,
            input_text=result["input"]["raw"],
            output_text=out["raw"],
            features=feats,
            logprobs=out.get("logprobs"),
            creator_id=creator_id,
            input_chat=chats[kind],
            output_chat=out["chat_template"],
            default_id=default_row.id if kind == "STEERED" and default_row else None,
        )
        made_any = True
    if made_any:
        session.commit()
    steered, default = rows["STEERED"], rows["DEFAULT"]
    assert steered is not None and default is not None
    return {
        "STEERED": output_chat(steered),
        "DEFAULT": output_chat(default),
        "id": steered.id,
        "shareUrl": share_url(settings, steered.id),
        "limit": None,
        "settings": params,
        "features": feats,
    }
