"""Per-layer transcoders (PLTs) for the demo model: each layer's MLP, replaced by a sparse dictionary.

A transcoder of layer ``L`` reads the MLP's input (``blocks.L.ln2.hook_normalized``) and predicts its output
(``blocks.L.hook_mlp_out``). SAELens has no transcoder trainer, so this is a short own loop: one forward pass
of the frozen model per batch of the demo's token rows feeds every layer's transcoder at once (nothing is
materialised but the batch), BOS positions left out as circuit-tracer leaves them out.

Training is BatchTopK (Bussmann et al. 2024): the ``k x tokens`` largest pre-activations of the batch fire,
decoder rows kept at unit norm, plus the AuxK loss (Gao et al. 2024) that lets latents dead for a while
predict the residual error. After training, the batch selection is replaced by the global threshold it
implies (the mean over batches of the smallest selected value), which makes the transcoder a JumpReLU: SAELens
(``jumprelu_transcoder``) and circuit-tracer (``activation_function.threshold``) both load it, and both
compute the same activations.

Saved twice under the output directory: ``saelens/layer_L`` (``cfg.json`` + ``sae_weights.safetensors``) and
``circuit-tracer/layer_L.safetensors`` (``W_enc`` transposed to [d_transcoder, d_model]) with a ``config.yaml``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

INPUT_HOOK = "blocks.{layer}.ln2.hook_normalized"
OUTPUT_HOOK = "blocks.{layer}.hook_mlp_out"


@dataclass(frozen=True)
class TranscoderTrainConfig:
    """What to train: one transcoder per layer, BatchTopK with AuxK, on a fixed token budget."""

    d_transcoder: int = 2048
    k: int = 16  # mean active features per token during training
    training_tokens: int = 500_000  # per layer (one forward pass feeds all layers)
    batch_rows: int = 32
    lr: float = 2e-3
    aux_k: int = 64  # dead latents per token that predict the residual (Gao et al.: d_model / 2)
    aux_coefficient: float = 1 / 32
    dead_after_tokens: int = 50_000  # a latent that has not fired for this many tokens counts as dead
    eval_rows: int = 256
    calibration_batches: int = 8
    init_scale: float = 0.25  # the first reconstruction's size, relative to the MLP output's spread
    init: str = "random"  # "random" rows, or "data": each feature starts as one sampled token's input and output
    resample_every_tokens: int = 50_000  # restart dead latents this often (0: never) ...
    resample_until: float = 0.7  # ... during this fraction of the run
    seed: int = 0


class _TrainingTranscoder(torch.nn.Module):
    """One layer's transcoder while training (dense, masked: on two cores the GEMMs beat torch's sparse kernels)."""

    def __init__(self, d_in: int, d_out: int, d_tc: int, gen: torch.Generator) -> None:
        super().__init__()
        w_dec = torch.randn(d_tc, d_out, generator=gen)
        self.W_dec = torch.nn.Parameter(w_dec / w_dec.norm(dim=1, keepdim=True))
        # Encoder columns start small and random: input and output spaces differ, so a tied start means nothing.
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, d_tc, generator=gen) / math.sqrt(d_in))
        self.b_enc = torch.nn.Parameter(torch.zeros(d_tc))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_out))
        self.tokens_since_fired = torch.zeros(d_tc, dtype=torch.long)

    def loss(self, x: torch.Tensor, y: torch.Tensor, cfg: TranscoderTrainConfig) -> tuple[torch.Tensor, float]:
        """MSE of the reconstruction (+ AuxK); returns (loss, fraction of variance unexplained)."""
        n_tok = x.shape[0]
        pre = torch.addmm(self.b_enc, x, self.W_enc)  # [T, F]
        with torch.no_grad():
            threshold = batch_threshold(pre.detach(), cfg.k)
            mask = pre.detach() > threshold
        acts = pre * mask
        recon = torch.addmm(self.b_dec, acts, self.W_dec)
        err = y - recon
        mse = err.pow(2).sum(-1).mean()
        with torch.no_grad():
            self.tokens_since_fired += n_tok
            self.tokens_since_fired[mask.any(0)] = 0
            dead = torch.nonzero(self.tokens_since_fired > cfg.dead_after_tokens).squeeze(1)
            fvu = float(mse / (y - y.mean(0)).pow(2).sum(-1).mean())
        loss = mse
        if dead.numel() and cfg.aux_coefficient > 0:
            # AuxK: the top dead latents of each token, alone, predict what the live ones left unexplained.
            pre_dead = pre[:, dead]
            k_aux = min(cfg.aux_k, dead.numel())
            with torch.no_grad():
                top = torch.topk(pre_dead.detach(), k_aux, dim=1, sorted=False).indices
                aux_mask = torch.zeros_like(pre_dead, dtype=torch.bool).scatter_(1, top, True) & (pre_dead.detach() > 0)
            aux_recon = (pre_dead * aux_mask) @ self.W_dec[dead]
            aux_mse = (err.detach() - aux_recon).pow(2).sum(-1).mean()
            loss = loss + cfg.aux_coefficient * aux_mse
        return loss, fvu

    @torch.no_grad()
    def resample(
        self, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, cfg: TranscoderTrainConfig, gen: Any
    ) -> int:
        """Restart the dead latents on tokens the transcoder explains worst (drawn by squared error): each reads
        its token's centred input, firing there at 1.5 x the batch cut, and writes that token's error."""
        dead = torch.nonzero(self.tokens_since_fired > cfg.dead_after_tokens).squeeze(1)
        if not dead.numel():
            return 0
        pre = torch.addmm(self.b_enc, x, self.W_enc)
        cut = batch_threshold(pre, cfg.k)
        err = y - torch.addmm(self.b_dec, pre * (pre > cut), self.W_dec)
        tok = torch.multinomial(err.pow(2).sum(-1), dead.numel(), replacement=dead.numel() > len(x), generator=gen)
        mean = x.mean(0)
        centred = x[tok] - mean
        w = centred / centred.pow(2).sum(-1, keepdim=True).clamp(min=1e-8) * (1.5 * max(cut, 1e-3))
        self.W_enc[:, dead] = w.T
        self.b_enc[dead] = -(w @ mean)
        self.W_dec[dead] = err[tok] / err[tok].norm(dim=1, keepdim=True).clamp(min=1e-8)
        self.tokens_since_fired[dead] = 0
        # Adam's moments belong to the old latents
        for param, where in ((self.W_enc, (slice(None), dead)), (self.b_enc, (dead,)), (self.W_dec, (dead,))):
            state = opt.state.get(param)
            if state:
                state["exp_avg"][where] = 0
                state["exp_avg_sq"][where] = 0
        return int(dead.numel())

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Keep decoder rows at unit norm, so activations are each feature's contribution and one threshold fits."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))


def batch_threshold(pre: torch.Tensor, k: int, stride: int = 4) -> float:
    """BatchTopK's cut: the ``k x tokens``-th largest pre-activation of the batch, estimated on every
    ``stride``-th token (a full top-k over tokens x features costs more than the encoder itself on CPU)."""
    sample = pre[::stride]
    top = torch.topk(sample.reshape(-1), k * sample.shape[0], sorted=False).values
    return max(float(top.min()), 0.0)


def _hooks(n_layers: int) -> list[str]:
    return [h.format(layer=layer) for layer in range(n_layers) for h in (INPUT_HOOK, OUTPUT_HOOK)]


@torch.no_grad()
def _mlp_io(model: Any, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's MLP input and output on ``batch`` [rows, ctx], BOS position dropped: [rows * (ctx-1), d]."""
    n_layers = int(model.cfg.n_layers)
    _, cache = model.run_with_cache(batch, names_filter=_hooks(n_layers), stop_at_layer=n_layers)
    return {name: act[:, 1:].reshape(-1, act.shape[-1]).float() for name, act in cache.items()}


