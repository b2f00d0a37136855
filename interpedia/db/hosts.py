"""Tables of the host map: which inference-role servers serve which model, sources and transcoder sets.

As Neuronpedia's ``InferenceHostSource`` / ``InferenceHostSourceOnSource`` (and ``GraphHostSource`` /
``GraphHostSourceOnSourceSet``): a web server sends live inference for a model to one of its hosts instead of
running it in-process. A host with no rows in ``inference_host_sources`` serves every source (or transcoder
set) of its model; otherwise only those named there.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from interpedia.db.base import Base, _created, new_id

HOST_KINDS = ("inference", "graph")


class InferenceHost(Base):
    """One server (``serve --role inference``) that answers a model's live inference (or graphs)."""

    __tablename__ = "inference_hosts"
    __table_args__ = (UniqueConstraint("url", "model_id", "kind", name="uq_inference_hosts_url_model_kind"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(Text)  # base URL, without /v1: http://gpu-1:5002
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="inference", server_default="inference")
    created_at: Mapped[dt.datetime] = _created()


class InferenceHostSource(Base):
    """A source (kind ``inference``) or a transcoder source set (kind ``graph``) a host serves."""

    __tablename__ = "inference_host_sources"
    host_id: Mapped[str] = mapped_column(ForeignKey("inference_hosts.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), primary_key=True)
