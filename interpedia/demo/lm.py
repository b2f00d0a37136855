"""A small GPT-2-style HookedTransformer trained on CPU, saved in the layout ``interpedia generate`` loads.

The directory holds ``tl_config.json`` (keyword arguments of ``HookedTransformerConfig``),
``model.safetensors`` (the state dict) and the tokenizer files.
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
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LMConfig:
    """Model shape and training budget (a fixed token budget, so reruns are deterministic)."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 128
    train_tokens: int = 1_000_000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.05
    seed: int = 0
    model_name: str = "tiny-demo"


def tokenize_rows(corpus: Path, tokenizer: Any, n_ctx: int, *, max_rows: int | None = None) -> np.ndarray:
    """The corpus as rows of ``n_ctx`` token ids: BOS, then ``n_ctx - 1`` tokens of the concatenated documents."""
    docs = corpus.read_text().splitlines()
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id
    stream: list[int] = []
    step = 2048
    for start in range(0, len(docs), step):
        for ids in tokenizer(docs[start : start + step], add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.append(eos)
        if max_rows is not None and len(stream) >= max_rows * (n_ctx - 1):
            break
    body = n_ctx - 1
    n_rows = len(stream) // body
    if max_rows is not None:
        n_rows = min(n_rows, max_rows)
    arr = np.asarray(stream[: n_rows * body], dtype=np.int32).reshape(n_rows, body)
    return np.concatenate([np.full((n_rows, 1), bos, dtype=np.int32), arr], axis=1)


def tl_config_kwargs(cfg: LMConfig, d_vocab: int) -> dict[str, Any]:
    """What goes into ``tl_config.json``."""
    return {
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "d_head": cfg.d_head,
        "d_mlp": cfg.d_mlp,
        "n_ctx": cfg.n_ctx,
        "d_vocab": d_vocab,
        "act_fn": "gelu",
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
        "model_name": cfg.model_name,
        "seed": cfg.seed,
        "default_prepend_bos": True,
    }


def train_lm(rows: np.ndarray, tokenizer: Any, cfg: LMConfig, out_dir: Path) -> dict[str, Any]:
    """Train the model on ``rows`` (held-out last 2% for validation) and save it; returns training stats."""
    import torch
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(cfg.seed)
    kwargs = tl_config_kwargs(cfg, len(tokenizer))
    model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
    n_val = max(8, len(rows) // 50)
    train, val = torch.from_numpy(rows[:-n_val]).long(), torch.from_numpy(rows[-n_val:]).long()
    steps = max(1, cfg.train_tokens // (cfg.batch_size * cfg.n_ctx))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(cfg.seed)
    started = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="train model", unit="step", disable=None)
    loss = torch.tensor(0.0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(0, len(train), (cfg.batch_size,), generator=gen)
        loss = model(train[idx], return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        val_loss = float(np.mean([model(val[i : i + 16], return_type="loss").item() for i in range(0, len(val), 16)]))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    (out_dir / "tl_config.json").write_text(json.dumps(kwargs, indent=2))
    tokenizer.save_pretrained(str(out_dir))
    stats = {
        "train_tokens": steps * cfg.batch_size * cfg.n_ctx,
        "steps": steps,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(steps * cfg.batch_size * cfg.n_ctx / seconds),
        "final_train_loss": round(loss.item(), 4),
        "val_loss": round(val_loss, 4),
        "config": asdict(cfg),
    }
    (out_dir / "training.json").write_text(json.dumps(stats, indent=2))
    log.info("model: val loss %.3f after %d tokens in %.0fs -> %s", val_loss, stats["train_tokens"], seconds, out_dir)
    return stats
