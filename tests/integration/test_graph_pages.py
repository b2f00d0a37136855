"""The graph pages and what feeds them, on SQLite and Postgres: /graph, /{model}/graph (list, search, one graph,
embed, twins), the model page's graphs pane, a feature's "in graphs" list (the graph_features index, kept
through replace, delete, visibility and migration 0005's backfill), and the browser's upload and subgraph
routes (session cookie + CSRF)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from graph_page_helpers import EXPLAINED, MODEL, SOURCE, build_site, site_graph
from sqlalchemy import func, select

from interpedia.db import transaction
from interpedia.db.engine import alembic_config
from interpedia.db.tables import GraphFeature, GraphMetadata
from interpedia.store.graphs import GraphSave, delete_graph, save_graph
from interpedia.store.users import create_api_key, ensure_user

HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}  # what the page's scripts send: errors come back as JSON


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    return build_site(factory, tmp_path)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def _sign_in(client: Any, key: str) -> str:
    """Sign the test client's browser in with ``key``; returns the session's CSRF token."""
    resp = client.post(
        "/signin",
        data={"api_key": key, "csrf_token": _csrf(client.get("/signin", headers=HTML).text), "next": "/"},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303
    return _csrf(client.get("/signin", headers=HTML).text)


def _post(client: Any, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body, headers=JSON)


def _indexed(factory: Any, graph_id: str | None = None) -> set[tuple[str, int]]:
    with factory() as session:
        stmt = select(GraphFeature.source, GraphFeature.feature_index)
        if graph_id:
            stmt = stmt.where(GraphFeature.graph_id == graph_id)
        return {(s, i) for s, i in session.execute(stmt)}


def test_graph_home_redirects_to_the_featured_graphs_model(client: Any, site: Any) -> None:
    resp = client.get("/graph?q=cat", follow_redirects=False)
    assert resp.status_code == 302 and resp.headers["location"] == f"/{MODEL}/graph?q=cat"
    assert client.get("/graph.json", follow_redirects=False).headers["location"] == f"/{MODEL}/graph.json"


def test_list_page_featured_first_search_and_the_viewers_own(client: Any, site: Any, factory: Any) -> None:
    with transaction(factory) as session:
        other = ensure_user(session, "other")
        save_graph(session, site_graph("dog-graph", prompt="A dog barks"), GraphSave(creator=other))
        save_graph(session, site_graph("hidden"), GraphSave(creator=other, visibility="PRIVATE"))
    doc = client.get(f"/{MODEL}/graph.json").json()
    assert [g["slug"] for g in doc["featured"]] == ["cat-dog"]
    assert [g["slug"] for g in doc["graphs"]] == ["dog-graph"], "a private graph of someone else is not listed"
    assert doc["featured"][0]["pageUrl"] == f"/{MODEL}/graph?slug=cat-dog"
    assert doc["mine"] == [] and doc["transcoderSets"] == [], "res-test holds SAEs, not transcoders"
    assert [g["slug"] for g in client.get(f"/{MODEL}/graph.json?q=BARKS").json()["graphs"]] == ["dog-graph"]
    assert client.get(f"/{MODEL}/graph.json?q=nothing-like-this").json()["featured"] == []
    html = client.get(f"/{MODEL}/graph", headers=HTML).text
    assert 'id="featured-graphs"' in html and "dog-graph" in html and "slug=hidden" not in html
    # The owner sees their private graph, in "yours" and in the list.
    with transaction(factory) as session:
        key = create_api_key(session, ensure_user(session, "other"))
    mine = client.get(f"/{MODEL}/graph.json", headers={"x-api-key": key}).json()
    assert {g["slug"] for g in mine["mine"]} == {"dog-graph", "hidden"}


def test_graph_page_and_twin(client: Any, site: Any) -> None:
    twin = client.get(f"/{MODEL}/graph.json?slug=cat-dog").json()
    assert twin["page"] == "graph" and twin["graph"]["url"] == f"/api/graph/{MODEL}/cat-dog/json"
    assert {k: v["explanation"] for k, v in twin["features"].items()} == {
        f"{SOURCE}/3": EXPLAINED[3],
        f"{SOURCE}/7": EXPLAINED[7],
    }
    assert all(v["maxActApprox"] > 0 for v in twin["features"].values())
    assert all(0 < f["density"] < 1 for f in twin["features"].values())
    page = client.get(f"/{MODEL}/graph?slug=cat-dog", headers=HTML)
    assert page.status_code == 200
    assert f'data-json-url="/api/graph/{MODEL}/cat-dog/json"' in page.text
    assert "/static/vendor/d3.js" in page.text and 'class="topbar"' in page.text
    embed = client.get(f"/{MODEL}/graph?slug=cat-dog&embed=true", headers=HTML).text
    assert 'data-embed="true"' in embed and 'class="topbar"' not in embed
    missing = client.get(f"/{MODEL}/graph?slug=nope", headers=HTML)
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert client.get(f"/{MODEL}/graph.json?slug=nope").json()["field"] == "slug"


def test_model_page_and_feature_page_list_graphs(client: Any, site: Any, factory: Any) -> None:
    pane = client.get(f"/{MODEL}.json").json()["graphs"]
    assert [g["slug"] for g in pane["featured"]] == ["cat-dog"] and pane["total"] == 1
    assert 'id="model-featured-graphs"' in client.get(f"/{MODEL}", headers=HTML).text
    assert [g["slug"] for g in client.get(f"/{MODEL}/{SOURCE}/3.json").json()["graphs"]] == ["cat-dog"]
    assert client.get(f"/{MODEL}/{SOURCE}/4.json").json()["graphs"] == [], "feature 4 is no node of the graph"
    html = client.get(f"/{MODEL}/{SOURCE}/7", headers=HTML).text
    assert 'id="feature-graphs"' in html and f"/{MODEL}/graph?slug=cat-dog" in html
    assert 'id="feature-graphs"' not in client.get(f"/{MODEL}/{SOURCE}/4", headers=HTML).text


def test_the_feature_index_follows_the_graphs(factory: Any, site: Any) -> None:
    assert _indexed(factory, site["graph_id"]) == {(SOURCE, 3), (SOURCE, 7)}
    with transaction(factory) as session:
        owner = ensure_user(session, "owner")
        doc = site_graph()
        doc["nodes"] = [n for n in doc["nodes"] if n["node_id"] != "0_7_2"]
        doc["links"] = [link for link in doc["links"] if "0_7_2" not in (link["source"], link["target"])]
        replaced = save_graph(session, doc, GraphSave(creator=owner, replace=True))
        plain = save_graph(session, make_plain_graph(), GraphSave(creator=owner))
    assert _indexed(factory) == {(SOURCE, 3)}, "replacing a graph replaces its index rows; no set, no rows"
    with transaction(factory) as session:
        delete_graph(session, ensure_user(session, "owner"), MODEL, "cat-dog")
    assert _indexed(factory) == set()
    assert replaced.id != plain.id


def make_plain_graph() -> dict[str, Any]:
    """A graph that names no source set (its features cannot be found here)."""
    from factories import make_graph

    return make_graph(MODEL, "no-set")


def test_migration_0005_indexes_the_graphs_already_stored(database_url: str, factory: Any, site: Any) -> None:
    command.downgrade(alembic_config(database_url), "0004")
    command.upgrade(alembic_config(database_url), "head")
    assert _indexed(factory) == {(SOURCE, 3), (SOURCE, 7)}


def test_browser_upload_and_subgraphs_need_a_signed_in_user_and_csrf(client: Any, site: Any, factory: Any) -> None:
    body = gzip.compress(json.dumps(site_graph("from-browser")).encode())
    booking = {"filename": "g.json", "contentLength": len(body)}
    assert _post(client, "/graph/signed-put", booking).status_code == 401
    token = _sign_in(client, site["key"])
    forged = _post(client, "/graph/signed-put", {**booking, "csrf_token": "forged"})
    assert forged.status_code == 403 and forged.json()["field"] == "csrf_token"
    booked = _post(client, "/graph/signed-put", {**booking, "csrf_token": token})
    assert booked.status_code == 200, booked.text
    assert client.put(booked.json()["url"], content=body).status_code == 200
    saved = client.post(
        "/graph/save-to-db", json={"putRequestId": booked.json()["putRequestId"], "csrf_token": token}, headers=JSON
    )
    assert saved.status_code == 200 and saved.json()["path"] == f"/{MODEL}/graph?slug=from-browser"
    with factory() as session:
        row = session.scalar(select(GraphMetadata).where(GraphMetadata.slug == "from-browser"))
        assert row is not None and row.creator_id == site["owner_id"]

    state = {
        "modelId": MODEL,
        "slug": "from-browser",
        "displayName": "two features",
        "pinnedIds": ["0_3_2", "0_7_2"],
        "supernodes": [["pair", "0_3_2", "0_7_2"]],
        "clerps": [["E_2_2", "cat"]],
        "pruningThreshold": 0.4,
    }
    assert _post(client, "/graph/subgraph/save", state).status_code == 403
    made = _post(client, "/graph/subgraph/save", {**state, "csrf_token": token}).json()
    listed = client.get(f"/{MODEL}/graph.json?slug=from-browser").json()["subgraphs"]
    assert [(s["id"], s["supernodes"], s["user"]["name"]) for s in listed] == [
        (made["subgraphId"], [["pair", "0_3_2", "0_7_2"]], "owner")
    ]
    assert _post(client, "/graph/subgraph/delete", {"subgraphId": made["subgraphId"]}).status_code == 403
    gone = client.post(
        "/graph/subgraph/delete", json={"subgraphId": made["subgraphId"], "csrf_token": token}, headers=JSON
    )
    assert gone.status_code == 200
    assert client.get(f"/{MODEL}/graph.json?slug=from-browser").json()["subgraphs"] == []


def test_a_bad_upload_names_its_first_bad_field_and_stores_nothing(client: Any, site: Any, factory: Any) -> None:
    token = _sign_in(client, site["key"])
    doc = site_graph("bad")
    del doc["nodes"][2]["ctx_idx"]
    body = json.dumps(doc).encode()
    booked = client.post(
        "/graph/signed-put", json={"filename": "bad.json", "contentLength": len(body), "csrf_token": token}
    ).json()
    client.put(booked["url"], content=body)
    resp = client.post(
        "/graph/save-to-db", json={"putRequestId": booked["putRequestId"], "csrf_token": token}, headers=JSON
    )
    assert resp.status_code == 422 and resp.json()["field"] == "nodes[2].ctx_idx"
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(GraphMetadata)) == 1
