"""Route matching with the path-shape test (``web/routing.py``) picks what FastAPI's own matching picks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Match

from interpedia.web.routing import first_segments, fits, shapes


def _formats(route: Any, out: list[str]) -> None:
    candidates = getattr(route, "effective_candidates", None)
    if candidates is not None:
        for candidate in candidates():
            _formats(candidate, out)
        return
    inner = getattr(route, "starlette_route", None)
    out.append(getattr(route, "path_format", "") or getattr(inner, "path_format", "") or "/")


def _sample_paths(app: Any) -> set[str]:
    """A path for every route (parameters filled with words that are also other routes' first segments)."""
    formats: list[str] = []
    for route in app.router.routes:
        _formats(route, formats)
    paths = {"/", "/gpt2-small/0-res-jb/5", "/gpt2-small/0-res-jb/5.json", "/a/b/c/d", "/static/app.js"}
    for fmt in formats:
        for fill in ("x1", "api", "v1", "static", "graph", "account", "list"):
            path = re.sub(r"\{[^}:]+\}", fill, re.sub(r"\{[^}:]+:path\}", "a/b", fmt))
            paths |= {path, path.rstrip("/") + "/", path + ".json"}
    return paths


def _selected(app: Any, path: str, method: str, *, skip: bool) -> tuple[Any, ...] | None:
    """What the app's router picks for ``path``: the first full match, else the first partial one."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    partial = None
    for n, route in enumerate(app.router.routes):
        # Without the test: the class's own matches (FastAPI's), not the one skip_by_first_segment set.
        match, child = route.matches(scope) if skip else type(route).matches(route, scope)
        if match == Match.FULL:
            return ("full", n, child.get("endpoint"), child.get("path_params"))
        if match == Match.PARTIAL and partial is None:
            partial = ("partial", n)
    return partial


def test_every_route_is_matched_as_without_the_first_segment_test(app: Any) -> None:
    paths = _sample_paths(app)
    assert len(paths) > 300
    for path in sorted(paths):
        for method in ("GET", "POST"):
            assert _selected(app, path, method, skip=True) == _selected(app, path, method, skip=False), path


def test_api_routers_are_skipped_for_a_feature_page_but_page_routers_are_not(app: Any) -> None:
    segments = [first_segments(route) for route in app.router.routes]
    assert frozenset({"api"}) in segments  # the API router: only paths under /api
    assert None in segments  # the pages' /{model}/... routers: any first segment
    # The page's path is tried against a few routers' routes only, not every API route.
    api = next(r for r in app.router.routes if first_segments(r) == frozenset({"api"}))
    scope = {"type": "http", "method": "GET", "path": "/gpt2-small/0-res-jb/5", "root_path": "", "headers": []}
    assert api.matches(scope) == (Match.NONE, {})


def test_shapes_count_slashes_except_for_path_parameters_and_mounts(app: Any) -> None:
    pages = next(r for r in app.router.routes if ("jump", 1) in shapes(r))
    assert fits("/gpt2-small/0-res-jb/5", shapes(pages))
    steer = next(r for r in app.router.routes if ("steer", 1) in shapes(r))
    assert not fits("/gpt2-small/0-res-jb/5", shapes(steer))  # /{model}/steer has two segments, not three
    static = next(r for r in app.router.routes if first_segments(r) == frozenset({"static"}))
    assert fits("/static/deep/down/app.js", shapes(static))


def test_a_route_added_later_is_still_found(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/health").status_code == 200  # the first-segment sets are in use
    sae_bench = next(r for r in app.router.routes if first_segments(r) == frozenset({"sae-bench", "sae-bench.json"}))
    router = sae_bench.original_router  # a module's router: the route added goes again after the test
    monkeypatch.setattr(router, "routes", list(router.routes))
    router.add_api_route("/late-addition", lambda: {"ok": "late"}, methods=["GET"])
    assert client.get("/late-addition").json() == {"ok": "late"}  # not the model page of a model "late-addition"


def test_pages_and_api_still_answer(client: Any) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/api/feature/nope/0-res/1").status_code == 404
    missing = client.get("/nope/0-res/1", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
