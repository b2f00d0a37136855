"""Steering, cached and shareable: a completion or a chat steered with features, next to the default one, as the
webapp API (``/api/steer``, ``/api/steer-chat``) answers it and the ``/{model}/steer`` page shows it.

Each output (DEFAULT, STEERED) is looked up in ``steer_outputs`` under a hash of every setting, the input, the
features (STEERED only) and the weights; only a miss runs the model. The STEERED output's id is the share link
(``/steer/{id}``). Importing this module loads no torch: the service is passed in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.db.tables import SteerOutput
from interpedia.errors import Invalid
from interpedia.inference.options import FeatureRef, SteerSettings
from interpedia.store.catalogue import require_visible_sources
from interpedia.store.formats import parse_index
from interpedia.store.steering import find_output, output_chat, output_logprobs, save_output, steer_key

if TYPE_CHECKING:
    from interpedia.inference.routing import Inference

__all__ = [
    "SteerFeature",
    "SteerOptions",
    "share_path",
    "share_url",
    "steer_chat",
    "steer_chat_stream",
    "steer_completion",
    "steer_completion_stream",
]


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


def share_path(output_id: str) -> str:
    """The path of a saved steering result's page (the web makes it absolute for the request's host)."""
    return f"/steer/{output_id}"


def share_url(settings: Settings, output_id: str) -> str:
    """The link of a saved steering result: under INTERPEDIA_PUBLIC_BASE_URL, or its path when that is unset
    (JSON answers replace it with the request's own origin; streamed events keep it)."""
    return f"{settings.public_base_url.rstrip('/')}{share_path(output_id)}"


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


def _refs(svc: Inference, model_id: str, feats: list[dict[str, Any]]) -> list[FeatureRef]:
    kinds = {svc.stored_vector(model_id, f["layer"], int(f["index"])) is not None for f in feats}
    if len(kinds) > 1:
        raise Invalid("can't steer with vectors and SAE features together", "features")
    return [FeatureRef(f["layer"], int(f["index"]), f["strength"]) for f in feats]


def _steer_settings(options: SteerOptions) -> SteerSettings:
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


def _weights(session: Session, svc: Inference, model_id: str, feats: list[dict[str, Any]]) -> list[str]:
    """What weights answer: the model's and the SAEs' of the features that are not stored vectors. A feature of a
    source hidden from the viewer is NotFound, before the cache is asked."""
    sae_sources = [f["layer"] for f in feats if svc.stored_vector(model_id, f["layer"], int(f["index"])) is None]
    weights = svc.weights_id(model_id, sae_sources)
    require_visible_sources(session, model_id, [f["layer"] for f in feats])
    return weights


@dataclass
class _Run:
    """One steering request resolved: its features, settings, cache keys, what is cached and what must run."""

    model_id: str
    feats: list[dict[str, Any]]
    params: dict[str, Any]
    keys: dict[str, str]
    rows: dict[str, SteerOutput | None]
    inputs: dict[str, Any]  # kind -> prompt text or chat messages

    @property
    def missing(self) -> list[str]:
        """The types to generate, STEERED first (as neuronpedia.org runs them)."""
        return [kind for kind in ("STEERED", "DEFAULT") if self.rows[kind] is None]


def _resolve(
    session: Session,
    settings: Settings,
    svc: Inference,
    model_id: str,
    inputs: dict[str, Any],
    features: Sequence[SteerFeature],
    options: SteerOptions,
    chat: bool,
) -> _Run:
    _check_tokens(settings, options.n_tokens)
    feats = _features(model_id, features)
    params = options.as_dict(chat=chat)
    key_params = {**params, "weights": _weights(session, svc, model_id, feats)}
    name = "chat" if chat else "prompt"
    keys = {kind: steer_key(kind, model_id, key_params, {name: inputs[kind]}, feats) for kind in ("DEFAULT", "STEERED")}
    rows: dict[str, SteerOutput | None] = {kind: find_output(session, key) for kind, key in keys.items()}
    return _Run(model_id, feats, params, keys, rows, inputs)


def _save(
    session: Session, run: _Run, made: dict[str, dict[str, Any]], creator_id: str | None, chat: bool
) -> dict[str, SteerOutput]:
    """Store the generated outputs (DEFAULT first, so a new STEERED row links to it); every row by type."""
    rows = {kind: row for kind, row in run.rows.items() if row is not None}
    for kind in ("DEFAULT", "STEERED"):
        if kind not in made:
            continue
        out = made[kind]
        default_row = rows.get("DEFAULT")
        rows[kind] = save_output(
            session,
            run.keys[kind],
            kind=kind,
            model_id=run.model_id,
            settings=run.params,
            input_text=out["input_text"],
            output_text=out["output_text"],
            features=run.feats,
            logprobs=out.get("logprobs"),
            creator_id=creator_id,
            input_chat=run.inputs[kind] if chat else None,
            output_chat=out.get("output_chat"),
            default_id=default_row.id if kind == "STEERED" and default_row is not None else None,
        )
    return rows


def _completion_doc(settings: Settings, run: _Run, rows: dict[str, SteerOutput]) -> dict[str, Any]:
    steered, default = rows["STEERED"], rows["DEFAULT"]
    return {
        "STEERED": steered.output_text,
        "DEFAULT": default.output_text,
        "steeredLogProbs": output_logprobs(steered),
        "defaultLogProbs": output_logprobs(default),
        "id": steered.id,
        "shareUrl": share_url(settings, steered.id),
        "limit": None,
        "settings": run.params,
        "features": run.feats,
    }


def _chat_doc(settings: Settings, run: _Run, rows: dict[str, SteerOutput]) -> dict[str, Any]:
    steered, default = rows["STEERED"], rows["DEFAULT"]
    return {
        "STEERED": output_chat(steered),
        "DEFAULT": output_chat(default),
        "id": steered.id,
        "shareUrl": share_url(settings, steered.id),
        "limit": None,
        "settings": run.params,
        "features": run.feats,
    }


def steer_completion(
    session: Session,
    settings: Settings,
    svc: Inference,
    *,
    model_id: str,
    prompt: str,
    features: Sequence[SteerFeature],
    options: SteerOptions,
    creator_id: str | None,
) -> dict[str, Any]:
    """``{STEERED, DEFAULT, steeredLogProbs, defaultLogProbs, id, shareUrl, limit, settings, features}``."""
    run = _resolve(session, settings, svc, model_id, {"DEFAULT": prompt, "STEERED": prompt}, features, options, False)
    made: dict[str, dict[str, Any]] = {}
    if run.missing:
        refs = _refs(svc, model_id, run.feats) if "STEERED" in run.missing else []
        result = svc.steer_features(model_id, prompt, refs, run.missing, _steer_settings(options))
        for o in result["outputs"]:
            made[o["type"]] = {"input_text": prompt, "output_text": o["output"], "logprobs": o.get("logprobs")}
    rows = _save(session, run, made, creator_id, chat=False)
    if made:
        session.commit()
    return _completion_doc(settings, run, rows)


def steer_completion_stream(
    session: Session,
    factory: sessionmaker[Session],
    settings: Settings,
    svc: Inference,
    *,
    model_id: str,
    prompt: str,
    features: Sequence[SteerFeature],
    options: SteerOptions,
    creator_id: str | None,
) -> Iterator[dict[str, Any]]:
    """:func:`steer_completion` as neuronpedia.org streams it: the result so far (cached outputs filled in, the one
    being generated growing, the rest null) after every token, then once more with ``id`` and ``shareUrl`` after
    the new outputs are saved (in a transaction of their own, from ``factory``). The request is checked now."""
    run = _resolve(session, settings, svc, model_id, {"DEFAULT": prompt, "STEERED": prompt}, features, options, False)
    streams = []
    for kind in run.missing:  # started (so checked) now; each runs when its turn comes
        refs = _refs(svc, model_id, run.feats) if kind == "STEERED" else []
        streams.append((kind, svc.steer_features_stream(model_id, prompt, refs, [kind], _steer_settings(options))))
    state: dict[str, Any] = {"STEERED": None, "DEFAULT": None, "steeredLogProbs": None, "defaultLogProbs": None}
    for kind, row in run.rows.items():
        if row is not None:
            state[kind] = row.output_text
            state[_LOGPROBS[kind]] = output_logprobs(row)
    steered = run.rows["STEERED"]
    state.update(id=steered.id if steered else None, shareUrl=share_url(settings, steered.id) if steered else None)
    state["limit"] = None

    def chunks() -> Iterator[dict[str, Any]]:
        made: dict[str, dict[str, Any]] = {}
        for kind, stream in streams:
            for chunk in stream:
                (out,) = chunk["outputs"]
                state[kind], state[_LOGPROBS[kind]] = out["output"], out.get("logprobs")
                made[kind] = {"input_text": prompt, "output_text": out["output"], "logprobs": out.get("logprobs")}
                yield dict(state)
        # Saved and committed before the last event is sent: a client leaving then must not undo the save, and a
        # slow client must not hold a write transaction open.
        with transaction(factory) as tx:
            doc = _completion_doc(settings, run, _save(tx, run, made, creator_id, chat=False))
        yield doc

    return chunks()


def steer_chat(
    session: Session,
    settings: Settings,
    svc: Inference,
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
    run = _resolve(
        session, settings, svc, model_id, {"DEFAULT": default_chat, "STEERED": steered_chat}, features, options, True
    )
    made: dict[str, dict[str, Any]] = {}
    for kind in ("DEFAULT", "STEERED"):
        if run.rows[kind] is not None:
            continue
        refs = _refs(svc, model_id, run.feats) if kind == "STEERED" else []
        result = svc.steer_chat_features(model_id, run.inputs[kind], refs, [kind], _steer_settings(options))
        made[kind] = _chat_made(result)
    rows = _save(session, run, made, creator_id, chat=True)
    if made:
        session.commit()
    return _chat_doc(settings, run, rows)


def steer_chat_stream(
    session: Session,
    factory: sessionmaker[Session],
    settings: Settings,
    svc: Inference,
    *,
    model_id: str,
    default_chat: list[dict[str, str]],
    steered_chat: list[dict[str, str]],
    features: Sequence[SteerFeature],
    options: SteerOptions,
    creator_id: str | None,
) -> Iterator[dict[str, Any]]:
    """:func:`steer_chat` streamed as :func:`steer_completion_stream` streams a completion."""
    run = _resolve(
        session, settings, svc, model_id, {"DEFAULT": default_chat, "STEERED": steered_chat}, features, options, True
    )
    streams = []
    for kind in run.missing:
        refs = _refs(svc, model_id, run.feats) if kind == "STEERED" else []
        streams.append(
            (kind, svc.steer_chat_features_stream(model_id, run.inputs[kind], refs, [kind], _steer_settings(options)))
        )
    state: dict[str, Any] = {kind: output_chat(row) if row else None for kind, row in run.rows.items()}
    steered = run.rows["STEERED"]
    state.update(id=steered.id if steered else None, shareUrl=share_url(settings, steered.id) if steered else None)
    state["limit"] = None

    def chunks() -> Iterator[dict[str, Any]]:
        made: dict[str, dict[str, Any]] = {}
        for kind, stream in streams:
            for chunk in stream:
                made[kind] = _chat_made(chunk)
                out = chunk["outputs"][0]
                state[kind] = {
                    "raw": out["raw"],
                    "chatTemplate": out["chat_template"],
                    "chat_template": out["chat_template"],
                    "logprobs": out.get("logprobs"),
                }
                yield dict(state)
        # Saved and committed before the last event is sent: a client leaving then must not undo the save, and a
        # slow client must not hold a write transaction open.
        with transaction(factory) as tx:
            doc = _chat_doc(settings, run, _save(tx, run, made, creator_id, chat=True))
        yield doc

    return chunks()


_LOGPROBS = {"STEERED": "steeredLogProbs", "DEFAULT": "defaultLogProbs"}


def _chat_made(result: dict[str, Any]) -> dict[str, Any]:
    out = result["outputs"][0]
    return {
        "input_text": result["input"]["raw"],
        "output_text": out["raw"],
        "logprobs": out.get("logprobs"),
        "output_chat": out["chat_template"],
    }
