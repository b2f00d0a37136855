"""Attribution graphs (Ameisen et al. 2025): the direct effects between features, errors, tokens and logits.

Nodes, in this order (the order circuit-tracer uses, so adjacency matrices compare index by index):
``[selected features | errors (layer-major: layer * P + pos) | tokens (pos) | logits]``. Features are the
transcoders' active features (position 0, the BOS, excluded: its features and errors are zeroed), sorted by
(layer, position, feature). ``adjacency[target, source]`` is the direct effect of the source on the target
through the frozen linear replacement model (``replacement.py``): for a feature target, on its
pre-activation; for a logit target, on the logit minus the mean logit.

Rows are computed in batches by the transpose of the frozen model (each row its own injected gradient). When
``max_feature_nodes`` is smaller than the number of active features, features are visited in order of their
influence on the logits, estimated from the rows computed so far and refreshed every ``update_interval``
batches, as the paper and circuit-tracer do.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from interpedia.errors import Invalid
from interpedia.graph.replacement import ReplacementTranspose, run_frozen_forward
from interpedia.graph.transcoders import TranscoderSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributionSettings:
    """How a graph is computed (names and defaults as Neuronpedia's graph server)."""

    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    batch_size: int = 64
    max_feature_nodes: int = 10000
    update_interval: int = 4

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return asdict(self)


@dataclass
class Attribution:
    """An unpruned attribution graph (``P`` positions, ``L`` layers, ``N`` nodes)."""

    tokens: list[int]
    n_layers: int
    active_features: torch.Tensor  # [n_active, 3] long: (layer, pos, feature)
    activation_values: torch.Tensor  # [n_active]
    selected_features: torch.Tensor  # [n_selected] long: indices into active_features, ascending
    logit_tokens: list[int]  # [n_logits]
    logit_probabilities: torch.Tensor  # [n_logits]
    adjacency: torch.Tensor  # [N, N] float32, target x source

    @property
    def n_pos(self) -> int:
        """Prompt length in tokens."""
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        """Feature nodes in the graph."""
        return int(self.selected_features.shape[0])


def select_logits(
    logits: torch.Tensor, w_u: torch.Tensor, max_n_logits: int, desired_logit_prob: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The most probable next tokens until their cumulative probability reaches ``desired_logit_prob``
    (at most ``max_n_logits``): (token ids [k], probabilities [k], de-meaned unembedding vectors [k, d])."""
    probs = torch.softmax(logits.float(), dim=-1)
    top_p, top_idx = torch.topk(probs, min(max_n_logits, probs.shape[0]))
    count = int(torch.searchsorted(torch.cumsum(top_p, 0), desired_logit_prob)) + 1
    idx = top_idx[:count]
    w = w_u.float()
    vecs = (w[:, idx] - w.mean(dim=-1, keepdim=True)).T
    return idx, probs[idx], vecs


class _Sources:
    """The source side of every row: active features, errors, tokens, and how to read their columns."""

    def __init__(self, acts: list[torch.Tensor], transcoders: TranscoderSet, errors: torch.Tensor, tok: torch.Tensor):
        self.n_layers, self.n_pos = errors.shape[0], errors.shape[1]
        self.errors, self.token_vecs = errors, tok
        found = []
        for layer, a in enumerate(acts):
            nz = torch.nonzero(a)  # row-major: sorted by (pos, feature)
            found.append(torch.cat([torch.full_like(nz[:, :1], layer), nz], dim=1))
        self.active = torch.cat(found)  # [n_active, 3]
        self.values = torch.cat([a[a != 0] for a in acts]).float()
        self.n_active = int(self.active.shape[0])
        self.layer_start = [0]
        self.before_pos: list[list[int]] = []  # per layer: how many of its features sit before each position
        for layer in range(self.n_layers):
            in_layer = self.active[:, 0] == layer
            self.layer_start.append(self.layer_start[-1] + int(in_layer.sum()))
            counts = torch.bincount(self.active[in_layer, 1], minlength=self.n_pos)
            self.before_pos.append([0, *torch.cumsum(counts, 0).tolist()])
        # Per (source layer, output layer): activation-scaled decoder rows padded per position [P, m, d], and
        # where each feature's value lands in the flattened [P * m] product.
        self.blocks: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        for layer in range(self.n_layers):
            lo, hi = self.layer_start[layer], self.layer_start[layer + 1]
            if hi == lo:
                continue
            pos, feat = self.active[lo:hi, 1], self.active[lo:hi, 2]
            counts = torch.bincount(pos, minlength=self.n_pos)
            m = int(counts.max())
            first = torch.cumsum(counts, 0) - counts
            slot = torch.arange(hi - lo, device=pos.device) - first[pos]
            flat = pos * m + slot
            dec = transcoders.W_dec[layer][feat] * self.values[lo:hi, None, None]  # [n, n_out, d]
            for out in range(dec.shape[1]):
                padded = torch.zeros(self.n_pos * m, dec.shape[-1], dtype=dec.dtype, device=dec.device)
                padded[flat] = dec[:, out]
                self.blocks.append((layer, layer + out, padded.view(self.n_pos, m, -1).transpose(1, 2), flat))
        self.n_cols = self.n_active + (self.n_layers + 1) * self.n_pos

    def rows(self, grads_out: list[torch.Tensor | None], grad_embed: torch.Tensor) -> torch.Tensor:
        """Direct effects [B, n_cols] of every source on targets whose gradients [B, P', d] are given (over the
        first P' positions; None: zero)."""
        b, p_used = grad_embed.shape[0], grad_embed.shape[1]
        out = torch.zeros(b, self.n_cols, dtype=grad_embed.dtype, device=grad_embed.device)
        for src, dst, dec_t, flat in self.blocks:
            grad = grads_out[dst]
            if grad is None:
                continue
            lo = self.layer_start[src]
            n = int(self.before_pos[src][p_used])  # the layer's features at positions < P' (sorted by position)
            prod = torch.bmm(grad.transpose(0, 1), dec_t[:p_used])  # [P', B, m]
            out[:, lo : lo + n] += prod.transpose(0, 1).reshape(b, -1)[:, flat[:n]]
        err0 = self.n_active
        for layer, grad in enumerate(grads_out):
            if grad is None:
                continue
            start = err0 + layer * self.n_pos
            out[:, start : start + p_used] = torch.einsum("bpd,pd->bp", grad, self.errors[layer, :p_used])
        tok0 = err0 + self.n_layers * self.n_pos
        out[:, tok0 : tok0 + p_used] = torch.einsum("bpd,pd->bp", grad_embed, self.token_vecs[:p_used])
        return out

    def feature_rows(
        self, transpose: ReplacementTranspose, enc_vecs: torch.Tensor, chunk: torch.Tensor
    ) -> torch.Tensor:
        """Rows [len(chunk), n_cols] of the active features ``chunk``, one transpose sweep per layer they read."""
        out = torch.empty(len(chunk), self.n_cols, dtype=enc_vecs.dtype, device=enc_vecs.device)
        layers = self.active[chunk, 0]
        for layer in torch.unique(layers).tolist():
            mask = layers == layer
            idx = chunk[mask]
            grads_out, grad_embed = transpose.sweep(int(layer), self.active[idx, 1], enc_vecs[idx])
            out[mask] = self.rows(grads_out, grad_embed)
        return out


def partial_influences(rows: torch.Tensor, row_nodes: torch.Tensor, logit_probs: torch.Tensor) -> torch.Tensor:
    """Influence on the logits of every node [n_cols + n_logits], from the rows computed so far."""
    norm = rows.abs()
    norm /= norm.sum(dim=1, keepdim=True).clamp(min=1e-8)
    weight = torch.zeros(rows.shape[1], dtype=rows.dtype, device=rows.device)
    weight[-logit_probs.shape[0] :] = logit_probs
    total = torch.zeros_like(weight)
    for _ in range(rows.shape[1] + 1):  # the graph is acyclic: the walk ends within its depth
        weight = weight[row_nodes] @ norm
        if not weight.any():
            return total
        total += weight
    raise RuntimeError("influence did not converge: the attribution graph has a cycle")


@torch.no_grad()
def attribute(
    model: Any,
    tokens: torch.Tensor,
    transcoders: TranscoderSet,
    settings: AttributionSettings | None = None,
    *,
    progress: bool = True,
) -> Attribution:
    """The unpruned attribution graph of ``tokens`` [P] (BOS first) through ``model`` and ``transcoders``."""
    s = settings or AttributionSettings()
    if s.batch_size < 1 or s.max_n_logits < 1 or s.max_feature_nodes < 0:
        raise Invalid("batch_size and max_n_logits must be >= 1, max_feature_nodes >= 0", field="settings")
    cfg = model.cfg
    if transcoders.n_layers != cfg.n_layers or transcoders.d_model != cfg.d_model:
        raise Invalid(
            f"the transcoders ({transcoders.n_layers} layers, d_model {transcoders.d_model}) do not fit model "
            f"{cfg.model_name!r} ({cfg.n_layers} layers, d_model {cfg.d_model})",
            field="source_set",
        )
    device = model.W_U.device
    tc = transcoders.to(device, torch.float32)
    tokens = tokens.to(device)
    frozen = run_frozen_forward(model, tokens, tc)
    n_layers, n_pos = int(cfg.n_layers), int(tokens.shape[0])

    acts = [tc.encode(layer, frozen.mlp_in[layer]) for layer in range(n_layers)]
    for a in acts:
        a[:1] = 0  # BOS: its features are not nodes (its activations are huge and carry no prompt information)
    errors = frozen.mlp_out - tc.reconstruct(acts, list(frozen.mlp_in))
    errors[:, :1] = 0
    sources = _Sources(acts, tc, errors, model.W_E.detach().float()[tokens])
    logit_idx, logit_p, logit_vecs = select_logits(
        frozen.logits, model.W_U.detach(), s.max_n_logits, s.desired_logit_prob
    )
    n_logits, n_active = int(logit_idx.shape[0]), sources.n_active
    log.info("attribution: %d tokens, %d active features, %d logits", n_pos, n_active, n_logits)

    transpose = ReplacementTranspose(model, frozen, tc)
    enc_vecs = torch.cat(
        [tc.W_enc[layer][sources.active[sources.active[:, 0] == layer, 2]] for layer in range(n_layers)]
    )
    n_feat = min(s.max_feature_nodes, n_active)
    logit_offset = sources.n_cols
    rows = torch.zeros(n_feat + n_logits, logit_offset + n_logits, device=device)
    row_nodes = torch.zeros(n_feat + n_logits, dtype=torch.long, device=device)

    last = torch.full((n_logits,), n_pos - 1, device=device)
    grads_out, grad_embed = transpose.sweep(n_layers, last, logit_vecs.to(device))
    rows[:n_logits, :logit_offset] = sources.rows(grads_out, grad_embed)
    row_nodes[:n_logits] = torch.arange(n_logits, device=device) + logit_offset

    visited = torch.zeros(n_active, dtype=torch.bool, device=device)
    done, filled = 0, n_logits
    bar = tqdm(total=n_feat, desc="attribution", unit="feature", disable=not progress or None)
    while done < n_feat:
        if n_feat == n_active:
            pending = torch.arange(n_active, device=device)
        else:
            influence = partial_influences(rows[:filled], row_nodes[:filled], logit_p)
            rank = torch.argsort(influence[:n_active], descending=True)
            pending = rank[~visited[rank]][: min(s.update_interval * s.batch_size, n_feat - done)]
        for chunk in pending.split(s.batch_size):
            rows[filled : filled + len(chunk), :logit_offset] = sources.feature_rows(transpose, enc_vecs, chunk)
            row_nodes[filled : filled + len(chunk)] = chunk
            visited[chunk] = True
            filled += len(chunk)
            done += len(chunk)
            bar.update(len(chunk))
    bar.close()

    selected = torch.nonzero(visited).squeeze(1)
    if n_feat < n_active:
        keep = torch.cat([selected, torch.arange(n_active, logit_offset + n_logits, device=device)])
        rows = rows[:, keep]
    rows = rows[torch.argsort(row_nodes)]
    size = rows.shape[1]
    adjacency = torch.zeros(size, size, device=device)
    adjacency[:n_feat] = rows[:n_feat]
    adjacency[size - n_logits :] = rows[n_feat:]
    return Attribution(
        tokens=[int(t) for t in tokens.tolist()],
        n_layers=n_layers,
        active_features=sources.active.cpu(),
        activation_values=sources.values.cpu(),
        selected_features=selected.cpu(),
        logit_tokens=[int(t) for t in logit_idx.tolist()],
        logit_probabilities=logit_p.cpu(),
        adjacency=adjacency.cpu(),
    )
