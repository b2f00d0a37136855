"""The feature API's fast path (issue 19): anonymous ``GET /api/feature/...`` answered before FastAPI's routing
must be exactly what the route answers (body, status, headers), and everything it does not handle must reach the
route unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)

import interpedia.web.api.features as feature_route
from interpedia.ingest import import_path

API = "/api/feature/tiny-test/0-res-test/"
SAME = ("etag", "cache-control", "content-type", "content-length", "content-security-policy", "x-content-type-options")


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> None:
    path = tmp_path / "dash"
    path.mkdir()
    doc = {
        "model_id": "tiny-test",
        "layer": 0,
        "sae_set": "res-test",
        "sae_id_suffix": None,
        "features": [make_feature(i) for i in range(3)],
    }
    (path / "batch-0.json").write_text(json.dumps(doc))
    import_path(path, factory)


def _route_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the route answered a request the fast path should have")

    monkeypatch.setattr(feature_route, "answer_feature", refuse)


def test_the_fast_path_answers_as_the_route_does(
    client: Any, site: None, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed = {i: client.get(API + str(i), headers={"x-api-key": api_key}) for i in range(3)}  # the route
    _route_only(monkeypatch)
    for i in range(3):
        for _ in range(2):  # the general path, then (Postgres) the narrow one
            fast = client.get(API + str(i))
            assert fast.status_code == 200 and fast.content == keyed[i].content
            assert {h: fast.headers.get(h) for h in SAME} == {h: keyed[i].headers.get(h) for h in SAME}
    etag = keyed[1].headers["etag"]
    not_modified = client.get(API + "1", headers={"if-none-match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag and "content-type" not in not_modified.headers
    head = client.head(API + "1")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == keyed[1].headers["content-length"]
    assert client.get(API + "1/").content == keyed[1].content  # the trailing slash a client may add


def test_what_the_fast_path_leaves_reaches_the_route(client: Any, site: None, api_key: str) -> None:
    missing = client.get(API + "7")
    assert missing.status_code == 404 and "tiny-test/0-res-test/7" in missing.json()["message"]
    assert client.get("/api/feature/tiny-test/9-res-nope/1").status_code == 404
    assert client.get(API + "1x").status_code == 422  # the route's index check
    assert client.get(API + "1", headers={"x-api-key": "wrong"}).status_code == 401
    assert client.post(API + "1").status_code == 405
