"""The attribution engine against circuit-tracer 0.5.0 (its own venv, built by ``make test``), on the same tiny
model, transcoders and prompt: active features, the unpruned adjacency matrix, and the pruned graph that its
``create_graph_files`` writes.

Tolerance: activations within 1e-5; adjacency ``|ours - theirs| <= 1e-4 * |theirs| + 1e-5 * max|theirs|``
(float32; measured differences are ~1e-7 relative)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from graph_helpers import CT_PYTHON, SHORT_PROMPT, TinyGraph, build, prompt_tokens, run_circuit_tracer
from parts import missing

from interpedia.generate.model import HookedModel
from interpedia.graph import AttributionSettings, attribute, build_graph_document, load_transcoder_set, prune
from interpedia.store.graph_schema import validate_graph

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyGraph:
    if not CT_PYTHON.exists():
        missing(f"{CT_PYTHON} is missing (make test builds it)")
    return build(tmp_path_factory.mktemp("graph-oracle"))


@pytest.fixture(scope="module")
def model(tiny: TinyGraph) -> Any:
    return HookedModel.load(str(tiny.model)).model


SKIP_HOOK = "ln2.hook_normalized"
CASES: dict[str, dict[str, Any]] = {
    "per-layer": {"batch_size": 64},
    # W_skip, JumpReLU, the pre-affine ln2 input, and max_feature_nodes below the active count (visit order)
    "skip": {"input_hook": SKIP_HOOK, "batch_size": 16, "max_feature_nodes": 60},
    "clt": {"batch_size": 64},
}


@pytest.fixture(scope="module")
def oracle(tiny: TinyGraph, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """circuit-tracer's graphs of every case, from one run of its venv."""
    tokens = prompt_tokens(tiny.model, SHORT_PROMPT)
    files = {
        "per-layer": {"transcoders": {str(k): str(v) for k, v in tiny.ct_layers.items()}},
        "skip": {"transcoders": {str(k): str(v) for k, v in tiny.skip_layers.items()}},
        "clt": {"clt": str(tiny.clt)},
    }
    specs = [
        {"model_dir": str(tiny.model), "tokens": tokens, "slug": "oracle", "scan": "tiny-graph", **files[c], **CASES[c]}
        for c in CASES
    ]
    results = run_circuit_tracer(specs, tmp_path_factory.mktemp("ct"))
    return dict(zip(CASES, results, strict=True))


def _keys(doc: dict[str, Any]) -> set[tuple[Any, ...]]:
    """Nodes by what they are, whatever the id scheme: (kind, layer, feature index or token, position)."""
    keys = set()
    for n in doc["nodes"]:
        kind = n["feature_type"]
        if kind == "cross layer transcoder":
            keys.add(("feature", str(n["layer"]), n["node_id"].split("_")[1], n["ctx_idx"]))
        elif kind == "mlp reconstruction error":
            keys.add(("error", str(n["layer"]), n["ctx_idx"]))
        elif kind == "embedding":
            keys.add(("token", n["node_id"], n["ctx_idx"]))
        else:
            keys.add(("logit", n["feature"], n["ctx_idx"]))
    return keys


def _links(doc: dict[str, Any], skip: set[tuple[Any, ...]]) -> dict[tuple[Any, Any], float]:
    """Links by the keys of their ends, leaving out those touching an id two nodes share (circuit-tracer's
    error ``0_{layer}_{pos}`` = layer-0 feature ``{layer}`` at ``pos``): which node such a link means is lost."""
    by_id: dict[str, list[tuple[Any, ...]]] = {}
    for n in doc["nodes"]:
        by_id.setdefault(n["node_id"], []).extend(_keys({"nodes": [n]}))
    out = {}
    for lk in doc["links"]:
        ends = by_id[lk["source"]] + by_id[lk["target"]]
        if len(ends) == 2 and not skip.intersection(ends):
            out[(ends[0], ends[1])] = lk["weight"]
    return out


