"""The release page's data (``/{release}``, served by ``routes.model_page`` when the id is no model): the release's
sources, the UMAP of one of them, and explanation search within the release."""

from __future__ import annotations

from typing import Any

from interpedia.errors import NotFound
from interpedia.store.documents.release import ReleaseDoc

__all__ = ["release_page_data"]


def _umap_source(release: ReleaseDoc, chosen: str | None) -> dict[str, Any] | None:
    """The source whose map the page shows: ``?umap=MODEL/SOURCE`` (or ``SOURCE``), else the release's default UMAP
    source, else the first source with a map."""
    mapped = [s for s in release["sources"] if s["hasUmap"]]
    if chosen:
        for s in mapped:
            if chosen in (s["id"], f"{s['modelId']}/{s['id']}"):
                return dict(s)
        raise NotFound(f"release {release['name']!r} has no UMAP for source {chosen!r}", field="umap")
    defaults = [str(d) for d in release["defaultUmapSourceIds"]]
    for want in defaults:
        for s in mapped:
            if want in (s["id"], f"{s['modelId']}/{s['id']}"):
                return dict(s)
    return dict(mapped[0]) if mapped else None


def release_page_data(release: ReleaseDoc, umap: str | None) -> dict[str, Any]:
    """The release page's data (also its JSON twin)."""
    shown = _umap_source(release, (umap or "").strip() or None)
    return {
        "page": "release",
        "release": release,
        "umap": None if shown is None else {"modelId": shown["modelId"], "source": shown["id"]},
        "umapSources": [f"{s['modelId']}/{s['id']}" for s in release["sources"] if s["hasUmap"]],
    }