def train_transcoders(model: Any, rows: np.ndarray, cfg: TranscoderTrainConfig, out_dir: Path) -> dict[str, Any]:
    """Train one transcoder per layer of ``model`` on token ``rows`` and save both layouts; returns stats."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_layers, d_model = int(model.cfg.n_layers), int(model.cfg.d_model)
    n_eval = min(cfg.eval_rows, max(1, len(rows) // 10))
    train_rows, eval_rows = torch.from_numpy(rows[:-n_eval]).long(), torch.from_numpy(rows[-n_eval:]).long()
    tokens_per_step = cfg.batch_rows * (rows.shape[1] - 1)
    steps = max(1, cfg.training_tokens // tokens_per_step)
    tcs = [_TrainingTranscoder(d_model, d_model, cfg.d_transcoder, gen) for _ in range(n_layers)]
    # The output bias starts at the mean MLP output, which a short run would otherwise spend steps learning, and
    # the encoder at a scale where the random first reconstruction is small next to the output's spread (a
    # random one as large as the output would cost a short run most of its steps to undo).
    first = _mlp_io(model, train_rows[torch.randperm(len(train_rows), generator=gen)[: cfg.batch_rows]])
    for layer, tc in enumerate(tcs):
        x, y = first[INPUT_HOOK.format(layer=layer)], first[OUTPUT_HOOK.format(layer=layer)]
        with torch.no_grad():
            tc.b_dec[:] = y.mean(0)
            if cfg.init == "data":
                # Each feature starts as one real token: it reads that token's (centred) MLP input and writes
                # its (centred) MLP output, so every feature starts out firing somewhere.
                idx = torch.randperm(len(x), generator=gen)[: cfg.d_transcoder]
                if len(idx) < cfg.d_transcoder:
                    idx = torch.randint(len(x), (cfg.d_transcoder,), generator=gen)
                xs, ys = (x - x.mean(0))[idx], (y - y.mean(0))[idx]
                tc.W_enc[:] = (xs / xs.norm(dim=1, keepdim=True).clamp(min=1e-8)).T
                tc.W_dec[:] = ys / ys.norm(dim=1, keepdim=True).clamp(min=1e-8)
            pre = torch.addmm(tc.b_enc, x, tc.W_enc)
            recon = (pre * (pre > batch_threshold(pre, cfg.k))) @ tc.W_dec
            spread = (y - y.mean(0)).norm(dim=1).mean()
            tc.W_enc.mul_(cfg.init_scale * spread / recon.norm(dim=1).mean().clamp(min=1e-8))
    params = [p for tc in tcs for p in tc.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    warmup = max(1, steps // 20)
    started = time.perf_counter()
    order = torch.randperm(len(train_rows), generator=gen)
    bar = tqdm(range(steps), desc="train transcoders", unit="step", disable=None)
    fvus = [1.0] * n_layers
    resample_every = cfg.resample_every_tokens // tokens_per_step
    resampled = [0] * n_layers
    for step in bar:
        # Linear warm-up, then linear decay to zero over the last fifth (a common SAE schedule).
        decay_from = int(steps * 0.8)
        scale = min(1.0, (step + 1) / warmup) * min(1.0, (steps - step) / max(1, steps - decay_from))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * scale
        idx = order[(torch.arange(cfg.batch_rows) + step * cfg.batch_rows) % len(order)]
        io = _mlp_io(model, train_rows[idx])
        total = torch.zeros(())
        for layer, tc in enumerate(tcs):
            loss, fvus[layer] = tc.loss(io[INPUT_HOOK.format(layer=layer)], io[OUTPUT_HOOK.format(layer=layer)], cfg)
            total = total + loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        for tc in tcs:
            tc.normalise_decoder()
        if resample_every and step % resample_every == resample_every - 1 and step < cfg.resample_until * steps:
            for layer, tc in enumerate(tcs):
                resampled[layer] += tc.resample(
                    io[INPUT_HOOK.format(layer=layer)], io[OUTPUT_HOOK.format(layer=layer)], opt, cfg, gen
                )
        if step % 10 == 0:
            bar.set_postfix(fvu=" ".join(f"{f:.3f}" for f in fvus))
    train_seconds = time.perf_counter() - started
    thresholds = _calibrate(model, tcs, train_rows, order, steps, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers: dict[str, Any] = {}
    for layer, tc in enumerate(tcs):
        weights = _inference_weights(tc, thresholds[layer])
        save_saelens(weights, out_dir / "saelens" / f"layer_{layer}", layer, model, rows.shape[1])
        save_circuit_tracer(weights, out_dir / "circuit-tracer" / f"layer_{layer}.safetensors")
        layers[str(layer)] = {
            "threshold": thresholds[layer],
            "final_train_fvu": round(fvus[layer], 4),
            "resampled": resampled[layer],
        }
    write_circuit_tracer_config(out_dir / "circuit-tracer", n_layers, model.cfg.model_name)
    measured = measure_transcoders(
        model, [_inference_weights(tc, t) for tc, t in zip(tcs, thresholds, strict=True)], eval_rows
    )
    for layer, stats in enumerate(measured["layers"]):
        layers[str(layer)].update(stats)
    result = {
        "layers": layers,
        "loss_clean": measured["loss_clean"],
        "loss_spliced": measured["loss_spliced"],
        "eval_tokens": measured["eval_tokens"],
        "train_tokens": steps * tokens_per_step,
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
        "config": asdict(cfg),
    }
    (out_dir / "training.json").write_text(json.dumps(result, indent=2))
    for name, stats in layers.items():
        log.info(
            "transcoder layer %s: L0 %.1f, explained variance of the MLP output %.3f, %.1f%% dead on %d tokens",
            name,
            stats["l0"],
            stats["explained_variance"],
            100 * stats["dead_fraction"],
            measured["eval_tokens"],
        )
    return result


@torch.no_grad()
def _calibrate(
    model: Any,
    tcs: list[_TrainingTranscoder],
    rows: torch.Tensor,
    order: torch.Tensor,
    steps: int,
    cfg: TranscoderTrainConfig,
) -> list[float]:
    """Each layer's JumpReLU threshold: the mean smallest selected value over a few training batches."""
    found: list[list[float]] = [[] for _ in tcs]
    for n in range(cfg.calibration_batches):
        idx = order[(torch.arange(cfg.batch_rows) + (steps + n) * cfg.batch_rows) % len(order)]
        io = _mlp_io(model, rows[idx])
        for layer, tc in enumerate(tcs):
            x = io[INPUT_HOOK.format(layer=layer)]
            found[layer].append(batch_threshold(torch.addmm(tc.b_enc, x, tc.W_enc), cfg.k, stride=1))
    return [float(np.mean(f)) for f in found]


