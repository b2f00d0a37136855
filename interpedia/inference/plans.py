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
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.db.tables import Model, Source
from interpedia.errors import NotFound, Unavailable
from interpedia.generate.config import GenerateConfig
from interpedia.store.catalogue import get_model, get_source, get_source_set
from interpedia.store.runs import latest_run, sources_with_runs

_LAYER_PREFIX = re.compile(r"^(\d+)-")

_DEFAULTS = GenerateConfig(model="", sae="", dataset="")


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
