"""An SAE trained with SAELens's own training runner on one residual-stream hook of the demo model."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAETrainConfig:
    """What to train: a TopK SAE (crisp features at small scale) with a fixed token budget."""

    hook_name: str = "blocks.1.hook_resid_pre"
    d_sae: int = 2048
    k: int = 32
    training_tokens: int = 750_000
    train_batch_size_tokens: int = 4096
    lr: float = 1e-3
    context_size: int = 128
    seed: int = 0
    # Dead latents: SAELens counts a latent dead after this many steps without firing, and only dead latents
    # get the TopK auxiliary loss (AuxK). Its default (1,000 steps) is longer than this whole run.
    dead_feature_window: int = 1000
    aux_loss_coefficient: float = 1.0
    decoder_init_norm: float | None = 0.1
    lr_decay_steps: int = 0
    # bench/demo_dictionaries.py measured the fraction of features firing on the dashboard text for each choice
    init: str = "data"  # "tied": SAELens's (random decoder, encoder its transpose); "data": rows from real activations
    resample_phases: int = 6  # > 1: train in this many SAELens runs, restarting dead latents between them
    resample_rows: int = 256  # rows a latent must stay silent on to count as dead when resampling


def train_sae(model: Any, rows: np.ndarray, cfg: SAETrainConfig, out_dir: Path) -> dict[str, Any]:
    """Train on token ``rows`` (the model's own BOS-prefixed rows) and save in SAELens format to ``out_dir``."""
    import torch
    from datasets import Dataset
    from sae_lens import (
        LanguageModelSAERunnerConfig,
        LanguageModelSAETrainingRunner,
        LoggingConfig,
        TopKTrainingSAEConfig,
    )

    torch.manual_seed(cfg.seed)
    dataset = Dataset.from_dict({"input_ids": rows.tolist()})
    # SAELens's buffer must hold one full training batch: n_batches_in_buffer x context >= batch tokens.
    n_buffer = max(32, 2 * cfg.train_batch_size_tokens // cfg.context_size)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(
            d_in=model.cfg.d_model,
            d_sae=cfg.d_sae,
            k=cfg.k,
            aux_loss_coefficient=cfg.aux_loss_coefficient,
            decoder_init_norm=cfg.decoder_init_norm,
            rescale_acts_by_decoder_norm=True,
            device="cpu",
            dtype="float32",
        ),
        model_name=model.cfg.model_name,
        hook_name=cfg.hook_name,
        dataset_path="local",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=cfg.context_size,
        prepend_bos=True,
        training_tokens=cfg.training_tokens,
        train_batch_size_tokens=cfg.train_batch_size_tokens,
        n_batches_in_buffer=n_buffer,
        store_batch_size_prompts=16,
        lr=cfg.lr,
        lr_warm_up_steps=20,
        lr_decay_steps=cfg.lr_decay_steps,
        dead_feature_window=cfg.dead_feature_window,
        device="cpu",
        seed=cfg.seed,
        logger=LoggingConfig(log_to_wandb=False),
        output_path=None,
        checkpoint_path=None,
        n_checkpoints=0,
        verbose=False,
        n_batches_for_norm_estimate=10,
        exclude_special_tokens=True,
    )
    from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig

    sae0 = TrainingSAE.from_dict(TrainingSAEConfig.from_dict(runner_cfg.get_training_sae_cfg_dict()).to_dict())
    # Start the decoder bias at the activations' mean: the residual stream has a large constant part that a
    # short CPU run would otherwise spend most of its steps learning.
    with torch.no_grad():
        sample = torch.from_numpy(rows[: min(len(rows), 256)]).long()
        _, cache = model.run_with_cache(
            sample, names_filter=[cfg.hook_name], stop_at_layer=int(cfg.hook_name.split(".")[1]) + 1
        )
        acts = cache[cfg.hook_name][:, 1:].reshape(-1, model.cfg.d_model)
        sae0.b_dec.data[:] = acts.mean(0)
        if cfg.init == "data":
            # Each latent starts as the direction of one real (centred) activation, encoder tied to decoder:
            # every latent then fires on the text near its sample, instead of most starting where none is.
            gen = torch.Generator().manual_seed(cfg.seed)
            idx = torch.randperm(len(acts), generator=gen)[: cfg.d_sae]
            if len(idx) < cfg.d_sae:  # a tiny corpus: some samples twice
                idx = torch.randint(len(acts), (cfg.d_sae,), generator=gen)
            picks = (acts - acts.mean(0))[idx]
            w_dec = picks / picks.norm(dim=1, keepdim=True).clamp(min=1e-8) * (cfg.decoder_init_norm or 1.0)
            sae0.W_dec.data[:] = w_dec
            sae0.W_enc.data[:] = w_dec.T
    # SAELens's trainer cannot restart dead latents, so with resampling the run is split into phases (each a
    # SAELens run continuing the same SAE on the next part of the rows), dead latents restarted in between.
    phases = max(1, cfg.resample_phases)
    per_phase = cfg.training_tokens // phases
    rows_per_phase = per_phase // cfg.context_size
    sae, resampled = sae0, 0
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    for phase in range(phases):
        start = (phase * rows_per_phase) % len(rows)
        order = [*range(start, len(rows)), *range(start)]
        runner = LanguageModelSAETrainingRunner(
            replace(runner_cfg, training_tokens=per_phase),
            override_dataset=dataset.select(order),
            override_model=model,
            override_sae=sae,
        )
        sae = runner.run()
        if phase < phases - 1:
            resampled += resample_dead(sae, model, rows, cfg, gen)
    out_dir.mkdir(parents=True, exist_ok=True)
    inference = sae.to_inference_model() if hasattr(sae, "to_inference_model") else sae
    inference.save_model(str(out_dir))
    stats: dict[str, Any] = dict(measure_sae(model, inference, rows[-64:], cfg.hook_name))
    stats["resampled"] = resampled
    stats["config"] = asdict(cfg)
    (out_dir / "training.json").write_text(json.dumps(stats, indent=2))
    log.info(
        "SAE %s: d_sae %d, L0 %.1f, explained variance %.3f, %.0f%% of features fired on held-out text",
        cfg.hook_name,
        cfg.d_sae,
        stats["l0"],
        stats["explained_variance"],
        100 * stats["frac_alive"],
    )
    return stats


