"""explanation embeddings: pgvector vector(384) + HNSW on Postgres, change log on SQLite

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

On Postgres ``explanations.embedding`` becomes ``vector(384)`` with an HNSW index
(``vector_cosine_ops``, m = 16, ef_construction = 100; rebuild with other values by
``interpedia embed --reindex``). Stored 384-dim float32 blobs are carried over; embeddings of any
other width (Neuronpedia's exports carry 256-dim OpenAI ones) are dropped, to be recomputed by
``interpedia embed --missing``. On SQLite the column stays a float32 blob; triggers record which
explanations' embeddings changed so that the in-process vector index can catch up incrementally.
Both backends get a partial index over explanations still missing an embedding.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DIM = 384
HNSW_INDEX = "ix_explanations_embedding_hnsw"
MISSING_INDEX = "ix_explanations_embedding_missing"
CHANGES = "explanation_embedding_changes"
_BATCH = 2000


def _literal(blob: bytes) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in np.frombuffer(blob, dtype="<f4").tolist()) + "]"


def _upgrade_postgres() -> None:
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar()
    if available is None:
        raise RuntimeError(
            "the pgvector extension is not installed on this PostgreSQL server; install it "
            "(scripts/install-system.sh does, for PostgreSQL 15) and rerun the migration"
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(f"ALTER TABLE explanations ADD COLUMN embedding_vec vector({DIM})")
    # Carry over embeddings that already have the right width; the others are recomputed later.
    last = ""
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, embedding FROM explanations WHERE id > :last AND octet_length(embedding) = :n "
                "ORDER BY id LIMIT :batch"
            ),
            {"last": last, "n": DIM * 4, "batch": _BATCH},
        ).all()
        if not rows:
            break
        bind.execute(
            sa.text("UPDATE explanations SET embedding_vec = CAST(:v AS vector) WHERE id = :id"),
            [{"id": r[0], "v": _literal(bytes(r[1]))} for r in rows],
        )
        last = rows[-1][0]
    op.execute("ALTER TABLE explanations DROP COLUMN embedding")
    op.execute("ALTER TABLE explanations RENAME COLUMN embedding_vec TO embedding")
    op.execute(
        f"CREATE INDEX {HNSW_INDEX} ON explanations USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 100)"
    )


def _upgrade_sqlite() -> None:
    op.execute(f"UPDATE explanations SET embedding = NULL WHERE length(embedding) != {DIM * 4}")
    op.execute(f"CREATE TABLE {CHANGES} (seq INTEGER PRIMARY KEY AUTOINCREMENT, explanation_id VARCHAR(32) NOT NULL)")
    op.execute(f"""CREATE TRIGGER trg_explanations_embedding_insert AFTER INSERT ON explanations
                   WHEN NEW.embedding IS NOT NULL
                   BEGIN INSERT INTO {CHANGES} (explanation_id) VALUES (NEW.id); END""")
    op.execute(f"""CREATE TRIGGER trg_explanations_embedding_update AFTER UPDATE OF embedding ON explanations
                   BEGIN INSERT INTO {CHANGES} (explanation_id) VALUES (NEW.id); END""")
    op.execute(f"""CREATE TRIGGER trg_explanations_embedding_delete AFTER DELETE ON explanations
                   WHEN OLD.embedding IS NOT NULL
                   BEGIN INSERT INTO {CHANGES} (explanation_id) VALUES (OLD.id); END""")
    # The log keeps itself short: every 10,000th entry drops those more than 100,000 back (an index that
    # far behind reloads everything anyway).
    op.execute(f"""CREATE TRIGGER trg_explanation_embedding_changes_prune AFTER INSERT ON {CHANGES}
                   WHEN NEW.seq % 10000 = 0
                   BEGIN DELETE FROM {CHANGES} WHERE seq <= NEW.seq - 100000; END""")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
    else:
        _upgrade_sqlite()
    op.create_index(
        MISSING_INDEX,
        "explanations",
        ["id"],
        postgresql_where=sa.text("embedding IS NULL"),
        sqlite_where=sa.text("embedding IS NULL"),
    )


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index(MISSING_INDEX, table_name="explanations")
    if bind.dialect.name != "postgresql":
        for kind in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_explanations_embedding_{kind}")
        op.execute("DROP TRIGGER IF EXISTS trg_explanation_embedding_changes_prune")
        op.execute(f"DROP TABLE IF EXISTS {CHANGES}")
        return
    op.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
    op.execute("ALTER TABLE explanations ADD COLUMN embedding_blob bytea")
    last = ""
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, embedding::text FROM explanations WHERE id > :last AND embedding IS NOT NULL "
                "ORDER BY id LIMIT :batch"
            ),
            {"last": last, "batch": _BATCH},
        ).all()
        if not rows:
            break
        bind.execute(
            sa.text("UPDATE explanations SET embedding_blob = :b WHERE id = :id"),
            [{"id": r[0], "b": np.array(r[1].strip("[]").split(","), dtype="<f4").tobytes()} for r in rows],
        )
        last = rows[-1][0]
    op.execute("ALTER TABLE explanations DROP COLUMN embedding")
    op.execute("ALTER TABLE explanations RENAME COLUMN embedding_blob TO embedding")
