"""Explanations and their scores: reading, creating, deleting, and the method catalogues.

The explanation document itself is built by ``store.documents.explanation`` (``explanation_json`` and
``score_json`` here are the reads that feed it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from interpedia.db.tables import (
    Explanation,
    ExplanationModelType,
    ExplanationScore,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    Feature,
    Model,
    Source,
    SourceSet,
    User,
)
from interpedia.errors import Conflict, Forbidden, Invalid, NotFound
from interpedia.store.access import may_see
from interpedia.store.documents.explanation import ExplanationDoc, explanation_doc, score_json
from interpedia.store.versions import touch_explanations, touch_features

MAX_DESCRIPTION = 1000


def explanation_json(session: Session, exp: Explanation) -> ExplanationDoc:
    """One explanation with its feature address, author and scores (the same document a feature's list holds)."""
    row = session.execute(
        select(Source.model_id, Source.name, Feature.index)
        .join(Feature, Feature.source_id == Source.id)
        .where(Feature.id == exp.feature_id)
    ).first()
    author = session.get(User, exp.author_id) if exp.author_id else None
    scores = session.scalars(
        select(ExplanationScore)
        .where(ExplanationScore.explanation_id == exp.id)
        .order_by(ExplanationScore.created_at, ExplanationScore.id)
    )
    return explanation_doc(
        exp,
        (row[0], row[1], row[2]) if row is not None else None,
        author_name=author.name if author else None,
        has_embedding=exp.embedding is not None,
        scores=[score_json(s) for s in scores],
    )


def _visible(session: Session, exp: Explanation) -> bool:
    """Whether the current viewer may open the explanation's feature (its model, set and source all count)."""
    row = session.execute(
        select(Model.visibility, Model.creator_id, SourceSet.visibility, SourceSet.creator_id)
        .add_columns(Source.visibility, Source.creator_id)
        .select_from(Feature)
        .join(Source, Source.id == Feature.source_id)
        .join(Model, Model.id == Source.model_id)
        .outerjoin(SourceSet, SourceSet.id == Source.set_id)
        .where(Feature.id == exp.feature_id)
    ).first()
    if row is None:
        return False
    return may_see((row[0], row[2], row[4]), (row[1], row[3], row[5]))


def get_explanation(session: Session, explanation_id: str, user: User | None = None) -> Explanation:
    """The explanation, or NotFound (also for one on a model, set or source the current viewer may not open).

    ``user`` is the caller; an admin sees everything even outside a web request's viewer."""
    exp = session.get(Explanation, explanation_id)
    if exp is None or not (user is not None and user.admin) and not _visible(session, exp):
        raise NotFound(f"explanation {explanation_id!r} not found", field="explanationId")
    return exp


def explanation_address(session: Session, explanation_id: str, user: User | None = None) -> tuple[str, str, int]:
    """``(model id, source id, index)`` of the feature an explanation explains; NotFound as ``get_explanation``."""
    exp = get_explanation(session, explanation_id, user)
    row = session.execute(
        select(Source.model_id, Source.name, Feature.index)
        .join(Feature, Feature.source_id == Source.id)
        .where(Feature.id == exp.feature_id)
    ).one()
    return row[0], row[1], row[2]


def explanation_presence(session: Session) -> tuple[bool, bool]:
    """Whether any explanation exists, and whether any has an embedding (so search by meaning can find it)."""
    embedded = session.scalar(select(Explanation.id).where(Explanation.embedding.is_not(None)).limit(1))
    if embedded is not None:
        return True, True
    return session.scalar(select(Explanation.id).limit(1)) is not None, False


def has_explanation(session: Session, feature_id: int, type_name: str | None, model_name: str | None) -> bool:
    """Whether the feature already has an explanation of this type and explainer model."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    Explanation.feature_id == feature_id,
                    Explanation.type_name == type_name,
                    Explanation.explanation_model_name == model_name,
                )
            )
        )
    )


def check_description(text: Any) -> str:
    """A non-empty explanation text of at most MAX_DESCRIPTION characters."""
    if not isinstance(text, str) or not text.strip():
        raise Invalid("the explanation text is empty", field="explanation")
    text = text.strip()
    if len(text) > MAX_DESCRIPTION:
        raise Invalid(f"the explanation is longer than {MAX_DESCRIPTION} characters", field="explanation")
    return text


def add_explanation(
    session: Session,
    feature: Feature,
    description: str,
    *,
    type_name: str | None,
    model_name: str | None,
    author_id: str | None,
    triggered_by: str | None,
    embedding: bytes | None,
    notes: str | None = None,
) -> Explanation:
    """Insert an explanation (call inside the caller's transaction)."""
    exp = Explanation(
        feature_id=feature.id,
        description=check_description(description),
        type_name=type_name,
        explanation_model_name=model_name,
        author_id=author_id,
        triggered_by_user_id=triggered_by,
        embedding=embedding,
        notes=notes,
    )
    session.add(exp)
    session.flush()
    touch_features(session, [feature.id])
    return exp


def _may_change(user: User, *owners: str | None) -> bool:
    return user.admin or user.id in owners


def delete_explanation(session: Session, explanation_id: str, user: User) -> None:
    """Delete an explanation its author (or whoever triggered it, or an admin) owns; scores go with it."""
    exp = get_explanation(session, explanation_id, user)
    if not _may_change(user, exp.author_id, exp.triggered_by_user_id):
        raise Forbidden("only the author of an explanation (or an admin) may delete it", field="explanationId")
    session.execute(delete(ExplanationScore).where(ExplanationScore.explanation_id == exp.id))
    session.delete(exp)
    touch_features(session, [exp.feature_id])


def has_score(session: Session, explanation_id: str, type_name: str, model_name: str | None) -> bool:
    """Whether this explanation already has a score of this type and scorer model."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    ExplanationScore.explanation_id == explanation_id,
                    ExplanationScore.explanation_score_type_name == type_name,
                    ExplanationScore.explanation_score_model_name == model_name,
                )
            )
        )
    )


def add_score(
    session: Session,
    explanation_id: str,
    value: float,
    *,
    type_name: str,
    model_name: str | None,
    user_id: str | None,
    details_json: str,
) -> ExplanationScore:
    """Insert a score in 0..1 (call inside the caller's transaction)."""
    if not 0.0 <= value <= 1.0:
        raise Invalid(f"score {value} is outside 0..1", field="value")
    if has_score(session, explanation_id, type_name, model_name):
        raise Conflict("a score of this type and model already exists for this explanation", field="scorerType")
    score = ExplanationScore(
        explanation_id=explanation_id,
        value=float(value),
        explanation_score_type_name=type_name,
        explanation_score_model_name=model_name,
        initiated_by_user_id=user_id,
        json_details=details_json,
    )
    session.add(score)
    session.flush()
    touch_explanations(session, [explanation_id])
    return score


def delete_score(session: Session, score_id: str, user: User) -> None:
    """Delete a score its initiator (or an admin) owns."""
    score = session.get(ExplanationScore, score_id)
    if score is None:
        raise NotFound(f"score {score_id!r} not found", field="explanationScoreId")
    if not _may_change(user, score.initiated_by_user_id):
        raise Forbidden("only whoever started a score (or an admin) may delete it", field="explanationScoreId")
    session.delete(score)
    touch_explanations(session, [score.explanation_id])


def _insert_missing(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]), list(rows))


def ensure_explanation_catalogue(
    session: Session, type_name: str, display_name: str, description: str, model_name: str | None
) -> None:
    """Make sure the explanation type (and the explainer model) rows exist, for display names."""
    _insert_missing(
        session,
        ExplanationType.__table__,
        [
            {
                "name": type_name,
                "display_name": display_name,
                "description": description,
                "featured": False,
                "is_attention": False,
                "creator_name": "interpedia",
            }
        ],
    )
    if model_name:
        _insert_missing(
            session,
            ExplanationModelType.__table__,
            [{"name": model_name, "display_name": model_name, "description": "", "featured": False}],
        )


def ensure_score_catalogue(
    session: Session, type_name: str, display_name: str, description: str, model_name: str | None
) -> None:
    """Make sure the score type (and the scorer model) rows exist."""
    _insert_missing(
        session,
        ExplanationScoreType.__table__,
        [
            {
                "name": type_name,
                "display_name": display_name,
                "description": description,
                "featured": False,
                "is_attention": False,
                "creator_name": "interpedia",
            }
        ],
    )
    if model_name:
        _insert_missing(
            session,
            ExplanationScoreModel.__table__,
            [{"name": model_name, "display_name": model_name, "description": "", "featured": False}],
        )
