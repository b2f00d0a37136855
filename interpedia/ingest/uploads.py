"""``/api/feature/upload-batch`` and ``/api/activation/upload-batch``: dashboards and examples sent over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from interpedia.db.engine import transaction
from interpedia.db.tables import Feature, Model, SourceSet, User
from interpedia.errors import Forbidden, NotFound
from interpedia.store.activations import append_activations
from interpedia.store.catalogue import (
    check_id,
    ensure_source,
    get_model,
    get_source,
    get_source_set,
    source_set_name_of,
)
from interpedia.store.records import ActivationRecord, ExplanationRecord, FeatureRecord
from interpedia.store.vocab import ensure_tokens
from interpedia.store.writer import EmbedTexts, WriteCounts, all_tokens, write_features


@dataclass
class UploadResult:
    """What an upload wrote and where to see it."""

    counts: WriteCounts
    model_id: str
    source_id: str


def feature_record(
    index: int,
    activations: list[dict[str, Any]],
    *,
    density: float | None = None,
    top_logits: list[dict[str, Any]] | None = None,
    bottom_logits: list[dict[str, Any]] | None = None,
    explanations: list[dict[str, Any]] | None = None,
    author_id: str | None = None,
) -> FeatureRecord:
    """One uploaded feature (already type-checked by the API schema) to a store record."""
    acts = [
        ActivationRecord(
            tokens=a["tokens"],
            values=a["values"],
            bin_max=a.get("quantileMax"),
            bin_min=a.get("quantileMin"),
            bin_contains=a.get("quantileFraction"),
        )
        for a in activations
    ]
    stats: dict[str, Any] = {"max_act_approx": max((a.max_value for a in acts), default=0.0)}
    if density is not None:
        stats["frac_nonzero"] = density
    if top_logits is not None:
        stats["pos_str"] = [t["token"] for t in top_logits]
        stats["pos_values"] = [t["value"] for t in top_logits]
    if bottom_logits is not None:
        stats["neg_str"] = [t["token"] for t in bottom_logits]
        stats["neg_values"] = [t["value"] for t in bottom_logits]
    exps = [
        ExplanationRecord(
            description=e["text"],
            type_name=e.get("methodName"),
            explanation_model_name=e.get("modelName"),
            author_id=author_id,
        )
        for e in explanations or []
    ]
    return FeatureRecord(index=index, stats=stats, activations=acts, explanations=exps)


def _check_set_owner(session: Session, user: User, model_id: str, source_id: str) -> None:
    set_row: SourceSet = get_source_set(session, model_id, source_set_name_of(source_id))
    if set_row.creator_id != user.id and not user.admin:
        raise Forbidden(f"source set {model_id}/{set_row.name} belongs to another user", field="source")


def upload_features(
    factory: sessionmaker[Session],
    user: User,
    model_id: str,
    source_id: str,
    records: list[FeatureRecord],
    *,
    embed: EmbedTexts | None = None,
) -> UploadResult:
    """Write uploaded dashboards into a source of the user's own source set (created on first upload)."""
    with transaction(factory) as session:
        model: Model = get_model(session, model_id)
        check_id(source_id, "source")
        _check_set_owner(session, user, model.id, source_id)
        source = ensure_source(session, model.id, source_id, creator_id=user.id)
        token_ids = ensure_tokens(session, model.id, all_tokens(records))
    with transaction(factory) as session:
        counts = write_features(session, source, records, creator_id=user.id, token_ids=token_ids, embed=embed)
    return UploadResult(counts=counts, model_id=model_id, source_id=source_id)


def upload_activations(
    factory: sessionmaker[Session], user: User, model_id: str, source_id: str, index: int, acts: list[ActivationRecord]
) -> int:
    """Add examples to an existing feature the user owns (e.g. a steering vector)."""
    with transaction(factory) as session:
        get_model(session, model_id)
        source = get_source(session, model_id, source_id)
        feature = session.scalar(select(Feature).where(Feature.source_id == source.id, Feature.index == index))
        if feature is None:
            raise NotFound(f"feature {model_id}/{source_id}/{index} not found", field="index")
        if feature.creator_id != user.id and not user.admin:
            raise Forbidden(f"feature {model_id}/{source_id}/{index} belongs to another user", field="index")
        feature_id = feature.id
        token_ids = ensure_tokens(session, model_id, {t for a in acts for t in a.tokens})
    with transaction(factory) as session:
        added = append_activations(session, feature_id, user.id, acts, token_ids)
        feature = session.get(Feature, feature_id)
        if feature is not None and acts:
            feature.max_act_approx = max(feature.max_act_approx or 0.0, max(a.max_value for a in acts))
    return added
