"""Which features a graph's nodes are: the index written when a graph is saved, and the reads built on it.

A graph's feature nodes name a feature of a transcoder (or SAE) set on this instance: the set is the graph's
``metadata.feature_details.neuronpedia_source_set`` (``neuronpedia_lorsa_source_set`` for Lorsa nodes), the
source is ``{layer}-{set}`` and the index comes from the node id (``{layer}_{index}_{pos}``, what circuit-tracer
and interpedia's engine write) or, failing that, from ``feature`` (the Cantor pair of layer and index in
``schema_version`` 1 graphs, the plain index before). ``static/graph-model.js`` decodes nodes the same way.

The index (``graph_features``) lets a feature's page list the graphs it appears in, and the graph page label
its nodes with this instance's explanations, without reading any graph's JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interpedia.db.graphs import GraphFeature, GraphMetadata
from interpedia.db.tables import Explanation, Feature, Model
from interpedia.errors import NotFound
from interpedia.store.access import listed_condition
from interpedia.store.catalogue import get_model, get_source

__all__ = [
    "count_graphs",
    "default_graph_model",
    "feature_of_node",
    "graph_feature_info",
    "graphs_with_feature",
    "index_graph_features",
]

NOT_FEATURES = frozenset({"embedding", "logit", "mlp reconstruction error", "lorsa error"})
_CHUNK = 900  # ids per IN (...) list: under SQLite's default bound-parameter limit


def _cantor_unpair(z: int) -> tuple[int, int]:
    w = (math.isqrt(8 * z + 1) - 1) // 2
    y = z - w * (w + 1) // 2
    return w - y, y


def feature_of_node(
    node: dict[str, Any], source_set: str | None, lorsa_set: str | None = None
) -> tuple[str, int] | None:
    """``(source, index)`` of a feature node (``("3-tc-demo", 17)``); None for tokens, logits, errors, or
    when the graph names no source set."""
    kind = str(node.get("feature_type") or "")
    if kind in NOT_FEATURES or "error" in kind:
        return None
    set_name = lorsa_set if kind == "lorsa" else source_set
    raw_layer = node.get("layer")
    layer = str(int(raw_layer) if isinstance(raw_layer, float) and raw_layer.is_integer() else raw_layer)
    if not set_name or not layer.isdigit():
        return None
    parts = str(node.get("node_id") or "").split("_")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] == layer:
        return f"{layer}-{set_name}", int(parts[1])
    feature = node.get("feature")
    if isinstance(feature, float) and feature.is_integer():  # JSON's 2.0 is the integer 2
        feature = int(feature)
    if not isinstance(feature, int) or isinstance(feature, bool) or feature < 0:
        return None
    unpaired_layer, index = _cantor_unpair(feature)
    return f"{layer}-{set_name}", (index if unpaired_layer == int(layer) else feature)


def _feature_keys(doc: dict[str, Any]) -> set[tuple[str, int]]:
    details = doc["metadata"].get("feature_details") or {}
    source_set, lorsa = details.get("neuronpedia_source_set"), details.get("neuronpedia_lorsa_source_set")
    if not source_set and not lorsa:
        return set()
    keys = (feature_of_node(node, source_set, lorsa) for node in doc["nodes"])
    return {key for key in keys if key is not None}


def index_graph_features(session: Session, graph: GraphMetadata, doc: dict[str, Any]) -> int:
    """Record which features the (validated) graph ``doc`` holds; returns how many."""
    keys = _feature_keys(doc)
    session.add_all(
        GraphFeature(graph_id=graph.id, model_id=graph.model_id, source=source, feature_index=index)
        for source, index in keys
    )
    session.flush()
    return len(keys)


def graphs_with_feature(
    session: Session, model_id: str, source: str, index: int, *, limit: int = 50
) -> list[GraphMetadata]:
    """The listed graphs (and the viewer's own) in which feature ``source/index`` of the model is a node:
    featured first, then newest."""
    stmt = (
        select(GraphMetadata)
        .join(GraphFeature, GraphFeature.graph_id == GraphMetadata.id)
        .where(
            GraphFeature.model_id == model_id,
            GraphFeature.source == source,
            GraphFeature.feature_index == index,
            listed_condition(GraphMetadata.visibility, GraphMetadata.creator_id),
        )
        .order_by(GraphMetadata.is_featured.desc(), GraphMetadata.created_at.desc(), GraphMetadata.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _best_explanations(session: Session, feature_ids: list[int]) -> dict[int, str]:
    best: dict[int, str] = {}
    for chunk in _chunks(feature_ids):
        rows = session.execute(
            select(Explanation.feature_id, Explanation.description)
            .where(Explanation.feature_id.in_(chunk))
            .order_by(
                Explanation.feature_id,
                Explanation.score_v2.desc().nulls_last(),
                Explanation.score_v1.desc(),
                Explanation.created_at,
            )
        )
        for feature_id, description in rows:
            best.setdefault(feature_id, description)
    return best


def graph_feature_info(session: Session, graph: GraphMetadata) -> dict[str, dict[str, Any]]:
    """What this instance knows of the graph's features, by ``"{source}/{index}"``: the best explanation,
    the activation density and the largest activation. Features of sources hidden from the viewer, or not
    on this instance, are left out."""
    sources = session.scalars(
        select(GraphFeature.source).where(GraphFeature.graph_id == graph.id).group_by(GraphFeature.source)
    ).all()
    found: dict[int, tuple[str, float | None, float | None]] = {}
    for name in sources:
        try:
            source = get_source(session, graph.model_id, name)
        except NotFound:
            continue
        rows = session.execute(
            select(Feature.id, Feature.index, Feature.frac_nonzero, Feature.max_act_approx)
            .join(GraphFeature, GraphFeature.feature_index == Feature.index)
            .where(GraphFeature.graph_id == graph.id, GraphFeature.source == name, Feature.source_id == source.id)
        )
        for feature_id, index, density, max_act in rows:
            found[feature_id] = (f"{name}/{index}", density, max_act)
    best = _best_explanations(session, sorted(found))
    return {
        key: {"explanation": best.get(feature_id), "density": density, "maxActApprox": max_act}
        for feature_id, (key, density, max_act) in found.items()
    }


def default_graph_model(session: Session) -> str:
    """The model ``/graph`` opens: the one with the newest featured graph, else the newest graph, else the
    first model; NotFound when there is no model at all."""
    listed = listed_condition(GraphMetadata.visibility, GraphMetadata.creator_id)
    for featured_only in (True, False):
        stmt = select(GraphMetadata.model_id).where(listed)
        if featured_only:
            stmt = stmt.where(GraphMetadata.is_featured.is_(True))
        for model_id in session.scalars(stmt.order_by(GraphMetadata.created_at.desc()).limit(20)):
            try:
                return get_model(session, model_id).id
            except NotFound:
                continue
    model_ids = session.scalars(select(Model.id).order_by(Model.id).limit(50)).all()
    for model_id in model_ids:
        try:
            return get_model(session, model_id).id
        except NotFound:
            continue
    raise NotFound("there is no model yet: import or create one first", field="modelId")


def count_graphs(session: Session, model_id: str) -> int:
    """How many graphs of the model the viewer may list."""
    listed = listed_condition(GraphMetadata.visibility, GraphMetadata.creator_id)
    stmt = select(func.count()).select_from(GraphMetadata).where(GraphMetadata.model_id == model_id, listed)
    return int(session.scalar(stmt) or 0)
