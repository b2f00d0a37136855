"""Attribution graphs: the official client's graph calls against a live server, uploads validated, visibility."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import make_graph, write_saedashboard_dir
from sqlalchemy import func, select

from interpedia.db import transaction
from interpedia.db.tables import GraphData, GraphMetadata, GraphUpload
from interpedia.ingest import import_path
from interpedia.store.users import create_api_key, ensure_user


@pytest.fixture
def model(factory: Any, tmp_path: Path) -> str:
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=4), factory)
    return "tiny-test"


@pytest.fixture
def np_client(live_server: str, api_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("NEURONPEDIA_API_KEY", api_key)
    from neuronpedia.requests.base_request import NPRequest

    monkeypatch.setattr(NPRequest, "BASE_URL", f"{live_server}/api")
    yield


def _key(factory: Any, name: str, *, admin: bool = False) -> dict[str, str]:
    with transaction(factory) as session:
        return {"x-api-key": create_api_key(session, ensure_user(session, name, admin=admin))}


def _count(factory: Any, table: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_official_client_uploads_gets_lists_and_deletes(
    np_client: None, model: str, live_server: str, factory: Any, tmp_path: Path
) -> None:
    from neuronpedia.requests.graph_request import GraphRequest

    doc = make_graph(model, "cat-dog")
    meta = GraphRequest().upload(json.dumps(doc))
    assert (meta.model_id, meta.slug, meta.prompt_tokens, meta.prompt) == (
        model,
        "cat-dog",
        ["<bos>", "The", " cat"],
        "The cat",
    )
    # the JSON is where the metadata says, byte for byte the graph uploaded
    served = httpx.get(meta.json_url)
    assert served.status_code == 200 and served.json() == doc
    assert httpx.get(meta.json_url, headers={"accept-encoding": "identity"}).json() == doc
    path = tmp_path / "second.json"
    path.write_text(json.dumps(make_graph(model, "second")))
    second = GraphRequest().upload_file(str(path))
    assert GraphRequest().get(model, "second") == second
    owned = GraphRequest().list_owned()
    assert {g.slug for g in owned} == {"cat-dog", "second"}
    GraphRequest().delete(meta)
    assert {g.slug for g in GraphRequest().list_owned()} == {"second"}
    assert httpx.get(f"{live_server}/api/graph/{model}/cat-dog").status_code == 404
    assert _count(factory, GraphData) == 1 and _count(factory, GraphUpload) == 0


def _upload(client: Any, headers: dict[str, str], body: bytes, length: int | None = None) -> tuple[str, Any]:
    booked = client.post(
        "/api/graph/signed-put",
        json={"filename": "g.json", "contentLength": len(body) if length is None else length},
        headers=headers,
    )
    assert booked.status_code == 200, booked.text
    put_id, url = booked.json()["putRequestId"], booked.json()["url"]
    return put_id, client.put(url, content=body)


def test_bad_uploads_name_the_problem_and_store_nothing(client: Any, model: str, factory: Any) -> None:
    alice = _key(factory, "alice")
    bad_docs = {
        "nodes": {k: v for k, v in make_graph(model).items() if k != "nodes"},
        "links[1].target": {
            **make_graph(model),
            "links": [*make_graph(model)["links"][:1], {"source": "E_0_0", "target": "nowhere", "weight": 1}],
        },
        "nodes[0].ctx_idx": {**make_graph(model), "nodes": [{**make_graph(model)["nodes"][0], "ctx_idx": "0"}]},
        "metadata.prompt_tokens": {
            **make_graph(model),
            "metadata": {**make_graph(model)["metadata"], "prompt_tokens": "x"},
        },
        "metadata.slug": {**make_graph(model), "metadata": {**make_graph(model)["metadata"], "slug": "../etc"}},
    }
    for field, doc in bad_docs.items():
        put_id, put = _upload(client, alice, gzip.compress(json.dumps(doc).encode()))
        assert put.status_code == 200, put.text
        saved = client.post("/api/graph/save-to-db", json={"putRequestId": put_id}, headers=alice)
        assert saved.status_code == 422, saved.text
        assert saved.json()["field"] == field and field in saved.json()["message"], saved.json()
    put_id, _ = _upload(client, alice, b"not gzip, not json at all")
    saved = client.post("/api/graph/save-to-db", json={"putRequestId": put_id}, headers=alice)
    assert saved.status_code == 422 and "not JSON" in saved.json()["message"]
    # a graph of a model this server does not have
    put_id, _ = _upload(client, alice, gzip.compress(json.dumps(make_graph("no-such-model")).encode()))
    saved = client.post("/api/graph/save-to-db", json={"putRequestId": put_id}, headers=alice)
    assert saved.status_code == 404 and "no-such-model" in saved.json()["message"]
    assert _count(factory, GraphMetadata) == 0 and _count(factory, GraphData) == 0
    # the PUT URL: its token, its size, once only
    body = gzip.compress(json.dumps(make_graph(model, "ok")).encode())
    booked = client.post(
        "/api/graph/signed-put", json={"filename": "g.json", "contentLength": len(body)}, headers=alice
    )
    put_id = booked.json()["putRequestId"]
    assert client.put(f"/api/graph/upload/{put_id}?token=wrong", content=body).status_code == 404
    url = booked.json()["url"]
    assert client.put(url, content=body[:-1]).status_code == 422
    assert client.put(url, content=body).status_code == 200
    assert client.put(url, content=body).status_code == 409
    assert client.post("/api/graph/save-to-db", json={"putRequestId": put_id}, headers=alice).status_code == 200
    too_big = client.post(
        "/api/graph/signed-put", json={"filename": "g.json", "contentLength": 201 * 1024 * 1024}, headers=alice
    )
    assert too_big.status_code == 413 and too_big.json()["field"] == "contentLength"
    # the slug is taken now
    put_id, _ = _upload(client, alice, body)
    again = client.post("/api/graph/save-to-db", json={"putRequestId": put_id}, headers=alice)
    assert again.status_code == 409 and again.json()["field"] == "slug"
    assert _count(factory, GraphMetadata) == 1
    # someone else's upload id is not yours to save
    assert (
        client.post("/api/graph/save-to-db", json={"putRequestId": put_id}, headers=_key(factory, "bob")).status_code
        == 404
    )


def test_owners_subgraphs_and_private_graphs(client: Any, model: str, factory: Any) -> None:
    from interpedia.store.graphs import GraphSave, save_graph

    with transaction(factory) as session:
        alice = ensure_user(session, "alice")
        save_graph(session, make_graph(model, "public-one"), GraphSave(creator=alice))
        save_graph(session, make_graph(model, "secret"), GraphSave(creator=alice, visibility="PRIVATE"))
    a, b = _key(factory, "alice"), _key(factory, "bob")
    assert client.get(f"/api/graph/{model}/secret", headers=a).status_code == 200
    assert client.get(f"/api/graph/{model}/secret", headers=b).status_code == 404
    assert client.get(f"/api/graph/{model}/secret").status_code == 404
    assert client.get(f"/api/graph/{model}/secret/json").status_code == 404
    assert client.get(f"/api/graph/{model}/nope").status_code == 404
    denied = client.post("/api/graph/delete", json={"modelId": model, "slug": "public-one"}, headers=b)
    assert denied.status_code == 403
    # subgraphs: bob saves one on alice's public graph, everyone sees it, only bob (or an admin) deletes it
    saved = client.post(
        "/api/graph/subgraph/save",
        json={
            "modelId": model,
            "slug": "public-one",
            "displayName": "the cat circuit",
            "pinnedIds": ["0_3_2", "3_42_2"],
            "supernodes": [["cat things", "0_3_2", "0_7_2"]],
            "clerps": [["0_3_2", "cat"]],
            "pruningThreshold": 0.6,
        },
        headers=b,
    )
    assert saved.status_code == 200, saved.text
    sid = saved.json()["subgraphId"]
    listed = client.post("/api/graph/subgraph/list", json={"modelId": model, "slug": "public-one"}).json()
    assert [s["displayName"] for s in listed] == ["the cat circuit"] and listed[0]["supernodes"][0][0] == "cat things"
    assert client.post("/api/graph/subgraph/delete", json={"subgraphId": sid}, headers=a).status_code == 403
    bad = client.post(
        "/api/graph/subgraph/save",
        json={"modelId": model, "slug": "public-one", "supernodes": [["label only"]]},
        headers=b,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "supernodes"
    assert client.post("/api/graph/subgraph/delete", json={"subgraphId": sid}, headers=b).status_code == 200
    assert client.post("/api/graph/subgraph/list", json={"modelId": model, "slug": "public-one"}).json() == []
    assert client.post("/api/graph/delete", json={"modelId": model, "slug": "public-one"}, headers=a).status_code == 200
