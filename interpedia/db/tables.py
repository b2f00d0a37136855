"""SQLAlchemy 2 tables: the catalogue, features and their dashboards, explanations, people and their content.

Names follow Neuronpedia's Prisma schema (reference/neuronpedia.md §2) in snake_case. Features and
activations use integer surrogate keys so that a row of a million-feature source stays small; the
public address of a feature is still ``(model id, source id, index)``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from interpedia.db.base import Base, BigId, JsonList, _created, _now, new_id
from interpedia.db.vector import EmbeddingVector

# --- people -------------------------------------------------------------------------------------


class User(Base):
    """A person or a bot; bots own imported data."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(39), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    bio: Mapped[str | None] = mapped_column(Text)
    image: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    bot: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    can_trigger_explanations: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[dt.datetime] = _created()


class ApiKey(Base):
    """An API key, stored only as its SHA-256 hash; ``prefix`` lets the owner recognise it."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = _created()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --- catalogue ----------------------------------------------------------------------------------


class Model(Base):
    """A language model (``gpt2-small``)."""

    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    display_name_short: Mapped[str | None] = mapped_column(String(100))
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    tlens_id: Mapped[str | None] = mapped_column(String(200))
    dimension: Mapped[int | None] = mapped_column(Integer)
    layers: Mapped[int] = mapped_column(Integer, default=0)
    neurons_per_layer: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(200))
    website: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16), default="PUBLIC", server_default="PUBLIC")
    default_source_set_name: Mapped[str | None] = mapped_column(String(200))
    default_source_id: Mapped[str | None] = mapped_column(String(200))
    inference_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    instruct: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    thinking: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class SourceRelease(Base):
    """A named group of source sets with its own landing page (``/gemma-scope``)."""

    __tablename__ = "source_releases"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    visibility: Mapped[str] = mapped_column(String(16), default="PUBLIC", server_default="PUBLIC")
    featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    description: Mapped[str] = mapped_column(Text, default="")
    description_short: Mapped[str | None] = mapped_column(Text)
    urls: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    creator_name: Mapped[str | None] = mapped_column(String(200))
    creator_name_short: Mapped[str | None] = mapped_column(String(100))
    creator_email: Mapped[str | None] = mapped_column(String(320))
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    default_source_set_name: Mapped[str | None] = mapped_column(String(200))
    default_source_id: Mapped[str | None] = mapped_column(String(200))
    default_umap_source_ids: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    created_at: Mapped[dt.datetime] = _created()


class SourceSet(Base):
    """A family of SAEs on one model (``res-jb``)."""

    __tablename__ = "source_sets"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str | None] = mapped_column(String(100))
    creator_name: Mapped[str | None] = mapped_column(String(200))
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    urls: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    release_name: Mapped[str | None] = mapped_column(ForeignKey("source_releases.name", ondelete="SET NULL"))
    visibility: Mapped[str] = mapped_column(String(16), default="PUBLIC", server_default="PUBLIC")
    has_dashboards: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    allow_inference_search: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    default_range: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    default_show_breaks: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    show_dfa: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    show_correlated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    show_head_attribution: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    show_umap: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[dt.datetime] = _created()


class Source(Base):
    """One SAE (``6-res-jb``): its SAELens config and where its weights live."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    set_id: Mapped[int] = mapped_column(ForeignKey("source_sets.id", ondelete="CASCADE"), index=True)
    set_name: Mapped[str] = mapped_column(String(200))
    visibility: Mapped[str] = mapped_column(String(16), default="PUBLIC", server_default="PUBLIC")
    has_dashboards: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    inference_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    saelens_config: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    saelens_release: Mapped[str | None] = mapped_column(String(200))
    saelens_sae_id: Mapped[str | None] = mapped_column(String(300))
    hf_repo_id: Mapped[str | None] = mapped_column(String(300))
    hf_folder_id: Mapped[str | None] = mapped_column(String(300))
    weights_path: Mapped[str | None] = mapped_column(Text)
    hook_name: Mapped[str | None] = mapped_column(String(200))
    layer_num: Mapped[int | None] = mapped_column(Integer)
    has_umap: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    has_umap_log_sparsity: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    has_umap_clusters: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    num_prompts: Mapped[int | None] = mapped_column(Integer)
    num_tokens_in_prompt: Mapped[int | None] = mapped_column(Integer)
    dataset: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    cos_sim_match_model_id: Mapped[str | None] = mapped_column(String(64))
    cos_sim_match_source_id: Mapped[str | None] = mapped_column(String(200))
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _created()
    # Replaced by a fresh random value by every bulk write into the source (imports, UMAP): part of the key of
    # its features' cached documents (store.feature_cache).
    doc_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class VocabToken(Base):
    """One token string of a model's vocabulary; activations store these ids instead of strings.

    The string is kept as UTF-8 bytes so that any token (NUL bytes included) round-trips on both
    SQLite and Postgres. Ids are handed out most-frequent first under a lock on the model row, and
    readers hold the whole vocabulary in memory (:mod:`interpedia.store.vocab`), so no index on the
    string is needed.
    """

    __tablename__ = "vocab_tokens"
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    token_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token: Mapped[bytes] = mapped_column(LargeBinary)


