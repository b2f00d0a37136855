"""attribution graphs: metadata, gzip'd JSON, saved subgraphs, pending uploads

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    op.create_table(
        "graphs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("source_set_name", sa.String(length=100), nullable=True),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.JSON(), nullable=False),
        sa.Column("title_prefix", sa.String(length=200), nullable=False),
        sa.Column("creator_id", sa.String(length=32), nullable=True),
        sa.Column("visibility", sa.String(length=16), server_default="PUBLIC", nullable=False),
        sa.Column("is_featured", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("n_nodes", sa.Integer(), nullable=False),
        sa.Column("n_links", sa.Integer(), nullable=False),
        sa.Column("json_bytes", sa.Integer(), nullable=False),
        sa.Column("generator", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=_NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["creator_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "slug", name="uq_graphs_model_slug"),
    )
    with op.batch_alter_table("graphs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_graphs_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_graphs_model_id"), ["model_id"], unique=False)
    op.create_table(
        "graph_data",
        sa.Column("graph_id", sa.String(length=32), nullable=False),
        sa.Column("gz", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["graph_id"], ["graphs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("graph_id"),
    )
    op.create_table(
        "graph_subgraphs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("graph_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("pinned_ids", sa.JSON(), nullable=False),
        sa.Column("supernodes", sa.JSON(), nullable=False),
        sa.Column("clerps", sa.JSON(), nullable=False),
        sa.Column("pruning_threshold", sa.Float(), nullable=True),
        sa.Column("density_threshold", sa.Float(), nullable=True),
        sa.Column("is_featured", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=_NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["graph_id"], ["graphs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("graph_subgraphs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_graph_subgraphs_graph_id"), ["graph_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_graph_subgraphs_user_id"), ["user_id"], unique=False)
    op.create_table(
        "graph_uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("content_length", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("gz", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=_NOW, nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("graph_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_graph_uploads_user_id"), ["user_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Already gzip'd by interpedia: TOAST should store it out of line without trying to compress it again.
        op.execute("ALTER TABLE graph_data ALTER COLUMN gz SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE graph_uploads ALTER COLUMN gz SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("graph_uploads")
    op.drop_table("graph_subgraphs")
    op.drop_table("graph_data")
    op.drop_table("graphs")
