"""The ``/sae-bench`` page: SAEBench metrics of every source side by side, and a plot of two of them.

The table sorts in the browser (``static/sae_bench.js``); the plot is drawn here as SVG from the two
metrics chosen in the form (``?x=&y=``), so it works without script too.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from interpedia.analysis.queries import sae_bench
from interpedia.errors import Invalid
from interpedia.web.deps import SessionDep
from interpedia.web.pages.render import page, page_url
from interpedia.web.pages.routes import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# Plot geometry (SVG user units).
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 360, 64, 16, 12, 44


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi == lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def scatter(rows: list[dict[str, Any]], x: str, y: str) -> dict[str, Any] | None:
    """An SVG-ready scatter of metric ``x`` against metric ``y`` (one point per source with both)."""
    pts = [(r["metrics"][x], r["metrics"][y], r) for r in rows if x in r["metrics"] and y in r["metrics"]]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]

    def scale(lo: float, hi: float, a: float, b: float):  # type: ignore[no-untyped-def]
        if hi == lo:  # one value: put it in the middle
            return lambda v: (a + b) / 2
        return lambda v: a + (v - lo) / (hi - lo) * (b - a)

    sx = scale(min(xs), max(xs), PAD_L + 8, W - PAD_R - 8)
    sy = scale(min(ys), max(ys), H - PAD_B - 8, PAD_T + 8)
    points = [
        {
            "cx": round(sx(vx), 2),
            "cy": round(sy(vy), 2),
            "x": vx,
            "y": vy,
            "label": f"{r['modelId']}/{r['source']}",
            "href": page_url(r["modelId"], r["source"]),
        }
        for vx, vy, r in pts
    ]
    return {
        "width": W,
        "height": H,
        "left": PAD_L,
        "right": W - PAD_R,
        "top": PAD_T,
        "bottom": H - PAD_B,
        "points": points,
        "xticks": [{"pos": round(sx(v), 2), "label": _tick_label(v)} for v in _ticks(min(xs), max(xs))],
        "yticks": [{"pos": round(sy(v), 2), "label": _tick_label(v)} for v in _ticks(min(ys), max(ys))],
    }


def _pick(columns: list[dict[str, Any]], wanted: str | None, fallback: int, field: str) -> str | None:
    keys = [c["key"] for c in columns]
    if wanted:
        if wanted not in keys:
            raise Invalid(f"{field}={wanted!r} is not a metric of these evals", field=field)
        return wanted
    defaults = [c["key"] for c in columns if c["default"]] or keys
    return defaults[min(fallback, len(defaults) - 1)] if defaults else None


@router.get("/sae-bench")
@router.get("/sae-bench.json")
def sae_bench_page(
    request: Request, session: SessionDep, type: str | None = None, x: str | None = None, y: str | None = None
) -> Response:
    """SAEBench results of one eval type for every source that has them: a sortable table and a plot."""
    data = sae_bench(session, type)
    data["page"] = "saeBench"
    data["x"] = _pick(data["columns"], x, 0, "x")
    data["y"] = _pick(data["columns"], y, 1, "y")
    return page(
        request,
        session,
        "sae_bench.html",
        data,
        as_json=request.url.path.endswith(".json"),
        html_view=lambda: {
            "plot": scatter(data["rows"], data["x"], data["y"]) if data["x"] and data["y"] else None,
            "titles": {c["key"]: f"{c['category']} · {c['title']}" for c in data["columns"]},
            "isfinite": math.isfinite,
        },
    )
