"""HEAD is answered like GET, without a body, on pages and API routes."""

from __future__ import annotations

from typing import Any


def test_head_matches_get_without_body(client: Any) -> None:
    """Same status and content type as GET; no body; unknown paths stay 404."""
    for path in ["/", "/health", "/api/global"]:
        got = client.get(path)
        head = client.head(path)
        assert head.status_code == got.status_code, path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
        assert head.content == b"", path
    assert client.head("/no-such-model-xyz").status_code == 404
