"""Downloading a bucket's objects to disk: resumable per file, checked against the listing, fetched ahead.

A file is written as ``NAME.part`` and becomes ``NAME`` only once its size matches the listing and, for an
object uploaded in one part (whose ETag is its MD5), its MD5 matches the ETag. ``NAME.etag`` records which
version of the object the bytes on disk belong to, so a rerun keeps a whole file, resumes a partial one
with a ranged GET (``If-Match`` the same ETag), and starts over when the object changed. Request-level
failures (a 500, a refused connection) are retried by botocore; a body cut short, or bytes that do not
match, are retried here from where they stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError
from tqdm import tqdm

from interpedia.errors import Unavailable

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")


class DownloadFailed(Unavailable):
    """An object could not be downloaded whole: the server failed, or sent other bytes than it listed."""


class _Stopped(Exception):
    """The import stopped while this file was downloading; what arrived stays as ``.part`` for a rerun."""


@dataclass(frozen=True)
class RemoteObject:
    """One object of a listing: its key, its size and its ETag (without quotes)."""

    key: str
    size: int
    etag: str

    @property
    def md5(self) -> str | None:
        """The content's MD5 when the ETag is one (one-part uploads; a multipart ETag ends in ``-<parts>``)."""
        return self.etag if _MD5_ETAG.match(self.etag) else None


@dataclass
class DownloadStats:
    """What the downloads of an import did."""

    files: int = 0
    bytes: int = 0
    reused: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def describe(self) -> str:
        """One line for the CLI."""
        return (
            f"downloaded {self.files} files ({tqdm.format_sizeof(self.bytes, 'B', 1024)}, {self.retries} retries), "
            f"{self.reused} already downloaded"
        )


def etag_path(dest: Path) -> Path:
    """Where the ETag of the version whose bytes are at ``dest`` (or ``dest.part``) is kept."""
    return dest.with_name(dest.name + ".etag")


def part_path(dest: Path) -> Path:
    """Where a download in progress writes."""
    return dest.with_name(dest.name + ".part")


