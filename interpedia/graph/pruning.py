"""Pruning an attribution graph by influence (Ameisen et al. 2025, "Graph pruning").

Influence: with ``Â`` the adjacency with absolute values and rows normalised to sum 1, a node's influence on the
output is ``w · (Â + Â² + Â³ + ...)`` where ``w`` holds the logit targets' probabilities. Nodes are kept, most
influential first, until they hold ``node_threshold`` of the total (tokens and logits always stay); edges of the
graph restricted to those nodes are scored by ``Â[t, s] * (influence of t + w_t)`` and kept until they hold
``edge_threshold`` of the total edge score. Then feature and error nodes left without an outgoing edge, and
feature nodes left without an incoming edge, are dropped until nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interpedia.errors import Invalid
from interpedia.graph.attribution import Attribution


@dataclass
class Pruned:
    """Which nodes and edges survive, and each node's cumulative-influence rank."""

    node_mask: torch.Tensor  # [N] bool
    edge_mask: torch.Tensor  # [N, N] bool, target x source
    cumulative_influence: torch.Tensor  # [N]: share of total influence held by nodes at least as influential


def normalize_rows(matrix: torch.Tensor) -> torch.Tensor:
    """``|A|`` with each row scaled to sum 1 (rows of zeros stay zero)."""
    a = matrix.abs()
    return a / a.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(normalized: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``weights · (Â + Â² + ...)``; the graph is acyclic, so the sum ends after at most N terms."""
    step = weights @ normalized
    total = step.clone()
    for _ in range(normalized.shape[0] + 1):
        if not step.any():
            return total
        step = step @ normalized
        total += step
    raise RuntimeError("influence did not converge: the attribution graph has a cycle")


def threshold_value(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest score among the fewest top scores whose sum reaches ``fraction`` of the total."""
    positive = scores[scores > 0]
    if positive.numel() == 0:
        return torch.zeros((), dtype=scores.dtype)
    ordered = torch.sort(positive, descending=True).values
    cumulative = torch.cumsum(ordered, 0) / ordered.sum()
    index = int(torch.searchsorted(cumulative, fraction))
    if index >= ordered.numel():
        # Past the last positive score: every score counts (zeros included), as an unfiltered sort would give.
        return torch.zeros((), dtype=scores.dtype) if positive.numel() < scores.numel() else ordered[-1]
    return ordered[index]


def prune(graph: Attribution, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """The nodes and edges of ``graph`` that carry ``node_threshold`` / ``edge_threshold`` of the influence."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise Invalid(f"{name} must be between 0 and 1, got {value}", field=name)
    adjacency = graph.adjacency
    n = adjacency.shape[0]
    n_logits, n_tokens, n_features = len(graph.logit_tokens), graph.n_pos, graph.n_features
    fixed = n_logits + n_tokens  # tokens and logits close the node list
    weights = torch.zeros(n, dtype=adjacency.dtype)
    weights[n - n_logits :] = graph.logit_probabilities.to(adjacency.dtype)

    node_influence = influence(normalize_rows(adjacency), weights)
    node_mask = node_influence >= threshold_value(node_influence, node_threshold)
    node_mask[n - fixed :] = True

    kept = adjacency.clone()
    kept[~node_mask] = 0
    kept[:, ~node_mask] = 0
    kept_norm = normalize_rows(kept)
    edge_scores = kept_norm * (influence(kept_norm, weights) + weights)[:, None]
    edge_mask = edge_scores >= threshold_value(edge_scores.flatten(), edge_threshold)

    while True:
        before = node_mask.clone()
        # features and errors must feed something; features must be fed by something
        node_mask[: n - fixed] &= edge_mask[:, : n - fixed].any(0)
        node_mask[:n_features] &= edge_mask[:n_features].any(1)
        if torch.equal(node_mask, before):
            break
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False

    order = torch.argsort(node_influence, descending=True)
    cumulative = torch.zeros_like(node_influence)
    total = node_influence.sum()
    cumulative[order] = torch.cumsum(node_influence[order], 0) / (total if total > 0 else 1)
    return Pruned(node_mask=node_mask, edge_mask=edge_mask, cumulative_influence=cumulative)
