"""A real S3-compatible server for the tests: moto's S3 in server mode, over HTTP on a free port.

Between the client and moto sits a switch that breaks the downloads of chosen objects the way networks and
servers do (a 500, a connection dropped mid-body, a short body, flipped bytes) and a log of every object GET.
Everything else (listing, ETags, ranges, If-Match, bucket policies) is moto's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parts import require_module

FAULTS = ("500", "drop", "short", "corrupt")


@dataclass(frozen=True)
class Get:
    """One object GET the server saw: its key and its Range header (None for the whole object)."""

    key: str
    range: str | None


class _Switch:
    """WSGI middleware around moto's app: per-key queues of faults, each used once, and the GET log."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.faults: dict[str, list[str]] = {}
        self.gets: list[Get] = []

    def _object_key(self, environ: dict[str, Any]) -> str | None:
        if environ["REQUEST_METHOD"] != "GET":
            return None
        _, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")  # path style: /bucket/key
        return key or None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        key = self._object_key(environ)
        if key is None:
            return self.app(environ, start_response)
        with self.lock:
            self.gets.append(Get(key, environ.get("HTTP_RANGE")))
            queue = self.faults.get(key, [])
            fault = queue.pop(0) if queue else None
        if fault == "500":
            start_response("500 Internal Server Error", [("Content-Type", "application/xml")])
            return [b"<Error><Code>InternalError</Code><Message>injected by the test</Message></Error>"]
        if fault is None:
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = status, headers

        body = b"".join(self.app(environ, keep))
        if fault == "drop":  # the headers promise the whole body; half of it comes, then the connection closes
            start_response(captured["status"], captured["headers"])
            return self._half_then_drop(body)
        body = body[: len(body) // 2] if fault == "short" else bytes(b ^ 0xFF for b in body)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _half_then_drop(body: bytes) -> Iterator[bytes]:
        yield body[: len(body) // 2]
        raise ConnectionAbortedError("connection dropped by the test")


def _quiet_handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class Quiet(MotoRequestHandler):  # type: ignore[misc]
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No line per request on stderr."""

    return Quiet


class S3Server:
    """moto's S3 on 127.0.0.1 with a fault switch; ``client`` is a signed client that writes buckets."""

    def __init__(self) -> None:
        require_module("moto.moto_server.werkzeug_app")
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.switch = _Switch(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, self.switch, threaded=True, request_handler=_quiet_handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()
        import boto3
        from botocore.config import Config

        # Objects are stored without a CRC checksum unless asked, as the public bucket's older uploads are: then
        # only interpedia's own checks (size, MD5 ETag) stand between a bad body and the importer.
        self.client = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(request_checksum_calculation="when_required"),
        )

    def stop(self) -> None:
        """Shut the server down."""
        self._server.shutdown()
        self._thread.join(timeout=10)

    def break_gets(self, key: str, *faults: str) -> None:
        """The next GETs of ``key`` fail, one fault each, in this order; then it is served normally again."""
        with self.switch.lock:
            self.switch.faults[key] = list(faults)

    def heal(self) -> None:
        """No more faults."""
        with self.switch.lock:
            self.switch.faults.clear()

    def gets(self) -> list[Get]:
        """The object GETs seen so far, then forget them."""
        with self.switch.lock:
            seen, self.switch.gets = self.switch.gets, []
        return seen

    def public_bucket(self, name: str, *, public: bool = True) -> None:
        """Create a bucket that anyone may list and read (as neuronpedia-datasets is), or a private one."""
        self.client.create_bucket(Bucket=name)
        if public:
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": ["s3:GetObject", "s3:ListBucket"],
                        "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                    }
                ],
            }
            self.client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))

    def upload_tree(self, bucket: str, root: Path, prefix: str = "") -> dict[str, int]:
        """Upload every file under ``root`` as ``prefix + relative path``; key -> size."""
        sizes = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = prefix + path.relative_to(root).as_posix()
            self.client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            sizes[key] = path.stat().st_size
        return sizes

    def upload_with_checksum(self, bucket: str, key: str, data: bytes) -> None:
        """Upload one object with a CRC32 checksum (what current AWS tools add), which botocore then checks."""
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32")

    def upload_multipart(self, bucket: str, key: str, data: bytes, part_size: int) -> str:
        """Upload ``data`` in parts (an ETag ``<md5 of md5s>-<parts>``, as the AWS CLI makes for large files)."""
        upload = self.client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, start in enumerate(range(0, len(data), part_size), 1):
            chunk = data[start : start + part_size]
            reply = self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk)
            etag = reply["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        done = self.client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
        return str(done["ETag"]).strip('"')
