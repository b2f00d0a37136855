"""Reading features with their examples and explanations, in neuronpedia.org's JSON shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from interpedia.db.codec import decode_activation
from interpedia.db.tables import (
    Activation,
    Explanation,
    ExplanationScore,
    Feature,
    Model,
    Source,
    SourceSet,
    User,
)
from interpedia.errors import Invalid, NotFound
from interpedia.store.catalogue import get_model, get_source, source_visible
from interpedia.store.formats import f32, iso, parse_index
from interpedia.store.records import NP_FEATURE_NAMES
from interpedia.store.vocab import vocab_cache


def model_json(model: Model) -> dict[str, Any]:
    """A model row as Neuronpedia returns it."""
    return {
        "id": model.id,
        "displayName": model.display_name,
        "displayNameShort": model.display_name_short,
        "creatorId": model.creator_id,
        "tlensId": model.tlens_id,
        "dimension": model.dimension,
        "visibility": model.visibility,
        "defaultSourceSetName": model.default_source_set_name,
        "defaultSourceId": model.default_source_id,
        "inferenceEnabled": model.inference_enabled,
        "instruct": model.instruct,
        "thinking": model.thinking,
        "layers": model.layers,
        "neuronsPerLayer": model.neurons_per_layer,
        "owner": model.owner,
        "website": model.website,
        "createdAt": iso(model.created_at),
        "updatedAt": iso(model.updated_at),
    }


def source_set_json(row: SourceSet) -> dict[str, Any]:
    """A source set row as Neuronpedia returns it."""
    return {
        "modelId": row.model_id,
        "name": row.name,
        "hasDashboards": row.has_dashboards,
        "allowInferenceSearch": row.allow_inference_search,
        "visibility": row.visibility,
        "description": row.description,
        "type": row.type,
        "creatorName": row.creator_name,
        "creatorId": row.creator_id,
        "urls": row.urls or [],
        "releaseName": row.release_name,
        "defaultRange": row.default_range,
        "defaultShowBreaks": row.default_show_breaks,
        "showDfa": row.show_dfa,
        "showCorrelated": row.show_correlated,
        "showHeadAttribution": row.show_head_attribution,
        "showUmap": row.show_umap,
        "createdAt": iso(row.created_at),
    }


def source_json(row: Source) -> dict[str, Any]:
    """A source row as Neuronpedia returns it."""
    return {
        "id": row.name,
        "modelId": row.model_id,
        "setName": row.set_name,
        "hasDashboards": row.has_dashboards,
        "inferenceEnabled": row.inference_enabled,
        "saelensConfig": row.saelens_config,
        "saelensRelease": row.saelens_release,
        "saelensSaeId": row.saelens_sae_id,
        "hfRepoId": row.hf_repo_id,
        "hfFolderId": row.hf_folder_id,
        "visibility": row.visibility,
        "hasUmap": row.has_umap,
        "hasUmapLogSparsity": row.has_umap_log_sparsity,
        "hasUmapClusters": row.has_umap_clusters,
        "num_prompts": row.num_prompts,
        "num_tokens_in_prompt": row.num_tokens_in_prompt,
        "dataset": row.dataset,
        "notes": row.notes,
        "cosSimMatchModelId": row.cos_sim_match_model_id,
        "cosSimMatchSourceId": row.cos_sim_match_source_id,
        "hookName": row.hook_name,
        "createdAt": iso(row.created_at),
    }


def feature_stats_json(feature: Feature) -> dict[str, Any]:
    """The feature's own columns, Neuronpedia-named."""
    return {np_name: getattr(feature, col) for col, np_name in NP_FEATURE_NAMES.items()}


def _bin_contains(value: float | None) -> float | None:
    # SAEDashboard marks the top group with -1; the official client accepts only null or 0..1.
    return value if value is not None and 0.0 <= value <= 1.0 else None


