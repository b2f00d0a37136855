"""XSS and injection corpus (issue #9): features whose tokens, logits, explanations and catalogue texts hold
script tags, event-handler attributes, ``javascript:`` URLs, SQL fragments, template syntax, NUL bytes, RTL
overrides and 10 KB tokens go in through the real importer (both backends); every page kind, JSON twin and
API route then shows them inertly: escaped in HTML, exact in JSON, never a 500.

The NUL rule, the same on both backends and on every write path: a NUL character in stored text becomes a
space (Postgres text cannot hold NUL; Neuronpedia's importer does the same). In URLs and queries a NUL
finds nothing (404) rather than failing.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from factories import import_embed
from xss_corpus_data import (
    BIG,
    BREAKOUT,
    EXPLANATIONS,
    IMG,
    LAYER,
    MODEL,
    NUL,
    RAW_MARKERS,
    RTL,
    SCRIPT,
    SET,
    SQL,
    SVG,
    write_corpus,
)

from interpedia.db.tables import Activation, Explanation, Feature
from interpedia.ingest import import_path

HTML = {"accept": "text/html"}


class _Inert(HTMLParser):
    """Collects whatever would run: script elements (other than our own), handler attributes, script URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and not (
            (named.get("src") or "").startswith("/static/") or named.get("type") == "application/json"
        ):
            self.problems.append(f"script element {attrs}")
        if tag in ("img", "iframe", "object", "embed", "b"):  # the pages use none of these; the corpus does
            self.problems.append(f"injected <{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"handler attribute {name}={value!r} on <{tag}>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                ("javascript:", "data:text/html", "vbscript:")
            ):
                self.problems.append(f"script URL {name}={value!r} on <{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert(resp: Any, must_show: tuple[str, ...] = ()) -> str:
    """The page rendered (no 5xx), nothing in it would run, and ``must_show`` texts appear as text."""
    assert resp.status_code < 500, (resp.url, resp.status_code, resp.text[:500])
    assert "text/html" in resp.headers["content-type"], resp.url
    assert "script-src 'self'" in resp.headers.get("content-security-policy", ""), resp.url
    body = resp.text
    for marker in RAW_MARKERS:
        assert marker not in body, (resp.url, marker)
    parser = _Inert()
    parser.feed(body)
    assert not parser.problems, (resp.url, parser.problems[:5])
    assert "\x00" not in body, resp.url
    text = "".join(parser.text)
    for shown in must_show:
        assert shown in text, (resp.url, shown[:60])
    return text


def assert_json(resp: Any) -> Any:
    """A JSON answer (never a 5xx) that holds no NUL and parses."""
    assert resp.status_code < 500, (resp.url, resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json"), resp.url
    for bad in ("\\u0000", "\x00"):
        at = resp.text.find(bad)
        assert at < 0, (resp.url, resp.text[max(0, at - 200) : at + 50])
    return resp.json()


@pytest.fixture
def corpus(settings: Any, factory: Any, tmp_path: Path) -> None:
    result = import_path(write_corpus(tmp_path / "export"), factory, embed=import_embed())
    assert result is not None


def test_import_keeps_payloads_verbatim_except_nul(corpus: None, factory: Any) -> None:
    from sqlalchemy import func, select

    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Feature)) == 5  # the SQL fragment was data
        assert session.scalar(select(func.count()).select_from(Activation)) == 10
        descs = {e.description for e in session.scalars(select(Explanation))}
        embedded = session.scalar(
            select(func.count()).select_from(Explanation).where(Explanation.embedding.is_not(None))
        )
    assert descs == {t.replace("\x00", " ") for t in EXPLANATIONS.values()}
    assert embedded == 5  # embedded on import