def _read_etag(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _discard(part: Path, progress: Callable[[int], None]) -> None:
    """Throw away a partial download (its bytes leave the progress count)."""
    if part.exists():
        progress(-part.stat().st_size)
        part.unlink()


def _problem(part: Path, obj: RemoteObject) -> str | None:
    """What is wrong with a finished download, or None when it matches the listing."""
    size = part.stat().st_size
    if size != obj.size:
        return f"got {size} bytes, the listing says {obj.size}"
    if obj.md5 is not None and _md5(part) != obj.md5:
        return f"the content's MD5 is not its ETag {obj.etag}"
    return None


class Fetcher:
    """Downloads single objects of one bucket with a botocore S3 client (thread-safe)."""

    def __init__(
        self, client: Any, bucket: str, *, attempts: int = 4, retry_wait_s: float = 0.5, unsigned: bool = True
    ) -> None:
        self.client, self.bucket, self.unsigned = client, bucket, unsigned
        self.attempts, self.retry_wait_s = max(1, attempts), retry_wait_s
        self.stats = DownloadStats()

    def url(self, obj: RemoteObject) -> str:
        """``s3://bucket/key``, how messages name an object."""
        return f"s3://{self.bucket}/{obj.key}"

    def fetch(
        self, obj: RemoteObject, dest: Path, *, stop: threading.Event | None = None, progress: Callable[[int], None]
    ) -> None:
        """Make ``dest`` a whole, checked copy of ``obj``; DownloadFailed naming the object when it cannot."""
        stamp = etag_path(dest)
        if _read_etag(stamp) == obj.etag and dest.is_file() and dest.stat().st_size == obj.size:
            with self.stats.lock:
                self.stats.reused += 1
            progress(obj.size)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(dest)
        dest.unlink(missing_ok=True)
        if _read_etag(stamp) != obj.etag:  # bytes of another version, or none: start over
            part.unlink(missing_ok=True)
            stamp.write_text(obj.etag + "\n")
        elif part.exists():  # an earlier run's partial download of this version: resumed below
            progress(part.stat().st_size)
        failure = ""
        for attempt in range(self.attempts):
            if attempt:
                with self.stats.lock:
                    self.stats.retries += 1
                log.warning("%s: %s; retrying (%d of %d)", self.url(obj), failure, attempt + 1, self.attempts)
                if (stop or threading.Event()).wait(min(self.retry_wait_s * 2 ** (attempt - 1), 10.0)):
                    raise _Stopped(self.url(obj))
            try:
                fetched = self._rest(obj, part, stop, progress)
            except FlexibleChecksumError as exc:  # botocore's CRC of a whole-object GET: these bytes are wrong
                failure = f"the bytes do not match the object's checksum ({exc})"
                _discard(part, progress)
                continue
            except (BotoCoreError, OSError) as exc:  # the body was cut short, a read timed out: keep what came
                failure = f"the transfer broke off ({exc})"
                continue
            with self.stats.lock:
                self.stats.bytes += fetched
            problem = _problem(part, obj)
            if problem is None:
                os.replace(part, dest)
                with self.stats.lock:
                    self.stats.files += 1
                return
            failure = problem
            _discard(part, progress)
        raise DownloadFailed(f"{self.url(obj)}: download failed after {self.attempts} attempts: {failure}")

    def _rest(
        self, obj: RemoteObject, part: Path, stop: threading.Event | None, progress: Callable[[int], None]
    ) -> int:
        """Append what ``part`` lacks of the object; the bytes fetched."""
        offset = part.stat().st_size if part.exists() else 0
        if offset > obj.size:
            _discard(part, progress)
            offset = 0
        if offset == obj.size and offset:
            return 0
        request = {"Bucket": self.bucket, "Key": obj.key}
        if obj.etag:  # a resumed download must not mix two versions of the object
            request["IfMatch"] = f'"{obj.etag}"'
        if offset:
            request["Range"] = f"bytes={offset}-"
        try:
            response = self.client.get_object(**request)
        except ClientError as exc:
            raise self._refused(obj, exc) from None
        except BotoCoreError as exc:  # botocore has retried the connection already
            raise DownloadFailed(f"{self.url(obj)}: cannot download ({exc})") from None
        if offset and "ContentRange" not in response:  # the server ignored the range: take the whole body
            _discard(part, progress)
        fetched = 0
        body = response["Body"]
        try:
            with open(part, "ab") as fh:
                for chunk in body.iter_chunks(_CHUNK):
                    if stop is not None and stop.is_set():
                        raise _Stopped(self.url(obj))
                    fh.write(chunk)
                    fetched += len(chunk)
                    progress(len(chunk))
        finally:
            body.close()
        return fetched

    def _refused(self, obj: RemoteObject, exc: ClientError) -> DownloadFailed:
        """The error for an answer botocore did not retry, or retried in vain."""
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 412 or error.get("Code") == "PreconditionFailed":
            return DownloadFailed(f"{self.url(obj)} changed on the server since it was listed; run the import again")
        if status == 404 or error.get("Code") == "NoSuchKey":
            return DownloadFailed(f"{self.url(obj)} was listed but is gone; run the import again")
        if status == 403:
            return DownloadFailed(
                f"{self.url(obj)}: the server refused to send it{' anonymously' if self.unsigned else ''}; for a "
                "private bucket set INTERPEDIA_S3_UNSIGNED=false and your AWS credentials"
            )
        code = error.get("Code", "")
        return DownloadFailed(
            f"{self.url(obj)}: the server answered {status}{'' if code == str(status) else ' ' + code}"
        )


class FetchAhead:
    """Downloads files in the order the importer reads them, at most ``ahead`` of them not yet released.

    Up to ``ahead`` files download at once, and a finished file waits on disk until the importer releases
    it, so at most ``ahead`` files are on disk at a time; a released file is deleted unless ``keep``. The
    importer reads (and releases) files in the order given, so the file it waits for is always among the
    ``ahead`` started. Safe to call from several threads (a reader thread waits for its file).
    """

    def __init__(
        self, fetcher: Fetcher, *, ahead: int = 4, keep: bool = False, progress: Callable[[int], None]
    ) -> None:
        self.fetcher, self.ahead, self.keep, self.progress = fetcher, max(1, ahead), keep, progress
        self._pool = ThreadPoolExecutor(max_workers=self.ahead, thread_name_prefix="interpedia-download")
        self._queue: deque[tuple[Path, RemoteObject]] = deque()
        self._started: dict[Path, Future[None]] = {}
        self._objects: dict[Path, RemoteObject] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()

    def want(self, items: Sequence[tuple[Path, RemoteObject]]) -> None:
        """Queue these (destination, object) pairs, in reading order, and start the first ones."""
        with self._changed:
            self._queue.extend(items)
            self._objects.update(items)
            self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._started) < self.ahead and not self._stop.is_set():
            dest, obj = self._queue.popleft()
            self._started[dest] = self._pool.submit(
                self.fetcher.fetch, obj, dest, stop=self._stop, progress=self.progress
            )
        self._changed.notify_all()

    def wait(self, dest: Path) -> Path:
        """``dest`` once it is downloaded and checked; DownloadFailed when it could not be."""
        with self._changed:
            obj = self._objects[dest]  # KeyError: a file never asked for
            while dest not in self._started and not self._stop.is_set():
                self._changed.wait()
            future = self._started.get(dest)
        try:
            if future is None:
                raise _Stopped(dest.name)
            future.result()
        except (_Stopped, CancelledError):
            raise DownloadFailed(f"the import stopped before {self.fetcher.url(obj)} was downloaded") from None
        return dest

    def release(self, dest: Path) -> None:
        """The importer is done with ``dest``: delete it (unless ``keep``) and start the next download."""
        with self._changed:
            self._started.pop(dest, None)
            self._fill()
        if not self.keep:
            dest.unlink(missing_ok=True)
            etag_path(dest).unlink(missing_ok=True)

    def stop(self) -> None:
        """Start nothing more and break off the downloads in progress (their ``.part`` files stay)."""
        self._stop.set()
        with self._changed:
            self._queue.clear()
            self._changed.notify_all()

    def close(self) -> None:
        """Stop and wait for the download threads."""
        self.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
