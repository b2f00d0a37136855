"""The official ``neuronpedia-autointerp-client`` package, unmodified, against a live interpedia server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakellm import FakeLLM, fake_llm  # noqa: F401  (fixture)

SECRET = "s3cret-for-tests"

LORD = [
    {"tokens": ["And", " the", " LORD", " said", " unto", " Moses"], "values": [0, 0, 9.5, 1.25, 0, 0]},
    {"tokens": ["for", " the", " LORD", " is", " good"], "values": [0, 0, 7, 0, 0]},
    {"tokens": ["praise", " the", " LORD", " all"], "values": [0, 0.5, 6, 0]},
]
ZERO = [
    {"tokens": ["import", " numpy", " as", " np"], "values": [0, 0, 0, 0]},
    {"tokens": ["the", " cat", " sat", " on", " the", " mat"], "values": [0, 0, 0, 0, 0, 0]},
]


@pytest.fixture(autouse=True)
def _secret_and_llm(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:  # noqa: F811
    monkeypatch.setenv("INTERPEDIA_SECRET", SECRET)
    return fake_llm


@pytest.fixture
def api(live_server: str) -> Iterator[Any]:
    import neuronpedia_autointerp_client as nac

    config = nac.Configuration(host=f"{live_server}/v1", api_key={"SimpleSecretAuth": SECRET})
    with nac.ApiClient(config) as client:
        yield nac.DefaultApi(client)


def _acts(rows: list[dict[str, Any]]) -> list[Any]:
    from neuronpedia_autointerp_client.models.np_activation import NPActivation

    return [NPActivation(tokens=r["tokens"], values=r["values"]) for r in rows]


def test_explain_default(api: Any, fake_llm: FakeLLM) -> None:  # noqa: F811
    from neuronpedia_autointerp_client.models.explain_default_post_request import ExplainDefaultPostRequest

    reply = api.explain_default_post(
        ExplainDefaultPostRequest(activations=_acts(LORD + ZERO), openrouter_key="sk-user", model="fake-good")
    )
    assert reply.explanation == "the word LORD"
    sent = fake_llm.chat_requests("fake-good")[-1]
    assert sent["auth"] == "Bearer sk-user"  # the caller's key goes to the LLM
    assert "<<LORD>>" in sent["body"]["messages"][-1]["content"]


@pytest.mark.parametrize("kind", ["FUZZ", "DETECTION"])
def test_score_fuzz_detection(api: Any, kind: str) -> None:
    from neuronpedia_autointerp_client.models.np_score_fuzz_detection_type import NPScoreFuzzDetectionType
    from neuronpedia_autointerp_client.models.score_fuzz_detection_post_request import (
        ScoreFuzzDetectionPostRequest,
    )

    reply = api.score_fuzz_detection_post(
        ScoreFuzzDetectionPostRequest(
            activations=_acts(LORD + ZERO),
            explanation="the word LORD",
            openrouter_key="k",
            model="fake-good",
            type=NPScoreFuzzDetectionType(kind),
        )
    )
    assert reply.score == 1.0 and len(reply.breakdown) == 5
    row = reply.breakdown[0]
    assert isinstance(row.distance, int) and isinstance(row.ground_truth, bool) and row.str_tokens
    assert sum(r.ground_truth for r in reply.breakdown) == 3 and all(r.correct for r in reply.breakdown)


def test_score_embedding(api: Any) -> None:
    from neuronpedia_autointerp_client.models.score_embedding_post_request import ScoreEmbeddingPostRequest

    reply = api.score_embedding_post(
        ScoreEmbeddingPostRequest(activations=_acts(LORD + ZERO), explanation="the LORD in Biblical verses")
    )
    assert reply.score == 1.0 and len(reply.breakdown) == 5
    assert {type(r.distance) for r in reply.breakdown} == {int}
    assert [r.distance for r in reply.breakdown][-2:] == [-1, -1]


def test_errors_the_client_understands(api: Any, live_server: str) -> None:
    import neuronpedia_autointerp_client as nac
    from neuronpedia_autointerp_client.exceptions import ApiException, BadRequestException, UnauthorizedException
    from neuronpedia_autointerp_client.models.explain_default_post_request import ExplainDefaultPostRequest
    from neuronpedia_autointerp_client.models.score_embedding_post_request import ScoreEmbeddingPostRequest

    with pytest.raises(BadRequestException):  # one class only: ROC-AUC is undefined
        api.score_embedding_post(ScoreEmbeddingPostRequest(activations=_acts(LORD), explanation="the LORD"))
    with pytest.raises(ApiException) as info:  # the LLM's account is empty: 402, nothing made up
        api.explain_default_post(
            ExplainDefaultPostRequest(activations=_acts(LORD), openrouter_key="k", model="fail-402")
        )
    assert info.value.status == 402
    wrong = nac.Configuration(host=f"{live_server}/v1", api_key={"SimpleSecretAuth": "nope"})
    with nac.ApiClient(wrong) as client, pytest.raises(UnauthorizedException):
        nac.DefaultApi(client).score_embedding_post(
            ScoreEmbeddingPostRequest(activations=_acts(LORD + ZERO), explanation="x")
        )
