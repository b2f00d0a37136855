"""Tiny, deterministic inputs for the live-inference tests: a 2-layer model with a chat template (and a copy
without one), SAELens SAEs of every architecture, documents of exactly one context each, and helpers that
put them in the catalogue."""

from __future__ import annotations

import json
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from generate_helpers import ARCHITECTURES, WORDS, corpus, make_sae_dir, make_tokenizer

MODEL_ID = "tiny-inf"
PLAIN_MODEL_ID = "tiny-plain"  # the same weights, a tokenizer without a chat template
HOOK = "blocks.1.hook_resid_pre"
D_MODEL = 32
N_CTX = 128
GEN_CTX = 24  # context of the generate run in the faithfulness test (BOS + 23 tokens)
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|endoftext|>' if loop.first else '' }}{{ m['role'] }}: "
    "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass
class TinyInference:
    """Paths of the tiny inputs."""

    root: Path
    model: Path
    plain_model: Path
    saes: dict[str, Path]  # architecture -> SAE at HOOK
    layer0_sae: Path  # a second source of the set, at blocks.0.hook_resid_post
    docs: list[str]  # documents of exactly GEN_CTX - 1 tokens each
    dataset: Path


def make_model_dir(out: Path, d_vocab: int, *, seed: int = 0) -> Path:
    """A 2-layer HookedTransformer with a 128-token context, saved as tl_config.json + model.safetensors."""
    import torch
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kwargs = {
        "n_layers": 2,
        "d_model": D_MODEL,
        "n_ctx": N_CTX,
        "d_head": 8,
        "n_heads": 4,
        "d_mlp": 64,
        "act_fn": "gelu",
        "d_vocab": d_vocab,
        "normalization_type": "LN",
        "model_name": "tiny-inf",
        "seed": seed,
    }
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # TransformerLens 3 deprecates HookedTransformer; it is still what loads
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
    with torch.no_grad():  # a larger unembedding makes sampling depend visibly on the residual stream
        model.W_U.mul_(8.0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "tl_config.json").write_text(json.dumps(kwargs))
    return out


def exact_docs(tokenizer: Any, n_docs: int, n_tokens: int, seed: int = 0) -> list[str]:
    """Documents that tokenize to exactly ``n_tokens`` tokens (so a generate row is the whole document)."""
    rng = random.Random(seed)
    docs: list[str] = []
    while len(docs) < n_docs:
        words: list[str] = []
        while True:
            words.append(rng.choice(WORDS))
            text = " ".join(words)
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if n == n_tokens:
                docs.append(text)
                break
            if n > n_tokens:
                break
    return docs


def build(root: Path) -> TinyInference:
    """Every tiny input under ``root``."""
    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    tok = make_tokenizer(model_dir, corpus())
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(model_dir))
    make_model_dir(model_dir, len(tok))
    plain = root / "plain-model"
    shutil.copytree(model_dir, plain)
    for extra in plain.glob("chat_template*"):
        extra.unlink()
    config_path = plain / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    saes = {arch: make_sae_dir(root / f"sae-{arch}", arch, seed=i) for i, arch in enumerate(ARCHITECTURES)}
    layer0 = make_sae_dir(root / "sae-layer0", "standard", seed=7, hook="blocks.0.hook_resid_post")
    docs = exact_docs(tok, 40, GEN_CTX - 1)
    dataset = root / "docs.jsonl"
    dataset.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return TinyInference(root, model_dir, plain, saes, layer0, docs, dataset)


@pytest.fixture(scope="session")
def tiny_inf(tmp_path_factory: pytest.TempPathFactory) -> TinyInference:
    """One set of tiny inference inputs for the whole session."""
    import torch

    torch.set_num_threads(2)
    return build(tmp_path_factory.mktemp("tiny-inference"))


def register(factory: Any, tiny: TinyInference) -> None:
    """Catalogue rows for the tiny model: sources ``1-res-<arch>`` (one per architecture), ``0-res-standard``
    (a second layer of the standard set), and the template-less model with ``1-res-standard``."""
    from interpedia.db import transaction
    from interpedia.store.catalogue import ensure_model, ensure_source

    with transaction(factory) as session:
        for model_id, path in ((MODEL_ID, tiny.model), (PLAIN_MODEL_ID, tiny.plain_model)):
            ensure_model(session, model_id, layers=2, dimension=D_MODEL, tlens_id=str(path), inference_enabled=True)
        for arch, path in tiny.saes.items():
            ensure_source(
                session, MODEL_ID, f"1-res-{arch}", weights_path=str(path), hook_name=HOOK, inference_enabled=True
            )
        ensure_source(
            session,
            MODEL_ID,
            "0-res-standard",
            weights_path=str(tiny.layer0_sae),
            hook_name="blocks.0.hook_resid_post",
            inference_enabled=True,
        )
        ensure_source(
            session,
            PLAIN_MODEL_ID,
            "1-res-standard",
            weights_path=str(tiny.saes["standard"]),
            hook_name=HOOK,
            inference_enabled=True,
        )