# --- features and dashboards --------------------------------------------------------------------


class Feature(Base):
    """A feature ("neuron"/"latent") and every dashboard statistic Neuronpedia keeps for it."""

    __tablename__ = "features"
    __table_args__ = (UniqueConstraint("source_id", "index", name="uq_features_source_index"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    max_act_approx: Mapped[float | None] = mapped_column(Float)
    frac_nonzero: Mapped[float | None] = mapped_column(Float)
    has_vector: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    vector: Mapped[list[Any] | None] = mapped_column(JsonList)
    vector_label: Mapped[str | None] = mapped_column(Text)
    vector_default_steer_strength: Mapped[float | None] = mapped_column(Float)
    hook_name: Mapped[str | None] = mapped_column(String(200))
    topk_cos_sim_indices: Mapped[list[Any] | None] = mapped_column(JsonList)
    topk_cos_sim_values: Mapped[list[Any] | None] = mapped_column(JsonList)
    neuron_alignment_indices: Mapped[list[Any] | None] = mapped_column(JsonList)
    neuron_alignment_values: Mapped[list[Any] | None] = mapped_column(JsonList)
    neuron_alignment_l1: Mapped[list[Any] | None] = mapped_column(JsonList)
    correlated_neurons_indices: Mapped[list[Any] | None] = mapped_column(JsonList)
    correlated_neurons_pearson: Mapped[list[Any] | None] = mapped_column(JsonList)
    correlated_neurons_l1: Mapped[list[Any] | None] = mapped_column(JsonList)
    correlated_features_indices: Mapped[list[Any] | None] = mapped_column(JsonList)
    correlated_features_pearson: Mapped[list[Any] | None] = mapped_column(JsonList)
    correlated_features_l1: Mapped[list[Any] | None] = mapped_column(JsonList)
    pos_str: Mapped[list[Any] | None] = mapped_column(JsonList)
    pos_values: Mapped[list[Any] | None] = mapped_column(JsonList)
    neg_str: Mapped[list[Any] | None] = mapped_column(JsonList)
    neg_values: Mapped[list[Any] | None] = mapped_column(JsonList)
    freq_hist_data_bar_heights: Mapped[list[Any] | None] = mapped_column(JsonList)
    freq_hist_data_bar_values: Mapped[list[Any] | None] = mapped_column(JsonList)
    logits_hist_data_bar_heights: Mapped[list[Any] | None] = mapped_column(JsonList)
    logits_hist_data_bar_values: Mapped[list[Any] | None] = mapped_column(JsonList)
    decoder_weights_dist: Mapped[list[Any] | None] = mapped_column(JsonList)
    umap_cluster: Mapped[int | None] = mapped_column(Integer)
    umap_log_feature_sparsity: Mapped[float | None] = mapped_column(Float)
    umap_x: Mapped[float | None] = mapped_column(Float)
    umap_y: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = _created()
    # Replaced by a fresh random value by every write that changes this feature's document (explanations,
    # scores, votes, comments, examples): with the source's, the key of its cached document (store.feature_cache).
    doc_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Activation(Base):
    """One example context of a feature, stored compactly.

    ``data`` holds the token ids (into ``vocab_tokens``) and the values, packed by
    :mod:`interpedia.db.codec`; the other columns are what ordering and quantile groups need. Scalars
    are float32 (``REAL``), the precision the values themselves have. ``creator_id`` is NULL for the
    examples of a feature's own dashboard and names the user for examples added to it later. Rare
    fields (DFA, loss values, logit contributions, attention pattern, data source) live in ``extras``.
    """

    __tablename__ = "activations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"), index=True)
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    max_value: Mapped[float] = mapped_column(REAL)
    bin_min: Mapped[float | None] = mapped_column(REAL)
    bin_max: Mapped[float | None] = mapped_column(REAL)
    bin_contains: Mapped[float | None] = mapped_column(REAL)
    qualifying_token_index: Mapped[int | None] = mapped_column(Integer)
    extras: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    def extra(self, key: str, default: Any = None) -> Any:
        """One of the rare fields kept in ``extras`` (``dfaTargetIndex``, ``dataSource``...)."""
        return (self.extras or {}).get(key, default)


