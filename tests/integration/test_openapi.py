"""``/openapi.json`` says what the API enforces: error answers on every operation, the bounds the settings set, and
a 405's ``Allow`` names what the path serves."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from interpedia.config import Settings
from interpedia.web.app import create_app


def _schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]  # type: ignore[no-any-return]


def test_the_schema_states_the_limits_and_the_errors(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"inference_max_batch_prompts": 7, "inference_max_top_k": 9}))
    with TestClient(app) as client:
        doc = client.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert {"4XX", "503"} <= set(op["responses"]), f"{method} {path}"
    texts = _schema(doc, "ActivationNewBody")["properties"]["customText"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 7} in texts
    assert _schema(doc, "TopkBody")["properties"]["topK"]["maximum"] == 9
    index = _schema(doc, "ActivationGetBody")["properties"]["index"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 2**31 - 1} in index
    assert "x-setting-limit" not in str(doc)


def test_allow_names_the_methods_of_the_path(client: Any) -> None:
    # /api/explanation/score is POST only, though GET /api/explanation/{id} would match the same path
    resp = client.options("/api/explanation/score")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert client.options("/api/global").headers["allow"] == "GET, HEAD, POST"


def test_explain_without_a_model_names_the_field(client: Any) -> None:
    body = {"activations": [{"tokens": ["a", "b"], "values": [0.0, 2.0]}], "openrouter_key": "k", "model": ""}
    resp = client.post("/v1/explain/default", json=body)
    assert resp.status_code == 422 and resp.json()["field"] == "model"
