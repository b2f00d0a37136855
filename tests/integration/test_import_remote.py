"""``interpedia import s3://...`` and ``https://...``: the Neuronpedia export layout from a real S3 server (moto).

The server holds what the public bucket ``neuronpedia-datasets`` holds (an export under ``v1/``), written by
the same factory as the local import tests; faults are injected between it and the client (``s3server.py``).
"""

from __future__ import annotations

import gzip
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ingest_helpers import (
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    read_jsonl,
    write_jsonl,
    write_np_export,
)
from s3server import FAULTS, S3Server
from sqlalchemy import func, select

from interpedia.cli import main
from interpedia.config import Settings, get_settings
from interpedia.db.tables import Activation, ExplanationType, Feature, Source

SOURCES = ("3-res-np", "4-res-np")
N_FEATURES = 5
_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """One moto S3 server for the module (each test has its own bucket)."""
    server = S3Server()
    yield server
    server.stop()


@dataclass
class Export:
    """A public bucket holding a two-source export under ``v1/``, and the export on disk it was made from."""

    bucket: str
    root: Path
    downloads: Path

    def key(self, source: str, kind: str) -> str:
        """The key of a source's one batch file of ``kind`` (features, activations, explanations)."""
        return f"v1/np-model/{source}/{kind}/batch-0.jsonl.gz"

    def rows(self, source: str, kind: str) -> int:
        """Rows of that file, read with gzip and json (the oracle for what an import holds)."""
        return len(read_jsonl(self.root / "np-model" / source / kind / "batch-0.jsonl.gz"))

    def size(self, key: str) -> int:
        """Bytes of the file behind ``key``."""
        return (self.root / key.removeprefix("v1/")).stat().st_size

    def explanations(self) -> int:
        """Distinct explanations in the export (the factory gives both sources the same explanation ids)."""
        files = [self.root / "np-model" / s / "explanations" / "batch-0.jsonl.gz" for s in SOURCES]
        return len({row["id"] for f in files for row in read_jsonl(f)})

    def batch_files_left(self) -> list[Path]:
        """Downloaded batch files (whole or partial) still under the download directory."""
        return sorted(p for p in self.downloads.rglob("batch-*") if p.is_file())


@pytest.fixture
def export(s3: S3Server, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Export:
    bucket = f"np-datasets-{next(_buckets)}"
    root = tmp_path / "export"
    for layer in SOURCES:
        write_np_export(root, layer=layer, n_features=N_FEATURES)
    s3.public_bucket(bucket)
    s3.upload_tree(bucket, root, "v1/")
    s3.heal()
    s3.gets()
    monkeypatch.setenv("INTERPEDIA_S3_ENDPOINT_URL", s3.url)
    monkeypatch.setenv("INTERPEDIA_DOWNLOAD_ATTEMPTS", "3")
    get_settings.cache_clear()
    return Export(bucket, root, settings.home / "downloads" / bucket)


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["import", *args], catch_exceptions=False)


def _per_source(factory: Any) -> dict[str, tuple[int, int]]:
    """Source id -> (features, activations) in the database."""
    with factory() as session:
        feats = dict(
            session.execute(
                select(Source.name, func.count(Feature.id))
                .join(Feature, Feature.source_id == Source.id)
                .group_by(Source.name)
            ).all()
        )
        acts = dict(
            session.execute(
                select(Source.name, func.count(Activation.id))
                .join(Feature, Feature.source_id == Source.id)
                .join(Activation, Activation.feature_id == Feature.id)
                .group_by(Source.name)
            ).all()
        )
    return {sid: (n, acts.get(sid, 0)) for sid, n in feats.items()}


def _whole(export: Export, *sources: str) -> dict[str, tuple[int, int]]:
    return {s: (export.rows(s, "features"), export.rows(s, "activations")) for s in sources}


def _assert_one_copy(export: Export, factory: Any) -> None:
    """Both sources whole, once: the row counts of the files themselves, and no feature with extra examples."""
    assert _per_source(factory) == _whole(export, *SOURCES)
    got = counts(factory)
    assert got["explanations"] == export.explanations()
    assert got["models"] == 1 and got["sources"] == 2
    with factory() as session:
        per_feature = session.execute(select(func.count(Activation.id)).group_by(Activation.feature_id)).scalars()
        assert set(per_feature) == {2}  # write_np_export: two examples per feature


def test_import_from_a_bucket_then_rerun_downloads_nothing(s3: S3Server, export: Export, factory: Any) -> None:
    result = _run(f"s3://{export.bucket}/v1/")
    assert result.exit_code == 0, result.output
    assert "imported 3-res-np, 4-res-np: 10 features, 20 activations" in result.stdout
    assert "downloaded 17 files" in result.stdout  # 6 batch files, 8 catalogue files, 3 config files
    _assert_one_copy(export, factory)
    assert export.batch_files_left() == []  # imported files are deleted (no --keep-downloads)
    with factory() as session:  # config/ came along
        assert session.scalar(select(func.count()).select_from(ExplanationType)) >= 1

    s3.gets()
    again = _run(f"s3://{export.bucket}/v1/")
    assert again.exit_code == 0, again.output
    assert "0 features, 0 activations" in again.stdout and "(6 already imported)" in again.stdout
    assert [g.key for g in s3.gets() if "/batch-" in g.key] == [], "a file already imported was downloaded again"
    _assert_one_copy(export, factory)


