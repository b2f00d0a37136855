"""feature documents: each feature's dashboard JSON, stored with the versions it was built from

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# lz4 decompresses several times faster than Postgres's default pglz, and every API read of a stored document
# decompresses it; servers built without lz4 keep the default.
_LZ4 = """
DO $$ BEGIN
    ALTER TABLE feature_documents ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "feature_documents",
        sa.Column("feature_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("feature_version", sa.BigInteger(), nullable=False),
        sa.Column("source_version", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["feature_id"], ["features.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("feature_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_LZ4)


def downgrade() -> None:
    op.drop_table("feature_documents")
