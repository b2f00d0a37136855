"""Route matching that skips, by the path's first segment and its number of segments, the routers that cannot
match it.

FastAPI tries every route in order with its regular expression: a feature page (``/{model}/{source}/{index}``,
matched by the pages' catch-all routes, included last) was tried against about 170 routes first, which cost
more server CPU than reading its cached document. :func:`skip_by_first_segment` gives each router included in
the app a cheap first test: the shapes of its routes' paths, each a first segment (``api``, ``v1``, ``graph``...;
None for a parameter) and a number of slashes (None for a ``{...:path}`` parameter or a mount, which match
deeper paths). A router none of whose shapes fits the path answers "no match" at once; the others are tried
as before. Order and results are unchanged: a path parameter other than ``:path`` never holds a slash, so a
route matches only paths of its own shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.convertors import PathConvertor
from starlette.routing import Match, Mount
from starlette.types import Scope

__all__ = ["Shape", "fits", "first_segments", "shapes", "skip_by_first_segment"]

Shape = tuple[str | None, int | None]
"""A route's path shape: its first segment (None: a parameter) and its number of slashes (None: any, or more)."""

ANY: frozenset[Shape] = frozenset({(None, None)})  # what a route whose path cannot be read may match


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


def shapes(route: Any) -> frozenset[Shape]:
    """The path shapes ``route`` (a route, or a router included in the app) can match."""
    candidates = getattr(route, "effective_candidates", None)
    if candidates is not None:  # a router included in the app (or in another router)
        return frozenset().union(*(shapes(candidate) for candidate in candidates()))
    starlette_route = getattr(route, "starlette_route", None)  # a mount or host inside an included router
    if starlette_route is not None:
        return shapes(starlette_route)
    if getattr(route, "host", None) is not None:
        return ANY
    path = getattr(route, "path_format", None)
    if not isinstance(path, str) or not path.startswith("/"):
        return ANY
    first = _first_segment(path)
    convertors = getattr(route, "param_convertors", None) or {}
    deep = isinstance(route, Mount) or any(isinstance(c, PathConvertor) for c in convertors.values())
    return frozenset({(None if "{" in first else first, None if deep else path.count("/"))})


def first_segments(route: Any) -> frozenset[str] | None:
    """The first path segments ``route`` can match, or None when some route of it starts with a parameter."""
    found = shapes(route)
    return None if any(first is None for first, _ in found) else frozenset(first for first, _ in found if first)


def fits(path: str, route_shapes: frozenset[Shape]) -> bool:
    """Whether a route of one of ``route_shapes`` could match ``path``."""
    first, slashes = _first_segment(path), path.count("/")
    return any((f is None or f == first) and (n is None or n == slashes) for f, n in route_shapes)


def _skipping(route: Any) -> Callable[[Scope], tuple[Match, Scope]]:
    matches = route.matches
    state: dict[str, Any] = {"candidates": None, "shapes": ANY}

    def skip_or_match(scope: Scope) -> tuple[Match, Scope]:
        candidates = route.effective_candidates()  # the same list until routes are added to the router
        if candidates is not state["candidates"]:
            state["candidates"], state["shapes"] = candidates, shapes(route)
        if scope["type"] in ("http", "websocket") and not fits(get_route_path(scope), state["shapes"]):
            return Match.NONE, {}
        return matches(scope)  # type: ignore[no-any-return]

    return skip_or_match


def skip_by_first_segment(app: FastAPI) -> None:
    """Give each router included in ``app`` the path-shape test (call once, after every router is included;
    routes added later are seen: the shapes are computed again when a router's routes change)."""
    for route in app.router.routes:
        if getattr(route, "effective_candidates", None) is not None and "matches" not in vars(route):
            route.matches = _skipping(route)  # type: ignore[method-assign,assignment]
