"""One JSON error shape for every 4xx/5xx: ``{"error", "message", "status", "field"}``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from interpedia.errors import TooLarge, UserError

log = logging.getLogger(__name__)


class BodyTooLarge(TooLarge):
    """The request body went over INTERPEDIA_MAX_BODY_BYTES while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes (INTERPEDIA_MAX_BODY_BYTES)")
        self.limit = limit


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every route uses."""
    body = {"error": message, "message": message, "status": status, "field": field}
    return JSONResponse(body, status_code=status, headers=headers)


def _respond(
    request: Request, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    # The pages install a hook that answers browsers on page URLs with an HTML error page.
    hook = getattr(request.app.state, "html_errors", None)
    if hook is not None:
        page: Response | None = hook(request, status, message)
        if page is not None:
            if headers:
                page.headers.update(headers)
            return page
    return error_response(status, message, field, headers=headers)


# pydantic names the branch of a union it tried (``str``, ``constrained-int``, ``function-after[...]``) in the
# location of an error; those are no field of the body.
_UNION_TAG = re.compile(r"^(constrained-)?(str|int|float|bool|list|dict|none)$|[\[\]()]")


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    # The first element says where the field was (body, query...); a field may itself be called "query".
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    for item in loc:
        if isinstance(item, str) and _UNION_TAG.search(item):
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, through FastAPI's included routers (``effective_route_contexts``) where it has them."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        else:
            yield route


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: the methods of the routes for this path. Of the route patterns that match, the
    most specific (most literal segments: ``/api/explanation/score`` over ``/api/explanation/{id}``) count, as the
    ones written for this path; Starlette's own header names only the first route it tried."""
    best = -1
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        route_methods = getattr(route, "methods", None)
        if not route_methods:
            continue
        match, _ = route.matches(request.scope)
        if match == Match.NONE:
            continue
        path = str(getattr(route, "path", ""))
        literal = sum(1 for part in path.split("/") if part and not part.startswith("{"))
        if literal > best:
            best, methods = literal, set(route_methods)
        elif literal == best:
            methods |= route_methods
    if "GET" in methods:
        methods.add("HEAD")  # HeadAsGetMiddleware answers HEAD wherever GET is served
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Map every error kind to the one JSON shape."""

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, f"request body is larger than {exc.limit} bytes (INTERPEDIA_MAX_BODY_BYTES)")

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError) -> Response:
        return _respond(request, exc.status, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = _loc_to_field(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if first.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        extra = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return _respond(request, 422, f"{field}: {msg}{extra}" if field else msg + extra, field or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "not found"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return _respond(request, exc.status_code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return _respond(request, 500, "internal server error")
