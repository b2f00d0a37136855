"""The table of stored feature documents: a feature's dashboard JSON, kept so that a read need not build it.

A row is valid while its versions equal the feature's and its source's ``doc_version`` and its ``format`` is
the one this interpedia writes (``store.feature_documents.DOCUMENT_FORMAT``); any other row is stale and is
replaced when the document is next built. Nothing else points at it: it can be emptied at any time.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from interpedia.db.base import Base, BigId


class FeatureDocument(Base):
    """A feature's document without its catalogue parts, as the JSON ``GET /api/feature`` answers."""

    __tablename__ = "feature_documents"
    feature_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("features.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    feature_version: Mapped[int] = mapped_column(BigInteger)
    source_version: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
