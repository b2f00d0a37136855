"""Steering as neuronpedia.org streams it (``stream: true`` answers server-sent events on ``/api/steer*`` and
``/v1/steer/*``), its presets (``/api/steer/presets``), the logprobs display of the steer page, and
``GET /v1/steer/health``, on SQLite and Postgres. Each SSE chunk of ``/v1`` is parsed by the official
``neuronpedia-inference-client``'s own response models."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neuronpedia_inference_client as nic
import pytest
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from sqlalchemy import func, select

from interpedia.db.tables import SteerOutput

FEATURE = {"modelId": MODEL_ID, "layer": "1-res-standard", "index": 5, "strength": 40.0}


@pytest.fixture
def registered(factory: Any, tiny_inf: TinyInference) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    return tiny_inf


@pytest.fixture
def api(registered: TinyInference, live_server: str) -> Iterator[Any]:
    yield nic.DefaultApi(nic.ApiClient(nic.Configuration(host=f"{live_server}/v1")))


def _events(raw: bytes | str) -> list[tuple[str, Any]]:
    """(event name, parsed data) of a server-sent event stream."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((name, json.loads("\n".join(data))))
    return out


def _grows(texts: list[str]) -> bool:
    return all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))


def test_v1_completion_stream_through_the_official_client(api: Any) -> None:
    request = dict(
        prompt="the cat sat on",
        model=MODEL_ID,
        steer_method=nic.NPSteerMethod.SIMPLE_ADDITIVE,
        normalize_steering=False,
        types=[nic.NPSteerType.STEERED, nic.NPSteerType.DEFAULT],
        features=[nic.NPSteerFeature(model=MODEL_ID, source="1-res-standard", index=5, strength=40.0)],
        n_completion_tokens=6,
        temperature=0.0,
        strength_multiplier=1.0,
        freq_penalty=0.0,
        seed=7.0,
        n_logprobs=2,
    )
    whole = api.steer_completion_post(nic.SteerCompletionRequest(**request))
    raw = api.steer_completion_post_without_preload_content(nic.SteerCompletionRequest(**request, stream=True))
    assert raw.status == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = _events(raw.read())
    assert events and all(name == "message" for name, _ in events)
    chunks = [nic.SteerCompletionPost200Response.from_dict(data) for _, data in events]  # the client's own model
    assert chunks[-1] == whole  # the last event is the whole answer
    for kind in ("STEERED", "DEFAULT"):
        texts = [next(o.output for o in c.outputs if o.type == kind) for c in chunks]
        assert _grows(texts) and texts[-1]
    assert len(chunks) >= 6  # one per generated token at least
    assert chunks[0].outputs[1].output == ""  # DEFAULT runs after STEERED


def test_v1_chat_stream(api: Any, live_server: str) -> None:
    import requests

    body = {
        "prompt": [{"role": "user", "content": "the dog ran"}],
        "model": MODEL_ID,
        "steer_method": "SIMPLE_ADDITIVE",
        "normalize_steering": False,
        "types": ["STEERED", "DEFAULT"],
        "features": [{"model": MODEL_ID, "source": "1-res-standard", "index": 5, "strength": 40.0}],
        "n_completion_tokens": 4,
        "temperature": 0.0,
        "strength_multiplier": 1.0,
        "freq_penalty": 0.0,
        "seed": 1,
        "steer_special_tokens": True,
    }
    whole = requests.post(f"{live_server}/v1/steer/completion-chat", json=body, timeout=120).json()
    r = requests.post(f"{live_server}/v1/steer/completion-chat", json={**body, "stream": True}, timeout=120)
    events = _events(r.text)
    chunks = [nic.SteerCompletionChatPost200Response.from_dict(data) for _, data in events]
    assert chunks[-1] == nic.SteerCompletionChatPost200Response.from_dict(whole)
    assert _grows([c.outputs[0].raw for c in chunks])
    # a bad request is refused before the stream starts: a JSON error with its status
    feature = {**body["features"][0], "model": "nope"}
    bad_body = {**body, "stream": True, "model": "nope", "features": [feature]}
    bad = requests.post(f"{live_server}/v1/steer/completion-chat", json=bad_body, timeout=60)
    assert bad.status_code == 404 and bad.headers["content-type"].startswith("application/json")


