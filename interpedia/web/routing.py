"""Route matching that skips, by the path's first segment, the routers that cannot match it.

FastAPI tries every route in order with its regular expression: a feature page (``/{model}/{source}/{index}``,
matched by the pages' catch-all routes, included last) was tried against about 170 routes first, which cost
more server CPU than reading its cached document. :func:`skip_by_first_segment` gives each router included in
the app a cheap first test: the set of first path segments its routes start with (``api``, ``v1``, ``graph``...).
A router whose routes all start with a fixed segment answers "no match" at once for a path that starts with
another; a router with a route that starts with a parameter (``/{model_id}/...``) is tried as before. Order and
results are unchanged: a route can only match a path whose first segment is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

__all__ = ["first_segments", "skip_by_first_segment"]

ANY = None  # a router some route of which may match any first segment


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


def first_segments(route: Any) -> frozenset[str] | None:
    """The first path segments ``route`` (a route, or a router included in the app) can match, or None when a
    route of it starts with a parameter, or its paths cannot be read (then it may match anything)."""
    candidates = getattr(route, "effective_candidates", None)
    if candidates is not None:  # a router included in the app (or in another router)
        out: set[str] = set()
        for candidate in candidates():
            found = first_segments(candidate)
            if found is None:
                return ANY
            out |= found
        return frozenset(out)
    starlette_route = getattr(route, "starlette_route", None)  # a mount or host inside an included router
    if starlette_route is not None:
        return first_segments(starlette_route)
    if getattr(route, "host", None) is not None:
        return ANY
    path = getattr(route, "path_format", None)
    if not isinstance(path, str) or not path.startswith("/"):
        return ANY
    first = _first_segment(path)
    return ANY if "{" in first else frozenset({first})


def _skipping(route: Any) -> Callable[[Scope], tuple[Match, Scope]]:
    matches = route.matches
    state: dict[str, Any] = {"candidates": None, "segments": ANY}

    def skip_or_match(scope: Scope) -> tuple[Match, Scope]:
        candidates = route.effective_candidates()  # the same list until routes are added to the router
        if candidates is not state["candidates"]:
            state["candidates"], state["segments"] = candidates, first_segments(route)
        segments = state["segments"]
        if segments is not ANY and scope["type"] in ("http", "websocket"):
            if _first_segment(get_route_path(scope)) not in segments:
                return Match.NONE, {}
        return matches(scope)  # type: ignore[no-any-return]

    return skip_or_match


def skip_by_first_segment(app: FastAPI) -> None:
    """Give each router included in ``app`` the first-segment test (call once, after every router is included;
    routes added later are seen: the sets are computed again when a router's routes change)."""
    for route in app.router.routes:
        if getattr(route, "effective_candidates", None) is not None and "matches" not in vars(route):
            route.matches = _skipping(route)  # type: ignore[method-assign,assignment]
