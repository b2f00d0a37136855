"""``interpedia init`` against the throwaway Postgres: checks, migrations, the HNSW index, settings.env, reruns."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from interpedia.cli import main
from interpedia.config import Settings, get_settings
from interpedia.db import make_engine
from interpedia.db.setup import HNSW_INDEX, InitError, normalize_url

pytestmark = pytest.mark.postgres
_names = itertools.count()


@pytest.fixture
def empty_db(pg_cluster: Any) -> Iterator[tuple[str, str]]:
    """A new, empty database: (its SQLAlchemy URL, its plain libpq URL as a provider would hand it out)."""
    name = f"init{os.getpid()}_{next(_names)}"
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    url = pg_cluster.url(name)
    yield url, url.replace("postgresql+psycopg://", "postgres://")
    pg_cluster.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty INTERPEDIA_HOME, with no database settings in the environment."""
    path = tmp_path / "home"
    monkeypatch.setenv("INTERPEDIA_HOME", str(path))
    for var in ("INTERPEDIA_DATABASE_URL", "INTERPEDIA_DATABASE_URL_DIRECT", "INTERPEDIA_SESSION_SECRET"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _index_options(url: str) -> list[str] | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = :n"), {"n": HNSW_INDEX}).first()
            return None if row is None else list(row[0] or [])
    finally:
        engine.dispose()


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The real command in a fresh process, with stdin closed: no prompt may be needed.
    return subprocess.run(
        [sys.executable, "-m", "interpedia.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_init_with_flags_and_no_stdin_sets_everything_up_and_is_safe_to_rerun(
    empty_db: tuple[str, str], home: Path
) -> None:
    url, pasted = empty_db
    env = {**os.environ, "INTERPEDIA_HOME": str(home)}
    first = _run_cli("init", "--database-url", pasted + "?pgbouncer=true", "--direct-url", pasted, env=env)
    assert first.returncode == 0, first.stderr
    assert "PostgreSQL 15" in first.stdout and "pgvector" in first.stdout
    assert f"{HNSW_INDEX} already present" in first.stdout  # the migration made it with the seed's tuning
    assert sorted(_index_options(url) or []) == ["ef_construction=100", "m=16"]

    tables = set(inspect(make_engine(url)).get_table_names())
    assert {"models", "sources", "features", "explanations", "alembic_version"} <= tables

    settings_path = home / "settings.env"
    assert stat.S_IMODE(settings_path.stat().st_mode) == 0o600  # it holds the database password
    content = settings_path.read_text()
    assert "pgbouncer" not in content  # Prisma's flag, which libpq would refuse
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.database_url == url and settings.database_url_direct == url
    assert len(settings.session_secret) >= 40
    secret = settings.session_secret

    # Rerun after the index was dropped: it comes back with the same tuning; the secret is kept.
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {HNSW_INDEX}"))
    engine.dispose()
    with settings_path.open("a") as fh:
        fh.write("INTERPEDIA_LOG_LEVEL=WARNING\n")
    again = _run_cli("init", "--database-url", pasted, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{HNSW_INDEX} created" in again.stdout
    assert sorted(_index_options(url) or []) == ["ef_construction=100", "m=16"]
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.session_secret == secret and settings.log_level == "WARNING"

    # The settings file is what `serve` and every other command then use.
    check = subprocess.run(
        [sys.executable, "-c", "from interpedia.config import get_settings as g; print(g().database_url)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() == url


def test_init_prompts_for_the_urls(empty_db: tuple[str, str], home: Path) -> None:
    url, pasted = empty_db
    result = CliRunner().invoke(main, ["init"], input=f"{pasted}\n\n")
    assert result.exit_code == 0, result.output
    assert "Pooled PostgreSQL URL" in result.output and "Direct (non-pooled) URL" in result.output
    get_settings.cache_clear()
    assert get_settings().database_url_direct == url


def test_init_without_urls_or_stdin_says_what_to_pass(home: Path) -> None:
    result = _run_cli("init", env={**os.environ, "INTERPEDIA_HOME": str(home)})
    assert result.returncode != 0
    assert "--database-url" in result.stderr
    assert not (home / "settings.env").exists()


def test_init_refuses_bad_urls_and_unreachable_servers_without_writing(pg_cluster: Any, home: Path) -> None:
    env = {**os.environ, "INTERPEDIA_HOME": str(home)}
    wrong_port = pg_cluster.url("postgres").replace(f":{pg_cluster.port}/", ":1/")
    result = _run_cli("init", "--database-url", wrong_port, env=env)
    assert result.returncode == 1 and "cannot connect to the direct URL" in result.stderr
    assert "Traceback" not in result.stderr
    missing_db = pg_cluster.url("no_such_database_here")
    result = _run_cli("init", "--database-url", missing_db, env=env)
    assert result.returncode == 1 and "no_such_database_here" in result.stderr
    assert not (home / "settings.env").exists()


def test_normalize_url_accepts_provider_strings() -> None:
    assert (
        normalize_url("postgres://u:p@h:5432/db?sslmode=require&pgbouncer=true", "pooled")
        == "postgresql+psycopg://u:p@h:5432/db?sslmode=require"
    )
    assert normalize_url("postgresql://u@h/db", "direct") == "postgresql+psycopg://u@h/db"
    for bad in ("", "sqlite:///x.db", "not a url"):
        with pytest.raises(InitError):
            normalize_url(bad, "pooled")


def test_settings_file_values_with_special_characters_round_trip(tmp_path: Path) -> None:
    from interpedia.db.setup import write_settings

    path = tmp_path / "settings.env"
    url = "postgresql+psycopg://u:p%24ss$word#1@h/db"
    write_settings(path, {"INTERPEDIA_DATABASE_URL": url})
    assert Settings(_env_file=path).database_url == url  # type: ignore[call-arg]
