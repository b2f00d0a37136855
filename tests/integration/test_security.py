"""HTTP hardening: security headers, rate limits, body limits, CORS, CSRF on every form, key comparison."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from factories import import_embed
from fastapi.testclient import TestClient

from interpedia.config import DEFAULT_RATE_LIMITS, Settings
from interpedia.web.app import create_app
from interpedia.web.security import RateLimiter

HTML = {"accept": "text/html"}
ERROR_KEYS = {"error", "message", "status", "field"}


def _client(settings: Settings, **overrides: Any) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=overrides)))


@pytest.fixture
def plain(settings: Settings) -> Iterator[TestClient]:
    """A client on the default settings."""
    with _client(settings) as client:
        yield client


def _assert_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS and body["status"] == status and body["error"]
    return body  # type: ignore[no-any-return]


def _assert_hardened(resp: Any) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "same-origin"
    assert resp.headers["x-frame-options"] == "SAMEORIGIN"
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp
    script = re.search(r"(script-src|default-src) ([^;]*)", csp)
    assert script and "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_security_headers_on_every_kind_of_response(plain: TestClient) -> None:
    responses = {
        "page": plain.get("/", headers=HTML),
        "json api": plain.post("/api/model/list"),
        "page 404": plain.get("/no-such-model", headers=HTML),
        "api 404": plain.get("/api/feature/none/0-x/1"),
        "422": plain.post(
            "/api/model/new",
            content=b"{not json",
            headers={"content-type": "application/json", "x-api-key": "sk-np-wrong"},
        ),
        "static": plain.get("/static/app.css"),
        "health": plain.get("/health"),
    }
    for name, resp in responses.items():
        assert resp.status_code < 500, name
        _assert_hardened(resp)
    page_csp = responses["page"].headers["content-security-policy"]
    assert "script-src 'self'" in page_csp and "object-src 'none'" in page_csp
    assert responses["json api"].headers["content-security-policy"].startswith("default-src 'none'")


def test_frame_ancestors_is_configurable(settings: Settings) -> None:
    with _client(settings, frame_ancestors="'none'") as client:
        resp = client.get("/", headers=HTML)
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY"


def test_default_rate_limits_are_neuronpedias_routes() -> None:
    assert DEFAULT_RATE_LIMITS["/api/model/new"] == 5
    assert DEFAULT_RATE_LIMITS["/api/explanation/search*"] == 200
    assert DEFAULT_RATE_LIMITS["/api/steer*"] == 240
    limiter = RateLimiter(DEFAULT_RATE_LIMITS, 3600)
    for path, pattern in [
        ("/api/explanation/search-all", "/api/explanation/search*"),
        ("/api/steer-chat/", "/api/steer*"),
        ("/api/activation/new", "/api/activation/new"),
    ]:
        rule = limiter.rule_for(path)
        assert rule is not None and rule.pattern == pattern
    assert limiter.rule_for("/api/feature/m/0-x/1") is None
    assert limiter.rule_for("/api/activation/new-ish") is None


def test_default_limit_on_model_new_answers_429_with_retry_after(plain: TestClient, api_key: str) -> None:
    headers = {"x-api-key": api_key}
    for n in range(5):
        resp = plain.post("/api/model/new", json={"id": f"m{n}", "layers": 1}, headers=headers)
        assert resp.status_code == 200, resp.text
    resp = plain.post("/api/model/new", json={"id": "m5", "layers": 1}, headers=headers)
    body = _assert_error(resp, 429)
    assert "/api/model/new" in body["error"]
    retry = int(resp.headers["retry-after"])
    assert 3600 / 5 - 5 <= retry <= 3600 / 5 + 1  # one request comes back every 720 s
    _assert_hardened(resp)
    # Another caller (no key: its IP) still has its own budget; unlimited routes are untouched.
    _assert_error(plain.post("/api/model/new", json={"id": "m6", "layers": 1}), 401)
    assert plain.post("/api/model/list").status_code == 200


def test_limits_are_per_key_and_per_ip_and_configurable(settings: Settings, api_key: str) -> None:
    rules = {"/api/model/list": 3}
    with _client(settings, rate_limits=rules, trust_forwarded_for=True) as client:
        ip_a = {"x-forwarded-for": "203.0.113.7"}
        assert [client.post("/api/model/list", headers=ip_a).status_code for _ in range(4)] == [200, 200, 200, 429]
        # The same IP with a key is counted by key, and another IP has its own bucket.
        assert client.post("/api/model/list", headers={**ip_a, "x-api-key": api_key}).status_code == 200
        assert client.post("/api/model/list", headers={"x-forwarded-for": "198.51.100.2"}).status_code == 200
        # Trailing slashes do not dodge the limit.
        assert client.post("/api/model/list/", headers=ip_a).status_code == 429
    with _client(settings, rate_limits=rules) as client:
        # Without trust in the proxy header, a forged X-Forwarded-For changes nothing.
        codes = [
            client.post("/api/model/list", headers={"x-forwarded-for": f"10.0.0.{n}"}).status_code for n in range(4)
        ]
        assert codes == [200, 200, 200, 429]
    with _client(settings, rate_limits=rules, rate_limit_enabled=False) as client:
        assert {client.post("/api/model/list").status_code for _ in range(5)} == {200}


def test_bucket_refills_over_time() -> None:
    limiter = RateLimiter({"/x": 2}, 10.0)
    rule = limiter.rule_for("/x")
    assert rule is not None
    assert limiter.hit(rule, "a", now=0.0) == 0.0
    assert limiter.hit(rule, "a", now=0.0) == 0.0
    assert limiter.hit(rule, "a", now=0.0) == pytest.approx(5.0)
    assert limiter.hit(rule, "a", now=5.0) == 0.0
    assert limiter.hit(rule, "b", now=5.0) == 0.0
    # Long idle buckets are swept away, and the request that triggers the sweep still counts.
    assert limiter.hit(rule, "a", now=1000.0) == 0.0
    assert limiter.hit(rule, "a", now=1000.0) == 0.0
    assert limiter.hit(rule, "a", now=1000.0) > 0
    assert ("/x", "b") not in limiter.buckets


def test_oversized_bodies_get_413_in_the_error_shape(settings: Settings) -> None:
    with _client(settings, max_body_bytes=1000) as client:
        big = b'{"x": "' + b"a" * 5000 + b'"}'
        resp = client.post("/api/feature/upload-batch", content=big, headers={"content-type": "application/json"})
        body = _assert_error(resp, 413)
        assert "INTERPEDIA_MAX_BODY_BYTES" in body["error"]
        _assert_hardened(resp)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
            for _ in range(10):
                yield b"a" * 500

        _assert_error(
            client.post("/api/explanation/new", content=chunks(), headers={"content-type": "application/json"}), 413
        )


def test_cors_is_off_by_default(plain: TestClient) -> None:
    resp = plain.post("/api/model/list", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers
    pre = plain.options(
        "/api/model/list", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    with _client(settings, cors_origins=["https://lab.example"]) as client:
        ok = client.post("/api/model/list", headers={"origin": "https://lab.example"})
        assert ok.headers["access-control-allow-origin"] == "https://lab.example"
        pre = client.options(
            "/api/model/list",
            headers={
                "origin": "https://lab.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "x-api-key",
            },
        )
        assert pre.status_code == 200 and "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        other = client.post("/api/model/list", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _all_routes(routes: list[Any]) -> Iterator[Any]:
    # FastAPI keeps included routers as nested branches; walk them (duck-typed across FastAPI versions).
    for route in routes:
        nested = getattr(route, "effective_candidates", None)
        if callable(nested):
            yield from _all_routes(nested())
        elif hasattr(route, "routes") and not hasattr(route, "methods"):
            yield from _all_routes(list(route.routes))
        else:
            yield route


def test_every_form_post_needs_the_csrf_token(plain: TestClient, api_key: str) -> None:
    form_posts = sorted(
        {
            r.path
            for r in _all_routes(plain.app.routes)  # type: ignore[attr-defined]
            if "POST" in (getattr(r, "methods", None) or ())
            and not str(getattr(r, "path", "")).startswith(("/api", "/v1"))
        }
    )
    assert {"/signin", "/signout", "/model/new"} <= set(form_posts)
    # A signed-in browser (session cookie set), posting each form without its token, or with a wrong one.
    form = plain.get("/signin", headers=HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    signed = plain.post(
        "/signin", data={"api_key": api_key, "csrf_token": token.group(1)}, headers=HTML, follow_redirects=False
    )
    assert signed.status_code == 303
    for path in form_posts:
        for extra in ({}, {"csrf_token": "forged-token-forged-token"}):
            resp = plain.post(
                _fill(path),
                data={"name": "x", "id": "x", "layers": "1", **extra},
                headers={"accept": "application/json"},
                follow_redirects=False,
            )
            assert resp.status_code == 403, f"{path} accepted a form post without its CSRF token ({resp.status_code})"


def test_api_keys_are_compared_in_constant_time(
    plain: TestClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    from interpedia.store import users

    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(users.hmac, "compare_digest", spy)
    assert plain.post("/api/model/list", headers={"x-api-key": api_key}).status_code == 200
    assert calls, "the API key was not compared with hmac.compare_digest"
    # The database holds only the SHA-256 hash, never the key itself.
    assert all(api_key not in (a, b) for a, b in calls)


# --- private and unlisted models and sources ------------------------------------------------------------


@pytest.fixture
def catalogue(settings: Settings, factory: Any, tmp_path: Any) -> dict[str, str]:
    """pub-m (public, with a private source 1-res-a), priv-m (private) and unl-m (unlisted); keys of their users."""
    from factories import write_saedashboard_dir
    from sqlalchemy import select

    from interpedia.db import transaction
    from interpedia.db.tables import Model, Source, SourceSet
    from interpedia.ingest import import_path
    from interpedia.store.records import ExplanationRecord, FeatureRecord
    from interpedia.store.users import create_api_key, ensure_user
    from interpedia.store.writer import write_features

    for model, layer in [("pub-m", 0), ("pub-m", 1), ("priv-m", 0), ("unl-m", 0)]:
        import_path(
            write_saedashboard_dir(
                tmp_path / f"{model}-{layer}", n_features=3, model_id=model, layer=layer, sae_set="res-a"
            ),
            factory,
        )
    with transaction(factory) as session:
        owner = ensure_user(session, "owner")
        keys = {
            "owner": create_api_key(session, owner),
            "stranger": create_api_key(session, ensure_user(session, "stranger")),
            "admin": create_api_key(session, ensure_user(session, "boss", admin=True)),
        }
        priv = session.get(Model, "priv-m")
        assert priv is not None
        priv.visibility, priv.creator_id = "PRIVATE", owner.id
        unl = session.get(Model, "unl-m")
        assert unl is not None
        unl.visibility = "UNLISTED"
        hidden = session.scalar(select(Source).where(Source.model_id == "pub-m", Source.name == "1-res-a"))
        assert hidden is not None
        hidden.visibility, hidden.creator_id = "PRIVATE", owner.id
        session.flush()
        for source in session.scalars(select(Source)):
            write_features(
                session,
                source,
                [
                    FeatureRecord(
                        index=0,
                        explanations=[
                            ExplanationRecord(description=f"secret laboratory plans {source.model_id} {source.name}")
                        ],
                    )
                ],
                creator_id=None,
                token_ids={},
                embed=import_embed(),
            )
        assert session.scalar(select(SourceSet).where(SourceSet.model_id == "pub-m")) is not None
    return keys


HIDDEN_URLS = [
    ("GET", "/priv-m", None),
    ("GET", "/priv-m.json", None),
    ("GET", "/priv-m/res-a.json", None),
    ("GET", "/priv-m/0-res-a", None),
    ("GET", "/priv-m/0-res-a/1", None),
    ("GET", "/priv-m/0-res-a/1.json", None),
    ("GET", "/pub-m/1-res-a", None),
    ("GET", "/pub-m/1-res-a/1", None),
    ("GET", "/pub-m/1-res-a/1.json", None),
    ("GET", "/random/priv-m.json", None),
    ("GET", "/api/feature/priv-m/0-res-a/1", None),
    ("GET", "/api/feature/pub-m/1-res-a/1", None),
    ("POST", "/api/model/get", {"id": "priv-m"}),
    ("POST", "/api/features-offset", {"modelId": "pub-m", "layer": "1-res-a"}),
    ("POST", "/api/explanation/search-model", {"modelId": "priv-m", "query": "secret laboratory plans"}),
]


def _call(client: TestClient, method: str, url: str, body: Any, key: str | None) -> Any:
    headers = {"accept": "application/json", **({"x-api-key": key} if key else {})}
    return client.request(method, url, json=body, headers=headers)


def _listed(client: TestClient, key: str | None) -> dict[str, set[str]]:
    headers = {"x-api-key": key} if key else {}
    models = {m["id"] for m in client.post("/api/model/list", headers=headers).json()}
    home = client.get("/index.json", headers=headers).json()["models"]
    home_sources = {s["id"] for m in home for st in m["sourceSets"] for s in st["sources"]}
    pub = client.get("/pub-m/res-a.json", headers=headers).json()
    found = client.post(
        "/api/explanation/search-all", json={"query": "secret laboratory plans"}, headers=headers
    ).json()["results"]
    return {
        "models": models,
        "home_models": {m["id"] for m in home},
        "home_sources": {f"{m['id']}/{s}" for m in home for s in home_sources if s},
        "set_sources": {s["id"] for s in pub["sourceSet"]["sources"]},
        "search": {f"{r['modelId']}/{r['layer']}" for r in found},
    }


def test_private_rows_are_not_found_by_others(plain: TestClient, catalogue: dict[str, str]) -> None:
    for key in (None, catalogue["stranger"]):
        for method, url, body in HIDDEN_URLS:
            resp = _call(plain, method, url, body, key)
            assert resp.status_code == 404, f"{method} {url} as {key and 'stranger' or 'anonymous'}: {resp.text[:200]}"
    # The batch lookup leaves out what it cannot show, as it does for features that do not exist.
    batch = [{"modelId": "pub-m", "layer": "1-res-a", "index": 1}, {"modelId": "pub-m", "layer": "0-res-a", "index": 1}]
    assert [f["layer"] for f in _call(plain, "POST", "/api/features", batch, None).json()] == ["0-res-a"]
    assert len(_call(plain, "POST", "/api/features", batch, catalogue["owner"]).json()) == 2
    # Nothing in the answers names what is hidden.
    assert "priv-m" not in plain.get("/index.json").text
    for who in ("owner", "admin"):
        for method, url, body in HIDDEN_URLS:
            resp = _call(plain, method, url, body, catalogue[who])
            assert resp.status_code in (200, 302), f"{method} {url} as {who}: {resp.status_code} {resp.text[:200]}"


def test_lists_and_search_leave_out_private_and_unlisted(plain: TestClient, catalogue: dict[str, str]) -> None:
    anon = _listed(plain, None)
    assert anon["models"] == anon["home_models"] == {"pub-m"}
    assert anon["set_sources"] == {"0-res-a"}
    assert anon["search"] == {"pub-m/0-res-a"}
    assert _listed(plain, catalogue["stranger"]) == anon
    owner = _listed(plain, catalogue["owner"])
    assert owner["models"] == {"pub-m", "priv-m"} and owner["set_sources"] == {"0-res-a", "1-res-a"}
    assert {"priv-m/0-res-a", "pub-m/1-res-a"} <= owner["search"] and "unl-m/0-res-a" not in owner["search"]
    assert _listed(plain, catalogue["admin"])["models"] == {"pub-m", "priv-m", "unl-m"}


def test_unlisted_rows_open_by_their_url(plain: TestClient, catalogue: dict[str, str]) -> None:
    assert plain.get("/unl-m/0-res-a/1.json").status_code == 200
    assert plain.get("/api/feature/unl-m/0-res-a/1").status_code == 200
    assert plain.get("/unl-m", headers=HTML).status_code == 200
    found = plain.post("/api/explanation/search-model", json={"modelId": "unl-m", "query": "secret laboratory plans"})
    assert found.status_code == 200 and found.json()["results"]


def test_signed_in_browser_sees_its_own_private_model(plain: TestClient, catalogue: dict[str, str]) -> None:
    assert plain.get("/priv-m/0-res-a/1", headers=HTML).status_code == 404
    form = plain.get("/signin", headers=HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    plain.post("/signin", data={"api_key": catalogue["owner"], "csrf_token": token.group(1)}, headers=HTML)
    assert plain.get("/priv-m/0-res-a/1", headers=HTML).status_code == 200
