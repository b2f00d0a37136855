"""The /search-explanations page: search by meaning across everything, a model (some sources) or a release,
paging, its JSON twin, bad input as 4xx, and a page that says why when embeddings are unavailable."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import pytest
from factories import import_embed, write_saedashboard_dir
from sqlalchemy import select, update

from interpedia.config import get_settings
from interpedia.db import transaction
from interpedia.db.tables import Explanation, SourceRelease, SourceSet
from interpedia.ingest import import_path
from interpedia.search.embeddings import LocalEmbedder, get_embedder
from interpedia.store.records import ExplanationRecord, FeatureRecord
from interpedia.store.writer import write_features

TOPICS = {
    0: "Biblical language such as the LORD and thee",
    1: "Python import statements",
    2: "French cooking recipes",
    3: "dates and calendar months",
    4: "HTML script tags in web pages",
    5: "football scores and teams",
}
# Enough explanations for two pages of 20: numbered filler about one theme.
FILLER = {10 + i: f"names of colours, variant {i}" for i in range(30)}


def _add(factory: Any, source_name: str, texts: dict[int, str]) -> None:
    from interpedia.db.tables import Source

    with transaction(factory) as session:
        source = session.scalar(select(Source).where(Source.name == source_name))
        records = [FeatureRecord(index=i, explanations=[ExplanationRecord(description=t)]) for i, t in texts.items()]
        write_features(session, source, records, creator_id=None, token_ids={}, embed=import_embed())


@pytest.fixture
def corpus(settings: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "a", n_features=60), factory)
    import_path(write_saedashboard_dir(tmp_path / "b", n_features=6, layer=1), factory)
    _add(factory, "0-res-test", {**TOPICS, **FILLER})
    _add(factory, "1-res-test", {0: "the LORD God of Israel", 1: "pasta and Italian food"})


def _hits(page: str) -> list[tuple[str, str, float]]:
    """(description, feature path, similarity) of each result row, in order."""
    rows = re.findall(r'<tr class="hit">.*?</tr>', page, flags=re.S)
    out = []
    for row in rows:
        desc = re.search(r'class="hit-desc"><a href="([^"]+)">([^<]*)</a>', row)
        sim = re.search(r'class="num hit-sim">([^<]*)<', row)
        assert desc and sim, row
        out.append((html.unescape(desc.group(2)), desc.group(1), float(sim.group(1))))
    return out


def test_page_finds_features_by_meaning(client: Any, corpus: None) -> None:
    resp = client.get("/search-explanations", params={"q": "religious scripture"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    hits = _hits(resp.text)
    assert {h[0] for h in hits[:2]} == {TOPICS[0], "the LORD God of Israel"}
    sims = [h[2] for h in hits]
    assert sims == sorted(sims, reverse=True) and 0 < sims[0] <= 1
    # Each hit links to its feature page, and that page exists.
    first = next(h for h in hits if h[0] == TOPICS[0])
    assert first[1] == "/tiny-test/0-res-test/0"
    assert '<a href="/tiny-test/0-res-test">0-res-test</a>' in resp.text
    assert client.get(first[1]).status_code == 200
    # Another meaning, another answer: no shared words with the explanation.
    food = _hits(client.get("/search-explanations", params={"q": "a good dinner to cook"}).text)
    assert food[0][0] in (TOPICS[2], "pasta and Italian food")


def test_json_twin_matches_the_api(client: Any, corpus: None) -> None:
    twin = client.get("/search-explanations.json", params={"q": "web pages"}).json()
    assert twin["page"] == "searchExplanations" and twin["error"] is None
    api = client.post("/api/explanation/search-all", json={"query": "web pages"}).json()
    assert [r["id"] for r in twin["search"]["results"]] == [r["id"] for r in api["results"]]
    assert twin["search"]["results"][0]["description"] == TOPICS[4]
    by_accept = client.get("/search-explanations", params={"q": "web pages"}, headers={"accept": "application/json"})
    assert by_accept.json()["search"]["results"] == twin["search"]["results"]


def test_scopes(client: Any, corpus: None, factory: Any) -> None:
    only_1 = client.get(
        "/search-explanations.json",
        params={"q": "religious scripture", "modelId": "tiny-test", "sources": "1-res-test"},
    ).json()["search"]
    assert {r["layer"] for r in only_1["results"]} == {"1-res-test"} and only_1["resultsCount"] == 2
    both = client.get(
        "/search-explanations.json",
        params=[
            ("q", "religious scripture"),
            ("modelId", "tiny-test"),
            ("sources", "0-res-test"),
            ("sources", "1-res-test"),
        ],
    )
    assert {r["layer"] for r in both.json()["search"]["results"]} == {"0-res-test", "1-res-test"}
    with transaction(factory) as session:
        session.add(SourceRelease(name="test-release", description="r"))
        session.flush()
        session.execute(update(SourceSet).values(release_name="test-release"))
    page = client.get("/search-explanations", params={"q": "religious scripture", "releaseName": "test-release"})
    assert page.status_code == 200 and '<option value="test-release" selected>' in page.text
    assert {h[1].split("/")[2] for h in _hits(page.text)} == {"0-res-test", "1-res-test"}


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"q": "ab"}, 400, "q"),
        ({"q": "x" * 1001}, 400, "q"),
        ({"q": "food", "modelId": "nope"}, 404, "modelId"),
        ({"q": "food", "modelId": "tiny-test", "sources": "9-nope"}, 404, "sources"),
        ({"q": "food", "sources": "0-res-test"}, 400, "modelId"),
        ({"q": "food", "modelId": "tiny-test", "releaseName": "r"}, 400, "releaseName"),
        ({"q": "food", "releaseName": "nope"}, 404, "releaseName"),
        ({"q": "food", "offset": "-1"}, 422, "offset"),
        ({"q": "food", "offset": "abc"}, 422, "offset"),
    ],
)
def test_bad_input(client: Any, corpus: None, params: dict[str, str], status: int, field: str) -> None:
    resp = client.get("/search-explanations.json", params=params)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and body["field"] == field and body["message"]
    page = client.get("/search-explanations", params=params)
    assert page.status_code == status and "text/html" in page.headers["content-type"]
    if status != 422:  # the form comes back with the message next to it
        assert 'id="search-error"' in page.text and 'id="search-form"' in page.text


def test_paging(client: Any, corpus: None) -> None:
    first = client.get("/search-explanations", params={"q": "colour names", "modelId": "tiny-test"})
    hits1 = _hits(first.text)
    assert len(hits1) == 20 and 'id="search-next"' in first.text and 'id="search-prev"' not in first.text
    next_url = html.unescape(re.search(r'href="([^"]+)" id="search-next"', first.text).group(1))
    assert "offset=20" in next_url and "modelId=tiny-test" in next_url
    second = client.get(next_url)
    hits2 = _hits(second.text)
    assert hits2 and 'id="search-prev"' in second.text
    assert not {h[1] for h in hits1} & {h[1] for h in hits2}
    assert hits2[0][2] <= hits1[-1][2]
    twin = client.get("/search-explanations.json", params={"q": "colour names", "offset": 20}).json()
    assert twin["search"]["request"]["offset"] == 20 and twin["request"]["offset"] == 20


def test_empty_form_and_missing_embeddings(client: Any, corpus: None, factory: Any) -> None:
    form = client.get("/search-explanations")
    assert form.status_code == 200 and 'id="search-form"' in form.text and 'id="search-results"' not in form.text
    assert '<option value="tiny-test">' in form.text
    with transaction(factory) as session:
        session.execute(update(Explanation).values(embedding=None))
    page = client.get("/search-explanations", params={"q": "religious scripture"})
    assert page.status_code == 200 and not _hits(page.text)
    assert "interpedia embed --missing" in page.text and 'id="search-notice"' in page.text


def test_embedding_model_loaded_once_and_warmed(
    client: Any, corpus: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = LocalEmbedder._load

    def counted(self: LocalEmbedder) -> None:
        loads.append(1)
        original(self)

    monkeypatch.setattr(LocalEmbedder, "_load", counted)
    embedder = get_embedder(settings)
    assert isinstance(embedder, LocalEmbedder)
    client.get("/search-explanations")  # the empty form starts loading the model in the background
    deadline = time.monotonic() + 120
    while embedder._model is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert embedder._model is not None
    for q in ("religious scripture", "web pages", "football"):
        assert client.get("/search-explanations", params={"q": q}).status_code == 200
    assert len(loads) <= 1 and get_embedder(settings) is embedder


def test_unavailable_embeddings_say_why(corpus: None, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from interpedia.web.app import create_app

    monkeypatch.setenv("INTERPEDIA_EMBEDDING_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on port 9
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as broken:
        page = broken.get("/search-explanations", params={"q": "religious scripture"})
        assert page.status_code == 503 and "text/html" in page.headers["content-type"]
        assert "Explanation search is unavailable" in page.text and "unreachable" in page.text
        assert 'id="search-form"' in page.text  # the page still renders, with the form
        twin = broken.get("/search-explanations.json", params={"q": "religious scripture"})
        assert twin.status_code == 503 and "unavailable" in twin.json()["message"]
        assert broken.get("/search-explanations").status_code == 200


def test_search_boxes_on_model_source_set_and_source_pages(client: Any, corpus: None) -> None:
    for path, hidden in (
        ("/tiny-test", {"modelId": "tiny-test"}),
        ("/tiny-test/res-test", {"modelId": "tiny-test", "sources": "0-res-test,1-res-test"}),
        ("/tiny-test/1-res-test", {"modelId": "tiny-test", "sources": "1-res-test"}),
    ):
        page = client.get(path, headers={"accept": "text/html"}).text
        box = re.search(r'<section class="pane" id="search-explanations-box">.*?</section>', page, flags=re.S)
        assert box, path
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', box.group(0)))
        assert fields == hidden, path
        twin = client.get("/search-explanations.json", params={**fields, "q": "religious scripture"}).json()
        layers = {r["layer"] for r in twin["search"]["results"]}
        assert layers <= set(fields.get("sources", "0-res-test,1-res-test").split(",")) and layers, path
