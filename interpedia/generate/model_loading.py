"""Loading a language model with TransformerLens hooks, from wherever a researcher has it.

- A TransformerLens directory (``tl_config.json`` + ``model.safetensors`` + tokenizer files, what
  ``interpedia demo`` trains): a ``HookedTransformer``, weights as stored.
- A Hugging Face model directory (``config.json`` + weights + tokenizer, what ``save_pretrained`` writes):
  TransformerLens 3's ``TransformerBridge`` over the Hugging Face module, in compatibility mode with no weight
  processing, so hooks have HookedTransformer's names (``blocks.N.hook_resid_pre``, ``blocks.N.attn.hook_z``,
  ...) and the activations are the Hugging Face model's own (docs/models.md has the measurements).
- Otherwise a Hugging Face hub id or a TransformerLens model name (``gpt2-small`` is resolved to its hub id),
  through the same bridge; this needs the hub (or a populated cache).

Every failure a user can fix (no such directory, an architecture that cannot load, no tokenizer, an
unreachable hub) is a :class:`~interpedia.errors.UserError` naming the path or the architecture.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interpedia.errors import Invalid, Unavailable, Unsupported, UserError
from interpedia.generate.architectures import (
    architecture_facts,
    check_architecture,
    read_hf_config,
    tokenizer_facts,
)

log = logging.getLogger(__name__)

TL_CONFIG = "tl_config.json"
TL_WEIGHTS = "model.safetensors"
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedParts:
    """A loaded model, its tokenizer and what the run record says about them."""

    model: Any  # a HookedTransformer or a TransformerBridge
    tokenizer: Any
    name: str
    source: str  # "local-dir", "hf-dir" or "hub"
    backend: str  # "HookedTransformer" or "TransformerBridge"
    facts: dict[str, Any] = field(default_factory=dict)


def _looks_like_path(spec: str) -> bool:
    """A spec that can only be a path (a hub id is ``name`` or ``org/name``)."""
    return spec.startswith(("/", "./", "../", "~", ".\\")) or spec.count("/") > 1 or spec in (".", "..")


def load_parts(spec: str, *, device: str = "cpu", dtype: str = "float32") -> LoadedParts:
    """Load ``spec``: a TransformerLens directory, a Hugging Face directory, or a hub id / TransformerLens name."""
    if dtype not in TORCH_DTYPES:
        raise Invalid(f"dtype must be one of {', '.join(TORCH_DTYPES)}, not {dtype!r}", field="dtype")
    path = Path(spec).expanduser()
    with warnings.catch_warnings():
        # TransformerLens 3 deprecates HookedTransformer (still what TransformerLens directories are) and warns
        # about its bridge's legacy hook names, which are the names SAELens configs use.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if path.is_dir():
            if (path / TL_CONFIG).exists():
                return _load_tl_dir(path, device=device, dtype=dtype)
            if (path / "config.json").exists():
                return _load_hf_dir(path, device=device, dtype=dtype)
            raise Invalid(
                f"{path} is a directory but not a model: it has neither config.json (a Hugging Face model "
                f"directory) nor {TL_CONFIG} (a TransformerLens directory)",
                field="model",
            )
        if path.exists():
            raise Invalid(f"{path} is a file; --model takes the model's directory", field="model")
        if _looks_like_path(spec):
            raise Invalid(f"no model directory at {spec}", field="model")
        return _load_hub(spec, device=device, dtype=dtype)


def _load_tl_dir(path: Path, *, device: str, dtype: str) -> LoadedParts:
    """A TransformerLens directory (the demo model): exactly as it has always loaded."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    kwargs = json.loads((path / TL_CONFIG).read_text())
    kwargs.update(device=device, dtype=TORCH_DTYPES[dtype])
    cfg = HookedTransformerConfig(**kwargs)
    model = HookedTransformer(cfg)  # no tokenizer: generation tokenizes itself (see tokens.py)
    state = load_file(str(path / TL_WEIGHTS), device="cpu")
    # Attention masks are buffers the model builds itself (TransformerLens 2 and 3 store them differently).
    state = {k: v for k, v in state.items() if not k.endswith((".mask", ".IGNORE"))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only non-persistent buffers (attention masks) may be missing; anything else is a wrong file.
    real_missing = [k for k in missing if not k.endswith((".mask", ".IGNORE"))]
    if real_missing or unexpected:
        raise Invalid(
            f"{path / TL_WEIGHTS} does not match {TL_CONFIG}: missing {real_missing[:5]}, unexpected {unexpected[:5]}",
            field="model",
        )
    tokenizer = _tokenizer(str(path), AutoTokenizer)
    facts = {
        "architecture": "HookedTransformer",
        "family": "TransformerLens",
        "tested": True,
        "normalization": cfg.normalization_type,
        "checkpoint_dtype": "float32",
        **tokenizer_facts(tokenizer, []),
    }
    name = str(kwargs.get("model_name") or path.name)
    return LoadedParts(model, tokenizer, name=name, source="local-dir", backend="HookedTransformer", facts=facts)


def _tokenizer(where: str, auto: Any) -> Any:
    try:
        return auto.from_pretrained(where)
    except Exception as exc:  # transformers raises OSError, ValueError or TypeError for missing or odd files
        raise Invalid(
            f"{where} has no tokenizer interpedia can load (save it beside the model with "
            f"tokenizer.save_pretrained): {type(exc).__name__}: {exc}",
            field="model",
        ) from None


def _load_hf_dir(path: Path, *, device: str, dtype: str) -> LoadedParts:
    """A Hugging Face model directory, through TransformerLens's bridge."""
    from transformers import AutoConfig, AutoTokenizer

    architecture, tested = check_architecture(read_hf_config(path), str(path))
    try:
        hf_config = AutoConfig.from_pretrained(str(path))
    except Exception as exc:
        raise Invalid(f"{path}/config.json cannot be read by transformers: {exc}", field="model") from None
    _check_bridge_reads(hf_config, architecture, str(path))
    tokenizer = _tokenizer(str(path), AutoTokenizer)
    try:
        bridge = _boot_bridge(str(path), tokenizer, device=device, dtype=dtype)
    except UserError:
        raise
    except Exception as exc:  # missing or mismatched weight files, out of memory, a broken config
        log.exception("could not load %s", path)
        raise Invalid(f"{path}: the {architecture} model could not be loaded: {type(exc).__name__}: {exc}") from None
    return _bridge_parts(bridge, tokenizer, hf_config, architecture, tested, name=path.name, source="hf-dir")


def _load_hub(spec: str, *, device: str, dtype: str) -> LoadedParts:
    """A hub id or a TransformerLens model name (needs the hub or its cache)."""
    from transformer_lens.loading_from_pretrained import get_official_model_name
    from transformers import AutoConfig, AutoTokenizer

    try:
        hub_id = get_official_model_name(spec)  # gpt2-small -> gpt2; hub ids are their own official names
    except ValueError:
        hub_id = spec
    try:
        hf_config = AutoConfig.from_pretrained(hub_id)
    except Exception as exc:  # offline, unknown repository, gated model
        raise Unavailable(
            f"no model directory at {spec}, and {hub_id} could not be loaded from the Hugging Face hub: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            field="model",
        ) from None
    architecture, tested = check_architecture(hf_config.to_dict(), hub_id)
    _check_bridge_reads(hf_config, architecture, hub_id)
    tokenizer = _tokenizer(hub_id, AutoTokenizer)
    try:
        bridge = _boot_bridge(hub_id, tokenizer, device=device, dtype=dtype)
    except Exception as exc:
        raise Unavailable(f"{hub_id} could not be loaded from the hub: {type(exc).__name__}: {exc}") from None
    return _bridge_parts(bridge, tokenizer, hf_config, architecture, tested, name=spec, source="hub")


def _check_bridge_reads(hf_config: Any, architecture: str, where: str) -> None:
    """Unsupported unless TransformerLens reads the config as the causal LM we checked.

    TransformerLens resolves the architecture itself (from ``architectures``, then ``model_type``); a
    multimodal resolution is refused before it can start, because loading one makes TransformerLens 3.9
    ``pip install torchvision`` into the running environment when the image processor does not load.
    """
    from transformer_lens.model_bridge.sources.transformers import determine_architecture_from_hf_config

    try:
        resolved = determine_architecture_from_hf_config(hf_config)
    except ValueError:
        resolved = None
    if resolved != architecture:
        raise Unsupported(
            f"{where}: TransformerLens reads this config as {resolved or 'no architecture it knows'}, "
            f"not {architecture}; interpedia loads text-only causal language models",
            field="model",
        )


def _boot_bridge(where: str, tokenizer: Any, *, device: str, dtype: str) -> Any:
    """The bridge in compatibility mode (HookedTransformer's hook names), weights as stored."""
    from transformer_lens.model_bridge import TransformerBridge

    # The bridge rewrites its tokenizer (a BOS where the tokenizer has none, ...): it gets a copy.
    bridge = TransformerBridge.boot_transformers(
        where, device=device, dtype=TORCH_DTYPES[dtype], tokenizer=copy.deepcopy(tokenizer)
    )
    # no_processing: no LayerNorm folding, no centring, like HookedTransformer.from_pretrained_no_processing,
    # so every hook reads what the Hugging Face model computes.
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    bridge.eval()
    return bridge


def _bridge_parts(
    bridge: Any, tokenizer: Any, hf_config: Any, architecture: str, tested: bool, *, name: str, source: str
) -> LoadedParts:
    if not hasattr(bridge, "blocks"):
        raise Invalid(f"{name}: {architecture} has no transformer blocks interpedia can hook", field="model")
    facts = architecture_facts(hf_config, architecture, tested)
    eos = getattr(getattr(bridge.original_model, "generation_config", None), "eos_token_id", None)
    ends = [int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None]
    facts.update(tokenizer_facts(tokenizer, ends))
    # The bridge runs the post-attention/post-MLP norms of Gemma 2 and 3 but does not say so in its config;
    # callers that reason about the block (the attribution graph engine) read this flag.
    bridge.cfg.use_normalization_before_and_after = bool(facts.get("post_norms"))
    if not tested:
        log.warning("%s is a %s, which interpedia does not test; loaded through TransformerBridge", name, architecture)
    return LoadedParts(bridge, tokenizer, name=name, source=source, backend="TransformerBridge", facts=facts)
