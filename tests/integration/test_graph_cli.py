"""``interpedia graph generate``: the real CLI and database (SQLite and Postgres), a tiny model and SAELens
transcoders registered as a source set; bad input is refused by name and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from graph_helpers import SHORT_PROMPT, TinyGraph, build

from interpedia.cli import main
from interpedia.db import transaction
from interpedia.store.catalogue import ensure_model, ensure_source
from interpedia.store.catalogue import get_source as find_source

MODEL_ID = "tiny-graph"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyGraph:
    return build(tmp_path_factory.mktemp("graph-cli"))


@pytest.fixture
def registered(tiny: TinyGraph, settings: Any, factory: Any) -> Any:
    with transaction(factory) as session:
        ensure_model(session, MODEL_ID, layers=2, dimension=32, tlens_id=str(tiny.model))
        for layer, path in tiny.saelens_layers.items():
            ensure_source(
                session,
                MODEL_ID,
                f"{layer}-tc",
                weights_path=str(path),
                layer_num=layer,
                saelens_config=json.loads((path / "cfg.json").read_text()),  # as generate --into-db records it
            )
        ensure_source(session, MODEL_ID, "0-empty")  # a set whose source has no weights
    return factory


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["graph", "generate", "--model", MODEL_ID, *args], catch_exceptions=False)


def test_generate_writes_a_graph_whose_features_are_the_sets_sources(registered: Any, tmp_path: Path) -> None:
    out = tmp_path / "graphs" / "g.json"
    result = _run("--source-set", "tc", "--prompt", SHORT_PROMPT, "--slug", "cat-graph", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "graph cat-graph:" in result.output and str(out) in result.output
    doc = json.loads(out.read_text())
    meta = doc["metadata"]
    assert meta["slug"] == "cat-graph" and meta["scan"] == MODEL_ID and meta["prompt"] == SHORT_PROMPT
    assert meta["feature_details"]["neuronpedia_source_set"] == "tc"
    features = [n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert features, "no feature node survived pruning"
    with transaction(registered) as session:
        for node in features:  # the page fetches /{scan}/{layer}-{source set}/{index}
            layer, index, _ = node["node_id"].split("_")
            assert find_source(session, MODEL_ID, f"{layer}-tc").weights_path
            assert 0 <= int(index) < 64
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--source-set", "tc", "--prompt", "the cat " * 40), "graphs take at most 64"),
        (("--source-set", "nope", "--prompt", "the cat"), "source set tiny-graph/nope not found"),
        (("--source-set", "empty", "--prompt", "the cat"), "has no sources with weights"),
        (("--source-set", "tc", "--prompt", "   "), "the prompt is empty"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    registered: Any, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "graphs" / "g.json"
    result = _run(*args, "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_unknown_model_is_named(settings: Any, tmp_path: Path) -> None:
    result = _run("--source-set", "tc", "--prompt", "the cat", "--out", str(tmp_path / "g.json"))
    assert result.exit_code != 0 and "model 'tiny-graph' not found" in result.output


def test_into_db_stores_a_featured_graph(registered: Any, tmp_path: Path) -> None:
    from interpedia.store.graphs import get_graph, graph_source_set

    result = _run("--source-set", "tc", "--prompt", SHORT_PROMPT, "--slug", "stored", "--into-db", "--featured")
    assert result.exit_code == 0, result.output
    assert f"/{MODEL_ID}/graph?slug=stored" in result.output
    with registered() as session:
        row = get_graph(session, MODEL_ID, "stored")
        assert row.is_featured and row.source_set_name == "tc" and row.n_nodes > 0
        assert graph_source_set(session, MODEL_ID, None) == "tc"  # the model's only transcoder set
    again = _run("--source-set", "tc", "--prompt", SHORT_PROMPT, "--slug", "stored", "--into-db")
    assert again.exit_code != 0 and "already exists" in again.output


def test_api_generate_and_the_official_client(
    registered: Any, live_server: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("NEURONPEDIA_API_KEY", api_key)
    from neuronpedia.requests.base_request import NPRequest
    from neuronpedia.requests.graph_request import GraphRequest

    monkeypatch.setattr(NPRequest, "BASE_URL", f"{live_server}/api")
    meta = GraphRequest().generate(MODEL_ID, SHORT_PROMPT, "client-made", max_n_logits=5, node_threshold=0.7)
    assert (meta.model_id, meta.slug, meta.prompt) == (MODEL_ID, "client-made", SHORT_PROMPT)
    doc = httpx.get(meta.json_url).json()
    assert doc["metadata"]["generation_settings"]["max_n_logits"] == 5
    assert doc["metadata"]["pruning_settings"]["node_threshold"] == 0.7
    headers = {"x-api-key": api_key}
    too_long = httpx.post(
        f"{live_server}/api/graph/generate",
        json={"modelId": MODEL_ID, "prompt": "the cat " * 40, "slug": "long"},
        headers=headers,
        timeout=60,
    )
    assert too_long.status_code == 422 and "at most 64" in too_long.json()["message"]
    taken = httpx.post(
        f"{live_server}/api/graph/generate",
        json={"modelId": MODEL_ID, "prompt": "a dog", "slug": "client-made"},
        headers=headers,
        timeout=60,
    )
    assert taken.status_code == 409 and taken.json()["field"] == "slug"
    no_set = httpx.post(
        f"{live_server}/api/graph/generate",
        json={"modelId": MODEL_ID, "prompt": "a dog", "slug": "x", "sourceSetName": "empty"},
        headers=headers,
        timeout=60,
    )
    assert no_set.status_code == 503 and "no sources with weights" in no_set.json()["message"]
    anonymous = httpx.post(f"{live_server}/api/graph/generate", json={"modelId": MODEL_ID, "prompt": "a dog"})
    assert anonymous.status_code == 401
    assert [g.slug for g in GraphRequest().list_owned()] == ["client-made"]
