"""inference hosts: which inference-role servers serve which model, sources and transcoder sets

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    op.create_table(
        "inference_hosts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="inference", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=_NOW, nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url", "model_id", "kind", name="uq_inference_hosts_url_model_kind"),
    )
    with op.batch_alter_table("inference_hosts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inference_hosts_model_id"), ["model_id"], unique=False)
    op.create_table(
        "inference_host_sources",
        sa.Column("host_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["inference_hosts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host_id", "source"),
    )


def downgrade() -> None:
    op.drop_table("inference_host_sources")
    with op.batch_alter_table("inference_hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inference_hosts_model_id"))
    op.drop_table("inference_hosts")
