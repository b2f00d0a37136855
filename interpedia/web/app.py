"""The FastAPI application: /api (Neuronpedia webapp API), the web pages, later /v1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interpedia import __version__
from interpedia.config import Settings, get_settings
from interpedia.db import make_engine, make_sessionmaker
from interpedia.store.feature_answers import CatalogueCache
from interpedia.store.feature_cache import FeatureCache
from interpedia.web.deps import RequestScopeMiddleware
from interpedia.web.errors import BodyTooLarge, error_response, install_error_handlers
from interpedia.web.feature_fast_path import FeatureFastPath
from interpedia.web.openapi import install_openapi
from interpedia.web.routing import skip_by_first_segment
from interpedia.web.security import install_security

log = logging.getLogger(__name__)


GRAPH_UPLOAD_PREFIX = "/api/graph/upload/"


class BodyLimitMiddleware:
    """Answer 413 for bodies over the configured size, whether or not Content-Length says so."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings  # read per request, so a changed limit applies at once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        if scope["path"].startswith(GRAPH_UPLOAD_PREFIX):  # graph JSON uploads have their own, larger limit
            limit = self.settings.graph_max_upload_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit)
            return
        seen = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def checked_send(message: Message) -> None:
            # FastAPI turns an error while it parses the body into its own 400; answer 413 instead.
            nonlocal replaced
            if exceeded and message["type"] == "http.response.start":
                replaced = True
                await self._reject(scope, receive, send, limit)
            if not replaced:
                await send(message)

        try:
            await self.app(scope, limited_receive, checked_send)
        except BodyTooLarge:
            if not replaced:
                await self._reject(scope, receive, send, limit)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        setting = "INTERPEDIA_MAX_BODY_BYTES" if limit == self.settings.max_body_bytes else "the graph upload limit"
        response = error_response(413, f"request body is larger than {limit} bytes ({setting})")
        await response(scope, receive, send)


class TrailingSlashMiddleware:
    """Serve ``/api/steer/`` as ``/api/steer``: the official client appends a slash to some paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/") and (path.startswith("/api/") or path.startswith("/v1/")):
                scope = dict(scope, path=path.rstrip("/"), raw_path=path.rstrip("/").encode())
        await self.app(scope, receive, send)


class HeadAsGetMiddleware:
    """Answer HEAD like GET without the body (RFC 9110): link checkers and uptime probes send HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(dict(scope, method="GET"), receive, headers_only)


ROLES = ("all", "inference")


def _pool(settings: Settings) -> dict[str, int]:
    return {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}


def create_app(settings: Settings | None = None, *, role: str = "all") -> FastAPI:
    """Build the app on the given (or the environment's) settings; ``role="inference"`` serves only /v1 (live
    inference and graphs, for web servers that route to it)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if role == "all" and settings.embedding_preload:
            from interpedia.search.embeddings import preload_embedder

            # The first explanation search would otherwise wait seconds for the model: load it now, beside
            # requests (a thread; the server answers meanwhile).
            app.state.embedder_preload = preload_embedder(settings)
        yield

    app = FastAPI(
        title="interpedia",
        version=__version__,
        description="Neuronpedia-compatible API: features, activations, explanations, models, sources.",
        lifespan=lifespan,
    )
    # A pool as large as the requests a process serves at once: connections opened and closed per request beyond
    # it cost more CPU than the feature API's whole answer (bench/scale.py).
    engine = make_engine(
        settings.database_url, **({} if settings.database_url.startswith("sqlite") else _pool(settings))
    )
    app.state.settings = settings
    app.state.role = role
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.feature_cache = FeatureCache(max(0, settings.feature_cache_mb) * 1024 * 1024)
    app.state.feature_catalogue = CatalogueCache()
    install_error_handlers(app)
    install_openapi(app, settings)

    from interpedia.web.v1.graph import router as graph_router
    from interpedia.web.v1.inference import router as inference_router
    from interpedia.web.v1.lens import router as lens_router
    from interpedia.web.v1.tools import router as tools_router

    app.include_router(inference_router)
    app.include_router(lens_router)
    app.include_router(tools_router)
    app.include_router(graph_router)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "role": role}

    if role == "inference":
        app.add_middleware(TrailingSlashMiddleware)
        app.add_middleware(HeadAsGetMiddleware)
        app.add_middleware(BodyLimitMiddleware, settings=settings)
        app.add_middleware(RequestScopeMiddleware, root=app)
        install_security(app, settings, app.state.sessionmaker)
        skip_by_first_segment(app)
        return app

    from interpedia.web.api import router as api_router
    from interpedia.web.v1.autointerp import router as autointerp_router

    app.include_router(api_router)
    app.include_router(autointerp_router)

    from interpedia.web import pages

    pages.install(app, settings)  # last: its /{model}/... routes catch what nothing else claimed

    app.add_middleware(FeatureFastPath, root=app)  # innermost: HEAD, trailing slashes and the scope are done
    app.add_middleware(TrailingSlashMiddleware)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(RequestScopeMiddleware, root=app)  # one session and one caller per request
    # Last: rate limits, CORS and headers wrap everything above.
    install_security(app, settings, app.state.sessionmaker)
    skip_by_first_segment(app)  # after every router: a page path no longer tries the ~170 API routes first
    return app


def create_served_app() -> FastAPI:
    """The app of one ``interpedia serve --workers N`` process: settings from the environment, the role from
    ``INTERPEDIA_SERVE_ROLE`` (set by ``serve``)."""
    import os
    import sys

    settings = get_settings()
    # A worker is a fresh process: log as the parent does (cli.common.setup_logging).
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return create_app(settings, role=os.environ.get("INTERPEDIA_SERVE_ROLE", "all"))
