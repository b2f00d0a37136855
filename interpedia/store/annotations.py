"""What people have said about one feature, read in one statement: its explanations (with their authors, scores
and, for a viewer, votes) and its comments.

A feature read is the request the site answers most; these three tables would be three or four round trips.
They are one ``UNION ALL`` of three ``SELECT``\\s sharing one set of named columns (``_COLUMNS``): each branch
fills the columns its kind has and leaves the rest NULL, and ``kind`` says which branch a row came from
(``e`` explanation, ``s`` score, ``c`` comment). Explanations are listed best scored first (score v2, then v1,
then oldest), as every other explanation listing orders them (the statement's ORDER BY); scores and comments
oldest first.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypedDict

from sqlalchemy import (
    Boolean,
    CompoundSelect,
    DateTime,
    Float,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from interpedia.db.tables import Comment, Explanation, ExplanationScore, User, Vote
from interpedia.store.comments import can_delete
from interpedia.store.documents.comment import CommentDoc, comment_doc
from interpedia.store.documents.explanation import ExplanationDoc, explanation_doc, score_doc

__all__ = ["FeatureAnnotations", "VoteDoc", "feature_annotations", "features_annotations", "voted_explanations"]

_COLUMNS: dict[str, TypeEngine[Any]] = {
    "kind": String(),
    "feature_id": Integer(),
    "id": String(),
    "explanation_id": String(),
    "text": Text(),
    "user_id": String(),
    "user_name": String(),
    "type_name": String(),
    "model_name": String(),
    "notes": Text(),
    "value": Float(),
    "score_v2": Float(),
    "triggered_by": String(),
    "umap_x": Float(),
    "umap_y": Float(),
    "umap_cluster": Integer(),
    "umap_sparsity": Float(),
    "has_embedding": Boolean(),
    "votes": Integer(),
    "voted": Boolean(),
    "created_at": DateTime(),
    "updated_at": DateTime(),
}


class VoteDoc(TypedDict):
    """The votes on one explanation, and whether the viewer gave one."""

    votes: int
    voted: bool


@dataclass
class CommentRow:
    """A comment as read, before it is shown to someone (``canDelete`` depends on who)."""

    id: str
    text: str
    user_id: str
    user_name: str | None
    created_at: dt.datetime | None


@dataclass
class FeatureAnnotations:
    """A feature's explanations (documents), the votes on them, and its comments."""

    explanations: list[ExplanationDoc] = field(default_factory=list)
    votes: dict[str, VoteDoc] = field(default_factory=dict)
    comments: list[CommentRow] = field(default_factory=list)

    def voted_by(self, voted: set[str]) -> FeatureAnnotations:
        """The same annotations with ``voted`` true for exactly the explanations in ``voted`` (a copy)."""
        votes: dict[str, VoteDoc] = {eid: {"votes": v["votes"], "voted": eid in voted} for eid, v in self.votes.items()}
        return FeatureAnnotations(self.explanations, votes, self.comments)

    def comment_docs(self, address: tuple[str, str, int], viewer: User | None) -> list[CommentDoc]:
        """The comments as ``viewer`` sees them (``canDelete``)."""
        return [
            comment_doc(
                comment_id=c.id,
                text=c.text,
                user_id=c.user_id,
                user_name=c.user_name,
                created_at=c.created_at,
                can_delete=can_delete(c.user_id, viewer),
                address=address,
            )
            for c in self.comments
        ]


def _branch(kind: str, columns: dict[str, Any]) -> Select[Any]:
    """One SELECT with every shared column, in order: the branch's own value where it has one, else a typed NULL."""
    unknown = set(columns) - set(_COLUMNS)
    assert not unknown, f"not a shared column: {unknown}"
    values = {"kind": literal_column(f"'{kind}'", String()), **columns}
    return select(
        *((values[name] if name in values else cast(null(), type_)).label(name) for name, type_ in _COLUMNS.items())
    )


