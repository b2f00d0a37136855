"""Tables of attribution graphs: their metadata, their JSON (gzip'd), saved subgraphs and pending uploads.

The graph JSON is stored gzip'd by interpedia on both backends, in a table of its own so that listings never
read it: a graph is tens of KB to hundreds of MB of repetitive JSON that gzip shrinks 5-10x, far better than
Postgres's own TOAST compression (pglz, which gives up on values it cannot shrink by 25% in the first 1 KB
and works per 2 KB chunk) — so on Postgres the column is ``STORAGE EXTERNAL`` (no second compression attempt,
set in the migration), and SQLite, which compresses nothing, stores the same bytes. The bytes are served as
they are with ``Content-Encoding: gzip``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
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

from interpedia.db.base import Base, _created, _now, new_id


class GraphMetadata(Base):
    """An attribution graph of one prompt on one model (Neuronpedia's ``GraphMetadata``)."""

    __tablename__ = "graphs"
    __table_args__ = (UniqueConstraint("model_id", "slug", name="uq_graphs_model_slug"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    source_set_name: Mapped[str | None] = mapped_column(String(100))  # the transcoder set its features are of
    slug: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[list[Any]] = mapped_column(JSON)
    title_prefix: Mapped[str] = mapped_column(String(200), default="")
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="PUBLIC", server_default="PUBLIC")
    is_featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    n_nodes: Mapped[int] = mapped_column(Integer, default=0)
    n_links: Mapped[int] = mapped_column(Integer, default=0)
    json_bytes: Mapped[int] = mapped_column(Integer, default=0)  # size of the JSON before gzip
    generator: Mapped[str | None] = mapped_column(String(200))  # metadata.info.generator.name, when given
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class GraphData(Base):
    """The graph JSON itself, gzip'd (see the module docstring for why here and why so)."""

    __tablename__ = "graph_data"
    graph_id: Mapped[str] = mapped_column(ForeignKey("graphs.id", ondelete="CASCADE"), primary_key=True)
    gz: Mapped[bytes] = mapped_column(LargeBinary)


class GraphSubgraph(Base):
    """A saved view of a graph: pinned nodes, supernodes, labels and thresholds (``GraphMetadataSubgraph``)."""

    __tablename__ = "graph_subgraphs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    graph_id: Mapped[str] = mapped_column(ForeignKey("graphs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    pinned_ids: Mapped[list[Any]] = mapped_column(JSON)
    supernodes: Mapped[list[Any]] = mapped_column(JSON)
    clerps: Mapped[list[Any]] = mapped_column(JSON)
    pruning_threshold: Mapped[float | None] = mapped_column(Float)
    density_threshold: Mapped[float | None] = mapped_column(Float)
    is_featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class GraphFeature(Base):
    """One feature (of a source on this instance) that is a node of a graph, written when the graph is saved.

    A feature's page lists the graphs it appears in from here, without reading any graph's JSON. ``source`` is
    the name the feature's URL uses (``{layer}-{source set}``); it need not exist here (yet).
    """

    __tablename__ = "graph_features"
    __table_args__ = (Index("ix_graph_features_feature", "model_id", "source", "feature_index"),)
    graph_id: Mapped[str] = mapped_column(ForeignKey("graphs.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    feature_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64))


class GraphUpload(Base):
    """A pending two-step upload: ``signed-put`` made it, a PUT fills ``gz``, ``save-to-db`` turns it into a graph."""

    __tablename__ = "graph_uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_length: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the one-shot token in the PUT URL
    gz: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = _created()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
