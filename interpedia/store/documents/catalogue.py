"""The catalogue documents: a model, a source set (``res-jb``) and a source (``6-res-jb``), as neuronpedia.org
writes them, and the counted forms the pages and ``/api/model/get`` nest them in."""

from __future__ import annotations

from typing import Any, TypedDict

from interpedia.db.tables import Model, Source, SourceSet
from interpedia.store.formats import iso, public_name

__all__ = [
    "CountedModelDoc",
    "CountedSourceDoc",
    "CountedSourceSetDoc",
    "ModelDoc",
    "ModelWithSetsDoc",
    "SourceDoc",
    "SourceSetDoc",
    "SourceSetWithSourcesDoc",
    "counted_model_json",
    "counted_source_set_json",
    "model_json",
    "model_with_sets_json",
    "source_json",
    "source_set_json",
    "source_set_with_sources_json",
]


class ModelDoc(TypedDict):
    """A model (Neuronpedia's ``Model`` row)."""

    id: str
    displayName: str | None
    displayNameShort: str | None
    creatorId: str | None
    tlensId: str | None
    dimension: int | None
    visibility: str
    defaultSourceSetName: str | None
    defaultSourceId: str | None
    inferenceEnabled: bool
    instruct: bool
    thinking: bool
    layers: int
    neuronsPerLayer: int | None
    owner: str | None
    website: str | None
    createdAt: str | None
    updatedAt: str | None


class SourceSetDoc(TypedDict):
    """A source set (Neuronpedia's ``SourceSet`` row)."""

    modelId: str
    name: str
    hasDashboards: bool
    allowInferenceSearch: bool
    visibility: str
    description: str | None
    type: str | None
    creatorName: str | None
    creatorId: str | None
    urls: list[Any]
    releaseName: str | None
    defaultRange: int | None
    defaultShowBreaks: bool | None
    showDfa: bool | None
    showCorrelated: bool | None
    showHeadAttribution: bool | None
    showUmap: bool | None
    createdAt: str | None


class SourceDoc(TypedDict):
    """A source, one SAE (Neuronpedia's ``Source`` row; ``id`` is its name, ``6-res-jb``)."""

    id: str
    modelId: str
    setName: str
    hasDashboards: bool
    inferenceEnabled: bool
    saelensConfig: dict[str, Any] | None
    saelensRelease: str | None
    saelensSaeId: str | None
    hfRepoId: str | None
    hfFolderId: str | None
    visibility: str
    hasUmap: bool
    hasUmapLogSparsity: bool
    hasUmapClusters: bool
    num_prompts: int | None
    num_tokens_in_prompt: int | None
    dataset: str | None
    notes: str | None
    cosSimMatchModelId: str | None
    cosSimMatchSourceId: str | None
    hookName: str | None
    createdAt: str | None


class SourceSetWithSourcesDoc(SourceSetDoc):
    """``/api/source-set/...`` and each set of ``/api/model/get``: the set with its visible sources."""

    sources: list[SourceDoc]


class ModelWithSetsDoc(ModelDoc):
    """``/api/model/get``: the model with its visible source sets and their sources."""

    sourceSets: list[SourceSetWithSourcesDoc]


class CountedSourceDoc(SourceDoc):
    """A source with how many features it holds (the pages)."""

    featureCount: int


class CountedSourceSetDoc(SourceSetDoc):
    """A source set with its sources and feature counts (the pages)."""

    featureCount: int
    sources: list[CountedSourceDoc]


class CountedModelDoc(ModelDoc):
    """A model with its source sets, their sources and feature counts (the home and model pages)."""

    featureCount: int
    sourceSets: list[CountedSourceSetDoc]


def model_json(model: Model) -> ModelDoc:
    """A model row as Neuronpedia returns it."""
    return {
        "id": model.id,
        "displayName": model.display_name,
        "displayNameShort": model.display_name_short,
        "creatorId": model.creator_id,
        "tlensId": public_name(model.tlens_id),  # a local weights directory is not shown whole
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


def source_set_json(row: SourceSet) -> SourceSetDoc:
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


def _public_config(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """A SAELens config without server paths: its dataset and model names cut like ``public_name``."""
    if not isinstance(cfg, dict):
        return cfg
    out = dict(cfg)
    for key in ("dataset_path", "model_name"):
        if isinstance(out.get(key), str):
            out[key] = public_name(out[key])
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = _public_config(out["metadata"])
    return out


def source_json(row: Source) -> SourceDoc:
    """A source row as Neuronpedia returns it."""
    return {
        "id": row.name,
        "modelId": row.model_id,
        "setName": row.set_name,
        "hasDashboards": row.has_dashboards,
        "inferenceEnabled": row.inference_enabled,
        "saelensConfig": _public_config(row.saelens_config),
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
        "dataset": public_name(row.dataset),  # generate records the path it read; pages show its name
        "notes": row.notes,
        "cosSimMatchModelId": row.cos_sim_match_model_id,
        "cosSimMatchSourceId": row.cos_sim_match_source_id,
        "hookName": row.hook_name,
        "createdAt": iso(row.created_at),
    }


def source_set_with_sources_json(row: SourceSet, sources: list[Source]) -> SourceSetWithSourcesDoc:
    """A source set with (the visible ones of) its sources."""
    return {**source_set_json(row), "sources": [source_json(s) for s in sources]}


def model_with_sets_json(model: Model, sets: list[SourceSetWithSourcesDoc]) -> ModelWithSetsDoc:
    """A model with its source sets (each with its sources)."""
    return {**model_json(model), "sourceSets": sets}


def counted_source_set_json(row: SourceSet, sources: list[Source], counts: dict[int, int]) -> CountedSourceSetDoc:
    """A source set with its sources, each with its feature count, and their total."""
    docs: list[CountedSourceDoc] = [{**source_json(s), "featureCount": counts.get(s.id, 0)} for s in sources]
    return {**source_set_json(row), "featureCount": sum(d["featureCount"] for d in docs), "sources": docs}


def counted_model_json(model: Model, sets: list[CountedSourceSetDoc]) -> CountedModelDoc:
    """A model with its (counted) source sets and their total."""
    return {**model_json(model), "featureCount": sum(d["featureCount"] for d in sets), "sourceSets": sets}
