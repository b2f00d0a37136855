"""graph_features: which features each graph's nodes are (a feature's page lists its graphs from it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Graphs stored before this revision are indexed here from their JSON, with the rules of
``store/graph_features.py`` as they are at this revision (copied, so that later changes there do not
change what this migration does).
"""

from __future__ import annotations

import gzip
import json
import math
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_NOT_FEATURES = {"embedding", "logit", "mlp reconstruction error", "lorsa error"}


def _feature_of_node(node: dict[str, Any], source_set: str | None, lorsa_set: str | None) -> tuple[str, int] | None:
    kind = str(node.get("feature_type") or "")
    if kind in _NOT_FEATURES or "error" in kind:
        return None
    set_name = lorsa_set if kind == "lorsa" else source_set
    raw_layer = node.get("layer")
    layer = str(int(raw_layer) if isinstance(raw_layer, float) and raw_layer.is_integer() else raw_layer)
    if not set_name or not layer.isdigit():
        return None
    parts = str(node.get("node_id") or "").split("_")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] == layer:
        return f"{layer}-{set_name}", int(parts[1])
    feature = node.get("feature")
    if isinstance(feature, float) and feature.is_integer():  # JSON's 2.0 is the integer 2
        feature = int(feature)
    if not isinstance(feature, int) or isinstance(feature, bool) or feature < 0:
        return None
    w = (math.isqrt(8 * feature + 1) - 1) // 2
    index = feature - w * (w + 1) // 2
    return f"{layer}-{set_name}", (index if w - index == int(layer) else feature)


def _backfill() -> None:
    bind = op.get_bind()
    table = sa.table(
        "graph_features",
        sa.column("graph_id", sa.String),
        sa.column("source", sa.String),
        sa.column("feature_index", sa.Integer),
        sa.column("model_id", sa.String),
    )
    graphs = bind.execute(sa.text("SELECT id, model_id FROM graphs ORDER BY id")).all()
    for graph_id, model_id in graphs:  # one graph's JSON in memory at a time
        gz = bind.execute(sa.text("SELECT gz FROM graph_data WHERE graph_id = :g"), {"g": graph_id}).scalar()
        if gz is None:
            continue
        doc = json.loads(gzip.decompress(bytes(gz)))
        details = doc["metadata"].get("feature_details") or {}
        source_set, lorsa = details.get("neuronpedia_source_set"), details.get("neuronpedia_lorsa_source_set")
        keys = {_feature_of_node(n, source_set, lorsa) for n in doc["nodes"]} - {None}
        rows = [{"graph_id": graph_id, "source": k[0], "feature_index": k[1], "model_id": model_id} for k in keys if k]
        if rows:
            bind.execute(table.insert(), rows)


def upgrade() -> None:
    op.create_table(
        "graph_features",
        sa.Column("graph_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("feature_index", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["graph_id"], ["graphs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("graph_id", "source", "feature_index"),
    )
    with op.batch_alter_table("graph_features", schema=None) as batch_op:
        batch_op.create_index("ix_graph_features_feature", ["model_id", "source", "feature_index"], unique=False)
    _backfill()


def downgrade() -> None:
    op.drop_table("graph_features")
