"""Neuronpedia's graph JSON (``metadata``, ``qParams``, ``nodes``, ``links``) from a pruned attribution graph.

Node ids follow circuit-tracer's ``create_graph_files`` (what neuronpedia.org stores), with one change: its error
ids (``0_{layer}_{pos}``) equal the id of layer-0 feature ``{layer}`` at the same position, so here error nodes are
``err_{layer}_{pos}`` (jsNodeId ``err_{layer}_{pos}-0``), which no feature, token or logit id can take. Feature
nodes carry ``feature`` = Cantor pair of (layer, index), which Neuronpedia's graph page decodes to fetch
``/{scan}/{layer}-{neuronpedia_source_set}/{index}``: this instance's transcoder dashboards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from interpedia.graph.attribution import Attribution, AttributionSettings
from interpedia.graph.pruning import Pruned

FEATURE_TYPE = "cross layer transcoder"  # what Neuronpedia uses for per-layer transcoders too
GENERATOR = {"name": "interpedia attribution engine"}


def cantor(layer: int, index: int) -> int:
    """The Cantor pairing of (layer, feature index): one integer per feature of a transcoder set."""
    return (layer + index) * (layer + index + 1) // 2 + index


def _node(node_id: str, feature: int, layer: str, ctx: int, kind: str, js_id: str, **extra: Any) -> dict[str, Any]:
    node = {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": ctx,
        "feature_type": kind,
        "jsNodeId": js_id,
        "clerp": "",
        "influence": None,
        "activation": None,
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
    }
    node.update(extra)
    return node


def graph_nodes(graph: Attribution, pruned: Pruned, logit_strings: Sequence[str]) -> dict[int, dict[str, Any]]:
    """The kept nodes by their index in the adjacency matrix."""
    n_feat, n_pos, n_layers = graph.n_features, graph.n_pos, graph.n_layers
    err_end = n_feat + n_layers * n_pos
    tok_end = err_end + n_pos
    scores = pruned.cumulative_influence.tolist()
    nodes: dict[int, dict[str, Any]] = {}
    for i in pruned.node_mask.nonzero().flatten().tolist():
        if i < n_feat:
            active = int(graph.selected_features[i])
            layer, pos, feat = (int(x) for x in graph.active_features[active].tolist())
            act = float(graph.activation_values[active])
            nodes[i] = _node(
                f"{layer}_{feat}_{pos}", cantor(layer, feat), str(layer), pos, FEATURE_TYPE, f"{layer}_{feat}-0",
                influence=scores[i], activation=act,
            )  # fmt: skip
        elif i < err_end:
            layer, pos = divmod(i - n_feat, n_pos)
            nodes[i] = _node(
                f"err_{layer}_{pos}", -1, str(layer), pos, "mlp reconstruction error", f"err_{layer}_{pos}-0",
                influence=scores[i],
            )  # fmt: skip
        elif i < tok_end:
            pos = i - err_end
            tok = graph.tokens[pos]
            nodes[i] = _node(f"E_{tok}_{pos}", pos, "E", pos, "embedding", f"E_{tok}-{pos}", influence=scores[i])
        else:
            k = i - tok_end
            tok, prob = graph.logit_tokens[k], float(graph.logit_probabilities[k])
            out_layer = str(n_layers + 1)
            nodes[i] = _node(
                f"{out_layer}_{tok}_{n_pos - 1}", tok, out_layer, n_pos - 1, "logit", f"L_{tok}-{n_pos - 1}",
                token_prob=prob, is_target_logit=k == 0, clerp=f'Output "{logit_strings[k]}" (p={prob:.3f})',
            )  # fmt: skip
    return nodes


def build_graph_document(
    graph: Attribution,
    pruned: Pruned,
    *,
    slug: str,
    scan: str,
    prompt: str,
    prompt_tokens: Sequence[str],
    logit_strings: Sequence[str],
    source_set: str | None,
    settings: AttributionSettings,
    node_threshold: float,
    edge_threshold: float,
    creator_name: str | None = None,
    source_urls: Sequence[str] = (),
    generator_version: str = "",
) -> dict[str, Any]:
    """The graph as Neuronpedia's JSON document."""
    nodes = graph_nodes(graph, pruned, logit_strings)
    dsts, srcs = pruned.edge_mask.nonzero(as_tuple=True)
    weights = graph.adjacency[dsts, srcs].tolist()
    links = []
    connected: set[int] = set()
    for src, dst, weight in zip(srcs.tolist(), dsts.tolist(), weights, strict=True):
        if src in nodes and dst in nodes:
            links.append({"source": nodes[src]["node_id"], "target": nodes[dst]["node_id"], "weight": weight})
            connected.update((src, dst))
    used = [n for i, n in nodes.items() if i in connected or n["feature_type"] in ("embedding", "logit")]
    ids = [n["node_id"] for n in used]
    if len(set(ids)) != len(ids):  # the id scheme above makes this impossible; a regression must not pass silently
        raise AssertionError("graph document has duplicate node ids")
    info: dict[str, Any] = {
        "source_urls": list(source_urls),
        "generator": {**GENERATOR, "version": generator_version},
        "create_time_ms": int(time.time() * 1000),
    }
    if creator_name:
        info["creator_name"] = creator_name
    if source_set:
        info["transcoder_set"] = source_set
    metadata: dict[str, Any] = {
        "slug": slug,
        "scan": scan,
        "prompt_tokens": list(prompt_tokens),
        "prompt": prompt,
        "node_threshold": node_threshold,
        "schema_version": 1,
        "info": info,
        "generation_settings": {
            "max_n_logits": settings.max_n_logits,
            "desired_logit_prob": settings.desired_logit_prob,
            "batch_size": settings.batch_size,
            "max_feature_nodes": settings.max_feature_nodes,
        },
        "pruning_settings": {"node_threshold": node_threshold, "edge_threshold": edge_threshold},
    }
    if source_set:
        metadata["feature_details"] = {"neuronpedia_source_set": source_set}
    return {
        "metadata": metadata,
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": used,
        "links": links,
    }
