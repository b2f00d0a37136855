"""An OpenAI-compatible chat client (OpenAI, OpenRouter, vLLM, llama.cpp, Ollama) for autointerp.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff
and jitter, honouring ``Retry-After``; a process-wide semaphore caps the requests in flight. Every
failure that remains is one typed :class:`LLMError`, so callers can refuse to store anything: a
failed explanation or score is never written (Neuronpedia issue #77 stored a 20% score instead).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from interpedia.config import Settings
from interpedia.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "ChatClient",
    "LLMAuthError",
    "LLMBadReply",
    "LLMConfig",
    "LLMError",
    "LLMNoCredits",
    "LLMNotConfigured",
    "LLMRateLimited",
    "LLMUnavailable",
    "Message",
]

Message = dict[str, str]


class LLMError(UserError):
    """The LLM gave no usable answer; ``status`` is what an API route answers with."""

    status = 502
    kind = "llm_error"

    def __init__(self, message: str, *, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.retry_after: float | None = None


class LLMNotConfigured(LLMError):
    """No endpoint or model is set."""

    status = 503
    kind = "not_configured"


class LLMAuthError(LLMError):
    """The endpoint refused the API key (401/403)."""

    status = 502
    kind = "auth"


class LLMNoCredits(LLMError):
    """The account behind the key has no credits left (402)."""

    status = 402
    kind = "no_credits"


class LLMRateLimited(LLMError):
    """Still rate-limited (429) after every retry."""

    status = 429
    kind = "rate_limited"


class LLMUnavailable(LLMError):
    """5xx, timeouts or connection errors after every retry."""

    status = 502
    kind = "unavailable"


class LLMBadReply(LLMError):
    """A reply that carries an error object, no text, or text that cannot be parsed."""

    status = 502
    kind = "bad_reply"


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to call the chat endpoint."""

    base_url: str
    api_key: str = ""
    model: str = ""
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    concurrency: int = 4
    temperature: float = 0.0
    max_tokens: int = 600

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LLMConfig:
        """The configuration the settings describe, with per-call overrides (a user's key, a model)."""
        cfg = cls(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            model=settings.llm_model,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            concurrency=settings.llm_concurrency,
        )
        return replace(cfg, **{k: v for k, v in overrides.items() if v})


_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def _semaphore(base_url: str, limit: int) -> threading.BoundedSemaphore:
    """One cap per endpoint and process, shared by every client of that endpoint."""
    with _semaphores_lock:
        return _semaphores.setdefault((base_url, limit), threading.BoundedSemaphore(max(1, limit)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        return str(err)
    return str(body)[:300]


def _classify(status: int, message: str) -> LLMError:
    if status in (401, 403):
        return LLMAuthError(f"the LLM endpoint refused the API key (HTTP {status}): {message}", upstream_status=status)
    if status == 402:
        return LLMNoCredits(f"the LLM account has no credits left (HTTP 402): {message}", upstream_status=status)
    if status == 429:
        return LLMRateLimited(f"the LLM endpoint is still rate-limiting after retries: {message}", upstream_status=429)
    if status >= 500:
        return LLMUnavailable(
            f"the LLM endpoint failed (HTTP {status}) after retries: {message}", upstream_status=status
        )
    return LLMBadReply(f"the LLM endpoint answered HTTP {status}: {message}", upstream_status=status)


@dataclass
class ChatClient:
    """Chat completions against one OpenAI-compatible endpoint; safe to share between threads."""

    config: LLMConfig
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    _client: httpx.Client | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.config.timeout_s, connect=10.0), transport=self.transport
                )
            return self._client

    def close(self) -> None:
        """Close the connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @property
    def model(self) -> str:
        """The model name sent with each request."""
        return self.config.model

    def _check(self) -> None:
        if not self.config.base_url:
            raise LLMNotConfigured(
                "no LLM endpoint is configured: set INTERPEDIA_LLM_BASE_URL (and "
                "INTERPEDIA_LLM_API_KEY, INTERPEDIA_LLM_MODEL) to an OpenAI-compatible API"
            )
        if not self.config.model:
            raise LLMNotConfigured("no LLM model is configured: set INTERPEDIA_LLM_MODEL or name one per request")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max_s)
        base = min(self.config.backoff_max_s, self.config.backoff_base_s * (2**attempt))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography

    def chat(
        self, messages: Sequence[Message], *, temperature: float | None = None, max_tokens: int | None = None
    ) -> str:
        """The assistant's reply text, or an LLMError once retries are spent."""
        self._check()
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        payload = {
            "model": self.config.model,
            "messages": list(messages),
            "temperature": self.config.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
        }
        last: LLMError | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                delay = self._backoff(attempt - 1, last.retry_after if last else None)
                log.info("LLM retry %d/%d in %.2fs: %s", attempt, self.config.max_retries, delay, last)
                self.sleep(delay)
            try:
                with _semaphore(self.config.base_url, self.config.concurrency):
                    response = self._http().post(url, json=payload, headers=headers)
            except httpx.TimeoutException as exc:
                last = LLMUnavailable(f"the LLM endpoint timed out after {self.config.timeout_s:g}s ({exc})")
                continue
            except httpx.TransportError as exc:
                last = LLMUnavailable(f"could not reach the LLM endpoint {self.config.base_url}: {exc}")
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                last = _classify(status, self._safe_error(response))
                last.retry_after = _retry_after(response)
                continue
            if status != 200:
                raise _classify(status, self._safe_error(response))
            text, retry = self._parse(response)
            if text is not None:
                return text
            assert retry is not None
            last = retry
            if not isinstance(retry, LLMRateLimited | LLMUnavailable):
                raise retry
        assert last is not None
        raise last

    @staticmethod
    def _safe_error(response: httpx.Response) -> str:
        try:
            return _error_text(response.json())
        except ValueError:
            return response.text[:300] or response.reason_phrase

    @staticmethod
    def _parse(response: httpx.Response) -> tuple[str | None, LLMError | None]:
        try:
            body = response.json()
        except ValueError:
            return None, LLMBadReply(
                f"the LLM endpoint answered 200 with a body that is not JSON: {response.text[:200]!r}"
            )
        if not isinstance(body, dict):
            return None, LLMBadReply(f"the LLM endpoint answered 200 with unexpected JSON: {str(body)[:200]}")
        if body.get("error"):
            # OpenRouter reports provider failures (credits, rate limits, outages) inside a 200 body.
            err = body["error"]
            code = err.get("code") if isinstance(err, dict) else None
            status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else 0
            error = (
                _classify(status, _error_text(body))
                if status
                else LLMBadReply(f"the LLM endpoint answered 200 with an error: {_error_text(body)}")
            )
            return None, error
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            return None, LLMBadReply(f"the LLM reply has no choices[0].message: {str(body)[:200]}")
        if choice.get("finish_reason") == "error":
            return None, LLMBadReply("the LLM reply ended with finish_reason 'error'")
        if not isinstance(content, str) or not content.strip():
            return None, LLMBadReply("the LLM reply is empty")
        return content, None
