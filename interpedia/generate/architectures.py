"""Hugging Face model architectures: which load, and the facts about each that change activations.

A Hugging Face model directory names its class in ``config.json`` (``architectures``). The seven families
interpedia tests end to end are in :data:`TESTED`; any other causal LM that TransformerLens's
``TransformerBridge`` has an adapter for loads too, with a warning and ``"tested": false`` in the run record.
Anything else is refused with a :class:`~interpedia.errors.Unsupported` naming the class.

What is recorded (:func:`architecture_facts`) is what a reader of ``run.json`` needs to know to reproduce an
activation: the embedding scale (Gemma multiplies token embeddings by ``sqrt(d_model)``), logit and attention
soft-capping, the normalisation (Gemma's RMSNorm multiplies by ``1 + weight``; Gemma 2 and 3 normalise the
attention and MLP outputs again before adding them to the residual stream), the checkpoint's dtype, and the
tokenizer's conventions (its BOS token and whether it adds it, its chat template, the tokens that end a turn).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from interpedia.errors import Invalid, Unsupported

__all__ = ["TESTED", "architecture_facts", "check_architecture", "read_hf_config", "tokenizer_facts"]

# config.json "architectures" class -> the family name used in messages and docs/models.md
TESTED = {
    "GPT2LMHeadModel": "GPT-2",
    "LlamaForCausalLM": "Llama",
    "Gemma2ForCausalLM": "Gemma 2",
    "Gemma3ForCausalLM": "Gemma 3",
    "Qwen2ForCausalLM": "Qwen 2",
    "Qwen3ForCausalLM": "Qwen 3",
    "MistralForCausalLM": "Mistral",
}
# HF config attributes that change activations, recorded as they are (when the config has them)
_RECORDED = (
    "model_type",
    "vocab_size",
    "max_position_embeddings",
    "n_positions",
    "final_logit_softcapping",
    "attn_logit_softcapping",
    "query_pre_attn_scalar",
    "sliding_window",
    "tie_word_embeddings",
    "rms_norm_eps",
    "layer_norm_epsilon",
    "hidden_act",
    "hidden_activation",
    "activation_function",
)


def read_hf_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a model directory as a dict; Invalid when it is not a JSON object."""
    file = path / "config.json"
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"{file} is not a readable JSON file: {exc}", field="model") from None
    if not isinstance(data, dict):
        raise Invalid(f"{file} is not a JSON object", field="model")
    return data


def _bridge_architectures() -> set[str]:
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return set(SUPPORTED_ARCHITECTURES)


def check_architecture(config: dict[str, Any], where: str) -> tuple[str, bool]:
    """``(architecture, tested)`` of a model's config; Unsupported names the class when it cannot load."""
    names = config.get("architectures") or []
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise Unsupported(
            f"{where}/config.json names no architecture (its 'architectures' list is missing); "
            f"interpedia loads {', '.join(TESTED)}",
            field="model",
        )
    for name in names:
        if name in TESTED:
            return name, True
    causal = [n for n in names if n.endswith(("ForCausalLM", "LMHeadModel"))]
    known = _bridge_architectures()
    for name in causal:
        if name in known:
            return name, False
    model_type = config.get("model_type")
    raise Unsupported(
        f"{where}: architecture {names[0]} (model_type {model_type!r}) is not supported; interpedia loads "
        f"{', '.join(f'{cls} ({family})' for cls, family in TESTED.items())}, and other causal language models "
        "that TransformerLens's TransformerBridge has an adapter for",
        field="model",
    )


def architecture_facts(hf_config: Any, architecture: str, tested: bool) -> dict[str, Any]:
    """What about this architecture changes activations, for the run record."""
    d_model = int(getattr(hf_config, "hidden_size", 0) or getattr(hf_config, "n_embd", 0) or 0)
    model_type = str(getattr(hf_config, "model_type", "") or "")
    gemma = model_type.startswith("gemma")
    facts: dict[str, Any] = {
        "architecture": architecture,
        "family": TESTED.get(architecture, architecture),
        "tested": tested,
        "checkpoint_dtype": str(getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None) or "")
        .replace("torch.", "")
        .strip()
        or None,
        # Gemma scales token embeddings by sqrt(d_model) inside the embedding layer, so hook_resid_pre of
        # block 0 (and hook_embed) already includes it, as in HookedTransformer and Hugging Face's hidden states.
        "embedding_scale": math.sqrt(d_model) if gemma and d_model else None,
        "normalization": "LayerNorm"
        if model_type == "gpt2"
        else "RMSNorm (multiplies by 1 + weight)"
        if gemma
        else "RMSNorm",
        "post_norms": bool(gemma and model_type != "gemma"),
        "qk_norm": model_type in ("qwen3", "gemma3", "gemma3_text"),
    }
    for key in _RECORDED:
        value = getattr(hf_config, key, None)
        if value is not None:
            facts[key] = value
    return facts


def tokenizer_facts(tokenizer: Any, generation_eos: list[int]) -> dict[str, Any]:
    """The tokenizer's conventions: its BOS, whether it adds it, its chat template, its end-of-turn tokens."""
    bos = tokenizer.bos_token_id
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return {
        "bos_token": tokenizer.bos_token,
        "bos_token_id": bos,
        "tokenizer_adds_bos": bool(bos is not None and probe and probe[0] == bos),
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "stop_token_ids": sorted(set(generation_eos) | ({tokenizer.eos_token_id} - {None})),
        "tokenizer_size": len(tokenizer),
    }
