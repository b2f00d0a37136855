"""Shared fixtures: a real SQLite file and a real Postgres (throwaway cluster) behind every storage test."""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from parts import check_backends  # noqa: E402
from pgcluster import PostgresCluster  # noqa: E402

from interpedia.config import Settings, get_settings  # noqa: E402
from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.store.vocab import vocab_cache  # noqa: E402

# INTERPEDIA_TEST_BACKENDS=sqlite runs only SQLite (quick local loops); make test runs both.
BACKENDS = [b for b in os.environ.get("INTERPEDIA_TEST_BACKENDS", "sqlite,postgres").split(",") if b]


def pytest_configure(config: pytest.Config) -> None:
    """In CI (CI=true) refuse a backend list that would quietly skip part of the suite."""
    check_backends(BACKENDS)


_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL 15 + pgvector cluster for the whole run, with a migrated template."""
    cluster = PostgresCluster()
    cluster.start()
    url = cluster.create_database("interpedia_template")
    migrate(url)
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: an SQLite file, or a Postgres database cloned from the template."""
    vocab_cache.clear()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'interpedia.db'}"
        migrate(url)
        yield url
    else:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        name = f"t{os.getpid()}_{next(_counter)}"
        cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE interpedia_template')
        yield cluster.url(name)
        vocab_cache.clear()
        cluster.psql(f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'""")
        cluster.psql(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def backend(database_url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at the test database, also visible to code that calls get_settings()."""
    monkeypatch.setenv("INTERPEDIA_DATABASE_URL", database_url)
    monkeypatch.setenv("INTERPEDIA_HOME", str(tmp_path / "home"))
    # Apps under test do not load the embedding model at start; tests that want it say so.
    monkeypatch.setenv("INTERPEDIA_EMBEDDING_PRELOAD", "false")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def factory(database_url: str) -> Iterator[Any]:
    """A session factory on the test database."""
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Any:
    """The FastAPI app on the test database."""
    from interpedia.web.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """An in-process HTTP client."""
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    """The app served by uvicorn on a free port (for real clients and the browser); yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def api_key(factory: Any) -> str:
    """A fresh API key of user ``tester``."""
    from interpedia.db import transaction
    from interpedia.store.users import create_api_key, ensure_user

    with transaction(factory) as session:
        return create_api_key(session, ensure_user(session, "tester"))
