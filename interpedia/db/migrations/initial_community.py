"""Part of revision 0001 (the initial schema): the tables around explanations and community, created last.

Kept apart only so that no module is over 500 lines; ``versions/0001_initial_schema.py`` calls
:func:`create_tables` at the end of its upgrade, exactly where these statements stood. Changing them would
change revision 0001 for every existing database: don't.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_tables() -> None:
    """bookmarks, comments, explanations, list_features, explanation_scores, votes (and their indexes)."""
    op.create_table(
        "bookmarks",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("feature_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["feature_id"], ["features.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "feature_id"),
    )
    op.create_table(
        "comments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("feature_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("list_id", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["feature_id"], ["features.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comments_feature_id"), ["feature_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comments_list_id"), ["list_id"], unique=False)

    op.create_table(
        "explanations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("feature_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=True),
        sa.Column("triggered_by_user_id", sa.String(length=32), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("score_v1", sa.Float(), server_default="0", nullable=False),
        sa.Column("score_v2", sa.Float(), nullable=True),
        sa.Column("type_name", sa.String(length=100), nullable=True),
        sa.Column("explanation_model_name", sa.String(length=200), nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("umap_x", sa.Float(), nullable=True),
        sa.Column("umap_y", sa.Float(), nullable=True),
        sa.Column("umap_cluster", sa.Integer(), nullable=True),
        sa.Column("umap_log_feature_sparsity", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["feature_id"], ["features.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["triggered_by_user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("explanations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_explanations_feature_id"), ["feature_id"], unique=False)
        batch_op.create_index("ix_explanations_type", ["type_name"], unique=False)

    op.create_table(
        "list_features",
        sa.Column("list_id", sa.String(length=32), nullable=False),
        sa.Column("feature_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("added_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["feature_id"], ["features.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("list_id", "feature_id"),
    )
    op.create_table(
        "explanation_scores",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("explanation_id", sa.String(length=32), nullable=False),
        sa.Column("initiated_by_user_id", sa.String(length=32), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("explanation_score_type_name", sa.String(length=100), nullable=False),
        sa.Column("explanation_score_model_name", sa.String(length=200), nullable=True),
        sa.Column("json_details", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["explanation_id"], ["explanations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["initiated_by_user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("explanation_scores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_explanation_scores_explanation_id"), ["explanation_id"], unique=False)

    op.create_table(
        "votes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("voter_id", sa.String(length=32), nullable=False),
        sa.Column("explanation_id", sa.String(length=32), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["explanation_id"], ["explanations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["voter_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("voter_id", "explanation_id"),
    )
