"""Tables around features: lists, comments, bookmarks, evals, steering and search caches, operations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from interpedia.db.base import Base, JsonList, _created, _now, new_id

# --- lists, comments, bookmarks -----------------------------------------------------------------


class FeatureList(Base):
    """A user's named list of features."""

    __tablename__ = "lists"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    default_test_text: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class ListFeature(Base):
    """Membership of a feature in a list, with the owner's note."""

    __tablename__ = "list_features"
    list_id: Mapped[str] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_at: Mapped[dt.datetime] = _created()


class Comment(Base):
    """A comment on a feature or on a list."""

    __tablename__ = "comments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    feature_id: Mapped[int | None] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"), index=True)
    list_id: Mapped[str | None] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


class Bookmark(Base):
    """A user's bookmark of a feature."""

    __tablename__ = "bookmarks"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[dt.datetime] = _created()


# --- evals, steering, searches ------------------------------------------------------------------


class EvalType(Base):
    """A SAEBench eval kind (``core``) and the JSON schema its outputs follow."""

    __tablename__ = "eval_types"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    longer_description: Mapped[str] = mapped_column(Text, default="")
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


class Eval(Base):
    """One eval result for one source."""

    __tablename__ = "evals"
    __table_args__ = (UniqueConstraint("source_id", "type_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    type_name: Mapped[str] = mapped_column(ForeignKey("eval_types.name", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    output: Mapped[dict[str, Any]] = mapped_column(JSON)
    detailed_metrics: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[dt.datetime] = _created()


class SteerOutput(Base):
    """A cached steering completion, looked up by a hash of every setting; its id is the share link."""

    __tablename__ = "steer_outputs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    steer_special_tokens: Mapped[bool] = mapped_column(Boolean, default=False)
    input_text: Mapped[str] = mapped_column(Text)
    input_text_chat_template: Mapped[str | None] = mapped_column(Text)
    output_text: Mapped[str] = mapped_column(Text)
    output_text_chat_template: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float] = mapped_column(Float)
    num_tokens: Mapped[int] = mapped_column(Integer)
    freq_penalty: Mapped[float] = mapped_column(Float, default=0.0)
    seed: Mapped[float] = mapped_column(Float)
    strength_multiplier: Mapped[float] = mapped_column(Float)
    steer_method: Mapped[str] = mapped_column(String(32), default="SIMPLE_ADDITIVE")
    features: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    logprobs: Mapped[str | None] = mapped_column(Text)
    connected_default_output_id: Mapped[str | None] = mapped_column(String(32))
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _created()


class SavedSearch(Base):
    """A cached "search via inference" result, unique over every parameter."""

    __tablename__ = "saved_searches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    cache_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    query: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    source_set: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = _created()


# --- operations ---------------------------------------------------------------------------------


class ImportedBatch(Base):
    """A finished import batch; a rerun skips it (resume after a kill)."""

    __tablename__ = "imported_batches"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    n_features: Mapped[int] = mapped_column(Integer, default=0)
    n_activations: Mapped[int] = mapped_column(Integer, default=0)
    n_explanations: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[dt.datetime] = _created()


class GenerateRunRow(Base):
    """A row of ``generate_runs``: one ``interpedia generate`` run's record (``store.runs.RunRecord``)."""

    __tablename__ = "generate_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str | None] = mapped_column(String(64))
    source_name: Mapped[str | None] = mapped_column(String(200))
    run: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class RateLimitBucket(Base):
    """One caller's token bucket for one rate-limited route pattern, shared by every serving process."""

    __tablename__ = "rate_limit_buckets"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)  # "<pattern> <caller>"
    tokens: Mapped[float] = mapped_column(Float)
    stamp: Mapped[float] = mapped_column(Float)  # seconds since the epoch of the last request counted
    allowed: Mapped[bool] = mapped_column(Boolean)  # whether that request was let through
