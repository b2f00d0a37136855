"""HTTP hardening: rate limits, security headers, CORS, and database errors as 503/422/409 (never a bare 500).

Everything here is plain ASGI middleware or an exception handler, installed by ``install_security``
(``create_app`` calls it last, so these layers wrap every route, error pages and 413s included).

Rate limits are token buckets: each configured route pattern allows ``limit`` requests per
``INTERPEDIA_RATE_LIMIT_WINDOW_S`` to each caller, where a caller is the API key it sends (hashed; keys are
never held in clear) or, without a key, its IP address. By default (``INTERPEDIA_RATE_LIMIT_STORE=database``)
the buckets are rows of the database (``store.rate_limits``), so every ``interpedia serve`` process
(``--workers``) and every server on the database counts against the same budget; with ``memory`` each
process keeps its own, and the effective limit is the configured one times the number of processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interpedia.config import Settings
from interpedia.store.rate_limits import forget_full_buckets, spend_token
from interpedia.web.errors import error_response
from interpedia.web.urls import served_over_https

log = logging.getLogger(__name__)

__all__ = [
    "EMBED_STATE",
    "RateLimiter",
    "RateLimitMiddleware",
    "SecurityHeadersMiddleware",
    "allow_framing",
    "embed_ancestors",
    "install_security",
    "page_csp",
]

# Swagger UI and ReDoc load their script from a CDN and run inline script; they are not our pages.
_CSP_EXEMPT = ("/docs", "/redoc")
EMBED_STATE = "interpedia_embed"
DB_DOWN_MESSAGE = "the database is unavailable right now; try again in a few seconds"
DB_RETRY_AFTER_S = 5


def page_csp(settings: Settings, ancestors: str | None = None) -> str:
    """The Content-Security-Policy for HTML: no inline script, nothing from other origins."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {ancestors or settings.frame_ancestors}"
    )


def embed_ancestors(settings: Settings) -> str:
    """frame-ancestors of the embed views: the site's own list plus ``INTERPEDIA_EMBED_ORIGINS``."""
    own = [a for a in settings.frame_ancestors.split() if a != "'none'"]
    sources = list(dict.fromkeys([*own, *settings.embed_origins]))
    return " ".join(sources) if sources else "'none'"


def allow_framing(request: Request) -> None:
    """Mark the response as an embed view: framed by ``INTERPEDIA_EMBED_ORIGINS`` too (CSP frame-ancestors; no
    X-Frame-Options, which cannot name other origins). Only the feature and graph pages' ``?embed=true`` call it."""
    request.scope.setdefault("state", {})[EMBED_STATE] = True


def _data_csp(settings: Settings) -> str:
    # JSON and files are never documents that may run anything.
    return f"default-src 'none'; frame-ancestors {settings.frame_ancestors}"


def _frame_options(settings: Settings) -> str | None:
    # X-Frame-Options only knows 'none' and 'self'; other ancestor lists rely on CSP frame-ancestors alone.
    value = settings.frame_ancestors.strip()
    if value == "'none'":
        return "DENY"
    if value == "'self'":
        return "SAMEORIGIN"
    return None


class SecurityHeadersMiddleware:
    """Adds nosniff, Referrer-Policy, framing rules and a CSP to every response that lacks them."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.html_csp = page_csp(settings)
        self.embed_csp = page_csp(settings, embed_ancestors(settings))
        self.data_csp = _data_csp(settings)
        self.frame_options = _frame_options(settings)
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        exempt = path.startswith(_CSP_EXEMPT)
        state = scope.setdefault("state", {})  # before inner layers copy the scope: they share this dict

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                html = headers.get("content-type", "").startswith("text/html")
                embed = html and bool(state.get(EMBED_STATE))
                if self.frame_options and not embed:
                    headers.setdefault("X-Frame-Options", self.frame_options)
                if not exempt:
                    # HTML always gets the configured page policy; other responses keep theirs if they set one.
                    if html:
                        headers["Content-Security-Policy"] = self.embed_csp if embed else self.html_csp
                    elif "content-security-policy" not in headers:
                        headers["Content-Security-Policy"] = self.data_csp
                if served_over_https(scope, self.settings):  # browsers ignore HSTS over plain HTTP anyway
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass(frozen=True)
class _Rule:
    pattern: str
    limit: int

    def matches(self, path: str) -> bool:
        if self.pattern.endswith("*"):
            return path.startswith(self.pattern[:-1])
        return path == self.pattern


class RateLimiter:
    """Token buckets per (route pattern, caller): ``limit`` requests per window, refilled continuously."""

    def __init__(self, rules: dict[str, int], window_s: float) -> None:
        # Exact paths before prefixes, longer prefixes before shorter, so the most specific rule applies.
        ordered = sorted(rules.items(), key=lambda kv: (kv[0].endswith("*"), -len(kv[0])))
        self.rules = [_Rule(p.rstrip("/") if not p.endswith("*") else p, int(n)) for p, n in ordered if int(n) > 0]
        self.window_s = float(window_s)
        self.buckets: dict[tuple[str, str], _Bucket] = {}
        self._last_sweep = float("-inf")

    def rule_for(self, path: str) -> _Rule | None:
        """The rule limiting ``path`` (trailing slash ignored), or None."""
        path = path.rstrip("/") or "/"
        return next((rule for rule in self.rules if rule.matches(path)), None)

    def hit(self, rule: _Rule, caller: str, now: float | None = None) -> float:
        """Spend one request; 0.0 when allowed, else the seconds until the next one would be."""
        now = time.monotonic() if now is None else now
        self._sweep(now)  # first: it may drop this caller's bucket, which must not lose the hit below
        rate = rule.limit / self.window_s
        key = (rule.pattern, caller)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(tokens=float(rule.limit), stamp=now)
        else:
            bucket.tokens = min(float(rule.limit), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _sweep(self, now: float) -> None:
        # Full buckets carry no information; dropping them keeps memory bounded by recent callers.
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        full = [
            key
            for key, b in self.buckets.items()
            if b.tokens + (now - b.stamp) * self._rate(key[0]) >= self._limit(key[0])
        ]
        for key in full:
            del self.buckets[key]

    def _limit(self, pattern: str) -> int:
        return next((r.limit for r in self.rules if r.pattern == pattern), 0)

    def _rate(self, pattern: str) -> float:
        return self._limit(pattern) / self.window_s


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def caller_identity(scope: Scope, trust_forwarded_for: bool) -> str:
    """``key:<sha256>`` for a request that sends x-api-key, else ``ip:<address>``."""
    key = _header(scope, b"x-api-key")
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()
    if trust_forwarded_for:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            # The last hop is the one our own proxy appended; earlier ones are whatever the client claimed.
            return "ip:" + forwarded.split(",")[-1].strip()
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class SharedRateLimiter(RateLimiter):
    """The same buckets as :class:`RateLimiter`, kept in the database (shared by every process on it)."""

    def __init__(self, rules: dict[str, int], window_s: float, sessionmaker: Callable[[], Session]) -> None:
        super().__init__(rules, window_s)
        self.sessionmaker = sessionmaker

    def hit(self, rule: _Rule, caller: str, now: float | None = None) -> float:
        """Spend one request in the database's bucket; 0.0 when allowed, else seconds to wait."""
        now = time.time() if now is None else now
        with self.sessionmaker() as session, session.begin():
            if now - self._last_sweep >= 60:
                self._last_sweep = now
                forget_full_buckets(session, now - self.window_s)
            return spend_token(session, f"{rule.pattern} {caller}", rule.limit, rule.limit / self.window_s, now)


