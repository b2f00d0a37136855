"""Importing a Neuronpedia export from an S3 bucket: ``s3://BUCKET/PREFIX`` or the bucket's https:// address.

Neuronpedia publishes its datasets in the public bucket ``neuronpedia-datasets`` (prefix ``v1/``) in the
export layout :mod:`interpedia.ingest.npexport` reads. The bucket is listed anonymously (ListObjectsV2),
the catalogue files of a source are fetched first, and its batch files are downloaded in the order the
importer reads them, a few ahead, each deleted once imported unless the downloads are kept. A batch file
the database already holds (an earlier run) is not downloaded at all.

Addresses understood (a trailing ``/`` optional)::

    s3://neuronpedia-datasets/v1/gpt2-small/0-res-jb          (INTERPEDIA_S3_ENDPOINT_URL for other servers)
    https://neuronpedia-datasets.s3.amazonaws.com/v1/gpt2-small/0-res-jb/
    https://neuronpedia-datasets.s3.us-east-1.amazonaws.com/index.html?prefix=v1/gpt2-small/   (the browse page)
    https://s3.us-east-1.amazonaws.com/neuronpedia-datasets/v1/
    http://127.0.0.1:9000/BUCKET/PREFIX                        (any other host: an S3-compatible server, path style)

A prefix may be the whole export, a model, a source (``0-res-jb``) or a source set (``res-jb``: every
``<layer>-res-jb`` source of the model).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from interpedia.errors import Forbidden, Invalid, NotFound, Unavailable
from interpedia.ingest.download import DownloadStats, FetchAhead, Fetcher, RemoteObject, etag_path
from interpedia.ingest.exportfiles import batch_number
from interpedia.ingest.npexport import CONFIG_TABLES, import_config, import_source_dir
from interpedia.ingest.pipeline import BatchImporter, ImportSummary, fewer_collections
from interpedia.store.writer import EmbedTexts

log = logging.getLogger(__name__)

CATALOGUE_FILES = ("release.jsonl", "model.jsonl", "sourceset.jsonl", "source.jsonl")
BATCH_DIRS = ("features", "activations", "explanations")
# bucket.s3.amazonaws.com, bucket.s3.REGION.amazonaws.com, bucket.s3-REGION..., bucket.s3-website-REGION...,
# and the same without "bucket." (path style: the bucket is the first part of the path).
_AWS_HOST = re.compile(
    r"^(?:(?P<bucket>.+)\.)?s3(?:[.-]website)?(?:[.-]dualstack)?(?:[.-](?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d+))?"
    r"\.amazonaws\.com(?:\.cn)?$"
)


@dataclass(frozen=True)
class RemoteLocation:
    """A bucket and a prefix in it (``""`` or ending in ``/``), and how to reach the bucket."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    unsigned: bool = True

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach the bucket and where the downloads go (the CLI fills these from the settings)."""

    download_dir: Path
    keep: bool = False
    endpoint_url: str = ""
    unsigned: bool = True
    attempts: int = 4
    ahead: int = 4
    timeout_s: float = 60.0


@dataclass
class RemoteExport:
    """The export layout found under a location: its config files and its source directories (by prefix)."""

    config: list[RemoteObject] = field(default_factory=list)
    sources: dict[str, list[RemoteObject]] = field(default_factory=dict)


@dataclass
class RemoteImportSummary:
    """What a remote import did: the import itself and its downloads."""

    summary: ImportSummary
    downloads: DownloadStats


def is_remote(location: str) -> bool:
    """Whether ``location`` is a bucket address rather than a path."""
    return location.split("://", 1)[0].lower() in ("s3", "http", "https") and "://" in location


def _prefix(path: str) -> str:
    path = path.lstrip("/")
    return path if not path or path.endswith("/") else path + "/"


def parse_location(location: str, *, endpoint_url: str = "") -> RemoteLocation:
    """The bucket, prefix and endpoint of an ``s3://`` or ``http(s)://`` address (Invalid when it has none)."""
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise Invalid(f"{location}: no bucket (expected s3://BUCKET/PREFIX)", "location")
        return RemoteLocation(parts.netloc, _prefix(unquote(parts.path)), endpoint_url or None)
    if scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{location}: expected s3://BUCKET/PREFIX or an http(s):// address of a bucket", "location")
    path = unquote(parts.path.removesuffix("index.html")).lstrip("/")
    # The bucket's browse page (.../index.html?prefix=v1/) names the prefix in its query.
    browsed = parse_qs(parts.query).get("prefix", [None])[0]
    aws = _AWS_HOST.match(parts.hostname.lower())
    region = aws.group("region") if aws else None
    if aws is not None and aws.group("bucket"):  # virtual-hosted style: the bucket is in the host name
        return RemoteLocation(aws.group("bucket"), _prefix(browsed if browsed is not None else path), None, region)
    bucket, _, rest = path.partition("/")
    if not bucket:
        raise Invalid(f"{location}: no bucket in the path (expected {scheme}://HOST/BUCKET/PREFIX)", "location")
    endpoint = None if aws is not None else f"{scheme}://{parts.netloc}"
    return RemoteLocation(bucket, _prefix(browsed if browsed is not None else rest), endpoint, region)


