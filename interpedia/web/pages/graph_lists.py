"""Graphs as other pages list them: the model page's featured graphs, a feature page's "graphs with this
feature", and the graph list page's entries (one summary document for all three)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from interpedia.store import graphs as store
from interpedia.store.graph_features import count_graphs, graphs_with_feature
from interpedia.store.graphs import GraphMetadata
from interpedia.web.pages.render import page_url

__all__ = ["feature_graphs", "graph_page_url", "graph_summary", "model_graphs"]

MODEL_PANE_FEATURED = 8
MODEL_PANE_RECENT = 5


def graph_page_url(model_id: str, slug: str) -> str:
    """Where a graph opens: ``/{model}/graph?slug=...``."""
    return f"{page_url(model_id, 'graph')}?{urlencode({'slug': slug})}"


def graph_summary(row: GraphMetadata) -> dict[str, Any]:
    """A graph in lists: its metadata as the API gives it (``url``: its JSON) and ``pageUrl``."""
    doc = store.graph_doc(row, page_url("api", "graph", row.model_id, row.slug, "json"))
    return {**doc, "pageUrl": graph_page_url(row.model_id, row.slug)}


def model_graphs(session: Session, model_id: str) -> dict[str, Any]:
    """The model page's graphs pane: featured graphs, the newest others, and how many there are in all."""
    rows = store.list_graphs(session, model_id, limit=MODEL_PANE_FEATURED + MODEL_PANE_RECENT)
    featured = [r for r in rows if r.is_featured][:MODEL_PANE_FEATURED]
    recent = [r for r in rows if not r.is_featured][:MODEL_PANE_RECENT]
    return {
        "featured": [graph_summary(r) for r in featured],
        "recent": [graph_summary(r) for r in recent],
        "total": count_graphs(session, model_id),
        "url": page_url(model_id, "graph"),
    }


def feature_graphs(session: Session, model_id: str, source: str, index: int) -> list[dict[str, Any]]:
    """The graphs in which the feature is a node (featured first)."""
    return [graph_summary(r) for r in graphs_with_feature(session, model_id, source, index)]