class RateLimitMiddleware:
    """Answers 429 with Retry-After (in the one error shape) once a caller spends a route's budget."""

    def __init__(self, app: ASGIApp, settings: Settings, sessionmaker: Callable[[], Session] | None = None) -> None:
        self.app = app
        self.limiter = (
            SharedRateLimiter(settings.rate_limits, settings.rate_limit_window_s, sessionmaker)
            if sessionmaker is not None
            else RateLimiter(settings.rate_limits, settings.rate_limit_window_s)
        )
        self.shared = sessionmaker is not None
        self.trust_forwarded_for = settings.trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        rule = self.limiter.rule_for(scope["path"])
        if rule is not None:
            caller = caller_identity(scope, self.trust_forwarded_for)
            if self.shared:  # a database round trip: off the event loop
                wait = await anyio.to_thread.run_sync(self.limiter.hit, rule, caller)
            else:
                wait = self.limiter.hit(rule, caller)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                log.info("rate limit: %s over %d per window on %s", scope["path"], rule.limit, rule.pattern)
                response = error_response(
                    429,
                    f"too many requests to {rule.pattern}: at most {rule.limit} per "
                    f"{self.limiter.window_s:g} s; retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_connection_error(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    # psycopg reports a server that went away mid-query as InterfaceError / AdminShutdown subclasses.
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return name in {"InterfaceError", "AdminShutdown", "OperationalError", "ConnectionTimeout"}


def _install_db_errors(app: FastAPI) -> None:
    async def _db_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, DataError):
            # Postgres refuses what SQLite stores: integers beyond 64 bits, NUL characters in text.
            return error_response(
                422, "a value in the request is out of range or not allowed in text (such as a NUL character)"
            )
        if isinstance(exc, IntegrityError):
            return error_response(409, "the request conflicts with data that exists (or was just written)")
        if isinstance(exc, DBAPIError) and not _is_connection_error(exc):
            log.exception("database error")
            return error_response(500, "internal server error")
        log.warning("database unavailable on %s: %s", request.url.path, str(exc).splitlines()[0][:200])
        return error_response(503, DB_DOWN_MESSAGE, headers={"Retry-After": str(DB_RETRY_AFTER_S)})

    async def _bad_text(_: Request, exc: Exception) -> Response:
        # An unpaired surrogate (legal as a JSON escape) cannot be encoded for the database driver.
        return error_response(422, "the request holds text that is not valid Unicode (an unpaired surrogate)")

    app.add_exception_handler(DBAPIError, _db_error)
    app.add_exception_handler(PoolTimeoutError, _db_error)
    app.add_exception_handler(UnicodeEncodeError, _bad_text)


def install_security(app: FastAPI, settings: Settings, sessionmaker: Callable[[], Session] | None = None) -> None:
    """Wrap ``app`` in rate limits (counted through ``sessionmaker`` in the database when the settings say so),
    CORS (only when origins are configured) and security headers."""
    _install_db_errors(app)
    if settings.rate_limit_enabled and settings.rate_limits:
        shared = sessionmaker if settings.rate_limit_store == "database" else None
        app.add_middleware(RateLimitMiddleware, settings=settings, sessionmaker=shared)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials=False,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["content-type", "x-api-key", "x-secret-key"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)  # outermost: 413/429 answers get headers too
