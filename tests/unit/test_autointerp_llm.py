"""The OpenAI-compatible chat client against a local test server speaking real HTTP."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from fakellm import FakeLLM  # noqa: E402

from interpedia.autointerp.llm import (  # noqa: E402
    ChatClient,
    LLMAuthError,
    LLMBadReply,
    LLMConfig,
    LLMNoCredits,
    LLMNotConfigured,
    LLMRateLimited,
    LLMUnavailable,
)

HELLO = [{"role": "user", "content": 'Tokens where it fires most: "cat"'}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


def client(fake: FakeLLM, model: str, sleeps: list[float] | None = None, **cfg: object) -> ChatClient:
    config = LLMConfig(base_url=fake.url, api_key="sk-test", model=model, max_retries=2, backoff_base_s=0.01, **cfg)  # type: ignore[arg-type]
    return ChatClient(config, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_a_good_reply_is_returned_and_the_key_sent(fake: FakeLLM) -> None:
    assert client(fake, "fake-good").chat(HELLO) == "the word cat"
    last = fake.chat_requests("fake-good")[-1]
    assert last["auth"] == "Bearer sk-test" and last["body"]["messages"] == HELLO


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [("fail-401", LLMAuthError, 401), ("fail-403", LLMAuthError, 403), ("fail-402", LLMNoCredits, 402)],
)
def test_refused_keys_and_empty_accounts_fail_at_once(fake: FakeLLM, model: str, error: type, status: int) -> None:
    before = len(fake.chat_requests(model))
    with pytest.raises(error) as info:
        client(fake, model).chat(HELLO)
    assert info.value.upstream_status == status and str(status) in info.value.message
    assert len(fake.chat_requests(model)) == before + 1  # no retries: they cannot help


def test_a_bad_key_is_an_auth_error(fake: FakeLLM) -> None:
    cfg = LLMConfig(base_url=fake.url, api_key="bad-key", model="fake-good", max_retries=2)
    with pytest.raises(LLMAuthError, match="refused the API key"):
        ChatClient(cfg).chat(HELLO)


def test_429_is_retried_honouring_retry_after(fake: FakeLLM) -> None:
    sleeps: list[float] = []
    messages = [{"role": "user", "content": 'Tokens where it fires most: "dog"'}]
    assert client(fake, "flaky-429", sleeps).chat(messages) == "the word dog"
    assert sleeps == [0.0]  # Retry-After: 0, not the exponential backoff
    assert len([r for r in fake.chat_requests("flaky-429") if r["body"]["messages"] == messages]) == 2


def test_a_500_then_ok_is_retried_with_backoff(fake: FakeLLM) -> None:
    sleeps: list[float] = []
    messages = [{"role": "user", "content": 'Tokens where it fires most: "emu"'}]
    assert client(fake, "flaky-500", sleeps).chat(messages) == "the word emu"
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.01


def test_persistent_500s_give_up_after_the_retries(fake: FakeLLM) -> None:
    sleeps: list[float] = []
    before = len(fake.chat_requests("fail-500"))
    with pytest.raises(LLMUnavailable, match="HTTP 500"):
        client(fake, "fail-500", sleeps).chat(HELLO)
    assert len(fake.chat_requests("fail-500")) == before + 3 and len(sleeps) == 2
    assert sleeps[1] > sleeps[0] / 2  # exponential (with jitter in [0.5, 1) of the step)


def test_an_error_object_in_a_200_body_is_an_error(fake: FakeLLM) -> None:
    with pytest.raises(LLMNoCredits, match="Insufficient credits"):
        client(fake, "error-in-body").chat(HELLO)


@pytest.mark.parametrize(("model", "match"), [("garbage", "not JSON"), ("empty", "empty")])
def test_unreadable_replies_are_bad_replies(fake: FakeLLM, model: str, match: str) -> None:
    with pytest.raises(LLMBadReply, match=match):
        client(fake, model).chat(HELLO)


def test_timeouts_and_refused_connections_are_unavailable(fake: FakeLLM) -> None:
    with pytest.raises(LLMUnavailable, match="timed out"):
        client(fake, "slow", timeout_s=0.3).chat(HELLO)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff_base_s=0.01)
    with pytest.raises(LLMUnavailable, match="could not reach"):
        ChatClient(cfg, sleep=lambda s: None).chat(HELLO)


def test_no_endpoint_or_model_is_a_configuration_error() -> None:
    with pytest.raises(LLMNotConfigured, match="INTERPEDIA_LLM_BASE_URL"):
        ChatClient(LLMConfig(base_url="")).chat(HELLO)
    with pytest.raises(LLMNotConfigured, match="INTERPEDIA_LLM_MODEL"):
        ChatClient(LLMConfig(base_url="http://127.0.0.1:9/v1")).chat(HELLO)


def test_the_concurrency_cap_holds_across_threads(fake: FakeLLM) -> None:
    llm = client(fake, "slow", concurrency=2, timeout_s=10)
    deadline = time.monotonic() + 5
    while fake.in_flight and time.monotonic() < deadline:  # a timed-out request of another test may linger
        time.sleep(0.05)
    fake.max_in_flight = 0
    threads = [threading.Thread(target=llm.chat, args=([{"role": "user", "content": f"x{i}"}],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.max_in_flight == 2


def test_rate_limits_that_never_lift_are_reported(fake: FakeLLM) -> None:
    cfg = LLMConfig(base_url=fake.url, model="flaky-429", max_retries=0)
    with pytest.raises(LLMRateLimited):
        ChatClient(cfg).chat([{"role": "user", "content": "a fresh prompt"}])
