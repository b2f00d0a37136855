"""The local replacement model, frozen and linear, and its transpose.

One forward pass of the real model (TransformerLens hooks) fixes the attention patterns and the LayerNorm
scales and records what the transcoders read and what the MLPs wrote. With those frozen, and the MLPs replaced
by transcoder features + error terms (constants) + the transcoders' linear skip paths, the residual stream is a
linear function of the token embeddings, the features' decoder outputs and the errors (Ameisen et al. 2025).

Attribution needs rows of that linear map's transpose: for a target (a feature's pre-activation or a logit),
the gradient at every MLP output and at the embeddings. Autograd would rebuild that through the whole model
for every batch of targets; here the transpose is written out once per layer (LayerNorm with a frozen scale,
attention with a frozen pattern = a fixed mixing of value vectors, the skip path) and applied to a batch of
injected gradients with a handful of matrix products, so a batch costs a few milliseconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interpedia.errors import Invalid
from interpedia.generate.model import norm_weight
from interpedia.graph.transcoders import TranscoderSet


class UnsupportedModel(Invalid):
    """The model's architecture is outside what the replacement model covers."""


@dataclass
class FrozenForward:
    """What one forward pass fixes (``P`` positions, ``L`` layers, ``H`` heads, ``d`` = d_model).

    ``ln1_scale``/``ln2_scale`` [L] of [P, 1] (None without LayerNorm), ``pattern`` [L] of [H, P, P],
    ``ln_final_scale`` [P, 1] or None, ``mlp_in`` [L, P, d] at the transcoders' input site, ``mlp_out``
    [L, P, d], ``logits`` [d_vocab] at the last position.
    """

    tokens: torch.Tensor
    ln1_scale: list[torch.Tensor | None]
    ln2_scale: list[torch.Tensor | None]
    pattern: list[torch.Tensor]
    ln_final_scale: torch.Tensor | None
    mlp_in: torch.Tensor
    mlp_out: torch.Tensor
    logits: torch.Tensor


def check_architecture(model: Any) -> None:
    """Refuse TransformerLens models whose blocks are not ``resid + attn(ln1(.))`` then ``+ mlp(ln2(.))``."""
    cfg = model.cfg
    problems = []
    if getattr(cfg, "parallel_attn_mlp", False):
        problems.append("parallel attention and MLP")
    if getattr(cfg, "use_normalization_before_and_after", False):
        problems.append("normalization after attention/MLP")
    if getattr(cfg, "attn_only", False):
        problems.append("no MLPs (attention only)")
    if cfg.normalization_type not in ("LN", "LNPre", "RMS", "RMSPre", None):
        problems.append(f"normalization {cfg.normalization_type!r}")
    if problems:
        raise UnsupportedModel(
            f"model {cfg.model_name!r} is not supported by the attribution engine: {', '.join(problems)}",
            field="model",
        )


