"""Releases: a group of sources reached at ``/{release}``. A release is a Neuronpedia ``SourceRelease`` (its source
sets name it) or a SAELens release name (the sources generated from ``--sae RELEASE/ID`` record it as
``saelens_release``); a source belongs when either names the release."""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from interpedia.db.tables import Model, Source, SourceRelease, SourceSet
from interpedia.store.access import listed_condition, may_see
from interpedia.store.catalogue import count_features
from interpedia.store.documents.release import ReleaseDoc, release_json

__all__ = ["find_release", "in_release", "visible_release"]


def visible_release(session: Session, name: str) -> SourceRelease | None:
    """The ``SourceRelease`` row named ``name`` when the viewer may see it, else None."""
    row = session.get(SourceRelease, name)
    if row is None or not may_see((row.visibility,), (row.creator_id,)):
        return None
    return row


def in_release(name: str, row: SourceRelease | None) -> ColumnElement[bool]:
    """The condition on ``Source`` (joined with ``SourceSet``) for the sources of release ``name``: SAELens's
    name on the source, or, when the release's row is visible, the release of its source set."""
    if row is None:
        return Source.saelens_release == name
    return or_(Source.saelens_release == name, SourceSet.release_name == name)


def find_release(session: Session, name: str) -> ReleaseDoc | None:
    """The release ``name`` with the sources the viewer may list, or None when no release (or no visible source
    recording it as its SAELens release) has that name."""
    row = visible_release(session, name)
    sources = list(
        session.scalars(
            select(Source)
            .join(SourceSet, SourceSet.id == Source.set_id)
            .join(Model, Model.id == Source.model_id)
            .where(
                in_release(name, row),
                listed_condition(Model.visibility, Model.creator_id),
                listed_condition(SourceSet.visibility, SourceSet.creator_id),
                listed_condition(Source.visibility, Source.creator_id),
            )
            .order_by(Source.model_id, Source.layer_num, Source.name)
        )
    )
    if row is None and not sources:
        return None
    return release_json(name, row, sources, count_features(session, [s.id for s in sources]))
