"""Embed views (``?embed=true``): the feature dashboard with neuronpedia.org's toggles, the graph alone, and the
framing rules: ``INTERPEDIA_EMBED_ORIGINS`` may frame embed responses only; every other page keeps ``'self'``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from factories import make_graph
from fastapi.testclient import TestClient
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from test_inference_pages import SOURCE, add_explanations, write_features

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.ingest import import_path
from interpedia.store import graphs as graph_store
from interpedia.store.users import ensure_user
from interpedia.web.app import create_app

HTML = {"accept": "text/html"}
ORIGINS = ["https://blog.example.org", "http://127.0.0.1:9"]
FEATURE = f"/{MODEL_ID}/{SOURCE}/12"


@pytest.fixture
def live(factory: Any, tiny_inf: TinyInference, tmp_path: Path) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    import_path(write_features(tmp_path / "dash", MODEL_ID), factory)
    add_explanations(factory, MODEL_ID)
    return tiny_inf


@pytest.fixture
def embeds(settings: Settings, live: TinyInference) -> Any:
    with TestClient(create_app(settings.model_copy(update={"embed_origins": ORIGINS}))) as client:
        yield client


def _ancestors(resp: Any) -> str:
    match = re.search(r"frame-ancestors ([^;]*)", resp.headers["content-security-policy"])
    assert match, resp.headers["content-security-policy"]
    return match.group(1).strip()


def test_only_embed_responses_may_be_framed_by_the_embed_origins(embeds: Any, factory: Any) -> None:
    embed = embeds.get(f"{FEATURE}?embed=true", headers=HTML)
    assert embed.status_code == 200
    assert _ancestors(embed) == "'self' https://blog.example.org http://127.0.0.1:9"
    assert "x-frame-options" not in embed.headers
    assert "script-src 'self'" in embed.headers["content-security-policy"]  # the rest of the page policy stays
    for path in (FEATURE, f"{FEATURE}?embed=false", "/", f"/{MODEL_ID}/{SOURCE}", f"{FEATURE}.json?embed=true"):
        resp = embeds.get(path, headers=HTML)
        assert resp.status_code == 200, path
        assert resp.headers["x-frame-options"] == "SAMEORIGIN", path
        assert _ancestors(resp) in ("'self'",), path
    # the graph page's embed too
    with transaction(factory) as session:
        graph_store.save_graph(
            session, make_graph(MODEL_ID, "cat-dog"), graph_store.GraphSave(ensure_user(session, "g"))
        )
    graph = embeds.get(f"/{MODEL_ID}/graph?slug=cat-dog&embed=true", headers=HTML)
    assert graph.status_code == 200 and "x-frame-options" not in graph.headers
    assert "https://blog.example.org" in _ancestors(graph)
    full = embeds.get(f"/{MODEL_ID}/graph?slug=cat-dog", headers=HTML)
    assert full.headers["x-frame-options"] == "SAMEORIGIN" and _ancestors(full) == "'self'"


def test_without_embed_origins_an_embed_is_framed_like_any_page(settings: Settings, live: TinyInference) -> None:
    with TestClient(create_app(settings)) as client:
        embed = client.get(f"{FEATURE}?embed=true", headers=HTML)
    assert _ancestors(embed) == "'self'"
    with TestClient(create_app(settings.model_copy(update={"frame_ancestors": "'none'"}))) as client:
        assert _ancestors(client.get(f"{FEATURE}?embed=true", headers=HTML)) == "'none'"


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


def test_feature_embed_toggles(embeds: Any) -> None:
    full = embeds.get(f"{FEATURE}?embed=true", headers=HTML).text
    shown = {"top-explanation", "open-full", "feature-stats", "test-text", "test-form", "steer-this", "activations"}
    assert shown <= _ids(full)
    assert "explained 12" in full and 'class="topbar"' not in full  # no site chrome in a frame
    assert not {"comments", "add-to-list", "saelens-config", "bookmark-button", "search-this"} & _ids(full)
    assert 'target="_blank"' in full  # links leave the frame
    for toggle, gone in (
        ("embedplots", {"feature-stats"}),
        ("embedexplanation", {"top-explanation"}),
        ("embedtest", {"test-text", "test-form"}),
        ("embedactivations", {"activations"}),
        ("embedlink", {"open-full"}),
        ("embedsteer", {"steer-this"}),
    ):
        html = embeds.get(f"{FEATURE}?embed=true&{toggle}=false", headers=HTML).text
        assert not gone & _ids(html), toggle
        assert (shown - gone) <= _ids(html), toggle
    # the test field hidden, its default text filled in and run at once (inference.js reads data-autorun)
    html = embeds.get(f"{FEATURE}?embed=true&embedtestfield=false&defaulttesttext=the+king+spoke", headers=HTML).text
    assert re.search(r'<form class="row" id="test-form"\s+hidden>', html)
    assert ">the king spoke</textarea>" in html and 'data-autorun="true"' in html
    twin = embeds.get(f"{FEATURE}.json?embed=true&embedplots=false").json()
    assert twin["embed"]["embedplots"] is False and twin["embed"]["embedtest"] is True
    assert "embed" not in embeds.get(f"{FEATURE}.json").json()
