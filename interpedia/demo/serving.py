"""Serving the demo: live inference switched on for what it generated, warmed up, with CPU left for the web server."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from interpedia.config import Settings

log = logging.getLogger(__name__)


def enable_inference(factory: sessionmaker[Session]) -> list[str]:
    """Switch live inference on for every source whose dashboards ``interpedia generate`` wrote here, and for
    their models: the weights that run recorded are on this machine. Returns ``model/source`` ids."""
    from sqlalchemy import select

    from interpedia.db import transaction
    from interpedia.db.tables import Model, Source
    from interpedia.store.runs import sources_with_runs

    enabled = []
    with transaction(factory) as session:
        source_ids = sources_with_runs(session)
        for source in session.scalars(select(Source).where(Source.id.in_(source_ids))):
            model = session.get(Model, source.model_id)
            if model is None:
                continue
            model.inference_enabled = True
            source.inference_enabled = True
            enabled.append(f"{model.id}/{source.name}")
    return sorted(enabled)


def warm_inference(app: Any, enabled: list[str]) -> threading.Thread:
    """Load the demo's model and SAEs in the background once the server is up, so the first live request
    does not wait for torch and the weights to load. Failures are logged: the pages still say why."""
    from interpedia.inference.service import for_app

    def load() -> None:
        started = time.perf_counter()
        try:
            service = for_app(app.state)
            for pair in enabled:
                model_id, source_id = pair.split("/", 1)
                service.source(model_id, source_id)
        except Exception:  # a demo that cannot load its weights still serves its dashboards
            log.exception("live inference could not warm up")
            return
        log.info("live inference warm in %.1fs (%s)", time.perf_counter() - started, ", ".join(enabled))

    thread = threading.Thread(target=load, name="inference-warmup", daemon=True)
    thread.start()
    return thread


def serving_settings(settings: Settings) -> Settings:
    """The demo's settings for serving: when torch threads are not configured, half the cores (at most 4), so
    one live-inference request leaves CPU for the web server and other requests."""
    if settings.inference_torch_threads > 0:
        return settings
    threads = max(1, min(4, (os.cpu_count() or 2) // 2))
    update: dict[str, Any] = {"inference_torch_threads": threads}
    return settings.model_copy(update=update)