def test_api_steer_stream_then_cache(registered: TinyInference, client: Any, factory: Any) -> None:
    body = {
        "modelId": MODEL_ID,
        "prompt": "the king spoke",
        "features": [FEATURE],
        "temperature": 0,
        "n_tokens": 5,
        "n_logprobs": 3,
        "stream": True,
    }
    r = client.post("/api/steer", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [data for _, data in _events(r.text)]
    final = events[-1]
    assert final["id"] and final["shareUrl"].endswith(f"/steer/{final['id']}")
    assert all(e["id"] is None for e in events[:-1])  # the share link exists once the outputs are saved
    steered = [e["STEERED"] for e in events[:-1]]
    assert _grows(steered) and steered[-1] == final["STEERED"]
    assert events[0]["DEFAULT"] is None  # not started yet while STEERED streams
    assert len(final["steeredLogProbs"]) == len(final["defaultLogProbs"]) >= 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(SteerOutput)) == 2
    # the same request again is answered from the cache: one event, nothing new saved
    again = [data for _, data in _events(client.post("/api/steer", json=body).text)]
    assert len(again) == 1 and again[0]["id"] == final["id"] and again[0]["STEERED"] == final["STEERED"]
    plain = client.post("/api/steer", json={**body, "stream": False}).json()
    assert plain["id"] == final["id"] and plain["DEFAULT"] == final["DEFAULT"]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(SteerOutput)) == 2
    # another strength: the cached DEFAULT is there from the first event, only STEERED runs, linked to it
    stronger = {**body, "features": [{**FEATURE, "strength": 80.0}]}
    events = [data for _, data in _events(client.post("/api/steer", json=stronger).text)]
    assert all(e["DEFAULT"] == final["DEFAULT"] for e in events) and events[-1]["id"] != final["id"]
    with factory() as session:
        row = session.get(SteerOutput, events[-1]["id"])
        assert row is not None and row.type == "STEERED"
        default = session.scalar(select(SteerOutput).where(SteerOutput.type == "DEFAULT"))
        assert default is not None and row.connected_default_output_id == default.id
        assert session.scalar(select(func.count()).select_from(SteerOutput)) == 3


def test_api_steer_chat_stream(registered: TinyInference, client: Any) -> None:
    chat = [{"role": "user", "content": "hello there"}]
    body = {
        "modelId": MODEL_ID,
        "defaultChatMessages": chat,
        "steeredChatMessages": chat,
        "features": [FEATURE],
        "temperature": 0,
        "n_tokens": 4,
        "stream": True,
    }
    events = [data for _, data in _events(client.post("/api/steer-chat", json=body).text)]
    final = events[-1]
    assert final["id"] and final["STEERED"]["chatTemplate"][-1]["role"] == "assistant"
    assert _grows([e["STEERED"]["raw"] for e in events if e["STEERED"]])
    plain = client.post("/api/steer-chat", json={**body, "stream": False}).json()
    assert plain["id"] == final["id"] and plain["DEFAULT"]["raw"] == final["DEFAULT"]["raw"]


