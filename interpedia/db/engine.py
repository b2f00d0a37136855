"""Engines and sessions for SQLite (WAL, one file) and Postgres, and running the migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite the file's folder is created and WAL mode switched on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # JSON columns parsed by orjson, not the standard library: a feature row carries 21 JSON lists, and parsing
    # them was a fifth of an uncached read. Postgres holds only strict JSON (it refuses NaN), which orjson reads.
    kwargs.setdefault("json_deserializer", orjson.loads)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Any:
    """An Alembic config pointing at interpedia's migrations and the given database."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (idempotent)."""
    from alembic import command

    log.info("migrating %s to %s", make_url(url).render_as_string(hide_password=True), revision)
    command.upgrade(alembic_config(url), revision)


# Made by raw SQL in revision 0003 (pgvector HNSW, partial index, SQLite change log and its triggers): not
# declared on the tables, so autogenerate must not propose dropping them.
_RAW_SQL_OBJECTS = frozenset(
    {"ix_explanations_embedding_hnsw", "ix_explanations_embedding_missing", "explanation_embedding_changes"}
)


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Leave the raw-SQL objects of revision 0003 out of autogenerate's comparison."""
    return not (reflected and compare_to is None and name in _RAW_SQL_OBJECTS)


def compare_type(
    context: object, inspected_column: object, metadata_column: object, inspected_type: object, metadata_type: object
) -> bool | None:
    """Autogenerate's type check, except that float spellings of one width (REAL vs FLOAT on SQLite) agree."""
    from sqlalchemy import Float

    if isinstance(inspected_type, Float) and isinstance(metadata_type, Float):
        return False
    return None
