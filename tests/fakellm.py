"""A local OpenAI-compatible server for autointerp tests: real HTTP, deterministic replies, scripted failures.

The model name picks the behaviour, so one server serves every test:

- ``fake-good`` answers like a sensible LLM: explanations name the token the prompt shows as strongest;
  judgements (0/1 lists, ``{"matches": [...]}``) say 1 where an example mentions a word of the explanation.
- ``fail-401``, ``fail-403``, ``fail-402``, ``fail-500`` answer that status every time.
- ``flaky-429`` / ``flaky-500`` fail the first request for each prompt (429 with ``Retry-After: 0``), then answer well.
- ``error-in-body`` answers 200 with ``{"error": {"code": 402, ...}}`` the way OpenRouter does.
- ``garbage`` answers 200 with HTML; ``empty`` with an empty message; ``nonsense`` with prose no parser accepts.
- ``slow`` waits 2 s before answering well (for timeouts and the concurrency cap).
- An ``Authorization: Bearer bad-key`` header is refused with 401 whatever the model.

``POST /v1/embeddings`` returns deterministic hashed bag-of-words vectors (``dimensions`` honoured;
model ``embed-256`` ignores it and returns 256 floats).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from interpedia.config import get_settings

WORD = re.compile(r"[A-Za-z]{3,}")


def _words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def _explanation_words(user: str) -> set[str]:
    first = user.split("\n", 1)[0]
    return _words(first.removeprefix("Explanation:")) - {"the", "word", "and", "tokens", "token", "predicts"}


def _explain(system: str, user: str) -> str:
    if "Tokens where it fires most:" in user:
        token = re.search(r'Tokens where it fires most: "([^"]*)"', user)
        return f"the word {token.group(1) if token else 'unknown'}"
    if "[EXPLANATION]" in system:
        marked = Counter(m.strip() for m in re.findall(r"<<(.*?)>>", user))
        top = marked.most_common(1)[0][0] if marked else "unknown"
        return f"The marked tokens are all the same word.\n[EXPLANATION]: the word {top}"
    pairs = re.findall(r"^'(.*)'\t(\d+)$", user, flags=re.M)
    best = max(pairs, key=lambda p: int(p[1]))[0].strip() if pairs else "unknown"
    return f"the word {best}"


def _judge(system: str, user: str) -> str:
    words = _explanation_words(user)
    if '"matches"' in system:
        hits = [int(n) for n, text in re.findall(r"^(\d+)\. (.*)$", user, flags=re.M) if words & _words(text)]
        return json.dumps({"matches": hits})
    examples = re.findall(r"^Example \d+: (.*)$", user, flags=re.M)
    if "marked" in system:
        verdicts = [int(bool(words & _words(" ".join(re.findall(r"<<(.*?)>>", ex))))) for ex in examples]
    else:
        verdicts = [int(bool(words & _words(ex))) for ex in examples]
    return "[" + ", ".join(map(str, verdicts)) + "]"


def good_reply(messages: list[dict[str, str]]) -> str:
    """What ``fake-good`` says to a conversation."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if "list of 0s and 1s" in system or '"matches"' in system:
        return _judge(system, user)
    return _explain(system, user)


def hashed_embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector: the sum of one random direction per word."""
    vec = np.zeros(dims)
    for word in _words(text) or {"empty"}:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec += np.random.default_rng(seed).standard_normal(dims)
    return (vec / np.linalg.norm(vec)).tolist()


class FakeLLM:
    """The server; ``url`` is the OpenAI-style base (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake._handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to give the client."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeLLM:
        """Start serving in a thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def chat_requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Chat requests received (for one model)."""
        return [
            r
            for r in self.requests
            if r["path"].endswith("/chat/completions") and (model is None or r["body"].get("model") == model)
        ]

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html" if raw is not None else "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if h.headers.get("Authorization") == "Bearer bad-key":
            self._send(h, 401, {"error": {"message": "Incorrect API key provided", "code": 401}})
            return
        if h.path.endswith("/embeddings"):
            texts = body.get("input") or []
            dims = 256 if body.get("model") == "embed-256" else int(body.get("dimensions") or 384)
            self._send(
                h,
                200,
                {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": hashed_embedding(t, dims)}
                        for i, t in enumerate(texts)
                    ],
                },
            )
            return
        if not h.path.endswith("/chat/completions"):
            self._send(h, 404, {"error": {"message": "no such route"}})
            return
        model = str(body.get("model"))
        messages = body.get("messages") or []
        key = model + json.dumps(messages)
        with self._lock:
            self.seen[key] += 1
            first = self.seen[key] == 1
        fixed = {"fail-401": 401, "fail-403": 403, "fail-402": 402, "fail-500": 500}
        if model in fixed:
            self._send(h, fixed[model], {"error": {"message": f"scripted {fixed[model]}"}})
            return
        if model == "flaky-429" and first:
            self._send(h, 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            return
        if model == "flaky-500" and first:
            self._send(h, 500, {"error": {"message": "upstream hiccup"}})
            return
        if model == "error-in-body":
            self._send(h, 200, {"error": {"message": "Insufficient credits", "code": 402}})
            return
        if model == "garbage":
            self._send(h, 200, None, raw=b"<html><body>Bad gateway</body></html>")
            return
        if model == "slow":
            time.sleep(2)
        content = {"empty": "", "nonsense": "I would rather not say."}.get(model)
        if content is None:
            content = good_reply(messages)
        self._send(
            h,
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
            },
        )


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """The test server, started, with INTERPEDIA_LLM_* pointing at it (request it before ``settings``)."""
    server = FakeLLM().start()
    monkeypatch.setenv("INTERPEDIA_LLM_BASE_URL", server.url)
    monkeypatch.setenv("INTERPEDIA_LLM_API_KEY", "sk-test")
    monkeypatch.setenv("INTERPEDIA_LLM_MODEL", "fake-good")
    monkeypatch.setenv("INTERPEDIA_LLM_MAX_RETRIES", "1")
    get_settings.cache_clear()
    yield server
    server.stop()
    get_settings.cache_clear()
