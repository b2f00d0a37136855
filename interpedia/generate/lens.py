"""Lenses: each layer's residual stream read out as next-token predictions (Neuronpedia's J-lens family).

- Logit lens: the residual after block ``l`` (``blocks.l.hook_resid_post``) through the final norm and the
  unembedding, as the model reads its last residual. The last layer's readout is the model's own logits.
- Jacobian lens (Gurnee et al. 2026): ``J_l``, the average Jacobian of the final residual with respect to the
  residual after block ``l``, maps ``h_l`` to a predicted final residual ``J_l h_l`` that is then read out the same
  way. ``J`` of the last layer is the identity.

Fitting (``interpedia lens fit``): for each prompt of a corpus, positions are drawn at random (never BOS) and the
Jacobian of the final residual at that position with respect to each layer's residual *at the same position* is
taken exactly, by backward passes (one per output coordinate, batched). Only one position per prompt enters a
backward pass: the final residuals of later positions also depend on an earlier position's residual, and summing
them would mix those terms in. The mean over all drawn positions is the lens, ``[n_layers, d_model, d_model]``.

The file (``jacobian_lens.safetensors``) lives beside the model's weights when the model is a local directory, else
under ``INTERPEDIA_HOME/lenses/<model id>/``; its metadata names the weights it was fitted on (a fingerprint), the
corpus and the number of positions, so a lens of other weights is never applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from interpedia.errors import Invalid
from interpedia.generate.model import HookedModel

log = logging.getLogger(__name__)

__all__ = [
    "LENS_FILE",
    "JacobianLens",
    "fit_jacobian_lens",
    "lens_paths",
    "load_lens",
    "readout",
    "residuals",
    "weights_fingerprint",
]

LENS_FILE = "jacobian_lens.safetensors"
_GRAD_ELEMENTS = 16_000_000  # output rows x batch x positions x d_model of one batched backward pass


@dataclass
class JacobianLens:
    """Fitted Jacobians [n_layers, d_model, d_model] (float32; the last is the identity) and how they were fitted."""

    jacobians: torch.Tensor
    meta: dict[str, Any]

    def save(self, path: Path) -> Path:
        """Write the lens (safetensors with JSON-string metadata), replacing any file there atomically."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"jacobians": self.jacobians.contiguous()}, str(tmp), metadata={"interpedia": json.dumps(self.meta)})
        tmp.replace(path)
        return path


def load_lens(path: Path) -> JacobianLens:
    """Read a lens file written by :meth:`JacobianLens.save`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("interpedia", "{}"))
        jacobians = f.get_tensor("jacobians").float()
    return JacobianLens(jacobians, meta)


def lens_paths(spec: str, home: Path, model_id: str) -> list[Path]:
    """Where a model's lens is looked for, in order: beside its weights (a local directory), then under home."""
    out = []
    local = Path(spec).expanduser()
    if local.is_dir():
        out.append(local / LENS_FILE)
    out.append(Path(home).expanduser() / "lenses" / model_id / LENS_FILE)
    return out


@torch.no_grad()
def weights_fingerprint(model: HookedModel) -> str:
    """A hash of a sample of every weight tensor (shape and strided values): changes when the weights do."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.model.state_dict().items()):
        if not name.startswith(("blocks.", "embed", "unembed", "ln_final", "pos_embed", "W_", "b_")):
            continue  # masks and other buffers are not weights
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(flat[::step].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def _resid_hooks(model: HookedModel) -> list[str]:
    return [f"blocks.{layer}.hook_resid_post" for layer in range(int(model.cfg.n_layers))]


@torch.inference_mode()
def residuals(model: HookedModel, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(residual after every block [n_layers, pos, d_model], the model's logits [pos, d_vocab]) of one prompt."""
    hooks = _resid_hooks(model)
    model.enable_hooks(hooks)
    captured: dict[str, torch.Tensor] = {}

    def keep_as(name: str) -> Any:
        def keep(act: torch.Tensor, hook: Any) -> None:
            captured[name] = act[0]

        return keep

    tokens = torch.tensor([ids], dtype=torch.long, device=model.device)
    logits = model.model.run_with_hooks(tokens, fwd_hooks=[(h, keep_as(h)) for h in hooks])
    return torch.stack([captured[h] for h in hooks]).float(), logits[0].float()


@torch.inference_mode()
def readout(model: HookedModel, resid: torch.Tensor) -> torch.Tensor:
    """Logits [..., d_vocab] of residuals [..., d_model] read as the final residual: final norm, unembedding
    (with its bias) and the model's logit soft cap, exactly as the forward pass ends."""
    tm = model.model
    x = resid.to(model.device, tm.W_U.dtype)
    if getattr(tm.cfg, "normalization_type", None) is not None and getattr(tm, "ln_final", None) is not None:
        x = tm.ln_final(x)
    logits = tm.unembed(x).float()
    cap = getattr(tm.cfg, "output_logits_soft_cap", None)
    if cap is not None and cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits  # type: ignore[no-any-return]


