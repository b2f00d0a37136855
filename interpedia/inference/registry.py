"""Models and SAEs loaded on first use and kept warm, a bounded number of each, least recently used out.

Loading is guarded per key, so two requests for a cold model load it once. Every model call runs under
the model's own lock (``LoadedModel.lock``): requests are serialized per model, so hooks, RNG state and the
tokenizer are never shared by two requests at a time, and their results cannot mix.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch

from interpedia.errors import Invalid, Unavailable, UserError
from interpedia.generate.dfa import DfaCalculator, dfa_layer
from interpedia.generate.model import HookedModel, layer_of
from interpedia.generate.sae import LoadedSae
from interpedia.inference.plans import ModelPlan, SaePlan

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


class _Captured(Exception):
    """Raised from the last capture hook to stop the forward pass."""


_RESIDUAL_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def _residual_stop(hook_name: str, n_layers: int) -> int | None:
    """``stop_at_layer`` whose returned residual is the hook's activation (resid_pre/post hooks), else None."""
    match = _RESIDUAL_RE.match(hook_name)
    if match is None:
        return None
    layer = int(match.group(1))
    stop = layer if match.group(2) == "pre" else layer + 1
    # Stopping at n_layers returns the logits on a TransformerBridge (the final residual on a HookedTransformer)
    return stop if stop < n_layers else None


