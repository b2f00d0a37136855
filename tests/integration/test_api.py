"""The Neuronpedia-compatible /api against a real database (SQLite and Postgres)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir

from interpedia.ingest import import_path


@pytest.fixture
def imported(factory: Any, tmp_path: Path) -> Path:
    """A SAEDashboard directory of 10 features imported as tiny-test/0-res-test."""
    path = write_saedashboard_dir(tmp_path / "dash", n_features=10)
    import_path(path, factory)
    return path


def _error_shape(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message", "status", "field"}
    assert body["status"] == status and body["error"]
    return body


def test_feature_get_returns_dashboard(client: Any, imported: Path) -> None:
    resp = client.get("/api/feature/tiny-test/0-res-test/3")
    assert resp.status_code == 200
    doc = resp.json()
    assert (doc["modelId"], doc["layer"], doc["index"]) == ("tiny-test", "0-res-test", "3")
    assert doc["pos_str"] == ["ĠLORD", "Ġsaid"] and doc["frac_nonzero"] > 0
    assert len(doc["activations"]) == 5
    values = [a["maxValue"] for a in doc["activations"]]
    assert values == sorted(values, reverse=True) and doc["maxActApprox"] == values[0]
    for act in doc["activations"]:
        assert len(act["tokens"]) == len(act["values"]) == 16
        assert act["source"] == "0-res-test" and act["binContains"] in (None, 0.00123)
    # trailing slash works too
    assert client.get("/api/feature/tiny-test/0-res-test/3/").status_code == 200


@pytest.mark.parametrize(
    "path,field",
    [
        ("/api/feature/nope/0-res-test/3", "modelId"),
        ("/api/feature/tiny-test/9-res-test/3", "source"),
        ("/api/feature/tiny-test/0-res-test/99", "index"),
    ],
)
def test_feature_get_404_names_missing_part(client: Any, imported: Path, path: str, field: str) -> None:
    body = _error_shape(client.get(path), 404)
    assert body["field"] == field


def test_feature_get_bad_index_is_422(client: Any, imported: Path) -> None:
    _error_shape(client.get("/api/feature/tiny-test/0-res-test/abc"), 422)


def test_features_bulk_and_offset_and_activation_get(client: Any, imported: Path) -> None:
    resp = client.post(
        "/api/features",
        json=[
            {"modelId": "tiny-test", "layer": "0-res-test", "index": 5, "maxActsToReturn": 2},
            {"modelId": "tiny-test", "layer": "0-res-test", "index": "1"},
        ],
    )
    assert resp.status_code == 200
    docs = resp.json()
    assert [d["index"] for d in docs] == ["5", "1"]
    assert len(docs[0]["activations"]) == 2
    page = client.post("/api/features-offset", json={"modelId": "tiny-test", "layer": "0-res-test", "offset": 4})
    assert [d["index"] for d in page.json()] == [str(i) for i in range(4, 10)]
    acts = client.post("/api/activation/get", json={"modelId": "tiny-test", "source": "0-res-test", "index": "2"})
    assert acts.status_code == 200 and len(acts.json()) == 5


def test_writes_need_api_key(client: Any, imported: Path) -> None:
    body = _error_shape(client.post("/api/model/new", json={"id": "my-model", "layers": 2}), 401)
    assert "x-api-key" in body["error"]
    _error_shape(
        client.post("/api/model/new", json={"id": "my-model", "layers": 2}, headers={"x-api-key": "sk-np-wrong"}), 401
    )


def test_model_and_source_set_lifecycle(client: Any, api_key: str) -> None:
    h = {"x-api-key": api_key}
    resp = client.post("/api/model/new", json={"id": "my-model", "layers": 4, "displayName": "My Model"}, headers=h)
    assert resp.status_code == 200 and resp.json()["displayName"] == "My Model"
    _error_shape(client.post("/api/model/new", json={"id": "my-model", "layers": 4}, headers=h), 409)
    _error_shape(client.post("/api/model/new", json={"id": "Bad Id!", "layers": 4}, headers=h), 422)
    resp = client.post(
        "/api/source-set/new", json={"name": "res-x", "modelId": "my-model", "description": "d"}, headers=h
    )
    assert resp.status_code == 200
    assert [s["id"] for s in resp.json()["sources"]] == [f"{i}-res-x" for i in range(4)]
    _error_shape(client.post("/api/source-set/new", json={"name": "res-x", "modelId": "nope"}, headers=h), 404)
    got = client.get("/api/source-set/my-model/res-x")
    assert got.json()["name"] == "res-x"
    assert client.post("/api/model/get", json={"id": "my-model"}).json()["sourceSets"][0]["name"] == "res-x"
    assert "my-model" in [m["id"] for m in client.post("/api/model/list").json()]
    glob = client.post("/api/global").json()
    assert set(glob) >= {"models", "explanationTypes", "explanationModels", "releases"}


def _upload_body(index: int = 0, **act: Any) -> dict[str, Any]:
    activation = {"tokens": ["a", "b", "c"], "values": [0, 1.5, 0.25], **act}
    return {
        "modelId": "my-model",
        "source": "3-res-x",
        "features": [
            {
                "index": index,
                "density": 0.01,
                "topLogits": [{"token": "x", "value": 1.0}],
                "explanations": [{"text": "letters", "methodName": "manual"}],
                "activations": [activation],
            }
        ],
    }


def test_feature_upload_batch(client: Any, api_key: str) -> None:
    h = {"x-api-key": api_key}
    client.post("/api/model/new", json={"id": "my-model", "layers": 4}, headers=h)
    client.post("/api/source-set/new", json={"name": "res-x", "modelId": "my-model"}, headers=h)
    for _ in range(2):  # idempotent
        resp = client.post("/api/feature/upload-batch", json=_upload_body(), headers=h)
        assert resp.status_code == 200, resp.text
    doc = client.get("/api/feature/my-model/3-res-x/0").json()
    assert len(doc["activations"]) == 1 and doc["activations"][0]["values"] == [0, 1.5, 0.25]
    assert [e["description"] for e in doc["explanations"]] == ["letters"]
    assert doc["frac_nonzero"] == 0.01 and doc["pos_str"] == ["x"] and doc["maxActApprox"] == 1.5


@pytest.mark.parametrize(
    "mutate,field_part",
    [
        (lambda b: b["features"][0]["activations"][0].update(values=[0, 1]), "activations"),
        (lambda b: b["features"][0]["activations"][0].update(values=["0", "1", "2"]), "values"),
        (lambda b: b["features"].append(dict(b["features"][0])), "features"),
        (lambda b: b["features"][0].update(index=-1), "index"),
        (lambda b: b.update(modelId="nope"), "modelId"),
    ],
)
def test_feature_upload_batch_rejects_bad_input(client: Any, api_key: str, mutate: Any, field_part: str) -> None:
    h = {"x-api-key": api_key}
    client.post("/api/model/new", json={"id": "my-model", "layers": 4}, headers=h)
    client.post("/api/source-set/new", json={"name": "res-x", "modelId": "my-model"}, headers=h)
    body = _upload_body()
    mutate(body)
    resp = client.post("/api/feature/upload-batch", json=body, headers=h)
    assert resp.status_code in (404, 422), resp.text
    assert field_part in (resp.json()["field"] or "") + resp.json()["error"]
    assert client.get("/api/feature/my-model/3-res-x/0").status_code == 404


def test_feature_upload_rejects_nan(client: Any, api_key: str) -> None:
    h = {"x-api-key": api_key, "content-type": "application/json"}
    raw = (
        '{"modelId": "m", "source": "0-s", "features": [{"index": 0, "activations": '
        '[{"tokens": ["a"], "values": [NaN]}]}]}'
    )
    body = _error_shape(client.post("/api/feature/upload-batch", content=raw, headers=h), 422)
    assert "finite" in body["error"] and "values" in body["field"]


def test_body_over_limit_is_413(client: Any, api_key: str, app: Any) -> None:
    app.state.settings.max_body_bytes = 1000
    resp = client.post(
        "/api/feature/upload-batch",
        content=b"x" * 5000,
        headers={"x-api-key": api_key, "content-type": "application/json"},
    )
    _error_shape(resp, 413)


def test_other_users_source_set_is_forbidden(client: Any, api_key: str, factory: Any) -> None:
    from interpedia.db import transaction
    from interpedia.store.users import create_api_key, ensure_user

    with transaction(factory) as session:
        other = create_api_key(session, ensure_user(session, "other"))
    client.post("/api/model/new", json={"id": "my-model", "layers": 4}, headers={"x-api-key": api_key})
    client.post("/api/source-set/new", json={"name": "res-x", "modelId": "my-model"}, headers={"x-api-key": api_key})
    _error_shape(client.post("/api/feature/upload-batch", json=_upload_body(), headers={"x-api-key": other}), 403)


def test_openapi_and_docs_served(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/feature/{modelId}/{layer}/{index}" in spec["paths"]
    assert client.get("/docs").status_code == 200
