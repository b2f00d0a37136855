"""Which feature of this instance a graph node is: node ids as circuit-tracer writes them, Cantor-paired
``feature`` values, Lorsa nodes, and the nodes that are no feature at all."""

from __future__ import annotations

import pytest

from interpedia.store.graph_features import feature_of_node


def _cantor(layer: int, index: int) -> int:
    # Cantor's pairing, written from its definition: pairs (x, y) enumerated along the diagonals x + y = d.
    d = layer + index
    return sum(range(d + 1)) + index


def _node(node_id: str, feature: object, layer: object, kind: str = "cross layer transcoder") -> dict[str, object]:
    return {"node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": 3, "feature_type": kind}


def test_feature_nodes_name_their_source_and_index() -> None:
    assert feature_of_node(_node("12_4052_3", _cantor(12, 4052), "12"), "clt-hp") == ("12-clt-hp", 4052)
    # The index comes from the id even when ``feature`` is the plain index (graphs before schema_version 1).
    assert feature_of_node(_node("3_17_3", 17, 3), "tc") == ("3-tc", 17)


@pytest.mark.parametrize(("layer", "index"), [(0, 0), (0, 1), (5, 0), (25, 16383), (11, 123456)])
def test_a_cantor_paired_feature_decodes_when_the_id_does_not_say(layer: int, index: int) -> None:
    node = _node(f"n{layer}-{index}", _cantor(layer, index), str(layer))
    assert feature_of_node(node, "tc") == (f"{layer}-tc", index)


def test_lorsa_nodes_use_the_lorsa_set() -> None:
    assert feature_of_node(_node("2_9_3", _cantor(2, 9), "2", "lorsa"), "tc", "lorsa-set") == ("2-lorsa-set", 9)
    assert feature_of_node(_node("2_9_3", _cantor(2, 9), "2", "lorsa"), "tc") is None


@pytest.mark.parametrize(
    "node",
    [
        _node("E_651_2", 2, "E", "embedding"),
        _node("27_651_9", 651, "27", "logit"),
        _node("0_3_2", -1, "3", "mlp reconstruction error"),
        _node("err_3_2", -1, "3", "mlp reconstruction error"),
        _node("0_3_2", None, "0", "lorsa error"),
        _node("x_y", None, "0"),
    ],
)
def test_tokens_logits_and_errors_are_no_feature(node: dict[str, object]) -> None:
    assert feature_of_node(node, "tc", "lorsa") is None


def test_no_source_set_no_feature() -> None:
    assert feature_of_node(_node("1_2_3", _cantor(1, 2), "1"), None) is None


def test_integral_floats_count_as_integers() -> None:
    """JSON does not tell 2.0 from 2 (the store accepts both since circuit-tracer's files carry them)."""
    assert feature_of_node(_node("n", float(_cantor(4, 11)), 4.0), "tc") == ("4-tc", 11)
