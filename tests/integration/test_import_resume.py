"""Resume after a kill: ``interpedia import`` killed with SIGKILL partway, then rerun, leaves exactly one copy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from factories import write_saedashboard_dir
from ingest_helpers import (
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
)
from sqlalchemy import func, select, text

from interpedia.db.tables import Activation, Feature, ImportedBatch

N_FILES = 40
PER_FILE = 20
ACTS_PER_FEATURE = 5  # factories.make_feature: four top examples and one quantile example


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "interpedia"
    return [str(script)] if script.exists() else [sys.executable, "-m", "interpedia.cli"]


def _env(database_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERPEDIA_")}
    return env | {
        "INTERPEDIA_DATABASE_URL": database_url,
        "INTERPEDIA_HOME": str(home),
        "INTERPEDIA_LOG_LEVEL": "WARNING",
    }


def _batches_done(factory: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(ImportedBatch)) or 0)


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
            assert time.monotonic() < deadline, "the killed import's session did not end"
            session.rollback()
            time.sleep(0.02)


def _assert_whole_batches_only(factory: Any) -> int:
    """Every feature present has all its examples, and present features are exactly the finished files."""
    with factory() as session:
        per_feature = dict(
            session.execute(
                select(Feature.index, func.count(Activation.id))
                .outerjoin(Activation, Activation.feature_id == Feature.id)
                .group_by(Feature.index)
            ).all()
        )
        recorded = int(session.scalar(select(func.coalesce(func.sum(ImportedBatch.n_features), 0))) or 0)
        done = int(session.scalar(select(func.count()).select_from(ImportedBatch)) or 0)
    assert set(per_feature.values()) <= {ACTS_PER_FEATURE}, "a feature lost or duplicated examples"
    assert recorded == len(per_feature) == done * PER_FILE
    # Files are imported in order, so what is there is the first ``done`` files, whole.
    assert set(per_feature) == set(range(done * PER_FILE))
    return done


def test_kill_and_rerun_leaves_one_copy(database_url: str, factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=N_FILES * PER_FILE, per_batch=PER_FILE)
    env = _env(database_url, tmp_path / "home")
    proc = subprocess.Popen([*_cli(), "import", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _batches_done(factory) < 3:
            assert proc.poll() is None, f"import ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "import made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _wait_for_killed_writer(factory)

    done = _assert_whole_batches_only(factory)
    assert 3 <= done < N_FILES, "the import finished before the kill; make the test data bigger"

    rerun = subprocess.run([*_cli(), "import", str(path)], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    skipped = re.search(r"\((\d+) already imported\)", rerun.stdout)
    assert skipped is not None, rerun.stdout
    assert int(skipped.group(1)) == done

    assert _assert_whole_batches_only(factory) == N_FILES
    got = counts(factory)
    assert got["features"] == N_FILES * PER_FILE
    assert got["activations"] == N_FILES * PER_FILE * ACTS_PER_FEATURE
    assert got["models"] == 1 and got["sources"] == 1


def test_interrupted_export_import_resumes_within_a_file(factory: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """A Neuronpedia export file is written in several batches; after a crash the finished ones are skipped."""
    import pytest
    from ingest_helpers import np_activation, np_feature, write_jsonl

    import interpedia.ingest.pipeline as pipeline
    from interpedia.ingest import import_path

    base = tmp_path / "export" / "gpt2-small" / "6-res-jb"
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature("gpt2-small", "6-res-jb", i) for i in range(12)])
    write_jsonl(
        base / "activations" / "batch-0.jsonl.gz",
        [np_activation("gpt2-small", "6-res-jb", i, ["a", "b"], [0.5, float(i)]) for i in range(12) for _ in range(30)],
    )
    real = pipeline.write_features
    calls = {"n": 0}

    def crash_in_sixth_write(*args: Any, **kwargs: Any) -> Any:
        # Writes: features 0-3, 4-7, 8-11, "features file done", examples of 0-5, examples of 6-11 (dies).
        calls["n"] += 1
        out = real(*args, **kwargs)
        if calls["n"] == 6:
            raise KeyboardInterrupt  # after the rows went in, before the commit
        return out

    monkeypatch.setattr(pipeline, "write_features", crash_in_sixth_write)
    with pytest.raises(KeyboardInterrupt):
        import_path(base, factory, batch_size=4)  # 4 features, or 180 example lines, per batch
    assert counts(factory)["features"] == 12 and counts(factory)["activations"] == 180
    monkeypatch.setattr(pipeline, "write_features", real)

    summary = import_path(base, factory, batch_size=4)
    assert summary.skipped_batches == 2  # the features file as a whole, and the first batch of examples
    assert summary.counts.activations == 180 and summary.batches == 1
    assert counts(factory)["activations"] == 360
    with factory() as session:
        per_feature = set(session.execute(select(func.count(Activation.id)).group_by(Activation.feature_id)).scalars())
    assert per_feature == {30}
