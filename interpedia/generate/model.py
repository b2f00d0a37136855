"""The language model every caller uses: loaded once (``model_loading``), run only as far as one hook.

``HookedModel`` is the one seam: ``interpedia generate``, live inference, steering and the graph engine load
through :meth:`HookedModel.load` and see the same thing: ``.model``, a HookedTransformer (TransformerLens
directories) or a TransformerBridge (Hugging Face models) with HookedTransformer's hook names; ``.tokenizer``,
untouched; and the facts the run record keeps. What differs between the two backends is handled here (the
BOS token, norm weights stored as offsets, incremental decoding), so callers do not branch on the backend.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from interpedia.errors import Invalid
from interpedia.generate.model_loading import TL_CONFIG, TL_WEIGHTS, TORCH_DTYPES, LoadedParts, load_parts

__all__ = ["TL_CONFIG", "TL_WEIGHTS", "TORCH_DTYPES", "HookedModel", "LogitSteps", "layer_of", "norm_weight"]

log = logging.getLogger(__name__)

# SAEDashboard's vocabulary clean-up (its runner's HTML_ANOMALIES): raw BPE pieces, made readable; plus
# SentencePiece's word-start marker and byte pieces (Gemma, Mistral).
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
    "▁": " ",
    "<0x0A>": "\n",
    "<0x09>": "\t",
}
_LAYER_RE = re.compile(r"blocks\.(\d+)\.")
_HOOK_SWITCHES = {
    "hook_mlp_in": "set_use_hook_mlp_in",
    "hook_attn_in": "set_use_attn_in",
    "_input": "set_use_split_qkv_input",
    "attn.hook_result": "set_use_attn_result",
}


class _Captured(Exception):
    """Raised from the hook to stop the forward pass once the activation is in hand."""


def layer_of(hook_name: str) -> int | None:
    """The block number in a TransformerLens hook name (``blocks.3.hook_resid_pre`` -> 3)."""
    match = _LAYER_RE.search(hook_name)
    return int(match.group(1)) if match else None


def norm_weight(model: Any, norm: Any) -> torch.Tensor | None:
    """What a LayerNorm/RMSNorm of ``model`` multiplies by, or None without a weight.

    Gemma stores RMSNorm weights as offsets from 1; HookedTransformer's conversion adds the 1 to the stored
    weight, a TransformerBridge keeps the offset and says so in ``cfg.rmsnorm_uses_offset``.
    """
    w = getattr(norm, "w", None) if norm is not None else None
    if not isinstance(w, torch.Tensor):
        return None
    return w + 1.0 if getattr(model.cfg, "rmsnorm_uses_offset", False) else w


class HookedModel:
    """A model with TransformerLens hooks and its tokenizer, run only as far as one hook."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        source: str,
        backend: str = "HookedTransformer",
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.source = source  # "local-dir", "hf-dir" or "hub"
        self.backend = backend  # "HookedTransformer" or "TransformerBridge"
        self.facts: dict[str, Any] = dict(facts or {})
        self.model.eval()
        self._hook_names: frozenset[str] | None = None
        self._enabled: set[str] = set()

    @classmethod
    def load(cls, spec: str, *, device: str = "cpu", dtype: str = "float32") -> HookedModel:
        """Load a TransformerLens directory, a Hugging Face model directory, or a hub id / TransformerLens name."""
        parts: LoadedParts = load_parts(spec, device=device, dtype=dtype)
        model = cls(
            parts.model, parts.tokenizer, name=parts.name, source=parts.source, backend=parts.backend, facts=parts.facts
        )
        log.info("loaded %s (%s, %s) from %s", model.name, model.facts.get("architecture"), model.backend, spec)
        return model

    # --- facts ---------------------------------------------------------------------------------

    @property
    def cfg(self) -> Any:
        """The TransformerLens config (n_layers, d_model, d_vocab, n_ctx, ...)."""
        return self.model.cfg

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return torch.device(self.model.W_U.device)

    @property
    def bos_token_id(self) -> int | None:
        """The token put first when a prompt gets a BOS: the tokenizer's, else its EOS.

        The EOS stands in when a tokenizer has no BOS (Qwen) because that is what TransformerLens, and so
        SAELens training with ``prepend_bos``, puts there.
        """
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return int(bos) if bos is not None else None

    @property
    def default_prepend_bos(self) -> bool:
        """Whether prompts start with BOS when nothing says otherwise: when the tokenizer has a BOS token."""
        return self.tokenizer.bos_token_id is not None

    @property
    def stop_token_ids(self) -> list[int]:
        """Tokens that end a completion: the EOS and the model's end-of-turn tokens (its generation config)."""
        ids = self.facts.get("stop_token_ids")
        if ids is None:
            eos = self.tokenizer.eos_token_id
            return [int(eos)] if eos is not None else []
        return [int(i) for i in ids]

    def special_token_ids(self) -> list[int]:
        """BOS, EOS and PAD ids (SAEDashboard's ``ignore_tokens``), the EOS-as-BOS included."""
        tok = self.tokenizer
        ids = {self.bos_token_id, tok.eos_token_id, tok.pad_token_id}
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

    def record(self) -> dict[str, Any]:
        """What the run record keeps about the model beyond its shape (``RunModel.extra``)."""
        return {"backend": self.backend, **self.facts, "bos_used_id": self.bos_token_id}

    # --- running ---------------------------------------------------------------------------------

    def has_hook(self, hook_name: str) -> bool:
        """Whether ``hook_name`` is a hook of this model."""
        if self._hook_names is None:
            # The bridge rebuilds hook_dict (aliases resolved) on every access; the names never change.
            self._hook_names = frozenset(self.model.hook_dict)
        return hook_name in self._hook_names

    def enable_hooks(self, hook_names: list[str]) -> None:
        """Refuse unknown hooks; switch on the optional ones (as SAEDashboard does for ``hook_mlp_in``)."""
        for hook_name in hook_names:
            if hook_name in self._enabled:
                continue
            if not self.has_hook(hook_name):
                raise Invalid(
                    f"hook {hook_name!r} is not a hook of model {self.name} (e.g. blocks.0.hook_resid_pre)",
                    field="hook",
                )
            for marker, method in _HOOK_SWITCHES.items():
                if marker in hook_name and hasattr(self.model, method):
                    getattr(self.model, method)(True)
            self._enabled.add(hook_name)

    @torch.inference_mode()
    def activations(self, tokens: torch.Tensor, hook_name: str) -> torch.Tensor:
        """Activations at ``hook_name`` for ``tokens`` [batch, pos], flattened to [batch * pos, d].

        The forward pass stops inside the hook, so no layer after it runs.
        """
        captured: list[torch.Tensor] = []

        def capture(act: torch.Tensor, hook: Any) -> None:
            captured.append(act)
            raise _Captured

        self.enable_hooks([hook_name])
        layer = layer_of(hook_name)
        stop = None if layer is None else layer + 1
        try:
            self.model.run_with_hooks(
                tokens.to(self.device), fwd_hooks=[(hook_name, capture)], stop_at_layer=stop, return_type=None
            )
        except _Captured:
            pass
        if not captured:
            raise Invalid(f"hook {hook_name!r} did not fire; is it a hook of this model?", field="hook")
        act = captured[0]
        return act.reshape(act.shape[0] * act.shape[1], -1)

    def logit_steps(self) -> LogitSteps:
        """Next-token logits of a growing sequence (for sampling), cached where the backend allows."""
        return LogitSteps(self)

    # --- weights ---------------------------------------------------------------------------------

    def unembed(self) -> torch.Tensor:
        """``W_U`` [d_model, d_vocab] as stored (no LayerNorm, no bias)."""
        return self.model.W_U  # type: ignore[no-any-return]

    def norm_weight(self, norm: Any) -> torch.Tensor | None:
        """The vector a LayerNorm/RMSNorm of this model multiplies by, or None (see :func:`norm_weight`)."""
        return norm_weight(self.model, norm)

    def ln_final_scale(self) -> torch.Tensor | None:
        """The final LayerNorm's weight, when the model has one."""
        return self.norm_weight(getattr(self.model, "ln_final", None))

    def to_resid_direction(self, directions: torch.Tensor, hook_name: str) -> torch.Tensor:
        """Decoder directions [n, d_in] as residual-stream directions [n, d_model] (SAEDashboard's rule)."""
        layer = layer_of(hook_name)
        if layer is not None and hook_name.endswith(("mlp.hook_pre", "mlp.hook_post")):
            return directions @ self.model.blocks[layer].mlp.W_out
        if layer is not None and hook_name.endswith("attn.hook_z"):
            return directions @ self.model.blocks[layer].attn.W_O.flatten(0, 1)
        return directions


