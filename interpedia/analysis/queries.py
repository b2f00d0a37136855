"""Reads behind ``/api/umap``, the source page's map and ``/sae-bench``: plain JSON-able dicts."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interpedia.analysis.evals import metric_table
from interpedia.db.community import Eval, EvalType
from interpedia.db.tables import Explanation, Feature, Model, Source, SourceSet
from interpedia.errors import Invalid, NotFound
from interpedia.store.access import listed_condition
from interpedia.store.catalogue import get_model, get_source
from interpedia.store.formats import iso

MAX_UMAP_LAYERS = 20


def umap_points(session: Session, model_id: str, layers: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each source's mapped features: ``{layer: [{id, layer, index, description, umap_*}]}``.

    Neuronpedia returns one point per explanation (``id`` is the explanation's); here every feature
    with coordinates is a point, carrying its best explanation (``id``/``description`` null without one),
    so unexplained features still show on the map.
    """
    if not layers:
        raise Invalid("layers must name at least one source", field="layers")
    if len(layers) > MAX_UMAP_LAYERS:
        raise Invalid(f"at most {MAX_UMAP_LAYERS} layers per request", field="layers")
    get_model(session, model_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for layer in dict.fromkeys(layers):
        source = get_source(session, model_id, layer)
        rows = session.execute(
            select(
                Feature.id,
                Feature.index,
                Feature.umap_x,
                Feature.umap_y,
                Feature.umap_cluster,
                Feature.umap_log_feature_sparsity,
            )
            .where(Feature.source_id == source.id, Feature.umap_x.is_not(None), Feature.umap_y.is_not(None))
            .order_by(Feature.index)
        ).all()
        best: dict[int, tuple[str, str]] = {}
        if rows:
            for fid, eid, description in session.execute(
                select(Explanation.feature_id, Explanation.id, Explanation.description)
                .join(Feature, Feature.id == Explanation.feature_id)
                .where(Feature.source_id == source.id, Feature.umap_x.is_not(None))
                .order_by(
                    Explanation.feature_id,
                    Explanation.score_v2.desc().nulls_last(),
                    Explanation.score_v1.desc(),
                    Explanation.created_at,
                )
            ):
                best.setdefault(fid, (eid, description))
        out[layer] = [
            {
                "id": best.get(fid, (None, None))[0],
                "modelId": model_id,
                "layer": layer,
                "index": str(index),
                "description": best.get(fid, (None, None))[1],
                "umap_cluster": cluster,
                "umap_x": x,
                "umap_y": y,
                "umap_log_feature_sparsity": log_sp,
            }
            for fid, index, x, y, cluster, log_sp in rows
        ]
    return out


def _flat_metrics(output: dict[str, Any]) -> dict[str, float]:
    """``{"category.metric": value}`` for the numeric metrics of an eval output."""
    flat: dict[str, float] = {}
    for cat, metrics in (output.get("eval_result_metrics") or {}).items():
        if isinstance(metrics, dict):
            for key, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    flat[f"{cat}.{key}"] = float(value)
    return flat


def source_evals(session: Session, source_id: int) -> list[dict[str, Any]]:
    """A source's evals with their metrics grouped by category (the source page's SAE evals pane)."""
    rows = session.execute(
        select(Eval, EvalType)
        .join(EvalType, EvalType.name == Eval.type_name)
        .where(Eval.source_id == source_id)
        .order_by(Eval.type_name)
    ).all()
    return [
        {
            "id": e.id,
            "typeName": e.type_name,
            "displayName": t.display_name or e.type_name,
            "description": t.description,
            "createdAt": iso(e.created_at),
            "output": e.output,
            "saeLensRelease": e.output.get("sae_lens_release_id"),
            "saeLensId": e.output.get("sae_lens_id"),
            "categories": metric_table(t.output_schema, e.output),
        }
        for e, t in rows
    ]


def sae_bench(session: Session, type_name: str | None) -> dict[str, Any]:
    """Every source's metrics of one eval type, for the comparison table and plot."""
    types = list(session.scalars(select(EvalType).order_by(EvalType.name)))
    names = [t.name for t in types]
    if type_name is None:
        type_name = "core" if "core" in names else (names[0] if names else None)
    elif type_name not in names:
        raise NotFound(f"no evals of type {type_name!r} (have: {', '.join(names) or 'none'})", field="type")
    rows: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    if type_name is not None:
        etype = next(t for t in types if t.name == type_name)
        for e, src in session.execute(
            select(Eval, Source)
            .join(Source, Source.id == Eval.source_id)
            .join(Model, Model.id == Source.model_id)
            .join(SourceSet, SourceSet.id == Source.set_id)
            .where(
                Eval.type_name == type_name,
                # A private (or unlisted) model, set or source is not compared in public.
                listed_condition(Model.visibility, Model.creator_id),
                listed_condition(SourceSet.visibility, SourceSet.creator_id),
                listed_condition(Source.visibility, Source.creator_id),
            )
            .order_by(Source.model_id, Source.layer_num, Source.name)
        ):
            rows.append(
                {
                    "modelId": src.model_id,
                    "source": src.name,
                    "setName": src.set_name,
                    "saeLensRelease": e.output.get("sae_lens_release_id"),
                    "saeLensId": e.output.get("sae_lens_id"),
                    "metrics": _flat_metrics(e.output),
                }
            )
            for cat in metric_table(etype.output_schema, e.output):
                for m in cat["metrics"]:
                    key = f"{cat['key']}.{m['key']}"
                    seen.setdefault(
                        key,
                        {
                            "key": key,
                            "title": m["title"],
                            "category": cat["title"],
                            "description": m["description"],
                            "default": m["default"],
                        },
                    )
    columns = [c for c in seen.values() if any(c["key"] in r["metrics"] for r in rows)]
    return {
        "types": [{"name": t.name, "displayName": t.display_name or t.name} for t in types],
        "type": type_name,
        "columns": columns,
        "rows": rows,
    }