def _colliding(doc: dict[str, Any]) -> set[tuple[Any, ...]]:
    seen: dict[str, list[dict[str, Any]]] = {}
    for n in doc["nodes"]:
        seen.setdefault(n["node_id"], []).append(n)
    return {k for same in seen.values() if len(same) > 1 for k in _keys({"nodes": same})}


def _compare(tiny: TinyGraph, model: Any, theirs: dict[str, Any], ours_set: Any, case: str) -> None:
    tokens = prompt_tokens(tiny.model, SHORT_PROMPT)
    opts = CASES[case]
    settings = AttributionSettings(
        batch_size=opts["batch_size"], max_feature_nodes=opts.get("max_feature_nodes") or 10000
    )
    graph = attribute(model, torch.tensor(tokens), ours_set, settings, progress=False)

    assert torch.equal(graph.active_features, theirs["active_features"]), "active features differ"
    torch.testing.assert_close(graph.activation_values, theirs["activation_values"], rtol=0, atol=1e-5)
    assert graph.logit_tokens == theirs["logit_tokens"].tolist()
    torch.testing.assert_close(graph.logit_probabilities, theirs["logit_probabilities"], rtol=1e-5, atol=1e-7)
    assert torch.equal(graph.selected_features, theirs["selected_features"])
    adjacency = theirs["adjacency"]
    assert graph.adjacency.shape == adjacency.shape
    assert adjacency.abs().max() > 0.1, "the oracle graph is empty: the test would prove nothing"
    scale = float(adjacency.abs().max())
    torch.testing.assert_close(graph.adjacency, adjacency, rtol=1e-4, atol=1e-5 * scale)

    pruned = prune(graph, 0.8, 0.98)
    doc = build_graph_document(
        graph,
        pruned,
        slug="oracle",
        scan="tiny-graph",
        prompt=SHORT_PROMPT,
        prompt_tokens=[str(t) for t in tokens],
        logit_strings=[str(t) for t in graph.logit_tokens],
        source_set="tc",
        settings=settings,
        node_threshold=0.8,
        edge_threshold=0.98,
    )
    validate_graph(doc)
    validate_graph(theirs["json"])  # what circuit-tracer writes passes the upload check, colliding ids and all
    assert len(doc["nodes"]) > len(tokens) + len(graph.logit_tokens), "no feature survived pruning"
    assert _keys(doc) == _keys(theirs["json"])
    skip = _colliding(theirs["json"])
    assert not _colliding(doc)
    ours_links, their_links = _links(doc, skip), _links(theirs["json"], skip)
    assert ours_links.keys() == their_links.keys()
    assert len(doc["links"]) == len(theirs["json"]["links"])
    for key, weight in their_links.items():
        assert ours_links[key] == pytest.approx(weight, rel=1e-4, abs=1e-5 * scale)
    ids = [n["node_id"] for n in doc["nodes"]]
    assert len(ids) == len(set(ids))


def test_per_layer_transcoders_match_circuit_tracer(tiny: TinyGraph, model: Any, oracle: dict[str, Any]) -> None:
    _compare(tiny, model, oracle["per-layer"], load_transcoder_set(tiny.ct_layers), "per-layer")


def test_skip_jumprelu_on_ln2_normalized_with_feature_budget_match(
    tiny: TinyGraph, model: Any, oracle: dict[str, Any]
) -> None:
    ours = load_transcoder_set(tiny.skip_layers, input_hook=SKIP_HOOK)
    assert ours.W_skip[0] is not None and ours.activations[0].kind == "jumprelu"
    assert oracle["skip"]["selected_features"].shape[0] == 60 < oracle["skip"]["active_features"].shape[0]
    _compare(tiny, model, oracle["skip"], ours, "skip")


def test_cross_layer_transcoder_matches_circuit_tracer(tiny: TinyGraph, model: Any, oracle: dict[str, Any]) -> None:
    ours = load_transcoder_set(tiny.clt)
    assert ours.cross_layer
    _compare(tiny, model, oracle["clt"], ours, "clt")