def fit_jacobian_lens(
    model: HookedModel,
    tokens: np.ndarray,
    *,
    positions_per_prompt: int = 4,
    batch_size: int = 8,
    seed: int = 0,
    skip_first: bool = True,
    progress: bool | None = None,
) -> JacobianLens:
    """The average same-position Jacobian of the final residual w.r.t. each layer's residual over ``tokens``
    [n_prompts, ctx] (``positions_per_prompt`` random positions of each prompt; position 0 skipped when it is BOS)."""
    n_layers, d_model = int(model.cfg.n_layers), int(model.cfg.d_model)
    ctx = int(tokens.shape[1])
    first = 1 if skip_first and ctx > 1 else 0
    if ctx - first < 1:
        raise Invalid("prompts are too short to fit a lens on", field="context_size")
    rng = np.random.default_rng(seed)
    total = torch.zeros(n_layers, d_model, d_model, dtype=torch.float64)
    count = 0
    hooks = _resid_hooks(model)
    model.enable_hooks(hooks)
    params = [p for p in model.model.parameters() if p.requires_grad]
    for p in params:  # gradients are taken with respect to the residuals only
        p.requires_grad_(False)
    try:
        batches = range(0, len(tokens), batch_size)
        for start in tqdm(batches, desc="lens fit", unit="batch", disable=None if progress is None else not progress):
            batch = torch.from_numpy(np.asarray(tokens[start : start + batch_size], dtype=np.int64)).to(model.device)
            picks = [
                rng.choice(np.arange(first, ctx), size=min(positions_per_prompt, ctx - first), replace=False)
                for _ in range(batch.shape[0])
            ]
            for k in range(len(picks[0])):
                total += _jacobians_at(model, batch, [int(p[k]) for p in picks], hooks).sum(dim=1).double()
                count += batch.shape[0]
    finally:
        for p in params:
            p.requires_grad_(True)
    mean = (total / max(count, 1)).float()
    mean[-1] = torch.eye(d_model)  # the final residual is its own readout
    meta = {
        "kind": "jacobian_lens",
        "model": model.name,
        "weights_fingerprint": weights_fingerprint(model),
        "n_layers": n_layers,
        "d_model": d_model,
        "layers": "residual after each block (blocks.L.hook_resid_post); the last is the identity",
        "positions": count,
        "n_prompts": len(tokens),
        "context_size": ctx,
        "positions_per_prompt": positions_per_prompt,
        "seed": seed,
    }
    return JacobianLens(mean, meta)


def _jacobians_at(model: HookedModel, batch: torch.Tensor, targets: list[int], hooks: list[str]) -> torch.Tensor:
    """[n_layers, batch, d_model, d_model]: d h_final[b, t_b] / d h_l[b, t_b] for one position ``t_b`` per prompt."""
    n_batch = batch.shape[0]
    d_model = int(model.cfg.d_model)
    # Positions after the last target cannot affect it (causal attention): leave them out of the pass.
    batch = batch[:, : max(targets) + 1]
    n_pos = batch.shape[1]
    deltas = [torch.zeros(n_batch, n_pos, d_model, device=model.device, requires_grad=True) for _ in hooks[:-1]]
    final: list[torch.Tensor] = []

    def add(delta: torch.Tensor) -> Any:
        def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
            return act + delta.to(act.dtype)

        return hook

    def keep(act: torch.Tensor, hook: Any) -> None:
        final.append(act)

    with torch.enable_grad():
        model.model.run_with_hooks(
            batch,
            fwd_hooks=[*((h, add(d)) for h, d in zip(hooks[:-1], deltas, strict=True)), (hooks[-1], keep)],
            return_type=None,
        )
        out = final[0].float()  # [batch, pos, d_model]
        rows = torch.arange(n_batch, device=out.device)
        cols = torch.tensor(targets, device=out.device)
        jac = torch.zeros(len(hooks), n_batch, d_model, d_model)
        chunk = max(1, min(d_model, _GRAD_ELEMENTS // max(1, n_batch * n_pos * d_model)))
        for lo in range(0, d_model, chunk):
            hi = min(d_model, lo + chunk)
            grad_out = torch.zeros(hi - lo, *out.shape, device=out.device)
            for i in range(lo, hi):
                grad_out[i - lo, rows, cols, i] = 1.0
            grads = torch.autograd.grad(out, deltas, grad_outputs=grad_out, is_grads_batched=True, retain_graph=True)
            for layer, g in enumerate(grads):  # g [rows, batch, pos, d_model]
                jac[layer, :, lo:hi, :] = g[:, rows, cols, :].permute(1, 0, 2).float().cpu()
    jac[-1] = torch.eye(d_model)
    return jac