def make_client(location: RemoteLocation, options: RemoteOptions) -> Any:
    """A botocore S3 client for the location: unsigned (anonymous) unless told otherwise, retrying failures."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        signature_version=UNSIGNED if location.unsigned else None,
        retries={"total_max_attempts": max(1, options.attempts), "mode": "standard"},
        connect_timeout=options.timeout_s,
        read_timeout=options.timeout_s,
        max_pool_connections=max(10, options.ahead + 2),
        # A server of our own (MinIO, moto, R2 ...) answers at its address, the bucket in the path.
        s3={"addressing_style": "path" if location.endpoint_url else "auto"},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=location.endpoint_url, region_name=location.region, config=config
    )


@contextmanager
def _answers(location: RemoteLocation, what: str) -> Iterator[None]:
    """S3 client errors as errors a user can act on, naming the location."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"{location}{f' at {location.endpoint_url}' if location.endpoint_url else ''}"
    unsigned = location.unsigned
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, status = error.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            raise NotFound(f"{where}: there is no bucket {location.bucket!r}", "location") from None
        if status == 403 or code in ("AccessDenied", "AllAccessDisabled"):
            raise Forbidden(
                f"{where}: the server refused to {what}{' anonymously' if unsigned else ''}; for a private bucket "
                "set INTERPEDIA_S3_UNSIGNED=false and your AWS credentials",
                "location",
            ) from None
        raise Unavailable(
            f"{where}: cannot {what}: the server answered {status} {code}; is this the address of an S3 bucket?",
            "location",
        ) from None
    except BotoCoreError as exc:
        raise Unavailable(
            f"{where}: cannot {what} ({exc}); is this the address of an S3 bucket (ListObjectsV2)?", "location"
        ) from None


