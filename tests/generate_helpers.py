"""Tiny, deterministic inputs for the generator's tests: a BPE tokenizer, a 2-layer HookedTransformer
directory, SAELens SAEs of every architecture, and text datasets, all built offline in a temporary folder."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ARCHITECTURES = ("standard", "gated", "jumprelu", "topk")
HOOK = "blocks.1.hook_resid_pre"
D_MODEL = 32
D_SAE = 96
CTX = 16
WORDS = (
    "the cat sat on a mat and the dog ran to the park while birds sang in old trees near a river "
    "God said let there be light and there was light the king spoke unto his people def return import "
    "class value list string number print open file read write data model layer token feature"
).split()


@dataclass
class Tiny:
    """Paths of one set of tiny inputs."""

    root: Path
    model: Path
    saes: dict[str, Path]
    jsonl: Path
    txt_dir: Path

    def sae(self, arch: str = "standard") -> Path:
        """The SAE directory of an architecture."""
        return self.saes[arch]


def corpus(n_docs: int = 120, seed: int = 0) -> list[str]:
    """Short pseudo-English documents (some shorter than a context)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60))) for _ in range(n_docs)]


def make_tokenizer(out: Path, texts: list[str]) -> Any:
    """A byte-level BPE (vocab ~300) with <|endoftext|> as BOS/EOS/PAD, saved for AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    hf.save_pretrained(str(out))
    return hf


def make_model_dir(out: Path, d_vocab: int, *, seed: int = 0) -> Path:
    """A 2-layer HookedTransformer saved as tl_config.json + model.safetensors (tokenizer added separately)."""
    import torch
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kwargs = {
        "n_layers": 2,
        "d_model": D_MODEL,
        "n_ctx": CTX,
        "d_head": 8,
        "n_heads": 4,
        "d_mlp": 64,
        "act_fn": "gelu",
        "d_vocab": d_vocab,
        "normalization_type": "LN",
        "model_name": "tiny-gen",
        "seed": seed,
    }
    torch.manual_seed(seed)
    model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "tl_config.json").write_text(json.dumps(kwargs))
    return out


def make_sae_dir(
    out: Path, arch: str, *, seed: int = 0, d_sae: int = D_SAE, hook: str = HOOK, neuronpedia_id: str | None = None
) -> Path:
    """A SAELens SAE of ``arch`` with random weights, biases set so features fire on ~2-30% of tokens."""
    import torch
    from sae_lens import SAE, GatedSAEConfig, JumpReLUSAEConfig, StandardSAEConfig, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(
        model_name="tiny-gen",
        hook_name=hook,
        context_size=CTX,
        prepend_bos=True,
        dataset_path="local",
        neuronpedia_id=neuronpedia_id,
    )
    common = {"d_in": D_MODEL, "d_sae": d_sae, "dtype": "float32", "device": "cpu", "metadata": meta}
    cfgs = {
        "standard": StandardSAEConfig(**common),
        "gated": GatedSAEConfig(**common),
        "jumprelu": JumpReLUSAEConfig(**common),
        "topk": TopKSAEConfig(k=8, **common),
    }
    cls = SAE.get_sae_class_for_architecture(arch)
    sae = cls(cfgs[arch])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_MODEL, d_sae, generator=gen) / D_MODEL**0.5 * 3)
        sae.W_dec.copy_(torch.randn(d_sae, D_MODEL, generator=gen) * (0.5 + torch.rand(d_sae, 1, generator=gen)))
        sae.b_dec.copy_(torch.randn(D_MODEL, generator=gen) * 0.1)
        bias = -1.0 - 2.5 * torch.rand(d_sae, generator=gen)
        bias[:3] = -1e4  # three features that never fire
        if arch == "gated":
            sae.b_gate.copy_(bias)
            sae.b_mag.copy_(bias * 0.5)
            sae.r_mag.copy_(torch.randn(d_sae, generator=gen) * 0.1)
        else:
            sae.b_enc.copy_(bias if arch != "topk" else bias + 2.0)
        if arch == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=gen) * 0.5)
    sae.save_model(str(out))
    return out


def build_tiny(root: Path) -> Tiny:
    """Every tiny input under ``root``."""
    texts = corpus()
    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(model_dir, texts)
    make_model_dir(model_dir, d_vocab=len(tok))
    saes = {arch: make_sae_dir(root / f"sae-{arch}", arch, seed=i) for i, arch in enumerate(ARCHITECTURES)}
    jsonl = root / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    txt_dir = root / "txt"
    txt_dir.mkdir()
    for i, text in enumerate(texts[:20]):
        (txt_dir / f"doc{i:02d}.txt").write_text(text)
    return Tiny(root=root, model=model_dir, saes=saes, jsonl=jsonl, txt_dir=txt_dir)


_TINY: list[Tiny] = []


def tiny_inputs(factory: pytest.TempPathFactory) -> Tiny:
    """One set of tiny inputs for the whole test session (each test module wraps this in a fixture)."""
    if not _TINY:
        _TINY.append(build_tiny(factory.mktemp("tiny-generate")))
    return _TINY[0]