@torch.no_grad()
def run_frozen_forward(model: Any, tokens: torch.Tensor, transcoders: TranscoderSet) -> FrozenForward:
    """One forward pass of ``tokens`` [P] recording everything the replacement model freezes."""
    check_architecture(model)
    n_layers = model.cfg.n_layers
    has_ln = model.cfg.normalization_type is not None
    site = transcoders.input_site
    cache: dict[str, torch.Tensor] = {}

    def keep_as(name: str) -> Any:
        # Keyed by the name asked for: a TransformerBridge fires some hooks under their canonical name
        # (blocks.N.hook_resid_post as blocks.N.hook_out).
        def keep(act: torch.Tensor, hook: Any) -> None:
            cache[name] = act[0].detach()

        return keep

    names = []
    for layer in range(n_layers):
        names += [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_mlp_out"]
        if has_ln:
            names += [
                f"blocks.{layer}.ln1.hook_scale",
                f"blocks.{layer}.ln2.hook_scale",
                f"blocks.{layer}.ln2.hook_normalized",
            ]
    if has_ln:
        names.append("ln_final.hook_scale")
    logits = model.run_with_hooks(tokens[None].to(model.cfg.device), fwd_hooks=[(n, keep_as(n)) for n in names])

    def mlp_input(layer: int) -> torch.Tensor:
        if site == "resid_mid" or not has_ln:
            return cache[f"blocks.{layer}.hook_resid_mid"]
        normalized = cache[f"blocks.{layer}.ln2.hook_normalized"]
        if site == "ln2_normalized":
            return normalized
        ln = model.blocks[layer].ln2  # TransformerLens hooks ln2 before its weight and bias; the MLP reads after
        w, b = norm_weight(model, ln), getattr(ln, "b", None)
        out = normalized * w.detach() if isinstance(w, torch.Tensor) else normalized
        return out + b.detach() if isinstance(b, torch.Tensor) else out

    return FrozenForward(
        tokens=tokens,
        ln1_scale=[cache.get(f"blocks.{i}.ln1.hook_scale") for i in range(n_layers)],
        ln2_scale=[cache.get(f"blocks.{i}.ln2.hook_scale") for i in range(n_layers)],
        pattern=[cache[f"blocks.{i}.attn.hook_pattern"] for i in range(n_layers)],
        ln_final_scale=cache.get("ln_final.hook_scale"),
        mlp_in=torch.stack([mlp_input(i) for i in range(n_layers)]).float(),
        mlp_out=torch.stack([cache[f"blocks.{i}.hook_mlp_out"] for i in range(n_layers)]).float(),
        logits=logits[0, -1].detach().float(),
    )


class _Norm:
    """The transpose of a LayerNorm/RMSNorm whose scale is frozen: ``g -> C(g * w / scale)``."""

    def __init__(self, model: Any, ln: Any, scale: torch.Tensor | None, norm_type: str | None) -> None:
        self.identity = norm_type is None or scale is None
        w = norm_weight(model, ln)
        self.w = w.detach().float() if isinstance(w, torch.Tensor) else None
        self.inv_scale = None if scale is None else (1.0 / scale.float())  # [P, 1]
        self.center = norm_type in ("LN", "LNPre")

    def transpose(self, g: torch.Tensor, *, affine: bool = True, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Gradient at the input from the gradient at the output (``affine=False``: at the normalized value).

        ``g`` is [B, P', d] over the first P' positions, or [B, d] at positions ``pos`` [B]."""
        if self.identity:
            return g
        assert self.inv_scale is not None
        h = g * self.w if affine and self.w is not None else g
        h = h * (self.inv_scale[pos] if pos is not None else self.inv_scale[: g.shape[1]])
        return h - h.mean(-1, keepdim=True) if self.center else h


class ReplacementTranspose:
    """Gradients of targets w.r.t. the MLP outputs and the embeddings, through the frozen linear model."""

    def __init__(self, model: Any, frozen: FrozenForward, transcoders: TranscoderSet) -> None:
        cfg = model.cfg
        self.n_layers = int(cfg.n_layers)
        self.n_pos = int(frozen.tokens.shape[0])
        self.d_model = int(cfg.d_model)
        self.site = transcoders.input_site
        norm = cfg.normalization_type
        self.ln1 = [_Norm(model, b.ln1, frozen.ln1_scale[i], norm) for i, b in enumerate(model.blocks)]
        self.ln2 = [_Norm(model, b.ln2, frozen.ln2_scale[i], norm) for i, b in enumerate(model.blocks)]
        self.ln_final = _Norm(model, getattr(model, "ln_final", None), frozen.ln_final_scale, norm)
        self.patterns_t = [p.float().transpose(-1, -2).contiguous() for p in frozen.pattern]  # [H, k, q]
        self.w_o, self.w_v_t, self.ov = [], [], []
        for block in model.blocks:
            w_o = block.attn.W_O.detach().float()  # [H, e, d]
            w_v = block.attn.W_V.detach().float()  # [H, d, e]; [H_kv, d, e] on a TransformerBridge
            self.n_heads, self.d_head = int(w_o.shape[0]), int(w_o.shape[1])
            if w_v.shape[0] != self.n_heads:  # grouped-query attention: each key/value head serves a group
                w_v = w_v.repeat_interleave(self.n_heads // w_v.shape[0], dim=0)
            self.w_o.append(w_o.reshape(-1, self.d_model))  # [H*e, d]
            self.w_v_t.append(w_v.permute(0, 2, 1).reshape(-1, self.d_model))  # [H*e, d]
            self.ov.append(w_v @ w_o)  # [H, d, d]: what head h writes for what it reads, pattern aside
        self.w_skip = [None if w is None else w.float() for w in transcoders.W_skip]

    def _attn_transpose(self, layer: int, g: torch.Tensor) -> torch.Tensor:
        """Gradient at the attention input (ln1 output) from the gradient at its output [B, P', d] (the first P'
        positions: causal attention never reads later ones), pattern frozen."""
        b, p, _ = g.shape
        gz = (g @ self.w_o[layer].T).view(b, p, self.n_heads, self.d_head).transpose(1, 2)  # [B, H, q, e]
        gv = torch.matmul(self.patterns_t[layer][:, :p, :p], gz)  # [B, H, k, e]
        return gv.transpose(1, 2).reshape(b, p, -1) @ self.w_v_t[layer]  # [B, k, d]

    def _site_transpose(self, layer: int, h: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Gradient at the residual stream (resid_mid) from the gradient at the transcoders' input."""
        if self.site == "resid_mid":
            return h
        return self.ln2[layer].transpose(h, affine=self.site == "mlp_in", pos=pos)

    def sweep(
        self, layer: int, pos: torch.Tensor, vecs: torch.Tensor
    ) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """Gradients of a batch of targets read at one ``layer``: vectors [B, d] injected at positions ``pos``
        [B] of that layer's transcoder input (``layer == n_layers``: logit targets, at the final LayerNorm's
        output). Returns the gradient at each layer's MLP output (None above the injection, where it is zero)
        and at the embeddings, each [B, P', d] over the first P' = max(pos) + 1 positions (later ones are zero).

        At the injection layer the gradient sits at one position per row, so its attention transpose is one
        row of the pattern times the heads' OV maps; below it, the gradient is dense and goes through the
        written-out transpose of each layer."""
        b, p_used = int(pos.shape[0]), int(pos.max()) + 1
        rows = torch.arange(b, device=pos.device)
        grads_out: list[torch.Tensor | None] = [None] * self.n_layers
        if layer == self.n_layers:  # logits: through the final LayerNorm into the last block's output
            start = self.n_layers - 1
            v = self.ln_final.transpose(vecs, pos=pos)
            dense = torch.zeros(b, p_used, self.d_model, dtype=v.dtype, device=v.device)
            dense[rows, pos] = v
            grads_out[start] = dense
            skip = self.w_skip[start]
            v_mid = v + self._site_transpose(start, v @ skip, pos) if skip is not None else v
        else:
            start = layer
            v_mid = self._site_transpose(start, vecs, pos)
        heads = torch.einsum("bj,hij->bhi", v_mid, self.ov[start])  # [B, H, d]
        weights = self.patterns_t[start][:, :p_used, :].permute(2, 0, 1)[pos]  # [B, H, k]
        g = self.ln1[start].transpose(torch.einsum("bhk,bhi->bki", weights, heads))
        g[rows, pos] += v_mid
        for lower in reversed(range(start)):
            grads_out[lower] = g
            skip = self.w_skip[lower]
            mid = g + self._site_transpose(lower, g @ skip) if skip is not None else g
            g = mid + self.ln1[lower].transpose(self._attn_transpose(lower, mid))
        return grads_out, g