def _inference_weights(tc: _TrainingTranscoder, threshold: float) -> dict[str, torch.Tensor]:
    """SAELens-oriented weights: W_enc [d_in, d_tc], W_dec [d_tc, d_out], biases, per-feature thresholds."""
    return {
        "W_enc": tc.W_enc.detach().clone().contiguous(),
        "W_dec": tc.W_dec.detach().clone().contiguous(),
        "b_enc": tc.b_enc.detach().clone(),
        "b_dec": tc.b_dec.detach().clone(),
        "threshold": torch.full_like(tc.b_enc.detach(), threshold),
    }


def saelens_cfg(d_in: int, d_tc: int, d_out: int, layer: int, model_name: str, context_size: int) -> dict[str, Any]:
    """The ``cfg.json`` of a JumpReLU transcoder of ``layer`` (input and output hooks in its metadata)."""
    return {
        "architecture": "jumprelu_transcoder",
        "d_in": d_in,
        "d_sae": d_tc,
        "d_out": d_out,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": model_name,
            "hook_name": INPUT_HOOK.format(layer=layer),
            "hook_name_out": OUTPUT_HOOK.format(layer=layer),
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": context_size,
            "exclude_special_tokens": True,
        },
    }


def save_saelens(weights: dict[str, torch.Tensor], out: Path, layer: int, model: Any, context_size: int) -> Path:
    """Write a SAELens transcoder directory with SAELens's own ``save_model`` (``SAE.load_from_disk`` loads it)."""
    from sae_lens import JumpReLUTranscoder

    d_in, d_tc = weights["W_enc"].shape
    cfg = saelens_cfg(d_in, d_tc, weights["W_dec"].shape[1], layer, str(model.cfg.model_name), context_size)
    tc = JumpReLUTranscoder.from_dict(cfg)
    tc.load_state_dict({k: v.contiguous() for k, v in weights.items()})
    tc.save_model(str(out))
    return out


