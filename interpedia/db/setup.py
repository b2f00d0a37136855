"""What ``interpedia init`` does: set up a team's Postgres database and write the settings file that points at it.

Like Neuronpedia's two connection strings (``POSTGRES_PRISMA_URL`` through a pooler such as Neon's or
PgBouncer, ``POSTGRES_URL_NON_POOLING`` straight to the server), init takes a pooled URL, which the
servers use for requests, and a direct URL, which schema changes need (DDL and Alembic's transaction
do not belong on a transaction-mode pooler). It checks both connect, that the server is PostgreSQL
15 or newer and that pgvector is available, runs the migrations over the direct URL, makes sure the
explanation HNSW index exists with the seed's tuning (m 16, ef_construction 100), and writes
``INTERPEDIA_HOME/settings.env``, which ``get_settings()`` reads. Every step is idempotent, so
rerunning init is safe; the session secret written the first time is kept, so that every
``interpedia serve`` process reading the file accepts the same sign-in cookies.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from interpedia.config import settings_file
from interpedia.errors import UserError

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 150000  # PostgreSQL 15
MIN_PGVECTOR = (0, 5, 0)  # HNSW indexes
ITERATIVE_SCAN_PGVECTOR = (0, 8, 0)  # hnsw.iterative_scan, which filtered explanation search relies on
HNSW_INDEX = "ix_explanations_embedding_hnsw"
# Connection-string parameters of other tools (Prisma) that libpq would refuse.
_FOREIGN_PARAMS = ("pgbouncer", "schema", "connection_limit", "pool_timeout", "statement_cache_size")


class InitError(UserError):
    """A check failed; the message says what to fix."""


@dataclass
class InitReport:
    """What init found and did."""

    server_version: str
    pgvector_version: str
    migrated: bool
    index_created: bool
    index_options: list[str]
    settings_path: Path
    warnings: list[str]


def normalize_url(url: str, what: str) -> str:
    """A SQLAlchemy psycopg URL from what Neon, Cloud SQL or psql users paste (``postgres://...``)."""
    url = url.strip()
    if not url:
        raise InitError(f"the {what} URL is empty")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InitError(f"the {what} URL is not a database URL: {exc}") from None
    if parsed.get_backend_name() != "postgresql":
        raise InitError(
            f"the {what} URL must be a PostgreSQL URL (postgresql://user:password@host/db), "
            f"not {parsed.get_backend_name()}"
        )
    if parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    parsed = parsed.difference_update_query(_FOREIGN_PARAMS)
    return parsed.render_as_string(hide_password=False)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _engine(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy.pool import NullPool

    from interpedia.db import make_engine

    return make_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})


def _version_tuple(value: str) -> tuple[int, ...]:
    return tuple(int(p) for p in value.split(".")[:3] if p.isdigit())


def check_server(url: str, what: str) -> tuple[int, str]:
    """Connect and return (server_version_num, version string); InitError when it cannot."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            num = int(conn.execute(text("SELECT current_setting('server_version_num')")).scalar_one())
            version = str(conn.execute(text("SELECT current_setting('server_version')")).scalar_one())
    except DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        raise InitError(f"cannot connect to the {what} URL {_safe(url)}: {first}") from None
    finally:
        engine.dispose()
    if num < MIN_SERVER_VERSION:
        raise InitError(f"{_safe(url)} runs PostgreSQL {version}; interpedia needs 15 or newer")
    return num, version


def check_pgvector(url: str) -> tuple[str, list[str]]:
    """pgvector's version (installed, else available) and warnings; InitError when it is missing."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'")
            ).first()
    finally:
        engine.dispose()
    if row is None:
        raise InitError(
            "the pgvector extension is not available on this server: install it (Debian: "
            "postgresql-15-pgvector; Neon and Cloud SQL ship it) and rerun interpedia init"
        )
    version = str(row[1] or row[0])
    warnings: list[str] = []
    if _version_tuple(version) < MIN_PGVECTOR:
        raise InitError(f"pgvector {version} is too old: HNSW indexes need 0.5.0 or newer")
    if _version_tuple(version) < ITERATIVE_SCAN_PGVECTOR:
        warnings.append(
            f"pgvector {version} has no hnsw.iterative_scan (0.8.0+): filtered explanation "
            "searches may return fewer results than asked for"
        )
    return version, warnings


def ensure_vector_index(url: str, m: int, ef_construction: int) -> tuple[bool, list[str]]:
    """Create the explanation HNSW index when it is missing; (created, its options)."""
    engine = _engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            options = conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = :n AND relkind = 'i'"), {"n": HNSW_INDEX}
            ).first()
            if options is not None:
                return False, list(options[0] or [])
            # CONCURRENTLY: a rerun against a live database does not block the servers' writes.
            conn.execute(
                text(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {HNSW_INDEX} ON explanations "
                    f"USING hnsw (embedding vector_cosine_ops) "
                    f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
                )
            )
            created = conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = :n"), {"n": HNSW_INDEX}
            ).first()
            return True, list(created[0] or []) if created is not None else []
    finally:
        engine.dispose()


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def _quote(value: str) -> str:
    # python-dotenv reads single-quoted values literally: no interpolation of '$' in passwords.
    if any(c in value for c in " #'\"$\\\n"):
        if "'" in value or "\n" in value:
            raise InitError("values with quotes or newlines cannot be written to the settings file")
        return f"'{value}'"
    return value


def write_settings(path: Path, updates: dict[str, str]) -> None:
    """Merge ``updates`` into the settings file (other lines kept), atomically and readable by the owner only."""
    current = _read_env_file(path)
    for key, value in updates.items():
        current[key] = _quote(value)
    lines = [
        "# written by `interpedia init`; environment variables override these",
        "",
        *(f"{key}={value}" for key, value in sorted(current.items())),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def run_init(pooled_url: str, direct_url: str, home: Path, *, m: int = 16, ef_construction: int = 100) -> InitReport:
    """Check, migrate, index and write the settings file; safe to rerun."""
    from interpedia.db import migrate

    pooled = normalize_url(pooled_url, "pooled")
    direct = normalize_url(direct_url or pooled_url, "direct")
    _, version = check_server(direct, "direct")
    if pooled != direct:
        check_server(pooled, "pooled")
    pgvector, warnings = check_pgvector(direct)
    log.info("PostgreSQL %s with pgvector %s at %s", version, pgvector, _safe(direct))
    try:
        migrate(direct)
    except DBAPIError as exc:
        raise InitError(f"the migrations failed: {str(exc.orig or exc).strip().splitlines()[0]}") from None
    created, options = ensure_vector_index(direct, m, ef_construction)
    path = settings_file(home)
    existing = _read_env_file(path)
    updates = {
        "INTERPEDIA_DATABASE_URL": pooled,
        "INTERPEDIA_DATABASE_URL_DIRECT": direct,
        "INTERPEDIA_VECTOR_HNSW_M": str(m),
        "INTERPEDIA_VECTOR_HNSW_EF_CONSTRUCTION": str(ef_construction),
    }
    if not existing.get("INTERPEDIA_SESSION_SECRET"):
        updates["INTERPEDIA_SESSION_SECRET"] = secrets.token_urlsafe(48)
    write_settings(path, updates)
    return InitReport(
        server_version=version,
        pgvector_version=pgvector,
        migrated=True,
        index_created=created,
        index_options=options,
        settings_path=path,
        warnings=warnings,
    )