@functools.cache
def _statement(*, with_votes: bool, with_comments: bool, many: bool = False) -> CompoundSelect:
    """The statement for a kind of read, built once: parameters ``feature_id`` (``feature_ids``, a list, when
    ``many``) and ``viewer_id`` (None: nobody has voted). Built per request, a statement this size costs more
    Python than running it does."""
    feature_ids: Any = bindparam("feature_ids", expanding=True)
    feature_id = bindparam("feature_id", type_=Integer())

    def of_feature(column: Any) -> Any:
        return column.in_(feature_ids) if many else column == feature_id

    viewer_id = bindparam("viewer_id", type_=String())
    author = User.__table__.alias("author")
    explanation_columns: dict[str, Any] = {
        "feature_id": Explanation.feature_id,
        "id": Explanation.id,
        "text": Explanation.description,
        "user_id": Explanation.author_id,
        "user_name": author.c.name,
        "type_name": Explanation.type_name,
        "model_name": Explanation.explanation_model_name,
        "notes": Explanation.notes,
        "value": Explanation.score_v1,
        "score_v2": Explanation.score_v2,
        "triggered_by": Explanation.triggered_by_user_id,
        "umap_x": Explanation.umap_x,
        "umap_y": Explanation.umap_y,
        "umap_cluster": Explanation.umap_cluster,
        "umap_sparsity": Explanation.umap_log_feature_sparsity,
        "has_embedding": Explanation.embedding.is_not(None),
        "created_at": Explanation.created_at,
        "updated_at": Explanation.updated_at,
    }
    if with_votes:
        explanation_columns["votes"] = (
            select(func.coalesce(func.sum(Vote.points), 0)).where(Vote.explanation_id == Explanation.id)
        ).scalar_subquery()
        explanation_columns["voted"] = exists().where(Vote.explanation_id == Explanation.id, Vote.voter_id == viewer_id)
    explanations = (
        _branch("e", explanation_columns)
        .select_from(Explanation)
        .outerjoin(author, author.c.id == Explanation.author_id)
        .where(of_feature(Explanation.feature_id))
    )
    scores = (
        _branch(
            "s",
            {
                "feature_id": Explanation.feature_id,
                "id": ExplanationScore.id,
                "explanation_id": ExplanationScore.explanation_id,
                "text": ExplanationScore.json_details,
                "user_id": ExplanationScore.initiated_by_user_id,
                "type_name": ExplanationScore.explanation_score_type_name,
                "model_name": ExplanationScore.explanation_score_model_name,
                "value": ExplanationScore.value,
                "created_at": ExplanationScore.created_at,
            },
        )
        .select_from(ExplanationScore)
        .join(Explanation, Explanation.id == ExplanationScore.explanation_id)
        .where(of_feature(Explanation.feature_id))
    )
    branches = [explanations, scores]
    if with_comments:
        commenter = User.__table__.alias("commenter")
        branches.append(
            _branch(
                "c",
                {
                    "feature_id": Comment.feature_id,
                    "id": Comment.id,
                    "text": Comment.text,
                    "user_id": Comment.user_id,
                    "user_name": commenter.c.name,
                    "created_at": Comment.created_at,
                },
            )
            .select_from(Comment)
            .outerjoin(commenter, commenter.c.id == Comment.user_id)
            .where(of_feature(Comment.feature_id))
        )
    both = union_all(*branches)
    c = both.selected_columns
    return both.order_by(c.kind, c.score_v2.desc().nulls_last(), c.value.desc(), c.created_at, c.id)


def feature_annotations(
    session: Session,
    feature_id: int,
    address: tuple[str, str, int],
    *,
    viewer_id: str | None = None,
    with_votes: bool = False,
    with_comments: bool = True,
) -> FeatureAnnotations:
    """The feature's explanations (documents addressed ``(model id, source name, index)``), their votes (with
    ``with_votes``; ``voted`` for ``viewer_id``) and its comments (with ``with_comments``), in one statement."""
    statement = _statement(with_votes=with_votes, with_comments=with_comments)
    rows = list(session.execute(statement, {"feature_id": feature_id, "viewer_id": viewer_id}))
    return _annotations(rows, address, with_votes)


def features_annotations(session: Session, addresses: dict[int, tuple[str, str, int]]) -> dict[int, FeatureAnnotations]:
    """:func:`feature_annotations` with votes and comments (nobody's vote marked) of many features, by feature
    id, in one statement: ``addresses`` maps each feature id to its ``(model id, source name, index)``."""
    if not addresses:
        return {}
    statement = _statement(with_votes=True, with_comments=True, many=True)
    by_feature: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(statement, {"feature_ids": list(addresses), "viewer_id": None}):
        by_feature[row.feature_id].append(row)  # the statement's order, kept within each feature
    return {fid: _annotations(by_feature.get(fid, []), address, True) for fid, address in addresses.items()}


def _annotations(rows: list[Any], address: tuple[str, str, int], with_votes: bool) -> FeatureAnnotations:
    scores: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row.kind == "s":
            scores[row.explanation_id].append(row)
    out = FeatureAnnotations()
    for row in rows:
        if row.kind == "e":
            out.explanations.append(_explanation(row, address, scores.get(row.id, [])))
            if with_votes:
                out.votes[row.id] = {"votes": int(row.votes or 0), "voted": bool(row.voted)}
        elif row.kind == "c":
            out.comments.append(CommentRow(row.id, row.text, row.user_id, row.user_name, row.created_at))
    out.comments.sort(key=lambda c: (c.created_at or dt.datetime.min, c.id))
    return out


def voted_explanations(session: Session, viewer_id: str, explanation_ids: list[str]) -> set[str]:
    """Which of these explanations ``viewer_id`` has voted for."""
    return set(
        session.scalars(
            select(Vote.explanation_id).where(Vote.voter_id == viewer_id, Vote.explanation_id.in_(explanation_ids))
        )
    )


def _explanation(row: Any, address: tuple[str, str, int], score_rows: list[Any]) -> ExplanationDoc:
    score_rows.sort(key=lambda s: (s.created_at or dt.datetime.min, s.id))
    scores = [
        score_doc(
            score_id=s.id,
            value=s.value,
            explanation_id=s.explanation_id,
            type_name=s.type_name,
            model_name=s.model_name,
            initiated_by=s.user_id,
            json_details=s.text,
            created_at=s.created_at,
        )
        for s in score_rows
    ]
    # The shared columns under the explanation's own names, which is what the builder reads.
    fields = SimpleNamespace(
        id=row.id,
        description=row.text,
        author_id=row.user_id,
        type_name=row.type_name,
        explanation_model_name=row.model_name,
        notes=row.notes,
        score_v1=row.value,
        score_v2=row.score_v2,
        triggered_by_user_id=row.triggered_by,
        umap_x=row.umap_x,
        umap_y=row.umap_y,
        umap_cluster=row.umap_cluster,
        umap_log_feature_sparsity=row.umap_sparsity,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
    return explanation_doc(
        fields, address, author_name=row.user_name, has_embedding=bool(row.has_embedding), scores=scores
    )
