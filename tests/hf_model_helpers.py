"""Tiny random Hugging Face models of the seven architectures interpedia loads, as a researcher has them on disk.

Each family is built from its ``transformers`` config class (2 layers, d_model 64, grouped-query attention
where the family has it, norm weights randomised so a hook before or after a norm's weight is told apart)
and saved with ``save_pretrained`` next to a tokenizer with the family's conventions: its special tokens,
whether it adds BOS (Llama 3, Gemma, Mistral do; GPT-2 and Qwen do not; Qwen has no BOS at all), byte-level
BPE or SentencePiece-style pieces, a chat template for the instruct families, and end-of-turn tokens in
``generation_config.json``. Gemma 2 is saved in bfloat16, as Google's checkpoints are. Each model gets a
standard SAE on a different hook, its thresholds set from the model's own activations so features fire.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WORDS = (
    "the cat sat on a mat and the dog ran to the park while birds sang in old trees near a river "
    "God said let there be light and there was light the king spoke unto his people def return import "
    "class value list string number print open file read write data model layer token feature"
).split()
CTX = 16
D_MODEL = 64
D_SAE = 64
N_DOCS = 12

LLAMA3_CHAT = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA_CHAT = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MISTRAL_CHAT = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    """How one architecture's tiny model and tokenizer are made."""

    name: str
    architecture: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str | None
    adds_bos: bool
    sentencepiece: bool
    hook: str  # where its SAE reads
    chat_template: str | None = None
    end_of_turn: tuple[str, ...] = ()
    bfloat16: bool = False
    config: dict[str, Any] = field(default_factory=dict)


_GQA = {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "max_position_embeddings": 128}
_GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>")
FAMILIES = {
    f.name: f
    for f in (
        Family(
            "gpt2",
            "GPT2LMHeadModel",
            ("<|endoftext|>",),
            "<|endoftext|>",
            "<|endoftext|>",
            None,
            adds_bos=False,
            sentencepiece=False,
            hook="blocks.1.hook_resid_pre",
            config={"n_head": 4, "n_positions": 64},
        ),
        Family(
            "llama",
            "LlamaForCausalLM",
            ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
            "<|begin_of_text|>",
            "<|end_of_text|>",
            None,
            adds_bos=True,
            sentencepiece=False,
            hook="blocks.0.hook_mlp_out",
            chat_template=LLAMA3_CHAT,
            end_of_turn=("<|eot_id|>",),
            config=_GQA,
        ),
        Family(
            "gemma2",
            "Gemma2ForCausalLM",
            _GEMMA_SPECIALS,
            "<bos>",
            "<eos>",
            "<pad>",
            adds_bos=True,
            sentencepiece=True,
            hook="blocks.1.hook_resid_post",
            chat_template=GEMMA_CHAT,
            end_of_turn=("<end_of_turn>",),
            bfloat16=True,
            config={**_GQA, "head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 16},
        ),
        Family(
            "gemma3",
            "Gemma3ForCausalLM",
            _GEMMA_SPECIALS,
            "<bos>",
            "<eos>",
            "<pad>",
            adds_bos=True,
            sentencepiece=True,
            hook="blocks.0.attn.hook_z",
            chat_template=GEMMA_CHAT,
            end_of_turn=("<end_of_turn>",),
            config={
                **_GQA,
                "head_dim": 16,
                "sliding_window": 4,
                "layer_types": ["sliding_attention", "full_attention"],
                "query_pre_attn_scalar": 16,
            },
        ),
        Family(
            "qwen2",
            "Qwen2ForCausalLM",
            ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
            None,
            "<|endoftext|>",
            "<|endoftext|>",
            adds_bos=False,
            sentencepiece=False,
            hook="blocks.1.hook_attn_out",
            chat_template=CHATML,
            end_of_turn=("<|im_end|>",),
            config=_GQA,
        ),
        Family(
            "qwen3",
            "Qwen3ForCausalLM",
            ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
            None,
            "<|endoftext|>",
            "<|endoftext|>",
            adds_bos=False,
            sentencepiece=False,
            hook="blocks.1.ln2.hook_normalized",
            chat_template=CHATML,
            end_of_turn=("<|im_end|>",),
            config={**_GQA, "head_dim": 16},
        ),
        Family(
            "mistral",
            "MistralForCausalLM",
            ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
            "<s>",
            "</s>",
            None,
            adds_bos=True,
            sentencepiece=True,
            hook="blocks.1.hook_mlp_in",
            chat_template=MISTRAL_CHAT,
            config=_GQA,
        ),
    )
}


@dataclass
class TinyHf:
    """One family's model directory, SAE and dataset."""

    family: Family
    model: Path
    sae: Path
    docs: list[str]  # documents of exactly one context (BOS included where the family prepends one)
    dataset: Path
    tokenizer: Any


def texts(n: int = 80, seed: int = 0) -> list[str]:
    """Short pseudo-English documents."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))) for _ in range(n)]


def make_tokenizer(family: Family, out: Path) -> Any:
    """A small BPE (vocab ~300) with the family's special tokens and conventions, saved for AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in family.specials else None))
    if family.sentencepiece:  # SentencePiece-style pieces with the word-start marker, as Gemma's and Mistral's
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = sorted(set("".join(WORDS)) | {"▁"})
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=list(family.specials), show_progress=False, initial_alphabet=alphabet
    )
    tok.train_from_iterator(texts(), trainer)
    if family.adds_bos and family.bos is not None:
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A {family.bos} $B", special_tokens=[(family.bos, bos_id)]
        )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        unk_token="<unk>" if "<unk>" in family.specials else None,
        additional_special_tokens=[s for s in family.specials if s not in (family.bos, family.eos, family.pad)],
    )
    if family.chat_template:
        hf.chat_template = family.chat_template
    hf.save_pretrained(str(out))
    return hf


