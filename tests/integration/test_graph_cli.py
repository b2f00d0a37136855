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
            ensure_source(session, MODEL_ID, f"{layer}-tc", weights_path=str(path), layer_num=layer)
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