def test_broken_downloads_are_retried(s3: S3Server, export: Export, factory: Any) -> None:
    s3.break_gets(export.key("3-res-np", "features"), "500")
    s3.break_gets(export.key("3-res-np", "activations"), "drop")
    s3.break_gets(export.key("3-res-np", "explanations"), "short")
    s3.break_gets(export.key("4-res-np", "features"), "corrupt")
    checked = export.key("4-res-np", "activations")  # with a CRC32, which botocore checks on a whole-object GET
    s3.upload_with_checksum(export.bucket, checked, (export.root / checked.removeprefix("v1/")).read_bytes())
    s3.break_gets(checked, "corrupt")
    result = _run(f"s3://{export.bucket}/v1/")
    assert result.exit_code == 0, result.output
    assert "4 retries" in result.stdout, result.stdout  # the 500 is retried by botocore, the other four here
    _assert_one_copy(export, factory)
    dropped = [g.range for g in s3.gets() if g.key == export.key("3-res-np", "activations")]
    assert dropped[0] is None and dropped[1] is not None and dropped[1].startswith("bytes="), dropped
    assert int(dropped[1].removeprefix("bytes=").rstrip("-")) > 0, "the second try did not resume"


@pytest.mark.parametrize("fault", FAULTS)
def test_a_download_that_keeps_failing_is_reported_and_a_rerun_completes(
    s3: S3Server, export: Export, factory: Any, fault: str
) -> None:
    broken = export.key("4-res-np", "activations")
    s3.break_gets(broken, *[fault] * 9)
    failed = _run(f"s3://{export.bucket}/v1/")
    assert failed.exit_code == 1
    assert f"import failed: s3://{export.bucket}/{broken}" in failed.stderr, failed.stderr
    assert {
        "500": "the server answered 500 InternalError",
        "drop": "download failed after 3 attempts: the transfer broke off",
        "short": f"download failed after 3 attempts: got {export.size(broken) // 2} bytes, the listing says "
        f"{export.size(broken)}",
        "corrupt": "download failed after 3 attempts: the content's MD5 is not its ETag",
    }[fault] in failed.stderr, failed.stderr
    assert "the same command again resumes" in failed.stderr
    # Everything before the broken file is in, whole; nothing of it or after it.
    assert _per_source(factory) == {**_whole(export, "3-res-np"), "4-res-np": (N_FEATURES, 0)}
    if fault == "drop":  # what arrived stays for the rerun
        assert [p.name for p in export.batch_files_left() if p.suffix == ".part"] == ["batch-0.jsonl.gz.part"]

    s3.heal()
    s3.gets()
    rerun = _run(f"s3://{export.bucket}/v1/")
    assert rerun.exit_code == 0, rerun.output
    _assert_one_copy(export, factory)
    fetched = [g for g in s3.gets() if "/batch-" in g.key]
    assert {g.key for g in fetched} <= {broken, export.key("4-res-np", "explanations")}
    if fault == "drop":
        assert [g.range is not None for g in fetched if g.key == broken] == [True], "the partial file was not resumed"
    assert export.batch_files_left() == []