def save_circuit_tracer(weights: dict[str, torch.Tensor], path: Path) -> Path:
    """Write circuit-tracer's per-layer file: ``W_enc`` [d_tc, d_model], ``W_dec``, biases, JumpReLU threshold."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": weights["W_enc"].T.contiguous(),
        "W_dec": weights["W_dec"].contiguous(),
        "b_enc": weights["b_enc"].contiguous(),
        "b_dec": weights["b_dec"].contiguous(),
        "activation_function.threshold": weights["threshold"].contiguous(),
    }
    save_file(tensors, str(path))
    return path


def write_circuit_tracer_config(out: Path, n_layers: int, scan: str) -> Path:
    """circuit-tracer's ``config.yaml`` of a per-layer set (hooks named as its replacement model names them)."""
    import yaml

    config = {
        "model_kind": "transcoder_set",
        "scan": scan,
        # TransformerLens hook names within a block: ln2's normalised input (before its weight and bias; the
        # MLP reads ``w * x + b``) and the MLP output. circuit-tracer's own tests read ``mlp.hook_in`` instead.
        "feature_input_hook": "ln2.hook_normalized",
        "feature_output_hook": "hook_mlp_out",
        "activation": "jump_relu",
        "transcoders": [f"layer_{layer}.safetensors" for layer in range(n_layers)],
    }
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@torch.no_grad()
def measure_transcoders(model: Any, weights: list[dict[str, torch.Tensor]], rows: torch.Tensor) -> dict[str, Any]:
    """Per layer on held-out ``rows`` (BOS excluded): L0, explained variance of the MLP output, dead fraction;
    and the model's loss clean and with every MLP output replaced by its transcoder's."""
    layers = []
    sums: list[dict[str, Any]] = [
        {"active": 0.0, "err": 0.0, "fired": torch.zeros(w["b_enc"].shape[0], dtype=torch.bool)} for w in weights
    ]
    ys: list[list[torch.Tensor]] = [[] for _ in weights]
    n_tokens = 0
    for start in range(0, len(rows), 32):
        io = _mlp_io(model, rows[start : start + 32])
        for layer, w in enumerate(weights):
            acts = encode_jumprelu(w, io[INPUT_HOOK.format(layer=layer)])
            y = io[OUTPUT_HOOK.format(layer=layer)]
            recon = acts @ w["W_dec"] + w["b_dec"]
            sums[layer]["active"] += float((acts > 0).sum())
            sums[layer]["err"] += float((y - recon).pow(2).sum())
            sums[layer]["fired"] |= (acts > 0).any(0)
            ys[layer].append(y)
        n_tokens += io[INPUT_HOOK.format(layer=0)].shape[0]
    for layer, s in enumerate(sums):
        y = torch.cat(ys[layer])
        total = float((y - y.mean(0)).pow(2).sum())
        layers.append(
            {
                "l0": round(s["active"] / n_tokens, 2),
                "explained_variance": round(1 - s["err"] / total, 4),
                "dead_fraction": round(1 - float(s["fired"].float().mean()), 4),
            }
        )
    clean, spliced = _spliced_loss(model, weights, rows)
    return {"layers": layers, "loss_clean": clean, "loss_spliced": spliced, "eval_tokens": n_tokens}


