"""Faults: ``generate --into-db`` killed with SIGKILL then rerun; Postgres stopped and started under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from parts import require_module

require_module("torch")

from generate_helpers import CTX, Tiny, make_sae_dir, tiny_inputs  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from interpedia.config import Settings  # noqa: E402
from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.db.tables import Activation, Feature, GenerateRunRow, ImportedBatch, Model, Source  # noqa: E402

D_SAE = 256  # features, one import transaction each: long enough a write phase to kill it in the middle
N_PROMPTS = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def wide_sae(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A standard SAE on the tiny model with many features."""
    return make_sae_dir(tmp_path_factory.mktemp("wide-sae") / "sae", "standard", seed=7, d_sae=D_SAE)


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "interpedia"
    return [str(script)] if script.exists() else [sys.executable, "-m", "interpedia.cli"]


def _env(database_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERPEDIA_")}
    return env | {
        "INTERPEDIA_DATABASE_URL": database_url,
        "INTERPEDIA_HOME": str(home),
        "INTERPEDIA_LOG_LEVEL": "WARNING",
        "INTERPEDIA_EMBED_ON_IMPORT": "false",
    }


def _generate_args(tiny: Tiny, sae: Path, work: Path) -> list[str]:
    return [
        *_cli(),
        "generate",
        "--model",
        str(tiny.model),
        "--sae",
        str(sae),
        "--dataset",
        str(tiny.jsonl),
        "--context-size",
        str(CTX),
        "--n-prompts",
        str(N_PROMPTS),
        "--top-k",
        "5",
        "--shard-prompts",
        "8",
        "--features-per-file",
        "1",
        "--model-id",
        "fault-gen",
        "--source-set",
        "res-fault",
        "--no-progress",
        "--into-db",
        "--work-dir",
        str(work),
    ]


def _snapshot(factory: Any) -> dict[str, Any]:
    """Everything a generate run writes, in a comparable form."""
    with factory() as session:
        per_feature = dict(
            session.execute(
                select(Feature.index, func.count(Activation.id))
                .outerjoin(Activation, Activation.feature_id == Feature.id)
                .group_by(Feature.index)
            ).all()
        )
        values = dict(session.execute(select(Feature.index, Feature.max_act_approx)).all())
        return {
            "features": session.scalar(select(func.count()).select_from(Feature)),
            "distinct_indexes": len(per_feature),
            "activations": session.scalar(select(func.count()).select_from(Activation)),
            "per_feature": per_feature,
            "max_act": {k: round(float(v or 0), 4) for k, v in values.items()},
            "models": session.scalar(select(func.count()).select_from(Model)),
            "sources": session.scalar(select(func.count()).select_from(Source)),
            "runs": session.scalar(select(func.count()).select_from(GenerateRunRow)),
        }


def _generate_batches(factory: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(ImportedBatch)) or 0)


