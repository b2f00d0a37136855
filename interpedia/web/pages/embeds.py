"""Embed views (``?embed=true``): the feature dashboard and the graph alone, for other sites to frame.

The feature page reads neuronpedia.org's toggles, each shown unless it is ``false``: ``embedplots`` (logits,
density, histograms), ``embedexplanation`` (the top explanation), ``embedtest`` (the live test box),
``embedactivations`` (the top examples), ``embedlink`` (a link to the full dashboard), ``embedsteer`` (the
steer link), ``embedtestfield`` (the test box's text field), and ``defaulttesttext`` (text the test box
starts with and runs at once). Who may frame them is ``INTERPEDIA_EMBED_ORIGINS`` (``security.allow_framing``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

__all__ = ["EMBED_TOGGLES", "embed_options", "is_embed"]

EMBED_TOGGLES = (
    "embedplots",
    "embedexplanation",
    "embedtest",
    "embedactivations",
    "embedlink",
    "embedsteer",
    "embedtestfield",
)
MAX_TEST_TEXT = 4000  # the test box's own limit


def is_embed(value: str | None) -> bool:
    """``embed=true`` (also ``1`` or ``yes``)."""
    return (value or "").strip().lower() in ("1", "true", "yes")


def embed_options(request: Request) -> dict[str, Any] | None:
    """The embed toggles of the request (each true unless ``false``), or None when it is not an embed."""
    query = request.query_params
    if not is_embed(query.get("embed")):
        return None
    options: dict[str, Any] = {name: query.get(name, "").strip().lower() != "false" for name in EMBED_TOGGLES}
    options["defaulttesttext"] = query.get("defaulttesttext", "")[:MAX_TEST_TEXT]
    return options