def test_kept_downloads_are_not_fetched_again(s3: S3Server, export: Export, factory: Any, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    result = _run(f"s3://{export.bucket}/v1/", "--download-dir", str(mirror), "--keep-downloads")
    assert result.exit_code == 0, result.output
    kept = mirror / export.bucket / "v1" / "np-model" / "4-res-np" / "activations" / "batch-0.jsonl.gz"
    assert (
        kept.read_bytes() == (export.root / "np-model" / "4-res-np" / "activations" / "batch-0.jsonl.gz").read_bytes()
    )

    kept.write_bytes(kept.read_bytes()[:-7])  # a kept file that is no longer whole is fetched again
    s3.gets()
    forced = _run(f"s3://{export.bucket}/v1/", "--download-dir", str(mirror), "--keep-downloads", "--force")
    assert forced.exit_code == 0, forced.output
    assert "downloaded 1 files" in forced.stdout and "16 already downloaded" in forced.stdout, forced.stdout
    assert [g.key for g in s3.gets()] == [export.key("4-res-np", "activations")]
    _assert_one_copy(export, factory)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_file_ahead_downloads_in_reading_order(
    s3: S3Server, export: Export, factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several batch files per kind, INTERPEDIA_DOWNLOAD_AHEAD=1: one at a time, in the order they are imported."""
    root, bucket = tmp_path / "split", f"{export.bucket}-split"
    for layer in SOURCES:
        write_np_export(root, layer=layer, n_features=6)
        for kind in ("features", "activations", "explanations"):
            whole = root / "np-model" / layer / kind / "batch-0.jsonl.gz"
            rows = read_jsonl(whole)
            per = len(rows) // 3  # two features a file: a feature's examples stay together
            for n in range(3):
                write_jsonl(whole.with_name(f"batch-{n}.jsonl.gz"), rows[n * per : (n + 1) * per])
    s3.public_bucket(bucket)
    s3.upload_tree(bucket, root, "v1/")
    s3.gets()
    monkeypatch.setenv("INTERPEDIA_DOWNLOAD_AHEAD", "1")
    get_settings.cache_clear()
    result = _run(f"s3://{bucket}/v1/")
    assert result.exit_code == 0, result.output
    assert _per_source(factory) == {s: (6, 12) for s in SOURCES}
    order = [
        f"v1/np-model/{layer}/{kind}/batch-{n}.jsonl.gz"
        for layer in SOURCES
        for kind in ("features", "activations", "explanations")
        for n in range(3)
    ]
    assert [g.key for g in s3.gets() if "/batch-" in g.key] == order


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_http_address_of_one_source_and_a_source_set(s3: S3Server, export: Export, factory: Any) -> None:
    one = _run(f"{s3.url}/{export.bucket}/v1/np-model/3-res-np/")
    assert one.exit_code == 0, one.output
    assert one.stdout.splitlines()[-1].startswith("imported 3-res-np: 5 features, 10 activations, 5 new explanations")
    with factory() as session:  # config/ two levels up, as a local import finds it
        assert session.scalar(select(func.count()).select_from(ExplanationType)) >= 1

    by_set = _run(f"s3://{export.bucket}/v1/np-model/res-np")  # every <layer>-res-np source of the model
    assert by_set.exit_code == 0, by_set.output
    assert "imported 3-res-np, 4-res-np: 5 features" in by_set.stdout
    _assert_one_copy(export, factory)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_multipart_objects_are_checked_by_size(
    s3: S3Server, export: Export, factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 64)
    key = export.key("3-res-np", "activations")
    data = (export.root / "np-model" / "3-res-np" / "activations" / "batch-0.jsonl.gz").read_bytes()
    etag = s3.upload_multipart(export.bucket, key, data, part_size=len(data) // 3 + 1)
    assert etag.endswith("-3")
    s3.break_gets(key, "short")
    result = _run(f"s3://{export.bucket}/v1/")
    assert result.exit_code == 0, result.output
    _assert_one_copy(export, factory)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_addresses_that_hold_no_export_name_the_problem(
    s3: S3Server, export: Export, factory: Any, tmp_path: Path
) -> None:
    no_bucket = _run("s3:///v1/")
    assert no_bucket.exit_code == 1 and "no bucket (expected s3://BUCKET/PREFIX)" in no_bucket.stderr
    assert "resumes" not in no_bucket.stderr

    missing = _run("s3://no-such-bucket/v1/")
    assert missing.exit_code == 1 and "there is no bucket 'no-such-bucket'" in missing.stderr, missing.stderr

    empty = _run(f"s3://{export.bucket}/v2/")
    assert empty.exit_code == 1 and "no Neuronpedia export here" in empty.stderr, empty.stderr

    s3.public_bucket(f"{export.bucket}-private", public=False)
    s3.upload_tree(f"{export.bucket}-private", export.root, "v1/")
    private = _run(f"s3://{export.bucket}-private/v1/")
    assert private.exit_code == 1 and "refused to send it anonymously" in private.stderr, private.stderr
    assert "INTERPEDIA_S3_UNSIGNED=false" in private.stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:  # a plain web server with the export in a directory is not a bucket
        plain = _run(f"http://127.0.0.1:{server.server_port}/export/")
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert plain.exit_code == 1 and "S3" in plain.stderr, plain.stderr
    assert counts(factory)["features"] == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_file_in_the_bucket_is_reported_as_a_local_one_is(s3: S3Server, export: Export, factory: Any) -> None:
    bad = export.key("4-res-np", "features")
    s3.client.put_object(Bucket=export.bucket, Key=bad, Body=gzip.compress(b'{"index": "0", "modelId": \n'))
    result = _run(f"s3://{export.bucket}/v1/")
    assert result.exit_code == 1
    assert "nothing of the bad batch was written: np-model/4-res-np/features/batch-0.jsonl.gz: line 1" in result.stderr
    assert _per_source(factory) == _whole(export, "3-res-np")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_private_bucket_with_signed_requests(
    s3: S3Server, export: Export, factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = f"{export.bucket}-signed"
    s3.public_bucket(private, public=False)
    s3.upload_tree(private, export.root, "v1/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # what botocore's credential chain finds first
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("INTERPEDIA_S3_UNSIGNED", "false")
    get_settings.cache_clear()
    result = _run(f"s3://{private}/v1/")
    assert result.exit_code == 0, result.output
    _assert_one_copy(export, factory)