class LoadedModel:
    """A warm model: weights, tokenizer, vocabulary strings and the lock its calls run under."""

    def __init__(self, plan: ModelPlan, hooked: HookedModel) -> None:
        self.plan = plan
        self.model_id = plan.model_id
        self.hooked = hooked
        self.tokenizer: Any = hooked.tokenizer
        self.lock = threading.Lock()
        self.vocab = hooked.vocab_strings()
        self.special_ids = frozenset(int(i) for i in (getattr(self.tokenizer, "all_special_ids", None) or []))
        # The BOS a prompt gets when it gets one (the EOS for a tokenizer without one, as TransformerLens does),
        # and whether prompts get one when no source says
        self.bos_id: int | None = hooked.bos_token_id
        self.default_prepend_bos = hooked.default_prepend_bos
        eos = self.tokenizer.eos_token_id
        self.eos_id: int | None = int(eos) if eos is not None else None
        self.stop_ids = frozenset(hooked.stop_token_ids)  # EOS and the end-of-turn tokens of instruct models
        cfg = hooked.cfg
        self.n_ctx = int(cfg.n_ctx)
        # Learned absolute positions cap the length; rotary models can run longer.
        self.bounded_by_ctx = getattr(cfg, "positional_embedding_type", "standard") in ("standard", "shortformer")
        self.d_vocab = int(cfg.d_vocab)

    @property
    def model(self) -> Any:
        """The HookedTransformer or TransformerBridge."""
        return self.hooked.model

    def token_strings(self, ids: list[int]) -> list[str]:
        """Display strings of token ids (the generator's: raw BPE pieces made readable)."""
        n = len(self.vocab)
        return [self.vocab[i] if 0 <= i < n else "<|outofrange|>" for i in ids]

    def decode(self, ids: list[int]) -> str:
        """Text of token ids."""
        return str(self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (what the generator tokenizes with)."""
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    @torch.inference_mode()
    def hook_activations(self, ids: list[int], hook_names: list[str]) -> dict[str, torch.Tensor]:
        """Activations [pos, d] at each hook for one sequence; the forward pass stops after the last one."""
        wanted = set(hook_names)
        unknown = sorted(h for h in wanted if not self.hooked.has_hook(h))
        if unknown:
            raise Invalid(f"hook {unknown[0]!r} is not a hook of model {self.model_id}", field="hook")
        self.hooked.enable_hooks(sorted(wanted))
        captured: dict[str, torch.Tensor] = {}

        def capture_as(name: str) -> Callable[[torch.Tensor, Any], None]:
            # Keyed by the name asked for: on a TransformerBridge, hook.name is the canonical name of an alias
            # (blocks.N.hook_resid_post fires as blocks.N.hook_out).
            def capture(act: torch.Tensor, hook: Any) -> None:
                captured[name] = act
                if len(captured) == len(wanted):
                    raise _Captured

            return capture

        tokens = torch.tensor([ids], dtype=torch.long, device=self.hooked.device)
        if len(wanted) == 1:
            (name,) = wanted
            stop = _residual_stop(name, self.model.cfg.n_layers)
            if stop is not None:
                # The residual stream at a block boundary is what the forward pass returns when it stops
                # there: the same tensor the hook sees, without the cost of adding and removing hooks.
                act = self.model(tokens, stop_at_layer=stop)
                return {name: act[0].reshape(act.shape[1], -1)}
        layers = [layer_of(h) for h in hook_names]
        stop = None if any(x is None for x in layers) else max(x for x in layers if x is not None) + 1
        try:
            self.model.run_with_hooks(
                tokens, fwd_hooks=[(h, capture_as(h)) for h in wanted], stop_at_layer=stop, return_type=None
            )
        except _Captured:
            pass
        missing = wanted - captured.keys()
        if missing:
            raise Invalid(f"hook {sorted(missing)[0]!r} did not fire on model {self.model_id}", field="hook")
        return {name: act[0].reshape(act.shape[1], -1) for name, act in captured.items()}


class LoadedSource:
    """A warm SAE of one source, encoding exactly as ``interpedia generate`` did for its dashboards."""

    def __init__(self, plan: SaePlan, loaded: LoadedSae, raw_decoder_norms: torch.Tensor) -> None:
        self.plan = plan
        self.model_id = plan.model_id
        self.source_id = plan.source_id
        self.loaded = loaded
        self.hook_name = plan.hook_name or loaded.hook_name
        # Where the decoder writes: a transcoder's output hook; an SAE's own hook.
        self.hook_name_out = loaded.hook_name_out or self.hook_name
        self.d_sae = loaded.d_sae
        self.d_in = loaded.d_in
        self.d_out = loaded.d_out
        self.encode_sparse = loaded.encoder()
        # fold_W_dec_norm makes decoder rows unit length; steering and sae-vector want the trained rows back.
        folded_rows = loaded.folded and loaded.post_scale is None
        self._row_scale = raw_decoder_norms if folded_rows else None
        self.dfa_layer = dfa_layer(loaded, self.hook_name)  # an attention hook_z SAE: DFA is defined
        self._dfa: DfaCalculator | None = None

    def dfa(self, model: LoadedModel) -> DfaCalculator | None:
        """The source's DFA calculator on ``model`` (None unless it reads an attention layer's ``hook_z``)."""
        if self.dfa_layer is None:
            return None
        if self._dfa is None or self._dfa.model is not model.hooked:
            self._dfa = DfaCalculator(model.hooked, self.loaded, self.dfa_layer)
        return self._dfa

    def check_index(self, index: int) -> int:
        """``index`` when it is a feature of this SAE, else Invalid."""
        if not 0 <= index < self.d_sae:
            raise Invalid(
                f"feature index {index} is out of range for {self.model_id}/{self.source_id} ({self.d_sae} features)",
                field="index",
            )
        return index

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, ignore: torch.Tensor | None) -> torch.Tensor:
        """Dense activations [pos, d_sae] from hook activations [pos, d_in]; ``ignore`` [pos] rows are 0."""
        x = x.to(self.loaded.sae.W_enc.device, self.loaded.sae.W_enc.dtype)
        sparse = self.encode_sparse(x, ignore)
        dense = torch.zeros(sparse.n_tokens, self.d_sae, dtype=torch.float32)
        dense[sparse.tok.cpu(), sparse.feat.cpu()] = sparse.val.float().cpu()
        return dense

    @torch.inference_mode()
    def decoder_rows(self, indices: list[int]) -> torch.Tensor:
        """The trained decoder rows [n, d_out] (float32), as Neuronpedia steers with them."""
        idx = torch.tensor(indices, dtype=torch.long, device=self.loaded.sae.W_dec.device)
        rows = self.loaded.sae.W_dec.detach()[idx].float()
        if self._row_scale is not None:
            rows = rows * self._row_scale[idx.cpu()].to(rows.device)[:, None]
        return rows.cpu()

    def unit_decoder(self) -> torch.Tensor:
        """Unit-norm decoder directions [d_sae, d_out] (float32)."""
        return self.loaded.decoder_directions().cpu()


class _Lru(Generic[K, V]):
    """A bounded, thread-safe map that loads missing values once per key."""

    def __init__(self, capacity: int, what: str) -> None:
        self.capacity = max(1, capacity)
        self.what = what
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[K, threading.Lock] = {}

    def get(self, key: K, load: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = load()  # outside the map lock: loading one key never blocks reading another
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    old, _ = self._items.popitem(last=False)
                    log.info("inference: unloaded %s %s (keeping %d warm)", self.what, old, self.capacity)
                self._loading.pop(key, None)
            return value

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._items)


class InferenceRegistry:
    """The warm models and SAEs of this process."""

    def __init__(self, *, max_models: int, max_saes: int, device: str) -> None:
        self.device = device
        self._models: _Lru[ModelPlan, LoadedModel] = _Lru(max_models, "model")
        self._saes: _Lru[tuple[SaePlan, str], LoadedSource] = _Lru(max_saes, "SAE")

    def model(self, plan: ModelPlan) -> LoadedModel:
        """The loaded model of a plan (loaded now when cold)."""
        return self._models.get(plan, lambda: self._load_model(plan))

    def source(self, plan: SaePlan, dtype: str) -> LoadedSource:
        """The loaded SAE of a plan (loaded now when cold)."""
        return self._saes.get((plan, dtype), lambda: self._load_sae(plan, dtype))

    def warm(self) -> dict[str, list[str]]:
        """What is loaded: model ids and ``model/source`` ids."""
        return {
            "models": [p.model_id for p in self._models.keys()],
            "sources": [f"{p.model_id}/{p.source_id}" for p, _ in self._saes.keys()],
        }

    def _load_model(self, plan: ModelPlan) -> LoadedModel:
        log.info("inference: loading model %s from %s", plan.model_id, plan.spec)
        try:
            hooked = HookedModel.load(plan.spec, device=self.device, dtype=plan.dtype)
        except UserError as exc:  # a missing directory, an unsupported architecture: its own message
            raise Unavailable(f"model {plan.model_id!r} could not be loaded: {exc.message}", field="model") from None
        except Exception as exc:  # a missing file or an unreachable hub: the request gets a 503, not a crash
            log.exception("inference: could not load model %s", plan.model_id)
            raise Unavailable(
                f"model {plan.model_id!r} could not be loaded from {plan.spec!r}: {type(exc).__name__}: {exc}",
                field="model",
            ) from None
        return LoadedModel(plan, hooked)

    def _load_sae(self, plan: SaePlan, dtype: str) -> LoadedSource:
        log.info("inference: loading SAE %s/%s from %s", plan.model_id, plan.source_id, plan.spec)
        try:
            raw = LoadedSae.load(plan.spec, device=self.device, dtype=dtype, fold=False)
            norms = raw.sae.W_dec.detach().norm(dim=-1).float().cpu()
            loaded = LoadedSae(raw.sae, spec=plan.spec, fold=plan.fold_decoder_norm)
        except UserError as exc:
            raise Unavailable(
                f"SAE of {plan.model_id}/{plan.source_id} could not be loaded: {exc.message}", field="source"
            ) from None
        except Exception as exc:
            log.exception("inference: could not load SAE %s/%s", plan.model_id, plan.source_id)
            raise Unavailable(
                f"SAE of {plan.model_id}/{plan.source_id} could not be loaded from {plan.spec!r}: "
                f"{type(exc).__name__}: {exc}",
                field="source",
            ) from None
        return LoadedSource(plan, loaded, norms)