def activation_doc(
    model_id: str, source_name: str, index: int, act: Activation | Row[Any], tokens: list[str], values: list[float]
) -> dict[str, Any]:
    """An example as a row of Neuronpedia's ``Activation`` table (what exports carry)."""
    extras = act.extras or {}
    max_value = max(values) if values else 0.0
    return {
        "id": str(act.id),
        "modelId": model_id,
        "layer": source_name,
        "index": str(index),
        "tokens": tokens,
        "values": values,
        "maxValue": max_value,
        "maxValueTokenIndex": values.index(max_value) if values else 0,
        "minValue": min(values) if values else 0.0,
        "binMin": f32(act.bin_min),
        "binMax": f32(act.bin_max),
        "binContains": f32(act.bin_contains),
        "qualifyingTokenIndex": act.qualifying_token_index,
        "dfaValues": extras.get("dfaValues", []),
        "dfaTargetIndex": extras.get("dfaTargetIndex"),
        "dfaMaxValue": extras.get("dfaMaxValue"),
        "lossValues": extras.get("lossValues", []),
        "logitContributions": extras.get("logitContributions"),
        "zQIndices": extras.get("zQIndices", []),
        "zKIndices": extras.get("zKIndices", []),
        "zValues": extras.get("zValues", []),
        "creatorId": act.creator_id,
        "dataSource": extras.get("dataSource"),
        "dataIndex": extras.get("dataIndex"),
    }


def activation_json(
    session: Session,
    model_id: str,
    source_name: str,
    index: int,
    act: Activation,
    decoded: tuple[Any, list[float]] | None = None,
) -> dict[str, Any]:
    """One stored example as the API returns it, decoded into token strings and values."""
    ids, values = decoded if decoded is not None else decode_activation(act.data)
    return _activation_doc(model_id, source_name, index, act, vocab_cache.decode(session, model_id, ids), values)


def _activation_doc(
    model_id: str, source_name: str, index: int, act: Activation | Row[Any], tokens: list[str], values: list[float]
) -> dict[str, Any]:
    doc = activation_doc(model_id, source_name, index, act, tokens, values)
    # The official client reads each activation's source, and accepts only null or 0..1 in binContains.
    doc["source"] = source_name
    doc["binContains"] = _bin_contains(doc["binContains"])
    return doc