def test_every_page_and_twin_renders_inertly(client: Any, corpus: None) -> None:
    # HTML pages: home, model, source set, source (browser), each feature, search, error pages.
    assert_inert(client.get("/", headers=HTML), ("Model " + SCRIPT,))
    assert_inert(client.get(f"/{MODEL}", headers=HTML), ("Model " + SCRIPT,))
    assert_inert(client.get(f"/{MODEL}/{SET}", headers=HTML), (f"set {IMG}",))
    assert_inert(client.get(f"/{MODEL}/{LAYER}", headers=HTML), (SCRIPT, EXPLANATIONS[0]))
    for i, text in EXPLANATIONS.items():
        shown = assert_inert(
            client.get(f"/{MODEL}/{LAYER}/{i}", headers=HTML), (text.replace("\x00", " "), SCRIPT, IMG, BIG)
        )
        assert RTL in shown
    found = assert_inert(
        client.get("/search-explanations", params={"q": "script tags"}, headers=HTML), (EXPLANATIONS[0],)
    )
    assert EXPLANATIONS[0] in found
    assert_inert(client.get("/search-explanations", params={"q": SCRIPT, "modelId": MODEL}, headers=HTML), (SCRIPT,))
    assert_inert(client.get("/search-explanations", params={"q": IMG, "modelId": SCRIPT}, headers=HTML))
    assert_inert(client.get(f"/{MODEL}/{LAYER}/{SCRIPT}", headers=HTML))  # error pages echo no markup
    assert_inert(client.get(f"/{MODEL}/{IMG}", headers=HTML))
    assert_inert(client.get(f"/{SVG}", headers=HTML))
    # JSON twins and API routes: the payloads come back exactly (NUL as a space), as data.
    feature = assert_json(client.get(f"/{MODEL}/{LAYER}/4.json"))["feature"]
    assert feature["explanations"][0]["description"] == EXPLANATIONS[4].replace("\x00", " ")
    api = assert_json(client.get(f"/api/feature/{MODEL}/{LAYER}/0"))
    tokens = [t for act in api["activations"] for t in act["tokens"]]
    assert SCRIPT in tokens and BIG in tokens and NUL.replace("\x00", " ") in tokens and RTL in tokens
    assert api["pos_str"] == [SCRIPT, RTL, BIG] and api["neg_str"] == [IMG, "nul byte"]
    for path in (
        "/index.json",
        f"/{MODEL}.json",
        f"/{MODEL}/{SET}.json",
        f"/{MODEL}/{LAYER}.json",
        f"/api/source-set/{MODEL}/{SET}",
        "/api/global",
    ):
        assert_json(client.get(path))
    twin = assert_json(client.get("/search-explanations.json", params={"q": SQL}))
    assert any(r["description"] == EXPLANATIONS[3] for r in twin["search"]["results"])
    hits = assert_json(client.post("/api/explanation/search-all", json={"query": "javascript links"}))
    assert {r["description"] for r in hits["results"]} >= {EXPLANATIONS[2]}
    assert_json(client.post("/api/explanation/search-model", json={"modelId": MODEL, "query": BREAKOUT}))
    assert_json(client.get("/api/explanation/xexp000000000000000000001"))
    assert_json(client.post("/api/features", json={"modelId": MODEL, "layer": LAYER, "indexes": [0, 1]}))


@pytest.mark.parametrize(
    "path",
    [
        f"/{MODEL}/{LAYER}/0%00",
        f"/{MODEL}/%00/1",
        "/%00",
        f"/api/feature/{MODEL}/{LAYER}%00/1",
        f"/api/feature/{MODEL}%00/{LAYER}/1",
    ],
)
def test_nul_in_urls_is_not_found(client: Any, corpus: None, path: str) -> None:
    resp = client.get(path, headers={"accept": "application/json"})
    assert resp.status_code in (404, 422), (path, resp.status_code, resp.text[:300])
    assert set(resp.json()) == {"error", "message", "status", "field"}


def test_nul_in_queries_and_api_writes_follows_the_rule(client: Any, corpus: None, api_key: str, factory: Any) -> None:
    resp = client.get("/search-explanations.json", params={"q": "script\x00tags"})
    assert resp.status_code == 200 and resp.json()["search"]["results"]
    resp = client.post("/api/explanation/search-all", json={"query": "java\x00script"})
    assert resp.status_code == 200
    resp = client.post(
        "/api/explanation/new",
        headers={"x-api-key": api_key},
        json={"feature": {"modelId": MODEL, "layer": LAYER, "index": 1, "explanation": f"by hand {NUL} {SCRIPT}"}},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["explanation"]["description"] == f"by hand nul byte {SCRIPT}"
    page = client.get(f"/{MODEL}/{LAYER}/1", headers=HTML)
    assert_inert(page, (f"by hand nul byte {SCRIPT}",))
    json.dumps(assert_json(client.get(f"/{MODEL}/{LAYER}/1.json")))


def test_api_uploads_follow_the_same_rules(client: Any, corpus: None, api_key: str) -> None:
    h = {"x-api-key": api_key}
    assert (
        client.post(
            "/api/model/new", json={"id": "up-model", "layers": 4, "displayName": f"up {NUL} {SCRIPT}"}, headers=h
        ).status_code
        < 300
    )
    assert (
        client.post(
            "/api/source-set/new",
            json={"name": "res-up", "modelId": "up-model", "description": f"{IMG} {NUL}"},
            headers=h,
        ).status_code
        < 300
    )
    body = {
        "modelId": "up-model",
        "source": "3-res-up",
        "features": [
            {
                "index": 0,
                "density": 0.01,
                "topLogits": [{"token": SCRIPT, "value": 1.0}, {"token": NUL, "value": 0.5}],
                "explanations": [{"text": f"uploaded {NUL} {IMG}", "methodName": "manual"}],
                "activations": [{"tokens": [SCRIPT, NUL, RTL, BIG], "values": [0, 1.5, 0.25, 0.1]}],
            }
        ],
    }
    resp = client.post("/api/feature/upload-batch", json=body, headers=h)
    assert resp.status_code == 200, resp.text
    doc = assert_json(client.get("/api/feature/up-model/3-res-up/0"))
    assert doc["activations"][0]["tokens"] == [SCRIPT, "nul byte", RTL, BIG]
    assert doc["pos_str"] == [SCRIPT, "nul byte"]
    assert [e["description"] for e in doc["explanations"]] == [f"uploaded nul byte {IMG}"]
    for path in ("/up-model", "/up-model/res-up", "/up-model/3-res-up", "/up-model/3-res-up/0", "/"):
        assert_inert(client.get(path, headers=HTML))