def list_objects(client: Any, location: RemoteLocation, prefix: str) -> list[RemoteObject]:
    """Every object under ``prefix``, page by page."""
    found = []
    with _answers(location, "list the bucket"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(RemoteObject(item["Key"], int(item["Size"]), str(item.get("ETag", "")).strip('"')))
    return found


def list_dirs(client: Any, location: RemoteLocation, prefix: str) -> list[str]:
    """The "directories" right under ``prefix`` (common prefixes, each ending in ``/``)."""
    found = []
    with _answers(location, "list the bucket"):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def _source_dir(key: str) -> str | None:
    """The source directory (``.../<modelId>/<sourceId>/``) a key of the layout belongs to, if it does."""
    parts = key.split("/")
    if parts[-1] in CATALOGUE_FILES:
        return "".join(p + "/" for p in parts[:-1])
    if len(parts) >= 2 and parts[-2] in BATCH_DIRS and batch_number(parts[-1]) is not None:
        return "".join(p + "/" for p in parts[:-2])
    return None


def set_name_of(source_id: str) -> str:
    """The source set of a source id: ``res-jb`` of ``6-res-jb`` and of ``6-res-jb__16k``."""
    return source_id.split("-", 1)[1].split("__", 1)[0] if "-" in source_id else ""


def _parents(prefix: str, levels: int) -> list[str]:
    parts = prefix.rstrip("/").split("/") if prefix else []
    return ["/".join(parts[:-n]) + "/" if len(parts) > n else "" for n in range(1, levels + 1) if len(parts) >= n]


def find_export(client: Any, location: RemoteLocation) -> RemoteExport:
    """The export layout under the location: its own sources, or a source set's; config here or up to 2 levels up."""
    objects = list_objects(client, location, location.prefix)
    if not objects and location.prefix:
        # Not a directory: perhaps a source set (v1/gpt2-small/res-jb/ means every v1/gpt2-small/N-res-jb/).
        parent, name = (_parents(location.prefix, 1) or [""])[0], location.prefix.rstrip("/").rsplit("/", 1)[-1]
        for sub in list_dirs(client, location, parent):
            if set_name_of(sub.rstrip("/").rsplit("/", 1)[-1]) == name:
                objects += list_objects(client, location, sub)
    export = RemoteExport()
    depth = location.prefix.count("/")
    for obj in objects:
        src = _source_dir(obj.key)
        if src is not None and src.count("/") - depth <= 2:  # as the local importer: the source, a model or a root
            export.sources.setdefault(src, []).append(obj)
    for where in [location.prefix, *_parents(location.prefix, 2)]:
        listed = objects if where == location.prefix else list_objects(client, location, where + "config/")
        here = where + "config/"
        export.config = [o for o in listed if o.key.startswith(here) and o.key[len(here) :] in CONFIG_TABLES]
        if export.config:
            break
    if not export.sources and not export.config:
        raise NotFound(
            f"{location}: no Neuronpedia export here (expected <modelId>/<sourceId>/source.jsonl or "
            "features/batch-N.jsonl.gz under it)",
            "location",
        )
    export.sources = dict(sorted(export.sources.items()))
    return export


class RemoteFiles:
    """The export's files, downloaded under ``mirror`` (``DOWNLOAD_DIR/BUCKET``) by key as the importer reaches them.

    Implements :class:`~interpedia.ingest.exportfiles.ExportFiles` for :func:`import_source_dir`.
    """

    def __init__(self, fetcher: Fetcher, mirror: Path, *, ahead: int = 4, keep: bool = False) -> None:
        self.fetcher, self.mirror, self.keep = fetcher, mirror, keep
        self._objects: dict[Path, RemoteObject] = {}
        self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="download", disable=None)
        self._bar_lock = threading.Lock()
        self._ahead = FetchAhead(fetcher, ahead=ahead, keep=keep, progress=self._progress)

    def _progress(self, nbytes: int) -> None:
        with self._bar_lock:
            self._bar.update(nbytes)

    def _expect(self, nbytes: int) -> None:
        with self._bar_lock:
            self._bar.total = (self._bar.total or 0) + nbytes
            self._bar.refresh()

    def path(self, obj: RemoteObject) -> Path:
        """Where ``obj`` is downloaded; Invalid for a key that would land outside the download directory."""
        parts = obj.key.split("/")
        if obj.key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise Invalid(f"s3://{self.fetcher.bucket}/{obj.key}: a key this importer will not write to disk", "key")
        return self.mirror.joinpath(*parts)

    def add(self, objects: Sequence[RemoteObject]) -> None:
        """Make these batch files known (``batches`` lists them; nothing is downloaded yet)."""
        self._objects.update((self.path(o), o) for o in objects)

    def fetch_now(self, objects: Sequence[RemoteObject]) -> None:
        """Download these (small catalogue files) before going on."""
        self._expect(sum(o.size for o in objects))
        for obj in objects:
            self.fetcher.fetch(obj, self.path(obj), progress=self._progress)

    def discard(self, objects: Sequence[RemoteObject]) -> None:
        """Delete these downloads (and the directories they leave empty), unless downloads are kept."""
        if self.keep:
            return
        dirs: set[Path] = set()
        for obj in objects:
            path = self.path(obj)
            for leftover in (path, etag_path(path)):
                leftover.unlink(missing_ok=True)
            dirs.update(p for p in path.parents if self.mirror in p.parents)
        for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                directory.rmdir()
            except OSError:
                pass  # not empty: other downloads (kept, or of a failed run) are still there

    def batches(self, directory: Path) -> list[tuple[Path, int]]:
        """The listed ``batch-N`` files of ``directory``, by N, with their sizes."""
        numbered = [(batch_number(p.name), p) for p in self._objects if p.parent == directory]
        return [(p, self._objects[p].size) for _, p in sorted((n, p) for n, p in numbered if n is not None)]

    def fetch(self, files: Sequence[Path]) -> None:
        """Start downloading these, in this order, a few ahead of the importer."""
        self._expect(sum(self._objects[f].size for f in files))
        self._ahead.want([(f, self._objects[f]) for f in files])

    def local(self, file: Path) -> Path:
        """``file`` once downloaded and checked."""
        return self._ahead.wait(file)

    def release(self, file: Path) -> None:
        """``file`` is imported: delete it (unless kept) and download the next."""
        self._ahead.release(file)

    def stop(self) -> None:
        """Break off the downloads (partial files stay, for a rerun to resume)."""
        self._ahead.stop()

    def close(self) -> None:
        """Stop the download threads and the progress bar."""
        self._ahead.close()
        self._bar.close()


def import_remote(
    location: str,
    factory: sessionmaker[Session],
    *,
    options: RemoteOptions,
    creator_name: str = "bot",
    force: bool = False,
    batch_size: int = 256,
    embed: EmbedTexts | None = None,
) -> RemoteImportSummary:
    """Import the Neuronpedia export at an ``s3://`` or ``http(s)://`` bucket address, downloading as it goes.

    Resumable as a local import is: batches already in the database are skipped (and their files not
    downloaded), whole downloads are kept until imported, and a partial one is resumed.
    """
    loc = replace(parse_location(location, endpoint_url=options.endpoint_url), unsigned=options.unsigned)
    client = make_client(loc, options)
    export = find_export(client, loc)
    log.info("%s: %d sources to import", loc, len(export.sources))
    fetcher = Fetcher(client, loc.bucket, attempts=options.attempts, unsigned=options.unsigned)
    files = RemoteFiles(fetcher, options.download_dir / loc.bucket, ahead=options.ahead, keep=options.keep)
    try:
        with fewer_collections():
            importer = BatchImporter(factory, creator_name=creator_name, force=force, embed=embed)
            if export.config:
                files.fetch_now(export.config)
                import_config(files.path(export.config[0]).parent, factory)
                files.discard(export.config)
            for prefix, objects in export.sources.items():
                catalogue = [o for o in objects if o.key.rsplit("/", 1)[-1] in CATALOGUE_FILES]
                files.fetch_now(catalogue)
                files.add([o for o in objects if o not in catalogue])
                import_source_dir(files.mirror.joinpath(*prefix.rstrip("/").split("/")), importer, batch_size, files)
                files.discard(objects)
            summary = importer.finish()
    finally:
        files.close()
    return RemoteImportSummary(summary, fetcher.stats)
