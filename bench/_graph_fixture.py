"""Inputs of the graph benchmark: a demo-size model (the demo's shape: 2 layers, d_model 128, d_mlp 512, vocab
4096) with the demo's tokenizer recipe, and 2,048-feature per-layer transcoders in circuit-tracer's format.

Without a trained demo at hand (``--model``/``--transcoders`` take one), the model keeps its random weights and
the transcoders are fitted in seconds: random unit encoder directions, each feature's bias set so it fires on
~1% of the corpus tokens (L0 ~ 20 per token, like a trained transcoder, unlike a random one where half fire),
and the decoder fitted to the MLP outputs by ridge regression. The cost of a graph depends on the shapes and on
the number of active features, not on what the weights mean.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("bench")

D_TC = 2048
FIRE_RATE = 0.01


def build_inputs(work: Path) -> tuple[Path, dict[int, Path], list[int]]:
    """(model dir, {layer: transcoder file}, prompt token ids of 32 tokens), cached under ``work``."""
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interpedia.demo.corpus import build_corpus
    from interpedia.demo.lm import LMConfig, tl_config_kwargs, tokenize_rows
    from interpedia.demo.tokenizer import train_tokenizer

    model_dir = work / "model"
    tc_files = {layer: work / "transcoders" / f"layer_{layer}.safetensors" for layer in range(2)}
    corpus = work / "corpus.txt"
    if not corpus.exists():
        full = build_corpus(work / "corpus-full.txt")
        lines = full.read_text().splitlines()[:4000]  # enough text for a 4k BPE and the fitting tokens
        corpus.write_text("\n".join(lines) + "\n")
    if not (model_dir / "model.safetensors").exists():
        tok = train_tokenizer(corpus, model_dir, vocab_size=4096)
        kwargs = tl_config_kwargs(LMConfig(), len(tok))
        torch.manual_seed(0)
        model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(model_dir / "model.safetensors"))
        (model_dir / "tl_config.json").write_text(json.dumps(kwargs))
    from interpedia.generate.model import HookedModel

    hooked = HookedModel.load(str(model_dir))
    rows = tokenize_rows(corpus, hooked.tokenizer, 128, max_rows=48)
    if not all(p.exists() for p in tc_files.values()):
        fit_transcoders(hooked.model, torch.from_numpy(rows[:40]).long(), tc_files)
    prompt = [int(t) for t in rows[-1][:32]]  # BOS + 31 tokens the transcoders were not fitted on
    return model_dir, tc_files, prompt


@torch.no_grad()
def fit_transcoders(model: object, tokens: torch.Tensor, out: dict[int, Path]) -> None:
    """Fit one transcoder per layer on the MLP inputs (ln2 output) and outputs of ``tokens`` [rows, ctx]."""
    from safetensors.torch import save_file

    names = [f"blocks.{i}.{h}" for i in out for h in ("ln2.hook_normalized", "hook_mlp_out")]
    _, cache = model.run_with_cache(tokens, names_filter=names)  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(0)
    for layer, path in out.items():
        ln = model.blocks[layer].ln2  # type: ignore[attr-defined]
        x = (cache[f"blocks.{layer}.ln2.hook_normalized"] * ln.w + ln.b)[:, 1:].reshape(-1, ln.w.shape[0])
        y = cache[f"blocks.{layer}.hook_mlp_out"][:, 1:].reshape(-1, ln.w.shape[0])
        w_enc = torch.randn(D_TC, x.shape[1], generator=gen)
        w_enc /= w_enc.norm(dim=1, keepdim=True)
        pre = x @ w_enc.T
        b_enc = -torch.quantile(pre, 1 - FIRE_RATE, dim=0)
        acts = (pre + b_enc).relu()
        b_dec = y.mean(0)
        a = acts.double().numpy()
        gram = a.T @ a + 1e-3 * np.eye(D_TC)
        w_dec = torch.from_numpy(np.linalg.solve(gram, a.T @ (y - b_dec).double().numpy())).float()
        recon = acts @ w_dec + b_dec
        fvu = float(((y - recon) ** 2).sum() / ((y - b_dec) ** 2).sum())
        l0 = float((acts > 0).float().sum(1).mean())
        log.info("transcoder %d: L0 %.1f, FVU %.3f on the fitting tokens", layer, l0, fvu)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"W_enc": w_enc.contiguous(), "W_dec": w_dec.contiguous(), "b_enc": b_enc, "b_dec": b_dec}, str(path))
