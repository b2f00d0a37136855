"""The language model side of generation: load a TransformerLens model and run it up to one hook.

A model is a local directory (``tl_config.json`` + ``model.safetensors`` + tokenizer files), a Hugging Face
model directory (``config.json`` + weights, an architecture TransformerLens converts), or a TransformerLens
pretrained name (needs the hub). Weights are used as stored (no LayerNorm folding, no centring), like
SAEDashboard's ``from_pretrained_no_processing``.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

TL_CONFIG = "tl_config.json"
TL_WEIGHTS = "model.safetensors"
# SAEDashboard's vocabulary clean-up (its runner's HTML_ANOMALIES): raw BPE pieces, made readable.
VOCAB_REPLACEMENTS = {
    "âĢĶ": "—",
    "âĢĵ": "–",
    "âĢľ": "“",
    "âĢĿ": "”",
    "âĢĺ": "‘",
    "âĢĻ": "’",
    "âĢĭ": " ",
    "Ġ": " ",
    "Ċ": "\n",
    "ĉ": "\t",
}
_LAYER_RE = re.compile(r"blocks\.(\d+)\.")
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _Captured(Exception):
    """Raised from the hook to stop the forward pass once the activation is in hand."""


def layer_of(hook_name: str) -> int | None:
    """The block number in a TransformerLens hook name (``blocks.3.hook_resid_pre`` -> 3)."""
    match = _LAYER_RE.search(hook_name)
    return int(match.group(1)) if match else None


class HookedModel:
    """A ``HookedTransformer`` with its tokenizer, run only as far as one hook."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.source = source  # "local-dir", "hf-dir" or "pretrained"
        self.model.eval()

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, spec: str, *, device: str = "cpu", dtype: str = "float32") -> HookedModel:
        """Load from a local TransformerLens directory, a Hugging Face directory or a pretrained name."""
        path = Path(spec)
        with warnings.catch_warnings():
            # TransformerLens 3 deprecates HookedTransformer in favour of its bridge; it is still the API here.
            warnings.simplefilter("ignore", DeprecationWarning)
            if (path / TL_CONFIG).exists():
                return cls._load_local(path, device=device, dtype=dtype)
            if (path / "config.json").exists():
                return cls._load_hf_dir(path, device=device, dtype=dtype)
            return cls._load_pretrained(spec, device=device, dtype=dtype)

    @classmethod
    def _load_local(cls, path: Path, *, device: str, dtype: str) -> HookedModel:
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
            raise ValueError(
                f"{path / TL_WEIGHTS} does not match {TL_CONFIG}: missing {real_missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        return cls(model, tokenizer, name=str(kwargs.get("model_name") or path.name), source="local-dir")

    @classmethod
    def _load_hf_dir(cls, path: Path, *, device: str, dtype: str) -> HookedModel:
        """A Hugging Face model directory, converted by TransformerLens (which accepts paths here)."""
        from transformer_lens import HookedTransformer
        from transformer_lens import loading_from_pretrained as loading
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = TORCH_DTYPES[dtype]
        cfg = loading.get_pretrained_model_config(str(path), device=device, dtype=torch_dtype, fold_ln=False)
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
        state = loading.get_pretrained_state_dict(str(path), cfg, hf_model=hf_model, dtype=torch_dtype)
        model = HookedTransformer(cfg)
        model.load_and_process_state_dict(
            state,
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
        return cls(model, AutoTokenizer.from_pretrained(str(path)), name=path.name, source="hf-dir")

    @classmethod
    def _load_pretrained(cls, spec: str, *, device: str, dtype: str) -> HookedModel:
        """A TransformerLens pretrained name (needs the hub or a populated cache)."""
        from transformer_lens import HookedTransformer

        model = HookedTransformer.from_pretrained_no_processing(spec, device=device, dtype=TORCH_DTYPES[dtype])
        return cls(model, model.tokenizer, name=spec, source="pretrained")

    # --- facts ---------------------------------------------------------------------------------

    @property
    def cfg(self) -> Any:
        """The HookedTransformerConfig."""
        return self.model.cfg

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.model.W_U.device

    def special_token_ids(self) -> list[int]:
        """BOS, EOS and PAD ids (SAEDashboard's ``ignore_tokens``)."""
        tok = self.tokenizer
        ids = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
        return sorted(i for i in ids if i is not None)

    def vocab_strings(self) -> list[str]:
        """One display string per token id up to ``d_vocab`` (raw pieces, as SAEDashboard writes them)."""
        d_vocab = int(self.cfg.d_vocab)
        pieces = self.tokenizer.convert_ids_to_tokens(list(range(min(d_vocab, len(self.tokenizer)))))
        out = []
        for piece in pieces:
            text = piece if isinstance(piece, str) else "<|outofrange|>"
            for raw, clean in VOCAB_REPLACEMENTS.items():
                text = text.replace(raw, clean)
            out.append(text)
        out.extend("<|outofrange|>" for _ in range(d_vocab - len(out)))
        return out

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries the numbers depend on."""
        import transformer_lens
        import transformers

        return {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
        }

    # --- running ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def activations(self, tokens: torch.Tensor, hook_name: str) -> torch.Tensor:
        """Activations at ``hook_name`` for ``tokens`` [batch, pos], flattened to [batch * pos, d].

        The forward pass stops inside the hook, so no layer after it runs.
        """
        captured: list[torch.Tensor] = []

        def capture(act: torch.Tensor, hook: Any) -> None:
            captured.append(act)
            raise _Captured

        self._enable_hook(hook_name)
        layer = layer_of(hook_name)
        stop = None if layer is None else layer + 1
        try:
            self.model.run_with_hooks(
                tokens.to(self.device), fwd_hooks=[(hook_name, capture)], stop_at_layer=stop, return_type=None
            )
        except _Captured:
            pass
        if not captured:
            raise ValueError(f"hook {hook_name!r} did not fire; is it a hook of this model?")
        act = captured[0]
        return act.reshape(act.shape[0] * act.shape[1], -1)

    def _enable_hook(self, hook_name: str) -> None:
        """Refuse unknown hooks; switch on the optional ones (as SAEDashboard does for ``hook_mlp_in``)."""
        if hook_name not in self.model.hook_dict:
            raise ValueError(f"hook {hook_name!r} is not a hook of this model (e.g. blocks.0.hook_resid_pre)")
        switches = {
            "hook_mlp_in": "set_use_hook_mlp_in",
            "hook_attn_in": "set_use_attn_in",
            "_input": "set_use_split_qkv_input",
            "attn.hook_result": "set_use_attn_result",
        }
        for marker, method in switches.items():
            if marker in hook_name and hasattr(self.model, method):
                getattr(self.model, method)(True)

    def unembed(self) -> torch.Tensor:
        """``W_U`` [d_model, d_vocab] as stored (no LayerNorm, no bias)."""
        return self.model.W_U

    def ln_final_scale(self) -> torch.Tensor | None:
        """The final LayerNorm's weight, when the model has one."""
        ln = getattr(self.model, "ln_final", None)
        w = getattr(ln, "w", None)
        return w if isinstance(w, torch.Tensor) else None

    def to_resid_direction(self, directions: torch.Tensor, hook_name: str) -> torch.Tensor:
        """Decoder directions [n, d_in] as residual-stream directions [n, d_model] (SAEDashboard's rule)."""
        layer = layer_of(hook_name)
        if layer is not None and hook_name.endswith(("mlp.hook_pre", "mlp.hook_post")):
            return directions @ self.model.blocks[layer].mlp.W_out
        if layer is not None and hook_name.endswith("attn.hook_z"):
            return directions @ self.model.blocks[layer].attn.W_O.flatten(0, 1)
        return directions