def encode_jumprelu(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """JumpReLU activations [T, d_tc]: ``pre * (pre > threshold)``, as SAELens and circuit-tracer compute them."""
    pre = torch.addmm(w["b_enc"], x, w["W_enc"])
    return pre * (pre > w["threshold"])


@torch.no_grad()
def _spliced_loss(model: Any, weights: list[dict[str, torch.Tensor]], rows: torch.Tensor) -> tuple[float, float]:
    """Next-token loss of the model as is, and with each MLP output replaced by its transcoder's (not at BOS)."""
    captured: dict[int, torch.Tensor] = {}

    def grab(layer: int) -> Any:
        def hook(act: torch.Tensor, hook: Any) -> None:
            captured[layer] = act

        return hook

    def replace(layer: int) -> Any:
        def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
            x = captured[layer]
            w = weights[layer]
            out = encode_jumprelu(w, x.reshape(-1, x.shape[-1])) @ w["W_dec"] + w["b_dec"]
            out = out.reshape(act.shape)
            out[:, 0] = act[:, 0]  # BOS keeps the model's own MLP output, as in circuit-tracer
            return out

        return hook

    hooks = []
    for layer in range(len(weights)):
        hooks += [(INPUT_HOOK.format(layer=layer), grab(layer)), (OUTPUT_HOOK.format(layer=layer), replace(layer))]
    clean, spliced = [], []
    for start in range(0, len(rows), 32):
        batch = rows[start : start + 32]
        clean.append(float(model(batch, return_type="loss")))
        spliced.append(float(model.run_with_hooks(batch, return_type="loss", fwd_hooks=hooks)))
    return round(float(np.mean(clean)), 4), round(float(np.mean(spliced)), 4)
