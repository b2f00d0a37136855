"""document versions on features and sources; rate-limit buckets shared by every serving process

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``features.doc_version`` and ``sources.doc_version`` are stamps that every write changing a feature's
document replaces with a fresh random value (``store.feature_cache``): a cached document, and an ETag, is
good while both stamps are what they were when it was built. 0 for rows written before this revision (a
constant default: Postgres adds the column without rewriting the table).

``rate_limit_buckets`` holds the token buckets of the per-route rate limits, so that every ``serve``
process (``--workers``) and every server on the database counts against the same budget.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("features", "sources"):
        op.add_column(table, sa.Column("doc_version", sa.BigInteger(), server_default="0", nullable=False))
    op.create_table(
        "rate_limit_buckets",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
    for table in ("sources", "features"):
        # Not batch mode: on SQLite it copies the table and drops the old one, and with foreign keys on that
        # drop deletes every example and explanation (ON DELETE CASCADE). SQLite >= 3.35 drops a column in place.
        op.execute(f"ALTER TABLE {table} DROP COLUMN doc_version")
