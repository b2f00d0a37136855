"""Absolute URLs in answers open where the server is: its port and host by default, the configured base URL
when set, a trusted proxy's forwarded scheme and host; the session cookie's Secure flag and HSTS follow."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import make_graph, write_saedashboard_dir
from fastapi.testclient import TestClient

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.ingest import import_path
from interpedia.store.steering import save_output, steer_key
from interpedia.web.app import create_app

HTML = {"accept": "text/html"}
MODEL, SOURCE = "tiny-test", "0-res-test"


@pytest.fixture
def imported(factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=6), factory)


def _saved_steer_output(factory: Any) -> str:
    settings = {"temperature": 0.5, "n_tokens": 4, "freq_penalty": 0.0, "seed": 1, "strength_multiplier": 1.0}
    settings |= {"steer_method": "SIMPLE_ADDITIVE", "n_logprobs": 0}
    with transaction(factory) as session:
        row = save_output(
            session,
            steer_key("STEERED", MODEL, settings, "hi", []),
            kind="STEERED",
            model_id=MODEL,
            settings=settings,
            input_text="hi",
            output_text="hi there",
            features=[],
            logprobs=None,
            creator_id=None,
        )
        return str(row.id)


def _answered_urls(base: str, key: str, factory: Any) -> dict[str, str]:
    """Every kind of URL the API answers, from a server at ``base``."""
    headers = {"x-api-key": key}
    feature = {"modelId": MODEL, "layer": SOURCE, "index": 2}
    urls: dict[str, str] = {}

    def post(path: str, body: Any) -> dict[str, Any]:
        resp = httpx.post(f"{base}{path}", json=body, headers=headers, timeout=60)
        assert resp.status_code == 200, (path, resp.text)
        return resp.json()  # type: ignore[no-any-return]

    lst = post("/api/list/new-with-features", {"name": "cats", "features": [feature]})
    urls["list/new-with-features"] = lst["url"]
    urls["list/new"] = post("/api/list/new", {"name": "dogs"})["url"]
    urls["list/get"] = post("/api/list/get", {"listId": lst["id"]})["url"]
    urls["list/update"] = post("/api/list/update", {"listId": lst["id"], "name": "cats!"})["url"]
    upload = {"modelId": "url-model", "source": "0-url-set", "features": [{"index": 0, "activations": []}]}
    post("/api/model/new", {"id": "url-model", "layers": 1})
    post("/api/source-set/new", {"modelId": "url-model", "name": "url-set", "description": "", "url": ""})
    urls["feature/upload-batch"] = post("/api/feature/upload-batch", upload)["url"]
    vector = {"modelId": "url-model", "layerNumber": 0, "hookType": "resid-pre", "vector": [0.5], "vectorLabel": "v"}
    urls["vector/new"] = post("/api/vector/new", vector)["url"]
    explanation = post("/api/explanation/new", {"feature": {**feature, "explanation": "cats"}})
    urls["explanation/new"] = explanation["url"]
    urls["steer-load"] = post("/api/steer-load", {"steerOutputId": _saved_steer_output(factory)})["shareUrl"]
    body = gzip.compress(json.dumps(make_graph(MODEL, "cat-dog")).encode())
    booked = post("/api/graph/signed-put", {"filename": "g.json", "contentLength": len(body)})
    urls["graph/signed-put"] = booked["url"]
    assert httpx.put(booked["url"], content=body).status_code == 200
    urls["graph/save-to-db"] = post("/api/graph/save-to-db", {"putRequestId": booked["putRequestId"]})["url"]
    urls["graph metadata"] = httpx.get(f"{base}/api/graph/{MODEL}/cat-dog").json()["url"]
    return urls


def test_every_url_an_answer_gives_opens_on_the_port_served(
    live_server: str, api_key: str, factory: Any, imported: None
) -> None:
    assert not live_server.endswith(":8000")
    urls = _answered_urls(live_server, api_key, factory)
    for name, url in urls.items():
        assert url.startswith(live_server + "/"), (name, url)
        if name == "graph/signed-put":
            continue  # a one-shot PUT URL, used above
        resp = httpx.get(url, headers={"x-api-key": api_key, **HTML})
        assert resp.status_code == 200, (name, url, resp.status_code)


def test_urls_follow_the_host_header_and_a_trusted_proxy_only(settings: Settings, api_key: str, imported: None) -> None:
    headers = {"x-api-key": api_key}
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "wiki.example.org"}

    def list_url(client: TestClient, extra: dict[str, str]) -> str:
        resp = client.post("/api/list/new", json={"name": "n"}, headers={**headers, **extra})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["url"])

    with TestClient(create_app(settings)) as client:
        assert list_url(client, {"host": "interp.lab:9123"}).startswith("http://interp.lab:9123/list/")
        # anyone can send X-Forwarded-*: without the setting they change nothing
        assert list_url(client, {"host": "interp.lab:9123", **forwarded}).startswith("http://interp.lab:9123/")
        # a Host that is not a host name is not echoed into links
        assert "evil" not in list_url(client, {"host": "evil.org/phish?"})
    with TestClient(create_app(settings.model_copy(update={"trust_forwarded_for": True}))) as client:
        assert list_url(client, {"host": "10.0.0.5:8000", **forwarded}).startswith("https://wiki.example.org/list/")
        chained = {"x-forwarded-proto": "http, https", "x-forwarded-host": "client.claims, wiki.example.org"}
        assert list_url(client, chained).startswith("https://wiki.example.org/")
    fixed = settings.model_copy(update={"public_base_url": "https://np.example.org/"})
    with TestClient(create_app(fixed)) as client:
        assert list_url(client, {"host": "interp.lab:9123", **forwarded}).startswith("https://np.example.org/list/")


def _cookie_and_hsts(client: TestClient, headers: dict[str, str] | None = None) -> tuple[bool, bool]:
    client.cookies.clear()  # a browser without a session gets one
    resp = client.get("/signup", headers={**HTML, **(headers or {})})
    assert resp.status_code == 200 and "set-cookie" in resp.headers
    return "secure" in resp.headers["set-cookie"].lower(), "strict-transport-security" in resp.headers


def test_secure_cookie_and_hsts_follow_how_clients_reach_the_server(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert _cookie_and_hsts(client) == (False, False)
        assert _cookie_and_hsts(client, {"x-forwarded-proto": "https"}) == (False, False)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert _cookie_and_hsts(client) == (True, True)
    with TestClient(create_app(settings.model_copy(update={"trust_forwarded_for": True}))) as client:
        assert _cookie_and_hsts(client, {"x-forwarded-proto": "https"}) == (True, True)
    with TestClient(create_app(settings.model_copy(update={"public_base_url": "https://np.example.org"}))) as client:
        assert _cookie_and_hsts(client) == (True, True)
