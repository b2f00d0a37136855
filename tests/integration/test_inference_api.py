"""The webapp's live-inference API (/api/activation/new, /search-all, /search-topk-by-token, /steer, /steer-chat,
/steer-load, /tokenize, /vector/*) through the official ``neuronpedia`` client, plus caching and share links."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from inference_helpers import D_MODEL, MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from sqlalchemy import func, select

from interpedia.db.tables import SavedSearch, SteerOutput


@pytest.fixture
def registered(factory: Any, tiny_inf: TinyInference) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    return tiny_inf


@pytest.fixture
def np_client(
    registered: TinyInference, live_server: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("NEURONPEDIA_API_KEY", api_key)
    from neuronpedia.requests.base_request import NPRequest

    monkeypatch.setattr(NPRequest, "BASE_URL", f"{live_server}/api")
    import neuronpedia

    yield neuronpedia


def test_activation_requests(np_client: Any, client: Any) -> None:
    from neuronpedia.requests.activation_request import ActivationRequest

    one = ActivationRequest().compute_activation_for_text(MODEL_ID, "1-res-standard", 12, "the dog ran to the park")
    v1 = client.post(
        "/v1/activation/single",
        json={"model": MODEL_ID, "prompt": "the dog ran to the park", "source": "1-res-standard", "index": "12"},
    ).json()
    assert one.tokens == v1["tokens"] and one.values == v1["activation"]["values"]
    many = ActivationRequest().compute_activation_for_texts(MODEL_ID, "1-res-standard", "12", ["a cat", "the dog"])
    assert [len(a.tokens) for a in many] == [len(a.values) for a in many] and len(many) == 2
    results = ActivationRequest().compute_all_source_activations_for_text(MODEL_ID, "1-res-standard", "a cat sat")
    assert len(results) == 1 and results[0]["tokens"][0] == "<|endoftext|>" and results[0]["activeFeatures"]


def test_topk_by_token_request(np_client: Any, factory: Any) -> None:
    from neuronpedia.requests.topk_by_token_request import TopKByTokenRequest

    rows = TopKByTokenRequest().compute_top_features_by_token_for_text(
        MODEL_ID, "1-res-standard", "the cat sat on a mat", num_results=3
    )
    assert rows and rows[0].position == 1
    assert all(
        len(r.topFeatures) <= 3 and isinstance(r.topFeatures[0].feature.index, int) for r in rows if r.topFeatures
    )
    again = TopKByTokenRequest().compute_top_features_by_token_for_text(
        MODEL_ID, "1-res-standard", "the cat sat on a mat", num_results=3
    )
    assert again == rows
    batch = TopKByTokenRequest().compute_top_features_by_token_for_texts(
        MODEL_ID, "1-res-standard", ["a cat", "the dog ran"], num_results=2
    )
    assert len(batch) == 2
    with factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(SavedSearch).where(SavedSearch.kind == "topk-by-token"))
            == 3
        )


def test_search_all_request(np_client: Any, client: Any, factory: Any) -> None:
    from neuronpedia.requests.source_activation_request import SourceActivationRequest

    acts = SourceActivationRequest().compute_top_features_for_text(
        MODEL_ID, ["0-res-standard", "1-res-standard"], "the king spoke unto his people", num_results=6
    )
    assert 0 < len(acts) <= 6 and all(len(a.tokens) == len(a.values) for a in acts)
    assert {a.source for a in acts} <= {"0-res-standard", "1-res-standard"}
    one_source = SourceActivationRequest().compute_top_features_for_text(
        MODEL_ID, "1-res-standard", "the king spoke unto his people", sort_results_by_activations_at_token_indexes=[3]
    )
    assert {a.source for a in one_source} == {"1-res-standard"}
    assert [a.values[3] for a in one_source] == sorted((a.values[3] for a in one_source), reverse=True)
    texts = SourceActivationRequest().compute_top_features_for_texts(MODEL_ID, "1-res-standard", ["a cat", "a dog"])
    assert len(texts) == 2
    body = {"modelId": MODEL_ID, "sourceSet": "res-standard", "text": "the king spoke", "numResults": 4}
    first = client.post("/api/search-all", json=body).json()
    with factory() as session:
        n = session.scalar(select(func.count()).select_from(SavedSearch).where(SavedSearch.kind == "search-all"))
    assert client.post("/api/search-all", json=body).json() == first
    with factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(SavedSearch).where(SavedSearch.kind == "search-all")) == n
        )


def test_steer_completion_is_cached_and_shareable(np_client: Any, client: Any, factory: Any) -> None:
    from neuronpedia.np_feature import SteerFeature
    from neuronpedia.requests.steer_request import SteerCompletionRequest

    feature = SteerFeature(modelId=MODEL_ID, source="1-res-standard", index=5, strength=20)
    first = SteerCompletionRequest().steer_features(MODEL_ID, [feature], "the cat sat", n_tokens=8)
    assert set(first) >= {"STEERED", "DEFAULT", "id", "shareUrl"}
    assert first["shareUrl"].endswith(f"/steer/{first['id']}")
    assert first["STEERED"] != first["DEFAULT"]
    second = SteerCompletionRequest().steer_features(MODEL_ID, [feature], "the cat sat", n_tokens=8)
    assert second["id"] == first["id"] and second["STEERED"] == first["STEERED"]
    stronger = SteerFeature(modelId=MODEL_ID, source="1-res-standard", index=5, strength=60)
    third = SteerCompletionRequest().steer_features(MODEL_ID, [stronger], "the cat sat", n_tokens=8)
    assert third["id"] != first["id"] and third["DEFAULT"] == first["DEFAULT"]
    with factory() as session:
        kinds = sorted(session.scalars(select(SteerOutput.type)))
    assert kinds == ["DEFAULT", "STEERED", "STEERED"]  # one default completion serves both steered variants
    loaded = client.post("/api/steer-load", json={"steerOutputId": first["id"]}).json()
    assert loaded["STEERED"] == first["STEERED"] and loaded["DEFAULT"] == first["DEFAULT"]
    assert loaded["prompt"] == "the cat sat" and loaded["features"][0]["strength"] == 20
    assert loaded["settings"]["n_tokens"] == 8
    assert client.post("/api/steer-load", json={"steerOutputId": "nope"}).status_code == 404


def test_steer_chat_request(np_client: Any, client: Any) -> None:
    from neuronpedia.np_feature import SteerFeature
    from neuronpedia.requests.steer_request import SteerChatRequest

    feature = SteerFeature(modelId=MODEL_ID, source="1-res-standard", index=5, strength=30)
    out = SteerChatRequest().steer_features(
        MODEL_ID, [feature], [{"role": "user", "content": "hi"}], [{"role": "user", "content": "hello"}], n_tokens=6
    )
    assert out["DEFAULT"]["chat_template"][0] == {"role": "user", "content": "hi"}
    assert out["STEERED"]["chatTemplate"][0] == {"role": "user", "content": "hello"}
    assert out["STEERED"]["chat_template"][-1]["role"] == "assistant"
    loaded = client.post("/api/steer-load", json={"steerOutputId": out["id"]}).json()
    assert loaded["isChat"] and loaded["STEERED"]["raw"] == out["STEERED"]["raw"]
    assert loaded["defaultChatMessages"] == [{"role": "user", "content": "hi"}]


def test_vectors_new_get_steer_delete(np_client: Any, client: Any, api_key: str) -> None:
    from neuronpedia.np_vector import NPVector
    from neuronpedia.requests.vector_request import VectorRequest

    values = [0.25 * ((i % 5) - 2) for i in range(D_MODEL)]
    vector = VectorRequest().new("cats", MODEL_ID, 1, "hook_resid_pre", values, default_steer_strength=8)
    assert (vector.source, vector.index) == ("1-neuronpedia-resid-pre", "0")
    assert vector.hook_name == "blocks.1.hook_resid_pre"
    second = VectorRequest().new("dogs", MODEL_ID, 1, "hook_resid_pre", values, default_steer_strength=4)
    assert second.index == "1"
    got = NPVector.get(MODEL_ID, vector.source, vector.index)
    assert got.values == values and got.label == "cats" and got.default_steer_strength == 8
    assert {v.label for v in NPVector.get_owned()} == {"cats", "dogs"}
    act = vector.compute_activation_for_text("the cat sat")
    assert len(act.values) == len(act.tokens) and act.tokens[0] == "<|endoftext|>"
    steered = vector.steer_completion("the cat sat")
    assert steered["STEERED"] != steered["DEFAULT"]
    chat = vector.steer_chat([{"role": "user", "content": "hello"}])
    assert chat["STEERED"]["chat_template"][-1]["role"] == "assistant"
    mixed = client.post(
        "/api/steer",
        json={
            "modelId": MODEL_ID,
            "prompt": "a cat",
            "temperature": 0,
            "n_tokens": 4,
            "features": [
                {"modelId": MODEL_ID, "layer": vector.source, "index": 0, "strength": 1},
                {"modelId": MODEL_ID, "layer": "1-res-standard", "index": 5, "strength": 1},
            ],
        },
    )
    assert mixed.status_code == 422 and "vectors and SAE features" in mixed.json()["message"]
    other = client.post("/api/vector/delete", json={"modelId": MODEL_ID, "source": vector.source, "index": "0"})
    assert other.status_code == 401
    vector.delete()
    with pytest.raises(Exception, match="404"):
        NPVector.get(MODEL_ID, vector.source, vector.index)
    bad = client.post(
        "/api/vector/new",
        headers={"x-api-key": api_key},
        json={
            "modelId": MODEL_ID,
            "layerNumber": 1,
            "hookType": "hook_resid_pre",
            "vector": [1.0] * 5,
            "vectorLabel": "x",
        },
    )
    assert bad.status_code == 422 and "dimension" in bad.json()["message"]


def test_tokenize(registered: TinyInference, client: Any) -> None:
    r = client.post("/api/tokenize", json={"modelId": MODEL_ID, "prompt": "the cat"}).json()
    assert (
        r["prependBos"] is True
        and r["tokenStrings"][0] == "<|endoftext|>"
        and len(r["tokens"]) == len(r["tokenStrings"])
    )


def test_inference_role_serves_only_v1(registered: TinyInference, settings: Any) -> None:
    from fastapi.testclient import TestClient

    from interpedia.web.app import create_app

    with TestClient(create_app(settings, role="inference")) as only_v1:
        assert only_v1.post("/v1/tokenize", json={"model": MODEL_ID, "text": "a cat"}).status_code == 200
        assert only_v1.post("/api/tokenize", json={"modelId": MODEL_ID, "prompt": "a cat"}).status_code == 404
        assert only_v1.get("/health").json()["role"] == "inference"


def test_serve_has_a_role_option() -> None:
    from click.testing import CliRunner

    from interpedia.cli import main

    out = CliRunner().invoke(main, ["serve", "--help"])
    assert out.exit_code == 0 and "--role" in out.output and "inference" in out.output
