"""The migrations build exactly the schema the table classes declare (on both backends)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from interpedia.db.engine import compare_type, include_object, make_engine
from interpedia.db.tables import Base


def test_migrated_schema_matches_declared_tables(database_url: str) -> None:
    """Autogenerate against a migrated database proposes nothing: no table, column or index drift."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"include_object": include_object, "compare_type": compare_type}
            )
            diffs = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diffs == [], "\n".join(str(d) for d in diffs)
