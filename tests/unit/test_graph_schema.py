"""The graph JSON check (``interpedia.store.graph_schema``) on what circuit-tracer writes and what interpedia's
engine needs: a circuit-tracer-style graph passes; the error names the first bad field's JSON path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from interpedia.errors import Invalid
from interpedia.store.graph_schema import validate_graph


def _doc() -> dict[str, Any]:
    """A graph as circuit-tracer's create_graph_files writes it (its extra fields included)."""
    return {
        "metadata": {
            "slug": "g",
            "scan": "gemma-2-2b",
            "transcoder_list": [],
            "prompt_tokens": ["<bos>", "The", " cat"],
            "prompt": "The cat",
            "node_threshold": 0.8,
            "schema_version": 1,
            "feature_details": {"neuronpedia_source_set": "gemmascope-transcoder-16k"},
            "info": {"generator": {"name": "circuit-tracer", "version": "0.5.0"}, "create_time_ms": 1.7e12},
            "generation_settings": {"max_n_logits": 10, "desired_logit_prob": 0.95, "batch_size": 48},
            "pruning_settings": {"node_threshold": 0.8, "edge_threshold": 0.98},
        },
        "qParams": {"pinnedIds": [], "supernodes": [["Texas", "0_5_1"]], "linkType": "both", "clickedId": ""},
        "nodes": [
            {"node_id": "E_2_0", "feature": 0, "layer": "E", "ctx_idx": 0, "feature_type": "embedding",
             "jsNodeId": "E_2-0", "clerp": "", "influence": 0.9, "activation": None, "token_prob": 0.0},
            {"node_id": "0_5_1", "feature": 20, "layer": "0", "ctx_idx": 1, "feature_type": "cross layer transcoder",
             "jsNodeId": "0_5-0", "clerp": "", "influence": 0.4, "activation": 3.5, "run_idx": 0},
            {"node_id": "3_17_2", "feature": 17, "layer": 3, "ctx_idx": 2, "feature_type": "logit",
             "jsNodeId": "L_17-2", "clerp": 'Output " hat" (p=0.500)', "is_target_logit": True},
        ],
        "links": [
            {"source": "E_2_0", "target": "0_5_1", "weight": 1.5},
            {"source": "0_5_1", "target": "3_17_2", "weight": -2},
        ],
    }  # fmt: skip


def test_a_circuit_tracer_style_graph_passes() -> None:
    validate_graph(_doc())


def _broken(path: list[Any], value: Any = ..., *, delete: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ([], "$", "expected object, got array"),
        (_broken(["links"], delete=True), "links", "required field is missing"),
        (_broken(["metadata", "slug"], delete=True), "metadata.slug", "required field is missing"),
        (_broken(["metadata", "prompt_tokens", 1], 7), "metadata.prompt_tokens[1]", "expected string, got number"),
        (_broken(["metadata", "node_threshold"], "0.8"), "metadata.node_threshold", "expected number, got string"),
        (_broken(["qParams", "pinnedIds"], [1]), "qParams.pinnedIds[0]", "expected string"),
        (_broken(["nodes", 1, "ctx_idx"], "1"), "nodes[1].ctx_idx", "expected integer, got string"),
        (_broken(["nodes", 1, "feature"], True), "nodes[1].feature", "expected integer or null, got boolean"),
        (_broken(["nodes", 2, "clerp"], delete=True), "nodes[2].clerp", "required field is missing"),
        (_broken(["nodes", 0, "layer"], None), "nodes[0].layer", "expected string or integer, got null"),
        (_broken(["nodes", 0, "influence"], "high"), "nodes[0].influence", "expected number or null"),
        (_broken(["nodes", 1], "0_5_1"), "nodes[1]", "expected object, got string"),
        (_broken(["links", 1, "weight"], None), "links[1].weight", "expected number, got null"),
    ],
)  # fmt: skip
def test_the_first_bad_field_is_named(doc: Any, field: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        validate_graph(doc)
    assert exc.value.field == field
    assert f"{field}: " in exc.value.message
    assert exc.value.status == 422


def test_errors_come_in_document_order() -> None:
    doc = _broken(["nodes", 0, "ctx_idx"], "x")
    doc["links"][0]["weight"] = "heavy"
    with pytest.raises(Invalid, match=r"nodes\[0\]\.ctx_idx"):
        validate_graph(doc)


def test_circuit_tracer_colliding_ids_and_integral_floats_are_accepted() -> None:
    from factories import make_graph

    from interpedia.store.graph_schema import validate_graph

    doc = make_graph()
    # circuit-tracer writes an error node 0_{layer}_{pos}: the id of layer-0 feature {layer} at that position
    doc["nodes"].append({**doc["nodes"][3], "feature_type": "mlp reconstruction error", "feature": -1})
    doc["nodes"][0]["ctx_idx"] = 0.0
    assert validate_graph(doc) is doc