# --- explanations and scores --------------------------------------------------------------------


class ExplanationType(Base):
    """A method that produces explanations (``oai_token-act-pair``)."""

    __tablename__ = "explanation_types"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    is_attention: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    url: Mapped[str | None] = mapped_column(Text)
    creator_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = _created()


class ExplanationModelType(Base):
    """An LLM that writes explanations (``gpt-4o-mini``)."""

    __tablename__ = "explanation_model_types"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    open_router_model_id: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(Text)
    creator_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = _created()


class ExplanationScoreType(Base):
    """A scoring method (``eleuther_fuzz``)."""

    __tablename__ = "explanation_score_types"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    is_attention: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    score_description: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    url: Mapped[str | None] = mapped_column(Text)
    creator_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = _created()


class ExplanationScoreModel(Base):
    """An LLM that scores explanations."""

    __tablename__ = "explanation_score_models"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    open_router_model_id: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(Text)
    creator_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = _created()


class Explanation(Base):
    """A natural-language description of a feature."""

    __tablename__ = "explanations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    triggered_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    notes: Mapped[str | None] = mapped_column(Text)
    score_v1: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    score_v2: Mapped[float | None] = mapped_column(Float)
    type_name: Mapped[str | None] = mapped_column(String(100))
    explanation_model_name: Mapped[str | None] = mapped_column(String(200))
    # float32 little-endian bytes in Python; vector(384) with an HNSW index on Postgres (interpedia.db.vector).
    embedding: Mapped[bytes | None] = mapped_column(EmbeddingVector)
    umap_x: Mapped[float | None] = mapped_column(Float)
    umap_y: Mapped[float | None] = mapped_column(Float)
    umap_cluster: Mapped[int | None] = mapped_column(Integer)
    umap_log_feature_sparsity: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class ExplanationScore(Base):
    """One score of one explanation by one method and model."""

    __tablename__ = "explanation_scores"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    explanation_id: Mapped[str] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"), index=True)
    initiated_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    value: Mapped[float] = mapped_column(Float)
    explanation_score_type_name: Mapped[str] = mapped_column(String(100))
    explanation_score_model_name: Mapped[str | None] = mapped_column(String(200))
    json_details: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


class Vote(Base):
    """A user's vote on an explanation."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("voter_id", "explanation_id"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    voter_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    explanation_id: Mapped[str] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"))
    points: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


Index("ix_explanations_type", Explanation.type_name)

# Lists, comments, evals, caches and operations live in their own module; re-exported so callers keep one import.
from interpedia.db.community import (  # noqa: E402
    Bookmark,
    Comment,
    Eval,
    EvalType,
    FeatureList,
    GenerateRunRow,
    ImportedBatch,
    ListFeature,
    RateLimitBucket,
    SavedSearch,
    SteerOutput,
)
from interpedia.db.documents import FeatureDocument  # noqa: E402
from interpedia.db.graphs import GraphData, GraphFeature, GraphMetadata, GraphSubgraph, GraphUpload  # noqa: E402
from interpedia.db.hosts import InferenceHost, InferenceHostSource  # noqa: E402

__all__ = [
    "Base",
    "BigId",
    "JsonList",
    "new_id",
    "Bookmark",
    "Comment",
    "Eval",
    "EvalType",
    "FeatureDocument",
    "FeatureList",
    "GenerateRunRow",
    "GraphData",
    "GraphFeature",
    "GraphMetadata",
    "GraphSubgraph",
    "GraphUpload",
    "ImportedBatch",
    "InferenceHost",
    "InferenceHostSource",
    "ListFeature",
    "RateLimitBucket",
    "SavedSearch",
    "SteerOutput",
]
