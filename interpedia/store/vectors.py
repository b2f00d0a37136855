"""Steering vectors uploaded by users: features with ``has_vector`` in an auto-created source.

As on Neuronpedia, a vector for layer ``L`` at ``hook_resid_pre`` lives in source ``L-neuronpedia-resid-pre``
(set ``neuronpedia-resid-pre``), as the next free index, owned by its uploader; its hook is
``blocks.L.hook_resid_pre``.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interpedia.db.tables import Feature, Model, Source, SourceSet, User
from interpedia.errors import Forbidden, Invalid, NotFound
from interpedia.store.catalogue import VISIBILITY_COLUMNS, chain_visible, ensure_source, get_model, get_source
from interpedia.store.versions import touch_features

HOOK_TYPES = {"hook_resid_pre": "resid-pre", "hook_resid_post": "resid-post"}
MAX_VECTOR_LENGTH = 24576
MAX_LABEL_CHARS = 1000


def hook_type_of(value: str) -> str:
    """``hook_resid_pre`` from ``hook_resid_pre`` or ``resid-pre``; Invalid otherwise."""
    for hook, short in HOOK_TYPES.items():
        if value in (hook, short):
            return hook
    raise Invalid(f"hookType must be one of {', '.join(HOOK_TYPES)}, not {value!r}", field="hookType")


def get_vector_feature(session: Session, model_id: str, source_id: str, index: int) -> Feature | None:
    """The vector feature at ``model/source/index``, or None when there is none (or it is not a vector, or the
    current viewer may not open its model, set or source)."""
    row = session.execute(
        select(Feature, *VISIBILITY_COLUMNS)
        .join(Source, Source.id == Feature.source_id)
        .join(Model, Model.id == Source.model_id)
        .outerjoin(SourceSet, SourceSet.id == Source.set_id)
        .where(
            Source.model_id == model_id, Source.name == source_id, Feature.index == index, Feature.has_vector.is_(True)
        )
    ).one_or_none()
    return row.Feature if row is not None and chain_visible(row) else None


def vector_json(model_id: str, source_id: str, feature: Feature) -> dict[str, Any]:
    """A vector the way ``/api/vector/get`` and ``list-owned`` answer (plus the ``new`` names)."""
    values = list(feature.vector or [])
    return {
        "modelId": model_id,
        "layer": source_id,
        "source": source_id,
        "index": str(feature.index),
        "vectorLabel": feature.vector_label,
        "label": feature.vector_label,
        "hookName": feature.hook_name,
        "vector": values,
        "values": values,
        "vectorDefaultSteerStrength": feature.vector_default_steer_strength,
        "defaultSteerStrength": feature.vector_default_steer_strength,
        "creatorId": feature.creator_id,
    }


def create_vector(
    session: Session,
    user: User,
    model_id: str,
    layer: int,
    hook_type: str,
    vector: list[float],
    label: str,
    default_strength: float,
) -> tuple[Source, Feature]:
    """Store a vector as a new feature of ``<layer>-neuronpedia-<hook>``; Invalid on a bad vector."""
    model: Model = get_model(session, model_id)
    hook = hook_type_of(hook_type)
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0 or (model.layers and layer >= model.layers):
        raise Invalid(f"layerNumber must be 0 to {max(model.layers - 1, 0)} for model {model_id}", field="layerNumber")
    if not vector or len(vector) > MAX_VECTOR_LENGTH:
        raise Invalid(f"vector must have 1 to {MAX_VECTOR_LENGTH} values", field="vector")
    if model.dimension and len(vector) != model.dimension:
        raise Invalid(
            f"vector has {len(vector)} values; model {model_id} has dimension {model.dimension}", field="vector"
        )
    if not all(math.isfinite(v) for v in vector):
        raise Invalid("vector values must be finite numbers", field="vector")
    if not label or len(label) > MAX_LABEL_CHARS:
        raise Invalid(f"vectorLabel must be 1 to {MAX_LABEL_CHARS} characters", field="vectorLabel")
    if not math.isfinite(default_strength) or not -100 <= default_strength <= 100:
        raise Invalid("vectorDefaultSteerStrength must be from -100 to 100", field="vectorDefaultSteerStrength")
    source_id = f"{layer}-neuronpedia-{HOOK_TYPES[hook]}"
    source = ensure_source(session, model_id, source_id, has_dashboards=False, hook_name=f"blocks.{layer}.{hook}")
    # Two uploads racing for the same index: the loser's transaction fails on the unique index; callers retry it.
    index = int(
        session.scalar(select(func.coalesce(func.max(Feature.index) + 1, 0)).where(Feature.source_id == source.id)) or 0
    )
    feature = Feature(
        source_id=source.id,
        index=index,
        creator_id=user.id,
        has_vector=True,
        vector=[float(v) for v in vector],
        vector_label=label,
        vector_default_steer_strength=float(default_strength),
        hook_name=f"blocks.{layer}.{hook}",
        max_act_approx=0.0,
    )
    session.add(feature)
    session.flush()
    # A fresh version, not the column's 0: on SQLite a deleted vector's id may come back for this one.
    touch_features(session, [feature.id])
    return source, feature


def owned_vectors(session: Session, user: User) -> list[dict[str, Any]]:
    """The user's vectors, newest first."""
    rows = session.execute(
        select(Feature, Source.model_id, Source.name)
        .join(Source, Source.id == Feature.source_id)
        .where(Feature.creator_id == user.id, Feature.has_vector.is_(True))
        .order_by(Feature.created_at.desc(), Feature.id.desc())
    )
    return [vector_json(model_id, name, feature) for feature, model_id, name in rows]


def delete_vector(session: Session, user: User, model_id: str, source_id: str, index: int) -> None:
    """Delete the user's vector (admins: anyone's); NotFound / Forbidden otherwise."""
    get_source(session, model_id, source_id)
    feature = get_vector_feature(session, model_id, source_id, index)
    if feature is None:
        raise NotFound(f"vector {model_id}/{source_id}/{index} not found", field="index")
    if feature.creator_id != user.id and not user.admin:
        raise Forbidden(f"vector {model_id}/{source_id}/{index} belongs to another user", field="index")
    session.delete(feature)
    session.flush()