def list_activations(
    session: Session, model_id: str, source_name: str, feature: Feature, limit: int | None = None
) -> list[dict[str, Any]]:
    """A feature's examples, largest first (top group before quantile groups, as SAEDashboard orders)."""
    # Plain rows, not ORM objects: a page reads ~45 of them and identity-map bookkeeping costs more than the query.
    stmt = (
        select(*Activation.__table__.columns)
        .where(Activation.feature_id == feature.id)
        .order_by(Activation.max_value.desc(), Activation.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    acts = list(session.execute(stmt))
    decoded = [decode_activation(act.data) for act in acts]
    id_lists = [ids.tolist() for ids, _ in decoded]
    all_ids: set[int] = set()
    for ids in id_lists:
        all_ids.update(ids)
    # One vocabulary lookup for the whole feature (a per-example lookup costs a pass over the cache each).
    table = vocab_cache.strings(session, model_id, all_ids)
    token_of = cast(Callable[[int], str], table.__getitem__)  # ids below the table's end all have strings
    return [
        _activation_doc(model_id, source_name, feature.index, act, list(map(token_of, ids)), values)
        for act, ids, (_, values) in zip(acts, id_lists, decoded, strict=True)
    ]


_EXPLANATION_COLUMNS = [c for c in Explanation.__table__.columns if c.key != "embedding"]


def list_explanations(
    session: Session, model_id: str, source_name: str, features: Sequence[Feature]
) -> dict[int, list[dict[str, Any]]]:
    """Explanations per feature id, best scored first, each with its scores."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not features:
        return out
    by_id = {f.id: f for f in features}
    # Named columns, not the entity: the embedding column is large (and a pgvector value to parse on Postgres).
    rows = list(
        session.execute(
            select(*_EXPLANATION_COLUMNS, User.name.label("author_name"))
            .outerjoin(User, User.id == Explanation.author_id)
            .where(Explanation.feature_id.in_(list(by_id)))
            .order_by(Explanation.score_v2.desc().nulls_last(), Explanation.score_v1.desc(), Explanation.created_at)
        )
    )
    scores: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if rows:
        for score in session.execute(
            select(*ExplanationScore.__table__.columns).where(ExplanationScore.explanation_id.in_([e.id for e in rows]))
        ):
            scores[score.explanation_id].append(
                {
                    "id": score.id,
                    "value": score.value,
                    "explanationId": score.explanation_id,
                    "explanationScoreTypeName": score.explanation_score_type_name,
                    "explanationScoreModelName": score.explanation_score_model_name,
                    "initiatedByUserId": score.initiated_by_user_id,
                    "jsonDetails": score.json_details,
                    "createdAt": iso(score.created_at),
                }
            )
    for exp in rows:
        author_name = exp.author_name
        feature = by_id[exp.feature_id]
        out[exp.feature_id].append(
            {
                "id": exp.id,
                "modelId": model_id,
                "layer": source_name,
                "source": source_name,
                "index": str(feature.index),
                "description": exp.description,
                "authorId": exp.author_id,
                "author": {"name": author_name} if author_name else None,
                "typeName": exp.type_name,
                "explanationModelName": exp.explanation_model_name,
                "notes": exp.notes,
                "scoreV1": exp.score_v1,
                "scoreV2": exp.score_v2,
                "scores": scores.get(exp.id, []),
                "triggeredByUserId": exp.triggered_by_user_id,
                "umap_x": exp.umap_x,
                "umap_y": exp.umap_y,
                "umap_cluster": exp.umap_cluster,
                "umap_log_feature_sparsity": exp.umap_log_feature_sparsity,
                "createdAt": iso(exp.created_at),
            }
        )
    return out


def get_feature_row(session: Session, model_id: str, source_name: str, index: Any) -> tuple[Model, Source, Feature]:
    """Resolve ``/{model}/{source}/{index}`` to rows, or NotFound naming the missing part."""
    idx = parse_index(index)
    # One joined query on the common path; the step-by-step lookups only to name what is missing.
    found = session.execute(
        select(Model, Source, Feature)
        .join(Source, Source.model_id == Model.id)
        .join(Feature, Feature.source_id == Source.id)
        .where(Model.id == model_id, Source.name == source_name, Feature.index == idx)
    ).first()
    if found is not None and source_visible(session, found[1], found[0]):
        return found[0], found[1], found[2]
    get_model(session, model_id)
    get_source(session, model_id, source_name)
    raise NotFound(f"feature {model_id}/{source_name}/{idx} not found", field="index")


def feature_json(
    session: Session,
    model: Model,
    source: Source,
    feature: Feature,
    *,
    max_acts: int | None = None,
    with_catalogue: bool = True,
) -> dict[str, Any]:
    """The full feature document of ``GET /api/feature/{model}/{source}/{index}``."""
    doc: dict[str, Any] = {
        "modelId": model.id,
        "layer": source.name,
        "index": str(feature.index),
        "sourceSetName": source.set_name,
        "creatorId": feature.creator_id,
        "createdAt": iso(feature.created_at),
        **feature_stats_json(feature),
    }
    # Neuronpedia blanks these: "this does not work correctly" (within-batch correlations).
    doc["correlated_features_indices"] = []
    doc["correlated_features_pearson"] = []
    doc["correlated_features_l1"] = []
    if with_catalogue:
        set_row = session.get(SourceSet, source.set_id)
        doc["model"] = model_json(model)
        doc["source"] = source_json(source)
        doc["sourceSet"] = source_set_json(set_row) if set_row else None
        doc["lists"] = []
        from interpedia.store.comments import feature_comments  # here: comments imports this module

        doc["comments"] = feature_comments(session, feature.id)
        creator = session.get(User, feature.creator_id) if feature.creator_id else None
        doc["creator"] = {"id": creator.id, "name": creator.name} if creator else None
    doc["activations"] = list_activations(session, model.id, source.name, feature, max_acts)
    doc["explanations"] = list_explanations(session, model.id, source.name, [feature]).get(feature.id, [])
    return doc


def features_offset(
    session: Session, model_id: str, source_name: str, offset: int, limit: int = 20
) -> list[dict[str, Any]]:
    """A page of a source's features by index, each with its explanations (the Browser pane)."""
    if offset < 0:
        raise Invalid("offset must be >= 0", field="offset")
    get_model(session, model_id)
    source = get_source(session, model_id, source_name)
    feats = list(
        session.scalars(
            select(Feature).where(Feature.source_id == source.id).order_by(Feature.index).offset(offset).limit(limit)
        )
    )
    exps = list_explanations(session, model_id, source_name, feats)
    return [
        {
            "modelId": model_id,
            "layer": source_name,
            "index": str(f.index),
            **feature_stats_json(f),
            "explanations": exps.get(f.id, []),
        }
        for f in feats
    ]


def count_activations(session: Session, feature_ids: Sequence[int]) -> int:
    """How many examples these features have."""
    return int(
        session.scalar(select(func.count()).select_from(Activation).where(Activation.feature_id.in_(list(feature_ids))))
        or 0
    )
