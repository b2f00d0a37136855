"""Helpers for the browser tests: where artifacts go, and writing small SAEDashboard outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def require_d3() -> None:
    """The pages' d3 (copied from npm by make install): the graph page and the UMAP map need it."""
    from parts import missing

    from interpedia.web.pages.render import STATIC

    if not (STATIC / "vendor" / "d3.js").exists():
        missing("the pages' d3 is not installed (make install runs npm ci and copies it to static/vendor)")


def artifact(name: str) -> Path:
    """A path under ./artifacts (git-ignored) for screenshots the tests keep."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def write_batch(
    path: Path,
    features: list[dict[str, Any]],
    *,
    model_id: str = "tiny-test",
    sae_set: str = "res-test",
    layer: int = 0,
) -> Path:
    """One SAEDashboard batch file holding ``features``."""
    path.mkdir(parents=True, exist_ok=True)
    doc = {"model_id": model_id, "layer": layer, "sae_set": sae_set, "sae_id_suffix": None, "features": features}
    (path / "batch-0.json").write_text(json.dumps(doc))
    return path
