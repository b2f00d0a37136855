"""Everything the feature page shows, read for one viewer in three statements.

The page is the feature document (``store.features.read_feature``: the catalogue row, the examples, the
explanations and comments) plus what depends on who is looking: the votes on each explanation and whether
they voted, their bookmark and their comments' delete buttons. Its neighbours (previous / next feature) and
the bookmark ride on the catalogue statement as subqueries, the votes on the explanations statement. So does
whether any attribution graph holds the feature: only then does the page ask which graphs (most features are
in none, and that question was a statement on every read).

The page also offers live inference, whose availability check (``inference.plans``) reads the model's and
the source's latest ``generate`` run and finds the source again by name. Both runs ride on the catalogue
statement too, and are handed to ``store.runs``' per-transaction memo, as is the source: the check then asks
the database nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, String, and_, bindparam, case, exists
from sqlalchemy.orm import Session

from interpedia.db.graphs import GraphFeature
from interpedia.db.tables import Bookmark, Feature, Model, Source, User
from interpedia.store.annotations import VoteDoc
from interpedia.store.browse import neighbour_columns
from interpedia.store.comments import MAX_COMMENT_CHARS
from interpedia.store.documents.comment import CommentDoc
from interpedia.store.feature_cache import FeatureCache
from interpedia.store.features import FeatureRead, creator_name_column, read_feature
from interpedia.store.runs import latest_run_query, remember_latest_run

__all__ = ["FeatureCommunityDoc", "FeaturePage", "read_feature_page"]


class FeatureCommunityDoc(TypedDict):
    """What the feature page shows of comments, the viewer's bookmark and the votes on each explanation."""

    comments: list[CommentDoc]
    bookmarked: bool
    votes: dict[str, VoteDoc]
    maxCommentChars: int


@dataclass
class FeaturePage:
    """The feature page's reads: the feature (rows and document), its neighbours, the viewer's view of it."""

    read: FeatureRead
    prev_index: int | None
    next_index: int | None
    community: FeatureCommunityDoc
    in_graphs: bool  # whether any graph (listed to this viewer or not) has the feature as a node


def read_feature_page(
    session: Session,
    model_id: str,
    source_name: str,
    index: Any,
    viewer: User | None,
    *,
    cache: FeatureCache | None = None,
) -> FeaturePage:
    """The feature page of ``/{model}/{source}/{index}`` as ``viewer`` (None: anonymous) sees it (the viewer's
    lists for "add to list" are ``store.lists.lists_with_feature``: only the HTML page shows them), its document
    from ``cache`` when it holds the current version."""
    read = read_feature(
        session,
        model_id,
        source_name,
        index,
        _page_columns(),
        {"viewer_id": viewer.id if viewer is not None else None},
        viewer_id=viewer.id if viewer is not None else None,
        with_votes=True,
        cache=cache,
    )
    row, model, source, feature = read.row, read.model, read.source, read.feature
    if model.inference_enabled:
        remember_latest_run(session, row.model_run, model_id=model.id)
        if source.inference_enabled:
            remember_latest_run(session, row.source_run, source_pk=source.id)
    community: FeatureCommunityDoc = {
        "comments": read.annotations.comment_docs((model.id, source.name, feature.index), viewer),
        "bookmarked": bool(row.bookmarked),
        "votes": read.annotations.votes,
        "maxCommentChars": MAX_COMMENT_CHARS,
    }
    return FeaturePage(read, row.prev_index, row.next_index, community, bool(row.in_graphs))


@functools.cache
def _page_columns() -> tuple[ColumnElement[Any], ...]:
    """The page's extra columns on the catalogue row, built once (parameter ``viewer_id``: None is nobody)."""
    prev_index, next_index = neighbour_columns(Feature.source_id, Feature.index)
    mine = exists().where(Bookmark.user_id == bindparam("viewer_id", type_=String()), Bookmark.feature_id == Feature.id)
    in_graphs = exists().where(
        GraphFeature.model_id == Model.id,
        GraphFeature.source == Source.name,
        GraphFeature.feature_index == Feature.index,
    )
    return (
        creator_name_column(),
        prev_index,
        next_index,
        mine.label("bookmarked"),
        in_graphs.label("in_graphs"),
        *_run_columns(),
    )


def _run_columns() -> list[ColumnElement[Any]]:
    """The model's and the source's latest generate run, only where live inference is switched on."""
    model_run = latest_run_query(model_id=Model.id).scalar_subquery()
    source_run = latest_run_query(source_pk=Source.id).scalar_subquery()
    return [
        case((Model.inference_enabled, model_run), else_=None).label("model_run"),
        case((and_(Model.inference_enabled, Source.inference_enabled), source_run), else_=None).label("source_run"),
    ]
