"""/api/explanation/*: generate (LLM and offline), new, get, delete, score, on SQLite and Postgres.

The LLM is a local OpenAI-compatible server (tests/fakellm.py) speaking real HTTP; its failures must
leave no explanation and no score behind (Neuronpedia issue #77 stored a 20% score instead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir
from fakellm import FakeLLM, fake_llm  # noqa: F401  (fixture)
from sqlalchemy import func, select

from interpedia.db import transaction
from interpedia.db.tables import Explanation, ExplanationScore, ExplanationType, Source
from interpedia.ingest import import_path
from interpedia.store.records import FeatureRecord
from interpedia.store.users import create_api_key, ensure_user
from interpedia.store.writer import write_features

FEATURE = {"modelId": "tiny-test", "layer": "0-res-test", "index": 3}


@pytest.fixture(autouse=True)
def _llm_first(fake_llm: FakeLLM) -> FakeLLM:  # noqa: F811
    """Start the LLM server (and its settings) before the app reads the settings."""
    return fake_llm


@pytest.fixture
def imported(factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=10), factory)


def key(factory: Any, name: str, *, admin: bool = False) -> dict[str, str]:
    """Headers with a fresh key of user ``name``."""
    with transaction(factory) as session:
        user = ensure_user(session, name)
        user.admin = admin
        return {"x-api-key": create_api_key(session, user)}


def count(factory: Any, table: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _error(resp: Any, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message", "status", "field"} and body["status"] == status
    return str(body["message"])


def test_offline_explanation_for_anyone_then_400_on_repeat(client: Any, factory: Any, imported: None) -> None:
    headers = key(factory, "alice")
    body = {**FEATURE, "explanationType": "interpedia_top-tokens"}
    resp = client.post("/api/explanation/generate", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    exp = resp.json()["explanation"]
    assert exp["typeName"] == "interpedia_top-tokens" and exp["explanationModelName"] == "interpedia-offline"
    assert exp["description"].startswith('"') and exp["hasEmbedding"] is True
    assert (exp["modelId"], exp["layer"], exp["index"]) == ("tiny-test", "0-res-test", "3")
    doc = client.get("/api/feature/tiny-test/0-res-test/3").json()
    assert [e["id"] for e in doc["explanations"]] == [exp["id"]]
    assert "already has an explanation" in _error(
        client.post("/api/explanation/generate", json=body, headers=headers), 400
    )
    assert _error(client.post("/api/explanation/generate", json=body), 401)


def test_llm_explanation_needs_permission_and_is_stored_with_its_type(
    client: Any,
    factory: Any,
    imported: None,
    fake_llm: FakeLLM,  # noqa: F811
) -> None:  # noqa: F811
    body = {**FEATURE, "explanationType": "np_max-act-logits", "explanationModelName": "fake-good"}
    assert "only admins" in _error(
        client.post("/api/explanation/generate", json=body, headers=key(factory, "bob")), 403
    )
    resp = client.post("/api/explanation/generate", json=body, headers=key(factory, "root", admin=True))
    assert resp.status_code == 200, resp.text
    exp = resp.json()["explanation"]
    assert exp["description"].startswith("the word ") and exp["explanationModelName"] == "fake-good"
    prompt = fake_llm.chat_requests("fake-good")[-1]["body"]["messages"][-1]["content"]
    assert '"LORD"' in prompt  # the top logits went into the prompt
    with factory() as session:
        assert session.get(ExplanationType, "np_max-act-logits") is not None


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [
        ("fail-401", 502, "refused the API key"),
        ("fail-402", 402, "no credits"),
        ("fail-500", 502, "HTTP 500"),
        ("error-in-body", 402, "Insufficient credits"),
        ("garbage", 502, "not JSON"),
        ("empty", 502, "empty"),
    ],
)
def test_a_failing_llm_stores_no_explanation(
    client: Any, factory: Any, imported: None, model: str, status: int, words: str
) -> None:
    body = {**FEATURE, "explanationType": "eleuther_acts_top20", "explanationModelName": model}
    message = _error(
        client.post("/api/explanation/generate", json=body, headers=key(factory, "root", admin=True)), status
    )
    assert words in message and "nothing was stored" in message
    assert count(factory, Explanation) == 0


def test_an_unparseable_explanation_is_refused_and_a_429_is_retried(client: Any, factory: Any, imported: None) -> None:
    headers = key(factory, "root", admin=True)
    bad = {**FEATURE, "explanationType": "eleuther_acts_top20", "explanationModelName": "nonsense"}
    assert "[EXPLANATION]" in _error(client.post("/api/explanation/generate", json=bad, headers=headers), 502)
    assert count(factory, Explanation) == 0
    flaky = {**FEATURE, "explanationType": "oai_token-act-pair", "explanationModelName": "flaky-429"}
    resp = client.post("/api/explanation/generate", json=flaky, headers=headers)
    assert resp.status_code == 200 and resp.json()["explanation"]["explanationModelName"] == "flaky-429"


def test_no_llm_configured_is_503(client: Any, factory: Any, imported: None, settings: Any) -> None:
    settings.llm_base_url = ""
    body = {**FEATURE, "explanationType": "np_max-act"}
    assert "INTERPEDIA_LLM_BASE_URL" in _error(
        client.post("/api/explanation/generate", json=body, headers=key(factory, "root", admin=True)), 503
    )


def test_bad_requests(client: Any, factory: Any, imported: None) -> None:
    headers = key(factory, "alice")
    assert "unknown explanation type" in _error(
        client.post("/api/explanation/generate", json={**FEATURE, "explanationType": "magic"}, headers=headers), 400
    )
    assert _error(
        client.post(
            "/api/explanation/generate", json={**FEATURE, "index": 99, "explanationType": "np_max-act"}, headers=headers
        ),
        404,
    )
    with transaction(factory) as session:  # a dead feature: no examples at all
        source = session.scalar(select(Source).where(Source.name == "0-res-test"))
        write_features(
            session,
            source,
            [FeatureRecord(index=50, stats={"frac_nonzero": 0.0}, activations=[])],
            creator_id=None,
            token_ids={},
        )
    assert "no activating examples" in _error(
        client.post(
            "/api/explanation/generate",
            json={**FEATURE, "index": 50, "explanationType": "interpedia_top-tokens"},
            headers=headers,
        ),
        400,
    )


def test_manual_explanation_get_and_delete(client: Any, factory: Any, imported: None) -> None:
    alice, bob = key(factory, "alice"), key(factory, "bob")
    resp = client.post(
        "/api/explanation/new", json={"feature": {**FEATURE, "explanation": "  Biblical speech "}}, headers=alice
    )
    assert resp.status_code == 200, resp.text
    exp = resp.json()["explanation"]
    assert exp["description"] == "Biblical speech" and exp["author"] == {"name": "alice"} and exp["hasEmbedding"]
    assert resp.json()["url"].endswith("/tiny-test/0-res-test/3")
    got = client.get(f"/api/explanation/{exp['id']}").json()
    assert got["description"] == "Biblical speech" and got["scores"] == []
    assert _error(client.post(f"/api/explanation/{exp['id']}/delete", headers=bob), 403)
    assert client.post(f"/api/explanation/{exp['id']}/delete", headers=alice).status_code == 200
    assert _error(client.get(f"/api/explanation/{exp['id']}"), 404)
    assert _error(
        client.post("/api/explanation/new", json={"feature": {**FEATURE, "explanation": ""}}, headers=alice), 422
    )


def _explanation(client: Any, headers: dict[str, str], text: str = "the word LORD") -> str:
    resp = client.post("/api/explanation/new", json={"feature": {**FEATURE, "explanation": text}}, headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["explanation"]["id"])


def test_embedding_score_needs_no_llm_and_shows_on_the_feature(client: Any, factory: Any, imported: None) -> None:
    alice = key(factory, "alice")
    eid = _explanation(client, alice)
    resp = client.post(
        "/api/explanation/score", json={"explanationId": eid, "scorerType": "eleuther_embedding"}, headers=alice
    )
    assert resp.status_code == 200, resp.text
    score = resp.json()["score"]
    assert 0.0 <= score["value"] <= 1.0 and score["explanationScoreModelName"] == "all-MiniLM-L6-v2"
    details = json.loads(score["jsonDetails"])
    assert details["method"] == "embedding" and len(details["breakdown"]) > 5
    doc = client.get("/api/feature/tiny-test/0-res-test/3").json()
    assert doc["explanations"][0]["scores"][0]["id"] == score["id"]
    assert "already exists" in _error(
        client.post(
            "/api/explanation/score", json={"explanationId": eid, "scorerType": "eleuther_embedding"}, headers=alice
        ),
        400,
    )
    assert _error(client.post(f"/api/explanation/score/{score['id']}/delete", headers=key(factory, "bob")), 403)
    assert client.post(f"/api/explanation/score/{score['id']}/delete", headers=alice).status_code == 200
    assert count(factory, ExplanationScore) == 0


@pytest.mark.parametrize("scorer", ["eleuther_fuzz", "eleuther_recall", "recall_alt"])
def test_llm_scores(client: Any, factory: Any, imported: None, scorer: str) -> None:
    root = key(factory, "root", admin=True)
    eid = _explanation(client, root)
    resp = client.post(
        "/api/explanation/score",
        json={"explanationId": eid, "scorerType": scorer, "scorerModel": "fake-good"},
        headers=root,
    )
    assert resp.status_code == 200, resp.text
    score = resp.json()["score"]
    assert 0.0 <= score["value"] <= 1.0 and score["explanationScoreTypeName"] == scorer
    details = json.loads(score["jsonDetails"])
    assert details["tp"] + details["fn"] > 0 and details["tn"] + details["fp"] > 0


@pytest.mark.parametrize(
    ("model", "status"),
    [("fail-402", 402), ("error-in-body", 402), ("fail-500", 502), ("nonsense", 502), ("fail-401", 502)],
)
def test_a_failing_llm_stores_no_score(client: Any, factory: Any, imported: None, model: str, status: int) -> None:
    root = key(factory, "root", admin=True)
    eid = _explanation(client, root)
    for scorer in ("eleuther_fuzz", "recall_alt"):
        body = {"explanationId": eid, "scorerType": scorer, "scorerModel": model}
        assert "nothing was stored" in _error(client.post("/api/explanation/score", json=body, headers=root), status)
    assert count(factory, ExplanationScore) == 0
    assert client.get(f"/api/explanation/{eid}").json()["scores"] == []


def test_llm_scores_need_permission(client: Any, factory: Any, imported: None) -> None:
    alice = key(factory, "alice")
    eid = _explanation(client, alice)
    body = {"explanationId": eid, "scorerType": "eleuther_recall"}
    assert _error(client.post("/api/explanation/score", json=body, headers=alice), 403)
    assert "unknown score type" in _error(
        client.post("/api/explanation/score", json={"explanationId": eid, "scorerType": "vibes"}, headers=alice), 400
    )
    assert _error(
        client.post(
            "/api/explanation/score", json={"explanationId": "nope", "scorerType": "recall_alt"}, headers=alice
        ),
        404,
    )
