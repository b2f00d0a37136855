"""Whether live inference can run for a model or source, answered from the catalogue without loading torch.

The pages ask before they offer a live box (the feature page's test text, search, steering): a model or
source switched off in the catalogue, or one whose weights cannot be found here, gets a disabled box with a
sentence saying why instead of a 500 when the reader presses the button; a search or steering form refuses to
run on such a model (``require_model``). Where an inference host serves the model (``hosts``, the web's router),
the weights need not be on this machine: only the catalogue's flags and records are checked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.db.tables import Model, Source
from interpedia.errors import NotFound, Unavailable, UserError
from interpedia.inference.plans import inference_sources, plan_model, plan_sae
from interpedia.store.access import may_see
from interpedia.store.catalogue import get_model, get_source_set, list_models, list_source_sets

log = logging.getLogger(__name__)

__all__ = [
    "HostCheck",
    "has_chat_template",
    "inference_availability",
    "model_availability",
    "require_model",
    "servable_models",
    "servable_source_sets",
]


class HostCheck(Protocol):
    """Whether an inference host answers a model's (and a source's) live inference."""

    def serves(self, model_id: str, source: str | None = None) -> bool: ...


def _local_path_missing(spec: str) -> bool:
    """True when ``spec`` names a local path (absolute or relative) that does not exist."""
    return spec.startswith(("/", "./", "../", "~")) and not Path(spec).expanduser().exists()


def model_availability(
    session: Session, settings: Settings, model: Model, hosts: HostCheck | None = None
) -> dict[str, Any]:
    """``{available, reason, spec}`` for the model's live inference (``reason`` is None when available)."""
    if not model.inference_enabled:
        return {
            "available": False,
            "spec": None,
            "reason": f"Live inference is switched off for model {model.id} (its inference_enabled flag "
            "is false in the catalogue).",
        }
    try:
        plan = plan_model(session, settings, model.id)
    except UserError as exc:
        return {"available": False, "spec": None, "reason": f"Live inference is not available: {exc}"}
    if _local_path_missing(plan.spec) and not (hosts is not None and hosts.serves(model.id)):
        log.warning("the weights of model %s were not found at %s", model.id, plan.spec)
        return {
            "available": False,
            "spec": plan.spec,
            # Visitors read this: the path on the server goes to the log only.
            "reason": f"Live inference is not available: the weights of model {model.id} were not found on "
            "this server (its log names the path).",
        }
    return {"available": True, "spec": plan.spec, "reason": None}


def inference_availability(
    session: Session, settings: Settings, model: Model, source: Source, hosts: HostCheck | None = None
) -> dict[str, Any]:
    """``{available, reason}`` for live activations of one source (its model's weights and its SAE's)."""
    hosted = hosts is not None and hosts.serves(model.id, source.name)
    status = model_availability(session, settings, model, hosts)
    if not status["available"]:
        return {"available": False, "reason": status["reason"]}
    if not source.inference_enabled:
        return {
            "available": False,
            "reason": f"Live inference is switched off for {model.id}/{source.name} (its inference_enabled "
            "flag is false in the catalogue).",
        }
    try:
        plan = plan_sae(session, model.id, source.name)
    except UserError as exc:
        return {"available": False, "reason": f"Live inference is not available: {exc}"}
    if "/" in plan.spec and _local_path_missing(plan.spec) and not hosted:
        log.warning("the SAE weights of %s/%s were not found at %s", model.id, source.name, plan.spec)
        return {
            "available": False,
            "reason": f"Live inference is not available: the SAE weights of {model.id}/{source.name} were not "
            "found on this server (its log names the path).",
        }
    return {"available": True, "reason": None}


def has_chat_template(spec: str | None, model: Model) -> bool:
    """Whether the model's tokenizer has a chat template: read from a local model directory's tokenizer files,
    else the catalogue's ``instruct`` flag (a hub name is not fetched just to render a page)."""
    if spec:
        folder = Path(spec).expanduser()
        if folder.is_dir():
            if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
                return True
            config = folder / "tokenizer_config.json"
            if config.is_file():
                try:
                    return bool(json.loads(config.read_text()).get("chat_template"))
                except (OSError, ValueError):
                    log.warning("unreadable tokenizer config %s", config)
            return False
    return bool(model.instruct)


def require_model(
    session: Session,
    settings: Settings,
    model_id: str,
    source_set: str | None = None,
    hosts: HostCheck | None = None,
) -> Model:
    """The model, when the viewer may see it (and ``source_set`` in it) and live inference can run on it; else
    NotFound or Unavailable."""
    model = get_model(session, model_id)
    if source_set is not None:
        try:
            row = get_source_set(session, model.id, source_set)
        except NotFound:
            row = None
        if row is None or not may_see((model.visibility, row.visibility), (model.creator_id, row.creator_id)):
            raise NotFound(f"source set {source_set!r} is not a source set of model {model.id!r}", "sourceSet")
    status = model_availability(session, settings, model, hosts)
    if not status["available"]:
        raise Unavailable(status["reason"], "modelId")
    return model


def servable_models(session: Session, settings: Settings) -> list[str]:
    """Ids of the models the viewer may see whose live inference can run here."""
    return [m.id for m in list_models(session) if model_availability(session, settings, m)["available"]]


def servable_source_sets(session: Session, model_id: str) -> list[str]:
    """Names of the model's source sets (that the viewer may see) with at least one source that has SAE weights."""
    return [s.name for s in list_source_sets(session, model_id) if inference_sources(session, model_id, s.name)]