def resample_dead(sae: Any, model: Any, rows: np.ndarray, cfg: SAETrainConfig, gen: Any) -> int:
    """Restart the latents of a TopK training SAE that fire nowhere on ``cfg.resample_rows`` random rows: each
    writes the reconstruction error of a token drawn by squared error, and reads that token, firing there at
    1.5 x a typical k-th largest activation. Returns how many were restarted."""
    import torch

    layer = int(cfg.hook_name.split(".")[1])
    pick = torch.randperm(len(rows), generator=gen)[: cfg.resample_rows].numpy()
    with torch.no_grad():
        xs, errs, kth = [], [], []
        fired = torch.zeros(cfg.d_sae, dtype=torch.bool)
        for start in range(0, len(pick), 32):
            batch = torch.from_numpy(rows[np.sort(pick[start : start + 32])]).long()
            _, cache = model.run_with_cache(batch, names_filter=[cfg.hook_name], stop_at_layer=layer + 1)
            x = cache[cfg.hook_name][:, 1:].reshape(-1, model.cfg.d_model)
            acts = sae.encode(x)
            fired |= (acts > 0).any(0)
            errs.append(x - sae.decode(acts))
            xs.append(x)
            kth.append(torch.topk(acts, cfg.k, dim=1).values[:, -1])
        dead = torch.nonzero(~fired).squeeze(1)
        if not dead.numel():
            return 0
        x, err = torch.cat(xs), torch.cat(errs)
        tok = torch.multinomial(err.pow(2).sum(-1), dead.numel(), replacement=dead.numel() > len(x), generator=gen)
        target = 1.5 * float(torch.cat(kth).median())
        norms = sae.W_dec.norm(dim=1)
        row_norm = float(norms[fired].mean()) if bool(fired.any()) else 1.0
        sae.W_dec.data[dead] = err[tok] / err[tok].norm(dim=1, keepdim=True).clamp(min=1e-8) * row_norm
        u = sae.process_sae_in(x[tok])
        # acts = (u . W_enc[:, f] + b_enc[f]) x |W_dec[f]| (rescale_acts_by_decoder_norm): ``target`` on the token
        sae.W_enc.data[:, dead] = (u / u.pow(2).sum(-1, keepdim=True).clamp(min=1e-8) * (target / row_norm)).T
        sae.b_enc.data[dead] = 0
    log.info("SAE: restarted %d latents that fired on none of %d tokens", dead.numel(), len(x))
    return int(dead.numel())


def measure_sae(model: Any, sae: Any, rows: np.ndarray, hook_name: str) -> dict[str, float]:
    """L0 (mean active features per token, BOS excluded) and explained variance on ``rows``."""
    import torch

    with torch.no_grad():
        _, cache = model.run_with_cache(
            torch.from_numpy(rows).long(), names_filter=[hook_name], stop_at_layer=int(hook_name.split(".")[1]) + 1
        )
        acts = cache[hook_name][:, 1:].reshape(-1, model.cfg.d_model)
        feats = sae.encode(acts)
        recon = sae.decode(feats)
        resid = ((acts - recon) ** 2).sum()
        total = ((acts - acts.mean(0)) ** 2).sum()
        return {
            "l0": float((feats > 0).float().sum(-1).mean()),
            "explained_variance": float(1 - resid / total),
            "frac_alive": float(((feats > 0).sum(0) > 0).float().mean()),
        }
