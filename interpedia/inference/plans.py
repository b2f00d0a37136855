"""Where a model's and an SAE's weights are, and how inference must read them, from the catalogue.

A model is found, in order: ``INTERPEDIA_INFERENCE_MODELS`` (model id -> spec), the latest
``interpedia generate`` run recorded for the model (``generate_runs``: the model it read), then the model's
``tlens_id`` (a local directory, or a TransformerLens pretrained name when the hub is reachable).

An SAE is its source's ``weights_path`` (or ``saelens_release``/``saelens_sae_id``). When ``interpedia
generate`` wrote the source's dashboards, inference copies that run's settings, so a value returned live is
the value the dashboard shows: the same decoder-norm folding, the same BOS prepending, and the same tokens
excluded (zeroed). Without a run the generator's defaults apply.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.db.tables import Model, Source
from interpedia.errors import NotFound, Unavailable
from interpedia.generate.config import GenerateConfig
from interpedia.store.access import may_see, viewing
from interpedia.store.catalogue import Chain, get_model, get_source, get_source_set, model_chain, source_chain
from interpedia.store.runs import latest_run, sources_with_runs
from interpedia.store.vectors import get_vector_feature

_LAYER_PREFIX = re.compile(r"^(\d+)-")

_DEFAULTS = GenerateConfig(model="", sae="", dataset="")
T = TypeVar("T")


@dataclass(frozen=True)
class ModelPlan:
    """How to load one model."""

    model_id: str
    spec: str  # a local TransformerLens/HF directory or a pretrained name
    dtype: str
    origin: str  # "settings", "generate-run" or "tlens-id"


@dataclass(frozen=True)
class SaePlan:
    """How to load one SAE and read activations from it the way its dashboards were made."""

    model_id: str
    source_id: str
    spec: str  # an SAELens directory or "release/sae_id"
    hook_name: str | None  # None: the SAE's own metadata
    fold_decoder_norm: bool
    prepend_bos: bool | None  # None: prepend when the tokenizer has a BOS token
    excluded_token_ids: tuple[int, ...] | None  # None: the tokenizer's special tokens (generate's default)
    origin: str  # "generate-run" or "catalogue"


def plan_model(session: Session, settings: Settings, model_id: str) -> ModelPlan:
    """The model's plan, or NotFound (unknown id) / Unavailable (no weights anywhere)."""
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"model {model_id!r} not found", field="model")
    dtype = settings.inference_dtype
    if model_id in settings.inference_models:
        return ModelPlan(model_id, settings.inference_models[model_id], dtype, "settings")
    run = latest_run(session, model_id=model_id)
    spec = run.model_spec if run is not None else ""
    if spec and (Path(spec).exists() or not spec.startswith(("/", "."))):
        return ModelPlan(model_id, spec, dtype, "generate-run")
    if model.tlens_id:
        return ModelPlan(model_id, model.tlens_id, dtype, "tlens-id")
    raise Unavailable(
        f"model {model_id!r} has no weights this server can load: set INTERPEDIA_INFERENCE_MODELS="
        f'\'{{"{model_id}": "/path/to/model"}}\' or generate its dashboards with interpedia generate',
        field="model",
    )


def plan_sae(session: Session, model_id: str, source_id: str) -> SaePlan:
    """The SAE plan of a source, or NotFound / Unavailable (no weights recorded)."""
    source: Source = get_source(session, model_id, source_id)
    run = latest_run(session, source_pk=source.id)
    spec = source.weights_path
    if not spec and source.saelens_release and source.saelens_sae_id:
        spec = f"{source.saelens_release}/{source.saelens_sae_id}"
    if not spec and run is not None:
        spec = run.sae_spec
    if not spec:
        raise Unavailable(
            f"source {model_id}/{source_id} has no SAE weights for inference (its catalogue row has "
            "no weights_path or SAELens release)",
            field="source",
        )
    if run is not None:
        tokens = run.tokens
        excluded = tokens.excluded_token_ids if tokens.bos_excluded_from_statistics else []
        prepend = tokens.prepend_bos
        return SaePlan(
            model_id,
            source_id,
            spec,
            hook_name=run.sae.hook_name or source.hook_name,
            fold_decoder_norm=bool(run.config.get("fold_decoder_norm", _DEFAULTS.fold_decoder_norm)),
            # An old run.json may lack both: None reads "prepend when the tokenizer has a BOS", generate's rule.
            prepend_bos=prepend if prepend is not None else run.config.get("prepend_bos"),
            excluded_token_ids=tuple(int(i) for i in excluded or []),
            origin="generate-run",
        )
    meta = (source.saelens_config or {}).get("metadata") or {}
    prepend = meta.get("prepend_bos")
    return SaePlan(
        model_id,
        source_id,
        spec,
        hook_name=source.hook_name,
        fold_decoder_norm=_DEFAULTS.fold_decoder_norm,
        prepend_bos=bool(prepend) if isinstance(prepend, bool) else None,
        excluded_token_ids=None,
        origin="catalogue",
    )


def inference_sources(session: Session, model_id: str, set_name: str) -> list[Source]:
    """Sources of a set that have SAE weights, by layer then name."""
    rows = list(session.scalars(select(Source).where(Source.model_id == model_id, Source.set_name == set_name)))
    generated = sources_with_runs(session, [s.id for s in rows])
    usable = [s for s in rows if s.weights_path or (s.saelens_release and s.saelens_sae_id) or s.id in generated]
    return sorted(usable, key=lambda s: (s.layer_num if s.layer_num is not None else 1 << 30, s.name))


