"""The inference service: resolves catalogue names to warm models and SAEs and runs requests on them.

One instance per app (``for_app``). Catalogue lookups are cached for ``INTERPEDIA_INFERENCE_CATALOGUE_TTL_S``
seconds so a warm request touches no database; every model call holds that model's lock.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch
from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.errors import Invalid, NotFound
from interpedia.inference import activations as acts
from interpedia.inference.options import FeatureRef, SteerSettings
from interpedia.inference.plans import ModelPlan, PlanCache, SaePlan
from interpedia.inference.registry import InferenceRegistry, LoadedModel, LoadedSource
from interpedia.inference.searches import MAX_SOURCE_PROMPTS
from interpedia.inference.steering import Direction, Generation, check_directions, generate_steps, render_chat

log = logging.getLogger(__name__)
MAX_COSSIM_RESULTS = 128

__all__ = ["FeatureRef", "InferenceService", "for_app"]


class InferenceService:
    """Live activations, top-k, steering, tokenize and decoder vectors over the catalogue's models."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], plans: PlanCache | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.plans = plans or PlanCache(settings, factory)
        if settings.inference_torch_threads > 0:
            torch.set_num_threads(settings.inference_torch_threads)
        self.registry = InferenceRegistry(
            max_models=settings.inference_max_models,
            max_saes=settings.inference_max_saes,
            device=settings.inference_device,
        )

    # --- resolution -----------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop cached catalogue lookups (after the catalogue changed)."""
        self.plans.forget()

    def _model_plan(self, model_id: str) -> ModelPlan:
        self.plans.require_model(model_id)
        return self.plans.model(model_id)

    def model(self, model_id: str) -> LoadedModel:
        """The warm model ``model_id``."""
        return self.registry.model(self._model_plan(model_id))

    def source(self, model_id: str, source_id: str) -> tuple[LoadedModel, LoadedSource]:
        """The warm model and SAE of ``model_id/source_id``."""
        model = self.model(model_id)
        return model, self.registry.source(self._sae_plan(model_id, source_id), model.plan.dtype)

    def _sae_plan(self, model_id: str, source_id: str) -> SaePlan:
        self.plans.require_source(model_id, source_id)
        return self.plans.sae(model_id, source_id)

    def weights_id(self, model_id: str, sae_sources: list[str] | None = None) -> list[str]:
        """What weights answer for this model and these SAE sources (part of result cache keys); loads nothing."""
        self.plans.require_model(model_id)
        for name in set(sae_sources or []):
            self.plans.require_source(model_id, name)
        return self.plans.weights_id(model_id, sae_sources)

    def _limit(self, model: LoadedModel) -> int:
        return acts.token_limit(model, self.settings.inference_token_limit)

    def _prompt(
        self,
        model: LoadedModel,
        source: LoadedSource | None,
        text: str,
        field: str = "prompt",
        limit: int | None = None,
    ) -> acts.Prompt:
        return acts.tokenize(
            model, text, prepend_bos=acts.prepend_bos_for(model, source), limit=limit or self._limit(model), field=field
        )

    # --- tokenize and activations ---------------------------------------------------------------

    def tokenize(self, model_id: str, text: str, prepend_bos: bool | None = None) -> dict[str, Any]:
        """Token ids and strings of ``text`` (BOS first unless ``prepend_bos`` is false)."""
        model = self.model(model_id)
        with model.lock:
            bos = acts.prepend_bos_for(model, None) if prepend_bos is None else prepend_bos and model.bos_id is not None
            prompt = acts.tokenize(
                model, text, prepend_bos=bos, limit=self.settings.inference_tokenize_limit, field="text"
            )
            return {
                "tokens": prompt.ids,
                "token_strings": model.token_strings(prompt.ids),
                "prepend_bos": prompt.bos_prepended,
            }

    def stored_vector(self, model_id: str, source: str, index: int) -> tuple[list[float], str] | None:
        """``(vector, hook)`` of a vector stored as a feature (``/api/vector/new``), else None."""
        stored = self.plans.stored_vector(model_id, source, index)
        if stored is not None:
            self.plans.require_source(model_id, source)
        return stored

    def activation_single(self, model_id: str, prompt: str, source: str, index: int) -> dict[str, Any]:
        """One feature's values on ``prompt``, as its dashboard was computed (a stored vector: dot products)."""
        stored = self.stored_vector(model_id, source, index)
        if stored is not None:
            return self.activation_vector(model_id, prompt, *stored)
        model, src = self.source(model_id, source)
        src.check_index(index)
        with model.lock:
            return acts.single_feature(model, src, self._prompt(model, src, prompt), index)

    def activation_vector(self, model_id: str, prompt: str, vector: list[float], hook: str) -> dict[str, Any]:
        """A vector's dot products with the activations at ``hook`` on ``prompt``."""
        model = self.model(model_id)
        with model.lock:
            return acts.single_vector(model, self._prompt(model, None, prompt), vector, hook)

    def topk_by_token(self, model_id: str, prompt: str, source: str, top_k: int, ignore_bos: bool) -> dict[str, Any]:
        """The top features at each token of ``prompt``."""
        if not 1 <= top_k <= self.settings.inference_max_top_k:
            raise Invalid(f"top_k must be 1 to {self.settings.inference_max_top_k}", field="top_k")
        model, src = self.source(model_id, source)
        with model.lock:
            return acts.topk_by_token(model, src, self._prompt(model, src, prompt), top_k, ignore_bos)

    def activation_source(self, model_id: str, prompts: list[str], source: str) -> dict[str, Any]:
        """Every positive activation of a source on each prompt (at most 4 prompts; a quarter of the limit each)."""
        if not prompts:
            raise Invalid("at least one prompt is required", field="prompts")
        if len(prompts) > MAX_SOURCE_PROMPTS:
            raise Invalid(f"at most {MAX_SOURCE_PROMPTS} prompts at once, not {len(prompts)}", field="prompts")
        model, src = self.source(model_id, source)
        limit = self._limit(model) if len(prompts) == 1 else max(1, self._limit(model) // 4)
        with model.lock:
            return {
                "results": [
                    acts.source_sparse(model, src, self._prompt(model, src, p, f"prompts[{n}]", limit))
                    for n, p in enumerate(prompts)
                ]
            }

    def activation_all(
        self,
        model_id: str,
        prompt: str,
        source_set: str,
        selected: list[str],
        sort_by: list[int],
        ignore_bos: bool,
        num_results: int,
    ) -> dict[str, Any]:
        """The top features across sources of a set on ``prompt``."""
        if not 1 <= num_results <= self.settings.inference_max_results:
            raise Invalid(f"num_results must be 1 to {self.settings.inference_max_results}", field="num_results")
        names = selected or self.plans.visible_set_sources(model_id, source_set)
        if not names:
            raise NotFound(f"source set {model_id}/{source_set} has no source with SAE weights", field="source_set")
        model = self.model(model_id)
        sources = []
        for name in dict.fromkeys(names):
            if name.split("-", 1)[-1].split("__")[0] != source_set:
                raise Invalid(f"source {name!r} is not in source set {source_set!r}", field="selected_sources")
            sources.append(self.source(model_id, name)[1])
        with model.lock:
            prompt_ = self._prompt(model, sources[0], prompt)
            return acts.all_sources(
                model, sources, prompt_, sort_by=sort_by, ignore_bos=ignore_bos, num_results=num_results
            )

    # --- steering -------------------------------------------------------------------------------

    def directions(self, model_id: str, features: list[FeatureRef]) -> list[Direction]:
        """Steering directions of features: stored vectors, given vectors, or SAE decoder rows."""
        out = []
        for n, f in enumerate(features):
            self._check_strength(f.strength, f"features[{n}].strength")
            stored = self.stored_vector(model_id, f.source, f.index)
            if stored is not None:
                out.append(Direction(stored[1], torch.tensor(stored[0], dtype=torch.float32), f.strength))
                continue
            _, src = self.source(model_id, f.source)
            src.check_index(f.index)
            if f.vector is not None:
                vector = torch.tensor(f.vector, dtype=torch.float32)
                if vector.shape[0] != src.d_out:
                    raise Invalid(
                        f"steering_vector has {vector.shape[0]} values; {f.source} has width {src.d_out}",
                        field=f"features[{n}].steering_vector",
                    )
            else:
                vector = src.decoder_rows([f.index])[0]
            # A transcoder's decoder direction lives at its output hook (the MLP output), not where it reads.
            out.append(Direction(src.hook_name_out, vector, f.strength))
        return out

    def vector_directions(self, vectors: list[tuple[list[float], float, str]]) -> list[Direction]:
        """Directions of raw ``(vector, strength, hook)`` triples."""
        for n, (_, strength, _) in enumerate(vectors):
            self._check_strength(strength, f"vectors[{n}].strength")
        return [Direction(hook, torch.tensor(vec, dtype=torch.float32), strength) for vec, strength, hook in vectors]

    def _check_strength(self, strength: float, field: str) -> None:
        limit = self.settings.steer_max_strength
        if not math.isfinite(strength) or abs(strength) > limit:
            raise Invalid(f"strength must be a finite number from -{limit:g} to {limit:g}, not {strength}", field=field)

    def _check_settings(self, model: LoadedModel, prompt_len: int, settings: SteerSettings) -> None:
        if not 1 <= settings.n_tokens <= self.settings.steer_max_tokens:
            raise Invalid(
                f"the number of tokens to generate must be 1 to {self.settings.steer_max_tokens}", field="n_tokens"
            )
        for name in ("temperature", "strength_multiplier", "freq_penalty"):
            if not math.isfinite(getattr(settings, name)):
                raise Invalid(f"{name} must be a finite number", field=name)
        if settings.temperature < 0:
            raise Invalid("temperature must not be negative", field="temperature")
        if model.bounded_by_ctx and prompt_len + settings.n_tokens > model.n_ctx:
            raise Invalid(
                f"the prompt ({prompt_len} tokens) plus {settings.n_tokens} new tokens exceed the model's "
                f"context of {model.n_ctx} tokens",
                field="n_tokens",
            )

    def steer_completion(
        self, model_id: str, prompt: str, directions: list[Direction], types: list[str], settings: SteerSettings
    ) -> dict[str, Any]:
        """``{outputs: [{type, output, logprobs?}]}``, one per requested type, in request order."""
        return _last(self.steer_completion_stream(model_id, prompt, directions, types, settings))

    def steer_completion_stream(
        self, model_id: str, prompt: str, directions: list[Direction], types: list[str], settings: SteerSettings
    ) -> Iterator[dict[str, Any]]:
        """:meth:`steer_completion` as it grows: the whole answer so far after every token (types not yet generated
        have an empty output). The request is checked now; the model runs as the chunks are read."""
        model = self.model(model_id)
        with model.lock:
            check_directions(model, directions, settings)
            ids = self._prompt(model, None, prompt).ids
            self._check_settings(model, len(ids), settings)

        def item(kind: str, gen: Generation) -> dict[str, Any]:
            out: dict[str, Any] = {"type": kind, "output": gen.text}
            if gen.logprobs is not None:
                out["logprobs"] = gen.logprobs
            return out

        def wrap(outputs: list[dict[str, Any]]) -> dict[str, Any]:
            return {"outputs": outputs}

        return self._chunks(model, ids, directions, types, settings, item, wrap, mask_special=False)

    def steer_chat(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        directions: list[Direction],
        types: list[str],
        settings: SteerSettings,
    ) -> dict[str, Any]:
        """``{input: {chat_template, raw}, outputs: [{chat_template, raw, type, logprobs?}]}``."""
        return _last(self.steer_chat_stream(model_id, messages, directions, types, settings))

    def steer_chat_stream(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        directions: list[Direction],
        types: list[str],
        settings: SteerSettings,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`steer_chat` as it grows (see :meth:`steer_completion_stream`)."""
        model = self.model(model_id)
        with model.lock:
            check_directions(model, directions, settings)
            raw = render_chat(model, messages)
            ids = acts.tokenize(model, raw, prepend_bos=False, limit=self._limit(model), field="prompt").ids
            self._check_settings(model, len(ids), settings)

        def item(kind: str, gen: Generation) -> dict[str, Any]:
            out: dict[str, Any] = {
                "chat_template": [*messages, {"role": "assistant", "content": gen.text}],
                "raw": raw + gen.text,
                "type": kind,
            }
            if gen.logprobs is not None:
                out["logprobs"] = gen.logprobs
            return out

        def wrap(outputs: list[dict[str, Any]]) -> dict[str, Any]:
            return {"input": {"chat_template": messages, "raw": raw}, "outputs": outputs}

        return self._chunks(model, ids, directions, types, settings, item, wrap, mask_special=True)

    @staticmethod
    def _chunks(
        model: LoadedModel,
        ids: list[int],
        directions: list[Direction],
        types: list[str],
        settings: SteerSettings,
        item: Callable[[str, Generation], dict[str, Any]],
        wrap: Callable[[list[dict[str, Any]]], dict[str, Any]],
        *,
        mask_special: bool,
    ) -> Iterator[dict[str, Any]]:
        """Generate each type in turn under the model's lock, yielding the whole answer after every token."""
        empty = Generation([], "", [] if settings.n_logprobs > 0 else None)
        outputs = {kind: item(kind, empty) for kind in types}
        with model.lock:
            for kind in types:
                steered = directions if kind == "STEERED" else []
                produced = False
                for gen in generate_steps(model, ids, steered, settings, mask_special=mask_special):
                    outputs[kind] = item(kind, gen)
                    produced = True
                    yield wrap([outputs[k] for k in types])
                if not produced:  # stopped at once: say so, so every type is answered
                    yield wrap([outputs[k] for k in types])

    def steer_features(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> dict[str, Any]:
        """:meth:`steer_completion` with the directions of ``features`` (the web's workflows call this)."""
        directions = self.directions(model_id, features) if "STEERED" in types else []
        return self.steer_completion(model_id, prompt, directions, types, settings)

    def steer_chat_features(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> dict[str, Any]:
        """:meth:`steer_chat` with the directions of ``features``."""
        directions = self.directions(model_id, features) if "STEERED" in types else []
        return self.steer_chat(model_id, messages, directions, types, settings)

    def steer_features_stream(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> Iterator[dict[str, Any]]:
        """:meth:`steer_completion_stream` with the directions of ``features``."""
        directions = self.directions(model_id, features) if "STEERED" in types else []
        return self.steer_completion_stream(model_id, prompt, directions, types, settings)

    def steer_chat_features_stream(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`steer_chat_stream` with the directions of ``features``."""
        directions = self.directions(model_id, features) if "STEERED" in types else []
        return self.steer_chat_stream(model_id, messages, directions, types, settings)

    # --- decoder vectors ------------------------------------------------------------------------

    def sae_vector(self, model_id: str, source: str, index: int) -> dict[str, Any]:
        """The feature's trained decoder row and the hook it writes to."""
        model, src = self.source(model_id, source)
        src.check_index(index)
        with model.lock:
            return {
                "vector": [float(v) for v in src.decoder_rows([index])[0].tolist()],
                "hookName": src.hook_name_out,
            }

    def topk_by_decoder_cossim(
        self, model_id: str, source: str, num_results: int, index: int | None = None, vector: list[float] | None = None
    ) -> dict[str, Any]:
        """Features of the source whose decoder rows point most nearly along a feature's (or a vector)."""
        if (index is None) == (vector is None):
            raise Invalid("give exactly one of feature and vector", field="feature")
        if num_results < 1:
            raise Invalid("num_results must be at least 1", field="num_results")
        model, src = self.source(model_id, source)
        with model.lock:
            unit = src.unit_decoder()
            if index is not None:
                query = unit[src.check_index(index)]
            else:
                query = torch.tensor(vector, dtype=torch.float32)
                if query.shape[0] != src.d_out or not bool(torch.isfinite(query).all()) or float(query.norm()) == 0:
                    raise Invalid(f"vector must be {src.d_out} finite values, not all zero", field="vector")
                query = query / query.norm()
            sims = unit @ query
            if index is not None:
                sims[index] = -math.inf  # the feature itself is not its own neighbour
            k = min(num_results, MAX_COSSIM_RESULTS, src.d_sae - (1 if index is not None else 0))
            top = torch.topk(sims, k=max(k, 0))
        out: dict[str, Any] = {
            "topk_decoder_cossim_features": [
                {"feature": {"model": model_id, "source": source, "index": int(i)}, "cosine_similarity": float(v)}
                for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ]
        }
        if index is not None:
            out["feature"] = {"model": model_id, "source": source, "index": index}
        return out


def _last(chunks: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The final chunk of a stream (the whole answer)."""
    last = deque(chunks, maxlen=1)
    return last[0]


_lock = threading.Lock()


def for_app(state: Any) -> InferenceService:
    """The app's service (``app.state``), created on first use so an app without models never imports torch."""
    with _lock:
        service = getattr(state, "inference", None)
        if service is None:
            service = InferenceService(state.settings, state.sessionmaker)
            state.inference = service
        return service  # type: ignore[no-any-return]