@pytest.mark.slow
def test_generate_into_db_killed_mid_write_then_rerun_leaves_exactly_one_copy(
    database_url: str, factory: Any, tiny: Tiny, wide_sae: Path, tmp_path: Path
) -> None:
    # The reference: the same run, uninterrupted, into its own SQLite database.
    ref_url = f"sqlite:///{tmp_path / 'reference.db'}"
    migrate(ref_url)
    done = subprocess.run(
        _generate_args(tiny, wide_sae, tmp_path / "ref-work"),
        env=_env(ref_url, tmp_path / "h0"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    ref_engine = make_engine(ref_url)
    reference = _snapshot(make_sessionmaker(ref_engine))
    ref_engine.dispose()
    assert reference["features"] == D_SAE and reference["activations"] > 0

    env = _env(database_url, tmp_path / "home")
    work = tmp_path / "work"
    proc = subprocess.Popen(
        _generate_args(tiny, wide_sae, work), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while _generate_batches(factory) < 5:
            assert proc.poll() is None, f"generate ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "generate wrote no batch in time"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _wait_for_killed_writer(factory)
    partial = _snapshot(factory)
    assert 0 < partial["features"] < D_SAE, "the kill did not land in the middle of the write"
    # No partial batch: each feature written so far has all of its examples, or none of it is there.
    assert all(partial["per_feature"][i] == reference["per_feature"][i] for i in partial["per_feature"])

    rerun = subprocess.run(_generate_args(tiny, wide_sae, work), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert _snapshot(factory) == reference  # (a rerun of a finished run: test_generate_cli)


def _wait_for_killed_writer(factory: Any) -> None:
    """On Postgres a COMMIT sent just before the kill still completes: wait until no other session is busy."""
    with factory() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        deadline = time.monotonic() + 30
        while session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
        ):
            assert time.monotonic() < deadline, "the killed generate's session did not end"
            session.rollback()
            time.sleep(0.02)


@pytest.mark.postgres
def test_postgres_restart_under_load_gives_503_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from factories import write_saedashboard_dir
    from fastapi.testclient import TestClient
    from pgcluster import PostgresCluster

    from interpedia.ingest import import_path
    from interpedia.web.app import create_app

    monkeypatch.setenv("INTERPEDIA_EMBED_ON_IMPORT", "false")
    # Its own cluster: stopping the shared one would fail every other Postgres test running beside this.
    cluster = PostgresCluster()
    cluster.start()
    try:
        url = cluster.create_database("faults")
        migrate(url)
        engine = make_engine(url)
        import_path(
            write_saedashboard_dir(tmp_path / "sd", n_features=8, model_id="fault-m", sae_set="res-f"),
            make_sessionmaker(engine),
        )
        engine.dispose()
        settings = Settings(database_url=url, home=tmp_path / "home", rate_limit_enabled=False, embed_on_import=False)
        statuses: Counter[int] = Counter()
        bodies: dict[int, Any] = {}
        phase = {"name": "up"}
        seen: dict[str, Counter[int]] = {"up": Counter(), "down": Counter(), "back": Counter()}
        stop = threading.Event()
        paths = ["/api/feature/fault-m/0-res-f/3", "/api/model/list", "/fault-m/0-res-f/2.json"]

        with TestClient(create_app(settings), raise_server_exceptions=False) as client:

            def load(n: int) -> None:
                i = n
                while not stop.is_set():
                    resp = client.request("POST" if paths[i % 3].endswith("list") else "GET", paths[i % 3])
                    statuses[resp.status_code] += 1
                    seen[phase["name"]][resp.status_code] += 1
                    bodies.setdefault(resp.status_code, (resp.headers, resp.json()))
                    i += 1

            workers = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
            for w in workers:
                w.start()
            deadline = time.monotonic() + 60
            while seen["up"][200] < 10:
                assert time.monotonic() < deadline, f"the app did not serve before the fault: {dict(seen['up'])}"
                time.sleep(0.05)
            phase["name"] = "down"
            cluster.stop_server(mode="immediate")
            time.sleep(2.0)
            cluster.start()  # same port, same data
            phase["name"] = "back"
            # Recovery needs no restart of the app: the pool's pre-ping throws dead connections away.
            deadline = time.monotonic() + 30
            while seen["back"][200] < 20:
                assert time.monotonic() < deadline, f"no recovery after the restart: {dict(seen['back'])}"
                time.sleep(0.1)
            stop.set()
            for w in workers:
                w.join(timeout=30)

        assert seen["up"][200] > 0 and set(seen["up"]) == {200}
        assert seen["down"][503] > 0, f"no 503 while the database was down: {dict(seen['down'])}"
        assert set(statuses) <= {200, 503}, f"unexpected answers: {dict(statuses)}"
        headers, body = bodies[503]
        assert body["status"] == 503 and "database is unavailable" in body["error"]
        assert int(headers["retry-after"]) > 0
    finally:
        cluster.stop()
