"""Direct feature attribution (DFA) for SAEs on an attention layer's ``hook_z``: SAEDashboard's definition.

An attention layer's ``z`` at a destination position ``t`` is a sum over source positions:
``z[t, h] = sum_s pattern[h, t, s] * v[s, h]``. A ``hook_z`` SAE's pre-activation of feature ``f`` is linear in
``z[t]`` (``z[t] . w_f`` plus biases), so it splits exactly into one term per source position::

    dfa[s] = sum_h pattern[h, t, s] * (v[s, h] . w_f[h])

and ``sum_s dfa[s] = z[t] . w_f``: the pre-activation minus ``b_enc`` (and plus ``b_dec . w_f`` when the SAE
subtracts ``b_dec`` from its input). ``w_f`` is the encoder column the dashboards' activations come from (decoder
norm folded in, the gated magnitude path, a TopK's rescale), so DFA values are in the units of the activation.
The target ``t`` is the example's maximum-activating position (``dfaTargetIndex``); ``dfaMaxValue`` is the largest
source term. Grouped-query attention repeats each key/value head over its query heads, as SAEDashboard does.

DFA is only defined when the SAE's input transform is linear: run-time normalisations that depend on the input
(``constant_norm_rescale``, ``layer_norm``) have no such split, and :func:`dfa_layer` returns None for them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from interpedia.generate.model import HookedModel
from interpedia.generate.sae import LoadedSae

log = logging.getLogger(__name__)

__all__ = ["DfaCalculator", "dfa_for_run", "dfa_layer", "encoder_columns", "head_attribution"]

_HOOK_Z = re.compile(r"^blocks\.(\d+)\.attn\.hook_z$")
_LINEAR_NORMS = ("none", "expected_average_only_in")
_EXAMPLE_CHUNK = 256  # examples gathered at once: [chunk, pos, heads, d_head] floats


def dfa_layer(sae: LoadedSae, hook_name: str) -> int | None:
    """The attention layer whose ``hook_z`` the SAE reads, when DFA is defined for it; else None."""
    match = _HOOK_Z.match(hook_name)
    if match is None:
        return None
    norm = getattr(sae.sae.cfg, "normalize_activations", "none")
    if norm not in _LINEAR_NORMS:
        log.info("no DFA for %s: its input normalisation %r is not linear", hook_name, norm)
        return None
    if sae.architecture not in ("standard", "jumprelu", "gated", "topk"):
        log.info("no DFA for %s: architecture %r has no linear pre-activation here", hook_name, sae.architecture)
        return None
    return int(match.group(1))


def dfa_for_run(
    model: HookedModel, sae: LoadedSae, hook_name: str, *, wanted: bool | None, batch_size: int
) -> DfaCalculator | None:
    """The calculator ``interpedia generate`` uses: when DFA is asked for (or left to the hook) and defined."""
    if wanted is False:
        return None
    layer = dfa_layer(sae, hook_name)
    if layer is None:
        if wanted:
            raise ValueError(
                "--dfa needs an SAE on an attention layer's hook_z (blocks.N.attn.hook_z) with a linear input "
                f"transform; this one reads {hook_name}"
            )
        return None
    return DfaCalculator(model, sae, layer, batch_size=batch_size)


@torch.no_grad()
def encoder_columns(sae: LoadedSae, features: torch.Tensor) -> torch.Tensor:
    """``w_f`` [n, d_in] (float32): the direction whose dot product with the input is each feature's
    pre-activation (before biases), as the dashboards' encoder computes it."""
    s = sae.sae
    idx = features.to(s.W_enc.device)
    w = s.W_enc.detach()[:, idx].T.float()
    if sae.architecture == "gated":
        w = w * s.r_mag.detach()[idx].float().exp()[:, None]  # the magnitude path sets the value
    if sae.architecture == "topk" and getattr(s.cfg, "rescale_acts_by_decoder_norm", False):
        w = w * s.W_dec.detach()[idx].float().norm(dim=-1)[:, None]
    if sae.post_scale is not None:
        w = w * sae.post_scale[idx].float()[:, None]
    return w.cpu()


def head_attribution(sae: LoadedSae, n_heads: int, features: torch.Tensor) -> torch.Tensor:
    """``decoder_weights_dist`` [n, n_heads]: each head's share of the decoder row's norm (SAEDashboard's)."""
    rows = sae.sae.W_dec.detach()[features.to(sae.sae.W_dec.device)].float().cpu()
    norms = rows.reshape(rows.shape[0], n_heads, -1).norm(dim=-1)
    return norms / norms.sum(dim=1, keepdim=True).clamp(min=1e-12)