def test_presets(registered: TinyInference, client: Any, api_key: str, tmp_path: Path, settings: Any) -> None:
    r = client.post("/api/steer/presets", json={"modelId": MODEL_ID})
    assert r.status_code == 200
    doc = r.json()
    assert doc["model"]["id"] == MODEL_ID and doc["promptPresets"] and doc["featurePresets"] == []
    assert client.post("/api/steer/presets", json={"modelId": "nope"}).status_code == 404
    # the caller's own vectors come first
    vec = client.post(
        "/api/vector/new",
        headers={"x-api-key": api_key},
        json={
            "modelId": MODEL_ID,
            "layerNumber": 1,
            "hookType": "hook_resid_pre",
            "vector": [0.1] * 32,
            "vectorDefaultSteerStrength": 12,
            "vectorLabel": "my direction",
        },
    )
    assert vec.status_code == 200, vec.text
    mine = client.post("/api/steer/presets", headers={"x-api-key": api_key}, json={"modelId": MODEL_ID}).json()
    first = mine["featurePresets"][0]
    assert first["isUserVector"] and first["name"] == "my direction"
    assert first["features"][0]["hasVector"] and first["features"][0]["strength"] == 12
    # a presets file names the model's own prompts and features
    path = tmp_path / "presets.json"
    preset = {"name": "Five", "features": [FEATURE], "steerMethod": "ORTHOGONAL_DECOMP"}
    path.write_text(
        json.dumps({MODEL_ID: {"promptPresets": [{"name": "K", "prompt": "the king"}], "featurePresets": [preset]}})
    )
    settings.steer_presets = path
    doc = client.post("/api/steer/presets", json={"modelId": MODEL_ID}).json()
    assert doc["promptPresets"] == [{"name": "K", "prompt": "the king"}] and doc["featurePresets"][0]["name"] == "Five"
    page = client.get(f"/{MODEL_ID}/steer").text
    link = re.search(r'class="chip preset-features" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "source=1-res-standard" in link and "index=5" in link and "method=ORTHOGONAL_DECOMP" in link
    filled = client.get(link).text
    assert 'value="5"' in filled and '<option value="ORTHOGONAL_DECOMP" selected>' in filled
    path.write_text("{not json")
    assert client.post("/api/steer/presets", json={"modelId": MODEL_ID}).status_code == 503


def test_steer_page_shows_logprobs(registered: TinyInference, client: Any) -> None:
    page = client.get(f"/{MODEL_ID}/steer")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {
        "csrf_token": csrf,
        "mode": "completion",
        "prompt": "the cat sat",
        "source": "1-res-standard",
        "index": "5",
        "strength": "40",
        "temperature": "0",
        "n_tokens": "5",
        "n_logprobs": "3",
    }
    r = client.post(f"/{MODEL_ID}/steer", data=form, follow_redirects=True)
    assert r.status_code == 200
    spans = re.findall(r'<span class="lp p(\d+)" title="([^"]+)" data-p="([^"]+)">', r.text)
    assert len(spans) >= 2 and all(1 <= int(level) <= 10 for level, _, _ in spans)
    assert all(" · top: " in title for _, title, _ in spans) and 'id="logprobs-help"' in r.text
    twin = client.get(r.url.path + ".json").json()
    assert twin["result"]["steeredLogProbs"] and twin["form"]["n_logprobs"] == 3


def test_steer_health(registered: TinyInference, client: Any) -> None:
    client.post("/v1/tokenize", json={"model": MODEL_ID, "text": "hi"})  # warm the model
    doc = client.get("/v1/steer/health").json()
    assert doc["status"] == "ok" and MODEL_ID in doc["stats"]["models_loaded"] and "loaded on" in doc["summary"]


def test_a_client_leaving_mid_stream_frees_the_model(registered: TinyInference, app: Any) -> None:
    """A steered stream closed after its first token (what the server does when the client goes away) releases the
    model and leaves no steering hook behind: the next default completion is what it was before."""
    from interpedia.inference import for_app
    from interpedia.inference.service import FeatureRef
    from interpedia.inference.steering import SteerSettings

    svc = for_app(app.state)
    settings = SteerSettings(n_tokens=12, temperature=0.0)
    before = svc.steer_completion(MODEL_ID, "the queen", [], ["DEFAULT"], settings)
    directions = svc.directions(MODEL_ID, [FeatureRef("1-res-standard", 5, 40.0)])
    stream = svc.steer_completion_stream(MODEL_ID, "the queen", directions, ["STEERED"], settings)
    first = next(stream)
    model = svc.model(MODEL_ID)
    assert model.lock.locked() and first["outputs"][0]["output"]  # generating: the model is held
    stream.close()
    assert not model.lock.locked()
    assert svc.steer_completion(MODEL_ID, "the queen", [], ["DEFAULT"], settings) == before
