"""Votes on explanations: one up-vote per user per explanation, and the counts the pages show."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from interpedia.db.tables import Explanation, User, Vote
from interpedia.store.versions import touch_features


def _mine(session: Session, user: User, explanation_id: str) -> Vote | None:
    return session.scalar(select(Vote).where(Vote.voter_id == user.id, Vote.explanation_id == explanation_id))


def vote(session: Session, user: User, explanation: Explanation) -> bool:
    """Up-vote the explanation; voting twice counts once. Returns whether a vote was added."""
    if _mine(session, user, explanation.id) is not None:
        return False
    try:
        # The unique (voter, explanation) constraint settles a race between two requests; a savepoint keeps
        # the surrounding transaction usable on Postgres when the other one won.
        with session.begin_nested():
            session.add(Vote(voter_id=user.id, explanation_id=explanation.id, points=1))
    except IntegrityError:
        if _mine(session, user, explanation.id) is None:
            raise
        return False
    touch_features(session, [explanation.feature_id])
    return True


def unvote(session: Session, user: User, explanation: Explanation) -> bool:
    """Take back the user's vote; False when there was none."""
    row = _mine(session, user, explanation.id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    touch_features(session, [explanation.feature_id])
    return True


def vote_counts(session: Session, explanation_ids: Sequence[str]) -> dict[str, int]:
    """Points per explanation (explanations without votes are absent)."""
    if not explanation_ids:
        return {}
    rows = session.execute(
        select(Vote.explanation_id, func.coalesce(func.sum(Vote.points), 0))
        .where(Vote.explanation_id.in_(list(explanation_ids)))
        .group_by(Vote.explanation_id)
    )
    return {eid: int(total) for eid, total in rows}


def voted_by(session: Session, user: User | None, explanation_ids: Sequence[str]) -> set[str]:
    """The explanations among ``explanation_ids`` that ``user`` has voted for."""
    if user is None or not explanation_ids:
        return set()
    return set(
        session.scalars(
            select(Vote.explanation_id).where(Vote.voter_id == user.id, Vote.explanation_id.in_(list(explanation_ids)))
        )
    )


def vote_state(session: Session, user: User | None, explanation_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{explanationId: {"votes": n, "voted": bool}}`` for every id given."""
    counts = vote_counts(session, explanation_ids)
    mine = voted_by(session, user, explanation_ids)
    return {eid: {"votes": counts.get(eid, 0), "voted": eid in mine} for eid in explanation_ids}
