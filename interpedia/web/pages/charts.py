"""Server-side SVG bar charts for the dashboard's histograms: no chart library, nothing to run in the browser.

Each bar carries a ``<title>`` (the browser's own hover tooltip) and a class for its colour; numbers
are the only data written into the SVG (formatted by this module: digits, sign, point, exponent), so there is
nothing to escape but the chart's label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

_W, _H = 400, 150
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 8, 8, 22


def _label(value: float) -> str:
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1000 or mag < 0.001:
        return f"{value:.2g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _height(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def histogram_svg(
    xs: Sequence[float] | None, heights: Sequence[float] | None, *, label: str, signed: bool = False
) -> Markup | None:
    """A histogram of ``heights`` at bin positions ``xs``; ``signed`` colours negative and positive bins apart."""
    pairs = [
        (float(x), float(h))
        for x, h in zip(xs or [], heights or [], strict=False)
        if x is not None and h is not None and math.isfinite(x) and math.isfinite(h)
    ]
    if not pairs:
        return None
    n = len(pairs)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = max(h for _, h in pairs)
    top = top if top > 0 else 1.0
    bar_w = plot_w / n
    parts = [f'<svg class="hist" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(label)}">']
    for i, (x, h) in enumerate(pairs):
        if h <= 0:
            continue
        bar_h = max(plot_h * h / top, 0.5)
        cls = ("neg" if x < 0 else "pos") if signed else "act"
        parts.append(
            f'<rect class="{cls}" x="{_LEFT + i * bar_w:.2f}" y="{_TOP + plot_h - bar_h:.2f}" '
            f'width="{max(bar_w - 1, 0.6):.2f}" height="{bar_h:.2f}">'
            f"<title>{_label(x)}: {_height(h)}</title></rect>"
        )
    base = _TOP + plot_h
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{base}" x2="{_W - _RIGHT}" y2="{base}"/>')
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}"/>')
    parts.append(f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">{_height(top)}</text>')
    parts.append(f'<text class="tick" x="{_LEFT - 4}" y="{base}" text-anchor="end">0</text>')
    ticks = [(0, pairs[0][0], "start"), (n - 1, pairs[-1][0], "end")]
    if n >= 5:
        ticks.append((n // 2, pairs[n // 2][0], "middle"))
    for i, x, anchor in ticks:
        cx = _LEFT + (i + 0.5) * bar_w if anchor == "middle" else (_LEFT if anchor == "start" else _W - _RIGHT)
        parts.append(f'<text class="tick" x="{cx:.1f}" y="{_H - 6}" text-anchor="{anchor}">{_label(x)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
