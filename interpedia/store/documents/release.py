"""The release document: a SAELens release or a Neuronpedia ``SourceRelease`` (``/gemma-scope``) with the sources
it groups, as the release page and its JSON twin serve it."""

from __future__ import annotations

from typing import Any, TypedDict

from interpedia.db.tables import Source, SourceRelease
from interpedia.store.documents.catalogue import CountedSourceDoc, source_json

__all__ = ["ReleaseDoc", "release_json"]


class ReleaseDoc(TypedDict):
    """A release: Neuronpedia's ``SourceRelease`` fields (empty when only SAELens names it) and its sources."""

    name: str
    description: str
    descriptionShort: str | None
    urls: list[Any]
    creatorName: str | None
    featured: bool
    defaultSourceSetName: str | None
    defaultSourceId: str | None
    defaultUmapSourceIds: list[Any]
    modelIds: list[str]
    featureCount: int
    sources: list[CountedSourceDoc]


def release_json(name: str, row: SourceRelease | None, sources: list[Source], counts: dict[int, int]) -> ReleaseDoc:
    """The release ``name`` (its ``SourceRelease`` row when there is one) with its sources and feature counts."""
    docs: list[CountedSourceDoc] = [{**source_json(s), "featureCount": counts.get(s.id, 0)} for s in sources]
    return {
        "name": name,
        "description": row.description if row is not None else "",
        "descriptionShort": row.description_short if row is not None else None,
        "urls": (row.urls or []) if row is not None else [],
        "creatorName": row.creator_name if row is not None else None,
        "featured": bool(row.featured) if row is not None else False,
        "defaultSourceSetName": row.default_source_set_name if row is not None else None,
        "defaultSourceId": row.default_source_id if row is not None else None,
        "defaultUmapSourceIds": (row.default_umap_source_ids or []) if row is not None else [],
        "modelIds": list(dict.fromkeys(s.model_id for s in sources)),
        "featureCount": sum(d["featureCount"] for d in docs),
        "sources": docs,
    }