def _config(family: Family, tok: Any) -> Any:
    import transformers

    vocab = -(-len(tok) // 32) * 32  # padded past the tokenizer, as real checkpoints are
    ids = {
        "bos_token_id": tok.convert_tokens_to_ids(family.bos) if family.bos else None,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if family.name == "gpt2":
        return transformers.GPT2Config(n_embd=D_MODEL, n_layer=2, vocab_size=vocab, **family.config, **ids)
    cls = {
        "llama": transformers.LlamaConfig,
        "gemma2": transformers.Gemma2Config,
        "gemma3": transformers.Gemma3TextConfig,
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "mistral": transformers.MistralConfig,
    }[family.name]
    return cls(hidden_size=D_MODEL, num_hidden_layers=2, vocab_size=vocab, **family.config, **ids)


def make_model(family: Family, out: Path, seed: int = 0) -> Any:
    """The family's tiny random model saved with ``save_pretrained`` beside its tokenizer; returns the tokenizer."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(family, out)
    config = _config(family, tok)
    config.architectures = [family.architecture]
    torch.manual_seed(seed)
    model = getattr(transformers, family.architecture)(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or ".ln_" in name:
                param.add_(torch.randn_like(param) * 0.3)
    ends = [tok.convert_tokens_to_ids(t) for t in family.end_of_turn]
    model.generation_config.eos_token_id = [tok.eos_token_id, *ends] if ends else tok.eos_token_id
    if family.bfloat16:
        model = model.to(torch.bfloat16)
    model.save_pretrained(str(out))
    return tok


def exact_docs(tok: Any, n_docs: int, n_tokens: int, seed: int = 0) -> list[str]:
    """Documents that tokenize (without special tokens) to exactly ``n_tokens`` tokens."""
    rng = random.Random(seed)
    docs: list[str] = []
    while len(docs) < n_docs:
        words: list[str] = []
        while True:
            words.append(rng.choice(WORDS))
            text = " ".join(words)
            n = len(tok(text, add_special_tokens=False)["input_ids"])
            if n == n_tokens:
                docs.append(text)
                break
            if n > n_tokens:
                break
    return docs


def make_sae(out: Path, model_dir: Path, hook: str, docs: list[str], seed: int = 0) -> Path:
    """A standard SAELens SAE at ``hook`` whose features fire on ~10% of the model's activations on ``docs``."""
    import torch
    from sae_lens import SAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from interpedia.generate.model import HookedModel

    model = HookedModel.load(str(model_dir))
    ids = [model.tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
    x = model.activations(torch.tensor([row[: CTX - 1] for row in ids]), hook).float()
    d_in = int(x.shape[1])
    meta = SAEMetadata(model_name=model_dir.name, hook_name=hook, context_size=CTX, dataset_path="local")
    sae = SAE.get_sae_class_for_architecture("standard")(
        StandardSAEConfig(d_in=d_in, d_sae=D_SAE, dtype="float32", device="cpu", metadata=meta)
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, D_SAE, generator=gen) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(D_SAE, d_in, generator=gen) * (0.5 + torch.rand(D_SAE, 1, generator=gen)))
        sae.b_dec.zero_()
        pre = x @ sae.W_enc
        sae.b_enc.copy_(-torch.quantile(pre, 0.9, dim=0))
    sae.save_model(str(out))
    return out


def build(family: Family, root: Path) -> TinyHf:
    """One family's inputs under ``root``."""
    model_dir = root / family.name
    tok = make_model(family, model_dir)
    n_tokens = CTX - 1 if family.bos is not None else CTX  # a BOS is prepended where the tokenizer has one
    docs = exact_docs(tok, N_DOCS, n_tokens)
    sae = make_sae(root / f"sae-{family.name}", model_dir, family.hook, docs)
    dataset = root / f"docs-{family.name}.jsonl"
    dataset.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return TinyHf(family, model_dir, sae, docs, dataset, tok)


_BUILT: dict[str, TinyHf] = {}


def tiny_hf(factory: pytest.TempPathFactory, name: str) -> TinyHf:
    """One family's inputs, built once per test session."""
    if name not in _BUILT:
        _BUILT[name] = build(FAMILIES[name], factory.mktemp(f"hf-{name}"))
    return _BUILT[name]