@dataclass
class _Capture:
    pattern: torch.Tensor  # [batch, heads, dest, src] float32
    v: torch.Tensor  # [batch, src, heads, d_head] float32 (kv heads repeated for grouped-query attention)


class DfaCalculator:
    """DFA of one ``hook_z`` SAE on a model: for stored examples (``interpedia generate``) or one prompt (live)."""

    def __init__(self, model: HookedModel, sae: LoadedSae, layer: int, *, batch_size: int = 32) -> None:
        self.model = model
        self.sae = sae
        self.layer = layer
        self.batch_size = batch_size
        self.n_heads = int(model.cfg.n_heads)
        self.d_head = int(model.cfg.d_head)
        self.pattern_hook = f"blocks.{layer}.attn.hook_pattern"
        self.v_hook = f"blocks.{layer}.attn.hook_v"
        model.enable_hooks([self.pattern_hook, self.v_hook])

    @torch.inference_mode()
    def _capture(self, tokens: torch.Tensor) -> _Capture:
        """Attention pattern and values of ``tokens`` [batch, pos] at the layer (the pass stops after it)."""
        captured: dict[str, torch.Tensor] = {}

        def keep_as(name: str) -> object:
            def hook_fn(act: torch.Tensor, hook: object) -> None:
                captured[name] = act

            return hook_fn

        self.model.model.run_with_hooks(
            tokens.to(self.model.device),
            fwd_hooks=[(self.pattern_hook, keep_as("pattern")), (self.v_hook, keep_as("v"))],
            stop_at_layer=self.layer + 1,
            return_type=None,
        )
        pattern, v = captured["pattern"].float(), captured["v"].float()
        if v.shape[2] != pattern.shape[1]:  # grouped-query attention: each kv head serves several query heads
            v = v.repeat_interleave(pattern.shape[1] // v.shape[2], dim=2)
        return _Capture(pattern.cpu(), v.cpu())

    @staticmethod
    def _terms(cap: _Capture, rows: torch.Tensor, targets: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """[n, src]: per-source terms for examples on capture rows ``rows`` at destinations ``targets``."""
        heads, d_head = cap.v.shape[2], cap.v.shape[3]
        w_heads = w.reshape(w.shape[0], heads, d_head)
        vw = torch.einsum("eshd,ehd->esh", cap.v[rows], w_heads)  # each source's value, read by w_f, per head
        pat = cap.pattern[rows, :, targets, :]  # [n, heads, src]: how much the target attends to each source
        return torch.einsum("ehs,esh->es", pat, vw)

    def prompt(self, ids: list[int], feature: int, target: int) -> list[float]:
        """DFA of one feature on one prompt at position ``target``, one value per position of ``ids``."""
        cap = self._capture(torch.tensor([ids], dtype=torch.long))
        w = encoder_columns(self.sae, torch.tensor([feature]))
        terms = self._terms(cap, torch.tensor([0]), torch.tensor([target]), w)
        return [float(x) for x in terms[0].tolist()]

    def examples(
        self, tokens: np.ndarray, prompts: np.ndarray, features: np.ndarray, targets: np.ndarray
    ) -> np.ndarray:
        """DFA [E, ctx] of examples: prompt rows of ``tokens``, feature indexes, target positions (all [E])."""
        out = np.zeros((len(prompts), tokens.shape[1]), dtype=np.float32)
        if not len(prompts):
            return out
        w_all = encoder_columns(self.sae, torch.from_numpy(np.asarray(features, dtype=np.int64)))
        for batch_prompts, members in self._by_prompt_batch(np.asarray(prompts)):
            cap = self._capture(torch.from_numpy(np.asarray(tokens[batch_prompts], dtype=np.int64)))
            row_of = {int(p): r for r, p in enumerate(batch_prompts)}
            for start in range(0, len(members), _EXAMPLE_CHUNK):
                chunk = members[start : start + _EXAMPLE_CHUNK]
                rows = torch.tensor([row_of[int(p)] for p in prompts[chunk]], dtype=torch.long)
                tgt = torch.from_numpy(np.asarray(targets[chunk], dtype=np.int64))
                out[chunk] = self._terms(cap, rows, tgt, w_all[torch.from_numpy(chunk)]).numpy()
        return out

    def _by_prompt_batch(self, prompts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(distinct prompt rows of a batch, indexes of the examples on them), ``batch_size`` prompts at a time."""
        unique = np.unique(prompts)
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            members = np.nonzero(np.isin(prompts, batch))[0]
            yield batch, members
