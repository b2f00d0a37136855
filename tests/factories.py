"""Factories for test data: SAEDashboard batch directories and feature dicts with realistic shapes."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

VOCAB = [
    "Ġthe",
    "Ġcat",
    "Ġsat",
    "Ġon",
    "Ġmat",
    ".",
    "Ċ",
    "ĠLORD",
    "Ġsaid",
    "Ġunto",
    "Ġdef",
    "(",
    ")",
    ":",
    "Ġreturn",
    "Ġimport",
    "Ġ<script>",
    "Ġé",
    "Ġ日本",
    "<|endoftext|>",
]


def make_activation(
    rng: random.Random,
    *,
    n_tokens: int = 16,
    peak: float = 3.0,
    bin_min: float = -1,
    bin_max: float = 3.0,
    bin_contains: float = -1,
) -> dict[str, Any]:
    """One SAEDashboard example: sparse values with one clear peak."""
    tokens = [rng.choice(VOCAB) for _ in range(n_tokens)]
    values = [0.0] * n_tokens
    q = rng.randrange(n_tokens)
    values[q] = round(peak, 4)
    for _ in range(2):
        values[rng.randrange(n_tokens)] = round(rng.uniform(0.01, peak / 2), 4)
    values[q] = round(peak, 4)
    return {
        "bin_min": bin_min,
        "bin_max": bin_max,
        "bin_contains": bin_contains,
        "tokens": tokens,
        "values": values,
        "qualifying_token_index": q,
    }


def make_feature(
    index: int, *, seed: int = 0, n_top: int = 4, n_tokens: int = 16, dead: bool = False, **overrides: Any
) -> dict[str, Any]:
    """One SAEDashboard feature object (the shape of reference/generation.md §1.5)."""
    rng = random.Random(seed * 100003 + index)
    peak = 0.0 if dead else round(rng.uniform(1, 10), 4)
    acts = [
        make_activation(rng, n_tokens=n_tokens, peak=round(peak * (1 - i / 10), 4), bin_max=peak) for i in range(n_top)
    ]
    if not dead:
        acts.append(
            make_activation(
                rng,
                n_tokens=n_tokens,
                peak=round(peak / 3, 4),
                bin_min=round(peak / 5, 3),
                bin_max=round(2 * peak / 5, 3),
                bin_contains=0.00123,
            )
        )
    feature = {
        "feature_index": index,
        "neuron_alignment_indices": [3, 1, 7],
        "neuron_alignment_values": [0.5, -0.3, 0.2],
        "neuron_alignment_l1": [0.1, 0.06, 0.04],
        "correlated_neurons_indices": [1, 2, 3],
        "correlated_neurons_l1": [0.1, 0.2, 0.3],
        "correlated_neurons_pearson": [0.3, 0.2, 0.1],
        "correlated_features_indices": [],
        "correlated_features_l1": [],
        "correlated_features_pearson": [],
        "neg_str": ["Ġfoo", "Ġbar"],
        "neg_values": [-0.52, -0.41],
        "pos_str": ["ĠLORD", "Ġsaid"],
        "pos_values": [0.91, 0.72],
        "frac_nonzero": 0.0 if dead else round(rng.uniform(0.0001, 0.05), 5),
        "freq_hist_data_bar_values": [0.5, 1.5],
        "freq_hist_data_bar_heights": [10, 3],
        "logits_hist_data_bar_heights": [5, 7],
        "logits_hist_data_bar_values": [-0.1, 0.1],
        "n_prompts_total": 64,
        "n_tokens_in_prompt": n_tokens + 1,
        "dataset": "local/test",
        "decoder_weights_dist": [],
        "activations": acts,
        "vector": [],
    }
    feature.update(overrides)
    return feature


def write_saedashboard_dir(
    path: Path,
    *,
    n_features: int = 10,
    per_batch: int = 4,
    model_id: str = "tiny-test",
    layer: int = 0,
    sae_set: str = "res-test",
    seed: int = 0,
    dead: tuple[int, ...] = (),
) -> Path:
    """A SAEDashboard output directory with ``n_features`` features split over batch files."""
    path.mkdir(parents=True, exist_ok=True)
    indexes = list(range(n_features))
    for n, start in enumerate(range(0, n_features, per_batch)):
        feats = [make_feature(i, seed=seed, dead=i in dead) for i in indexes[start : start + per_batch]]
        doc = {"model_id": model_id, "layer": layer, "sae_set": sae_set, "sae_id_suffix": None, "features": feats}
        (path / f"batch-{n}.json").write_text(json.dumps(doc))
    (path / "skipped_indexes.json").write_text(
        json.dumps(
            {"model_id": model_id, "layer": str(layer), "sae_set": sae_set, "log_sparsity": 1, "skipped_indexes": []}
        )
    )
    return path


def import_embed() -> Any:
    """The embedder importers get from the settings (None when INTERPEDIA_EMBED_ON_IMPORT is off)."""
    from interpedia.config import get_settings
    from interpedia.search.embeddings import import_embedder

    return import_embedder(get_settings())


def make_graph(
    model_id: str = "tiny-test",
    slug: str = "a-graph",
    *,
    tokens: tuple[str, ...] = ("<bos>", "The", " cat"),
    **meta: Any,
) -> dict[str, Any]:
    """A small graph JSON in Neuronpedia's format: embeddings, two features, an error node and a logit."""
    n = len(tokens)
    nodes: list[dict[str, Any]] = [
        {
            "node_id": f"E_{i}_{i}",
            "feature": i,
            "layer": "E",
            "ctx_idx": i,
            "feature_type": "embedding",
            "jsNodeId": f"E_{i}-{i}",
            "clerp": f"Emb: {t!r}",
            "influence": 0.1,
            "activation": None,
        }
        for i, t in enumerate(tokens)
    ]
    nodes += [
        {
            "node_id": f"0_{f}_{n - 1}",
            "feature": f,
            "layer": "0",
            "ctx_idx": n - 1,
            "feature_type": "cross layer transcoder",
            "jsNodeId": f"0_{f}-{n - 1}",
            "clerp": "",
            "influence": 0.5,
            "activation": 1.5,
        }
        for f in (3, 7)
    ]
    nodes.append(
        {
            "node_id": f"err_0_{n - 1}",
            "feature": None,
            "layer": "0",
            "ctx_idx": n - 1,
            "feature_type": "mlp reconstruction error",
            "jsNodeId": f"0_{n - 1}-0",
            "clerp": "",
            "influence": 0.2,
        }
    )
    nodes.append(
        {
            "node_id": f"3_42_{n - 1}",
            "feature": 42,
            "layer": "3",
            "ctx_idx": n - 1,
            "feature_type": "logit",
            "jsNodeId": f"L_42-{n - 1}",
            "clerp": 'Output " dog" (p=0.400)',
            "token_prob": 0.4,
            "is_target_logit": True,
        }
    )
    links = [
        {"source": f"E_{n - 1}_{n - 1}", "target": f"0_3_{n - 1}", "weight": 2.5},
        {"source": f"0_3_{n - 1}", "target": f"3_42_{n - 1}", "weight": 1.25},
        {"source": f"0_7_{n - 1}", "target": f"3_42_{n - 1}", "weight": -0.5},
        {"source": f"err_0_{n - 1}", "target": f"3_42_{n - 1}", "weight": 0.1},
    ]
    metadata = {
        "slug": slug,
        "scan": model_id,
        "prompt": "".join(tokens[1:]),
        "prompt_tokens": list(tokens),
        "node_threshold": 0.8,
        "schema_version": 1,
        **meta,
    }
    return {
        "metadata": metadata,
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both"},
        "nodes": nodes,
        "links": links,
    }
