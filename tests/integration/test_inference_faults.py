"""Bad input gets a clear 4xx in the one JSON error shape; concurrent requests never mix results; a failing request
never takes the server down."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from inference_helpers import D_MODEL, MODEL_ID, PLAIN_MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

from interpedia.db import transaction
from interpedia.store.catalogue import ensure_model

SINGLE = {"model": MODEL_ID, "prompt": "the cat sat", "source": "1-res-standard", "index": "5"}
STEER = {
    "model": MODEL_ID,
    "prompt": "the cat sat",
    "steer_method": "SIMPLE_ADDITIVE",
    "normalize_steering": False,
    "types": ["STEERED", "DEFAULT"],
    "n_completion_tokens": 4,
    "temperature": 0.5,
    "strength_multiplier": 1,
    "freq_penalty": 0,
    "seed": 1,
    "features": [{"model": MODEL_ID, "source": "1-res-standard", "index": 5, "strength": 10}],
}
API_STEER = {
    "modelId": MODEL_ID,
    "prompt": "the cat",
    "temperature": 0.5,
    "n_tokens": 4,
    "freq_penalty": 0,
    "seed": 1,
    "strength_multiplier": 1,
    "features": [{"modelId": MODEL_ID, "layer": "1-res-standard", "index": 5, "strength": 10}],
}
CHAT = {**STEER, "prompt": [{"role": "user", "content": "hi"}], "steer_special_tokens": True}


@pytest.fixture
def registered(factory: Any, tiny_inf: TinyInference) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    with transaction(factory) as session:
        ensure_model(session, "ghost", layers=2)  # in the catalogue, with no weights anywhere
    return tiny_inf


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


CASES = [
    ("/v1/activation/single", _with(SINGLE, prompt=""), 422, "prompt is empty"),
    ("/v1/activation/single", _with(SINGLE, prompt="the cat sat " * 60), 422, "the limit is 128"),
    ("/v1/activation/single", _with(SINGLE, model="nope"), 404, "model 'nope' not found"),
    ("/v1/activation/single", _with(SINGLE, source="9-res-nope"), 404, "source tiny-inf/9-res-nope not found"),
    ("/v1/activation/single", _with(SINGLE, index="100000"), 422, "out of range"),
    ("/v1/activation/single", _with(SINGLE, index="-1"), 422, "negative"),
    ("/v1/activation/single", _with(SINGLE, index="five"), 422, "not an integer"),
    ("/v1/activation/single", _with(SINGLE, model="ghost"), 503, "no weights"),
    (
        "/v1/activation/single",
        {"model": MODEL_ID, "prompt": "a", "vector": [1.0] * 3, "hook": "blocks.1.hook_resid_pre"},
        422,
        "width",
    ),
    (
        "/v1/activation/single",
        {"model": MODEL_ID, "prompt": "a", "vector": [1.0] * D_MODEL, "hook": "blocks.9.hook_nope"},
        422,
        "not a hook",
    ),
    ("/v1/activation/single", {"model": MODEL_ID, "prompt": "a"}, 422, "exactly one of"),
    (
        "/v1/activation/topk-by-token",
        {"model": MODEL_ID, "prompt": "a", "source": "1-res-standard", "top_k": 0, "ignore_bos": True},
        422,
        "top_k",
    ),
    (
        "/v1/activation/all",
        {
            "model": MODEL_ID,
            "prompt": "a cat",
            "source_set": "res-standard",
            "selected_sources": [],
            "sort_by_token_indexes": [40],
            "ignore_bos": True,
        },
        422,
        "out of range",
    ),
    (
        "/v1/activation/all",
        {
            "model": MODEL_ID,
            "prompt": "a cat",
            "source_set": "res-nope",
            "selected_sources": [],
            "sort_by_token_indexes": [],
            "ignore_bos": True,
        },
        404,
        "not found",
    ),
    ("/v1/activation/source", {"model": MODEL_ID, "prompts": ["a"] * 5, "source": "1-res-standard"}, 422, "at most 4"),
    (
        "/v1/steer/completion",
        _with(STEER, features=[{"model": MODEL_ID, "source": "1-res-standard", "index": 5, "strength": 1e9}]),
        422,
        "strength must be",
    ),
    ("/v1/steer/completion", _with(STEER, steer_method="simple_additive"), 422, "steer_method"),
    ("/v1/steer/completion", _with(STEER, features=None), 422, "exactly one of features or vectors"),
    ("/v1/steer/completion", _with(STEER, n_completion_tokens=0), 422, "n_completion_tokens"),
    ("/v1/steer/completion", _with(STEER, n_completion_tokens=1000), 422, "at most|1 to 256"),
    ("/v1/steer/completion", _with(STEER, stream="yes"), 422, "stream"),
    ("/v1/steer/completion", _with(STEER, prompt=""), 422, "prompt is empty"),
    (
        "/v1/steer/completion",
        _with(
            STEER,
            steer_method="ORTHOGONAL_DECOMP",
            features=None,
            vectors=[{"steering_vector": [0.0] * D_MODEL, "strength": 1, "hook": "blocks.1.hook_resid_pre"}],
        ),
        422,
        "zero",
    ),
    ("/v1/steer/completion-chat", _with(CHAT, prompt=[]), 422, "prompt"),
    ("/v1/steer/completion-chat", _with(CHAT, prompt=[{"role": "user"}]), 422, "content"),
    ("/v1/steer/completion-chat", _with(CHAT, prompt=[{"role": "", "content": "x"}]), 422, "role"),
    ("/v1/steer/completion-chat", _with(CHAT, prompt=[{"role": "user", "content": 5}]), 422, "content"),
    (
        "/v1/steer/completion-chat",
        _with(
            CHAT,
            model=PLAIN_MODEL_ID,
            features=[{"model": PLAIN_MODEL_ID, "source": "1-res-standard", "index": 5, "strength": 1}],
        ),
        422,
        "no chat template",
    ),
    ("/v1/tokenize", {"model": MODEL_ID, "text": ""}, 422, "text is empty"),
    ("/v1/util/sae-vector", {"model": MODEL_ID, "source": "1-res-standard", "index": 96}, 422, "out of range"),
    (
        "/api/activation/new",
        {"feature": {"modelId": MODEL_ID, "layer": "7-res-x", "index": "1"}, "customText": "a cat"},
        404,
        "not found",
    ),
    (
        "/api/activation/new",
        {"feature": {"modelId": MODEL_ID, "layer": "1-res-standard", "index": "1"}, "customText": ""},
        422,
        "empty",
    ),
    ("/api/steer", _with(API_STEER, temperature=3), 422, "temperature"),
    ("/api/steer", _with(API_STEER, prompt=""), 422, "prompt"),
    (
        "/api/steer",
        _with(API_STEER, features=[{"modelId": "other", "layer": "1-res-standard", "index": 5, "strength": 1}]),
        422,
        "not 'tiny-inf'",
    ),
    ("/api/steer", _with(API_STEER, stream="yes"), 422, "stream"),
    (
        "/api/steer-chat",
        _with(
            API_STEER, defaultChatMessages=[{"role": "user"}], steeredChatMessages=[{"role": "user", "content": "x"}]
        ),
        422,
        "content",
    ),
    (
        "/api/search-topk-by-token",
        {"modelId": MODEL_ID, "source": "1-res-standard", "text": "a", "densityThreshold": 2},
        422,
        "densityThreshold",
    ),
    (
        "/api/search-all",
        {"modelId": MODEL_ID, "sourceSet": "res-standard", "text": "a", "numResults": 500},
        422,
        "numResults",
    ),
]


def test_bad_input_is_a_clear_4xx(registered: TinyInference, client: Any) -> None:
    """Every case in CASES, on one server (one model load): status, the error shape, and a message that says why."""
    wrong = []
    for path, body, status, message in CASES:
        r = client.post(path, json=body)
        doc = r.json()
        ok = (
            r.status_code == status
            and set(doc) >= {"error", "message", "status"}
            and doc["status"] == status
            and re.search(message, doc["message"]) is not None
        )
        if not ok:
            wrong.append(f"{path} {json.dumps(body)[:120]}: {r.status_code} {doc}")
    assert not wrong, "\n".join(wrong)


def test_nan_strength_is_rejected(registered: TinyInference, client: Any) -> None:
    for path, body in (("/v1/steer/completion", STEER), ("/api/steer", API_STEER)):
        raw = json.dumps(body).replace('"strength": 10', '"strength": NaN')
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "strength" in r.json()["message"], r.text


def test_token_limit_is_configurable(registered: TinyInference, settings: Any) -> None:
    from fastapi.testclient import TestClient

    from interpedia.web.app import create_app

    app = create_app(settings.model_copy(update={"inference_token_limit": 6}))
    with TestClient(app) as small:
        ok = small.post("/v1/activation/single", json=_with(SINGLE, prompt="a cat"))
        assert ok.status_code == 200
        long = small.post("/v1/activation/single", json=_with(SINGLE, prompt="the cat sat on the mat"))
        assert long.status_code == 422 and "the limit is 6" in long.json()["message"]


def test_parallel_clients_never_mix_results_and_failures_do_not_hurt(
    registered: TinyInference, live_server: str
) -> None:
    prompts = [f"the {w} sat on a mat near the river" for w in ("cat", "dog", "king", "bird", "light", "model")]
    jobs: list[tuple[str, dict[str, Any]]] = []
    for n, prompt in enumerate(prompts):
        jobs.append(("/v1/activation/single", _with(SINGLE, prompt=prompt, index=str(3 + n * 7))))
        jobs.append(
            (
                "/v1/activation/topk-by-token",
                {"model": MODEL_ID, "prompt": prompt, "source": "1-res-topk", "top_k": 4, "ignore_bos": True},
            )
        )
        jobs.append(("/v1/steer/completion", _with(STEER, prompt=prompt, seed=n, n_completion_tokens=5)))
        jobs.append(("/v1/activation/single", _with(SINGLE, prompt=prompt, index="999999")))  # fails: 422
        jobs.append(("/v1/activation/single", _with(SINGLE, prompt=prompt, source="3-res-missing")))  # fails: 404
    with httpx.Client(base_url=live_server, timeout=120) as http:
        expected = [(http.post(p, json=b).status_code, http.post(p, json=b).json()) for p, b in jobs]
    assert {s for s, _ in expected} == {200, 404, 422}

    def call(job: tuple[str, dict[str, Any]]) -> tuple[int, Any]:
        with httpx.Client(base_url=live_server, timeout=120) as http:
            r = http.post(job[0], json=job[1])
            return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(call, jobs))
            assert got == expected
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert http.post("/v1/tokenize", json={"model": MODEL_ID, "text": "still up"}).status_code == 200
