"""``GET /api/feature/{modelId}/{layer}/{index}`` without a key, answered before FastAPI's routing.

The feature API is what clients and scripts ask for most, and once its answer comes from one narrow statement
(``store.feature_answers``) FastAPI's routing and dependency solving cost a server more CPU than the answer does.
This layer sits inside the app's own middleware (security headers, rate limits, the request's scope and viewer,
HEAD, body limits) and answers the common case itself, with exactly the route's status, body and headers. It
leaves everything else to the route in ``web.api.features``, unchanged: a request with ``x-api-key`` (the route
checks the key), an index the route would refuse, and any error, which the route then answers with its usual
message (a feature not found costs the statement twice).
"""

from __future__ import annotations

import re
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from interpedia.store.feature_answers import FeatureAnswer, answer_feature
from interpedia.web.deps import RequestScope, request_state
from interpedia.web.wire import cache_control, etag_matches

__all__ = ["FeatureFastPath"]

# The route's path and its index pattern (wire.INDEX_PATTERN); a segment never holds "/".
_PATH = re.compile(r"/api/feature/([^/]+)/([^/]+)/([0-9]{1,9})")


class FeatureFastPath:
    """Answers anonymous ``GET /api/feature/...`` as the route does; passes every other request on."""

    def __init__(self, app: ASGIApp, root: Any) -> None:
        self.app = app
        self.root = root  # the FastAPI app: its state holds the caches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "x-api-key" in headers:
            await self.app(scope, receive, send)
            return
        request = request_state(scope)
        model_id, source_name, index = match.groups()
        conditional = headers.get("if-none-match")
        try:
            found = await anyio.to_thread.run_sync(self._answer, request, model_id, source_name, index, conditional)
        except Exception:  # noqa: BLE001 - not found, bad input, a database down: the route answers each as always
            found = None
        if found is None:
            await self.app(scope, receive, send)
            return
        status, body, answer = found
        out = [
            (b"etag", answer.etag.encode()),
            (b"cache-control", cache_control(answer.private).encode()),
        ]
        if status == 200:
            out += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    def _answer(
        self, request: RequestScope, model_id: str, source_name: str, index: str, if_none_match: str | None
    ) -> tuple[int, bytes, FeatureAnswer]:
        state = self.root.state
        try:
            answer = answer_feature(
                request.session(),
                model_id,
                source_name,
                index,
                cache=state.feature_cache,
                catalogue=state.feature_catalogue,
            )
            if etag_matches(if_none_match, answer.etag):
                return 304, b"", answer
            return 200, answer.body(), answer
        finally:
            request.close()  # in this thread: no hop back to give the connection to the pool