def plan_transcoder_set(session: Session, model_id: str, set_name: str) -> dict[int, str]:
    """``{layer: weights path}`` of a transcoder set (a source set, one source per layer: a SAELens transcoder
    directory or a circuit-tracer ``.safetensors`` file each), or NotFound/Unavailable naming what is missing."""
    get_model(session, model_id)
    get_source_set(session, model_id, set_name)
    sources = inference_sources(session, model_id, set_name)
    if not sources:
        raise Unavailable(f"source set {model_id}/{set_name} has no sources with weights", field="sourceSet")
    paths: dict[int, str] = {}
    for source in sources:
        layer = source.layer_num
        if layer is None and (m := _LAYER_PREFIX.match(source.name)):
            layer = int(m.group(1))
        if layer is None:
            raise Unavailable(f"source {model_id}/{source.name} has no layer number", field="sourceSet")
        if layer in paths:
            raise Unavailable(f"source set {model_id}/{set_name} has two sources for layer {layer}", field="sourceSet")
        paths[layer] = plan_sae(session, model_id, source.name).spec
    return paths


class PlanCache:
    """Catalogue lookups (plans, stored vectors, a set's sources), each kept ``ttl_s`` seconds so that a warm
    request touches no database. Loads no torch: the web's workflows and the inference service share it."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory
        self._values: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def cached(self, key: tuple[str, ...], make: Callable[[Session], T]) -> T:
        """``make(session)``, or its value of less than ``ttl_s`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]  # type: ignore[no-any-return]
        # Shared by every viewer: filled as nobody (all rows visible); callers check each viewer (``require_*``).
        with self.factory() as session, viewing(None):
            value = make(session)
        with self._lock:
            self._values[key] = (now + self.settings.inference_catalogue_ttl_s, value)
        return value

    def forget(self) -> None:
        """Drop every cached lookup (after the catalogue changed)."""
        with self._lock:
            self._values.clear()

    def model(self, model_id: str) -> ModelPlan:
        """The model's plan."""
        return self.cached(("model", model_id), lambda s: plan_model(s, self.settings, model_id))

    def sae(self, model_id: str, source_id: str) -> SaePlan:
        """The SAE plan of a source."""
        return self.cached(("sae", model_id, source_id), lambda s: plan_sae(s, model_id, source_id))

    def weights_id(self, model_id: str, sae_sources: list[str] | None = None) -> list[str]:
        """What weights answer for this model and these SAE sources (part of result cache keys); loads nothing."""
        plan = self.model(model_id)
        out = [f"model:{plan.spec}:{plan.dtype}"]
        for name in sorted(set(sae_sources or [])):
            sae = self.sae(model_id, name)
            out.append(f"sae:{name}:{sae.spec}:{sae.fold_decoder_norm}:{sae.prepend_bos}")
        return out

    def stored_vector(self, model_id: str, source: str, index: int) -> tuple[list[float], str] | None:
        """``(vector, hook)`` of a vector stored as a feature (``/api/vector/new``), else None."""

        def load(session: Session) -> tuple[list[float], str] | None:
            feature = get_vector_feature(session, model_id, source, index)
            return None if feature is None else (list(feature.vector or []), str(feature.hook_name or ""))

        return self.cached(("vector", model_id, source, str(index)), load)

    def set_sources(self, model_id: str, source_set: str) -> list[str]:
        """The names of a source set's sources with SAE weights (NotFound for an unknown set)."""

        def load(session: Session) -> list[str]:
            get_source_set(session, model_id, source_set)
            return [s.name for s in inference_sources(session, model_id, source_set)]

        return self.cached(("set", model_id, source_set), load)

    def require_model(self, model_id: str) -> None:
        """NotFound unless the request's viewer may open the model (PRIVATE to someone else: as if absent)."""
        chain = self.cached(("model-chain", model_id), lambda s: model_chain(s, model_id))
        if chain is None or not may_see(*chain):
            raise NotFound(f"model {model_id!r} not found", field="model")

    def source_visible(self, model_id: str, source_id: str) -> bool:
        """Whether the request's viewer may open the source (its model, set and itself)."""
        chain = self.cached(("source-chain", model_id, source_id), lambda s: _source_chain(s, model_id, source_id))
        return chain is not None and may_see(*chain)

    def require_source(self, model_id: str, source_id: str) -> None:
        """NotFound unless the request's viewer may open the source (its model, set and itself)."""
        self.require_model(model_id)
        if not self.source_visible(model_id, source_id):
            raise NotFound(f"source {model_id}/{source_id} not found", field="source")

    def visible_set_sources(self, model_id: str, source_set: str) -> list[str]:
        """:meth:`set_sources` that the request's viewer may open (NotFound when it may open none of them)."""
        in_set = self.set_sources(model_id, source_set)
        names = [n for n in in_set if self.source_visible(model_id, n)]
        if in_set and not names:
            raise NotFound(f"source set {model_id}/{source_set} not found", field="source_set")
        return names


def _source_chain(session: Session, model_id: str, source_id: str) -> Chain | None:
    row = session.scalar(select(Source).where(Source.model_id == model_id, Source.name == source_id))
    return None if row is None else source_chain(session, row)