class LogitSteps:
    """Feeds a growing token sequence and returns the last position's logits, one step at a time.

    A HookedTransformer keeps a key/value cache, so each step feeds only the new tokens (``fed`` counts the
    tokens already in the cache). A TransformerBridge recomputes the whole sequence each step: with
    transformers 5 its attention wrapper reads the cache under the old argument name (``past_key_values``,
    now ``cache``), so the cache stays empty and cached steps would be wrong (docs/models.md). Hooks active
    around the call apply either way; with recomputation they see every position on every step.
    """

    def __init__(self, hooked: HookedModel) -> None:
        self.hooked = hooked
        self.fed = 0
        self.cache: Any = None
        if hooked.backend == "HookedTransformer":
            try:
                from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
            except ImportError:  # other TransformerLens versions: recompute
                return
            cfg = hooked.model.cfg
            self.cache = TransformerLensKeyValueCache.init_cache(cfg, cfg.device, 1)

    @torch.inference_mode()
    def next_logits(self, feed: list[int]) -> torch.Tensor:
        """Logits [d_vocab] (float32, CPU) after ``feed``: the tokens after the first ``fed`` of the sequence."""
        tokens = torch.tensor([feed], dtype=torch.long, device=self.hooked.device)
        model = self.hooked.model
        if self.cache is not None:
            # The mask is given because TransformerLens builds one from a tokenizer, which this model lacks.
            logits = model(tokens, past_kv_cache=self.cache, attention_mask=torch.ones_like(tokens))
            self.fed += len(feed)
        else:
            logits = model(tokens)
        return logits[0, -1].float().cpu()  # type: ignore[no-any-return]
