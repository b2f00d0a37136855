"""Cached steering outputs (``steer_outputs``): looked up by a hash of every setting; an id is a share link.

A DEFAULT output does not depend on the features, so its key leaves them out and one default completion
serves every steered variant of the same prompt and settings; a STEERED row points at its default
(``connected_default_output_id``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interpedia.db.tables import SteerOutput
from interpedia.errors import NotFound

STEERING_VERSION = 1


def steer_key(kind: str, model_id: str, settings: dict[str, Any], inputs: Any, features: list[dict[str, Any]]) -> str:
    """The cache key of one output type (DEFAULT ignores ``features``)."""
    doc = {
        "v": STEERING_VERSION,
        "type": kind,
        "model": model_id,
        "settings": settings,
        "input": inputs,
        "features": features if kind == "STEERED" else [],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def find_output(session: Session, key: str) -> SteerOutput | None:
    """The oldest cached output under ``key``."""
    return session.scalar(
        select(SteerOutput)
        .where(SteerOutput.cache_key == key)
        .order_by(SteerOutput.created_at, SteerOutput.id)
        .limit(1)
    )


def _text(value: str) -> str:
    # Postgres text cannot hold NUL, which a byte-level model can generate; U+FFFD is what a decoder shows for it.
    return value.replace("\x00", "\ufffd")


def save_output(
    session: Session,
    key: str,
    *,
    kind: str,
    model_id: str,
    settings: dict[str, Any],
    input_text: str,
    output_text: str,
    features: list[dict[str, Any]],
    logprobs: Any,
    creator_id: str | None,
    input_chat: Any = None,
    output_chat: Any = None,
    default_id: str | None = None,
) -> SteerOutput:
    """Store one output."""
    row = SteerOutput(
        cache_key=key,
        type=kind,
        model_id=model_id,
        steer_special_tokens=bool(settings.get("steer_special_tokens")),
        input_text=_text(input_text),
        output_text=_text(output_text),
        input_text_chat_template=json.dumps(input_chat) if input_chat is not None else None,
        output_text_chat_template=json.dumps(output_chat).replace("\\u0000", "\\ufffd")
        if output_chat is not None
        else None,
        temperature=settings["temperature"],
        num_tokens=settings["n_tokens"],
        freq_penalty=settings["freq_penalty"],
        seed=settings["seed"],
        strength_multiplier=settings["strength_multiplier"],
        steer_method=settings["steer_method"],
        features=features if kind == "STEERED" else [],
        logprobs=json.dumps(logprobs) if logprobs is not None else None,
        connected_default_output_id=default_id,
        creator_id=creator_id,
    )
    session.add(row)
    session.flush()
    return row


def output_logprobs(row: SteerOutput) -> Any:
    """The stored log-probabilities (None when not asked for)."""
    return json.loads(row.logprobs) if row.logprobs else None


def output_chat(row: SteerOutput) -> dict[str, Any] | None:
    """A chat output as ``{raw, chatTemplate, chat_template, logprobs}``; None for a completion."""
    if row.output_text_chat_template is None:
        return None
    template = json.loads(row.output_text_chat_template)
    return {
        "raw": row.output_text,
        "chatTemplate": template,
        "chat_template": template,
        "logprobs": output_logprobs(row),
    }


def load_shared(session: Session, output_id: str) -> dict[str, Any]:
    """A saved result by share id (``/api/steer-load``): both outputs, the features and the settings."""
    row = session.get(SteerOutput, output_id)
    if row is None:
        raise NotFound(f"steer output {output_id!r} not found", field="steerOutputId")
    steered = row if row.type == "STEERED" else None
    default = (
        session.get(SteerOutput, row.connected_default_output_id)
        if steered is not None and row.connected_default_output_id
        else (row if row.type == "DEFAULT" else None)
    )
    chat = row.output_text_chat_template is not None
    doc: dict[str, Any] = {
        "id": row.id,
        "modelId": row.model_id,
        "type": row.type,
        "isChat": chat,
        "features": list(row.features or []),
        "settings": {
            "temperature": row.temperature,
            "n_tokens": row.num_tokens,
            "freq_penalty": row.freq_penalty,
            "seed": row.seed,
            "strength_multiplier": row.strength_multiplier,
            "steer_method": row.steer_method,
            "steer_special_tokens": row.steer_special_tokens,
        },
        "createdAt": row.created_at.isoformat(timespec="milliseconds") + "Z",
    }
    for kind, out in (("STEERED", steered), ("DEFAULT", default)):
        if out is None:
            doc[kind] = None
            doc["steeredLogProbs" if kind == "STEERED" else "defaultLogProbs"] = None
            continue
        doc[kind] = output_chat(out) if chat else out.output_text
        doc["steeredLogProbs" if kind == "STEERED" else "defaultLogProbs"] = output_logprobs(out)
        if chat:
            doc["steeredChatMessages" if kind == "STEERED" else "defaultChatMessages"] = json.loads(
                out.input_text_chat_template or "[]"
            )
        else:
            doc["prompt"] = out.input_text
    return doc
