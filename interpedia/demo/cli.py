"""``interpedia demo``: build the embedded demo (cached) and serve it, with live inference on."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from interpedia.config import Settings

log = logging.getLogger(__name__)


def enable_inference(factory: sessionmaker[Session]) -> list[str]:
    """Switch live inference on for every source whose dashboards ``interpedia generate`` wrote here, and for
    their models: the weights that run recorded are on this machine. Returns ``model/source`` ids."""
    from sqlalchemy import select

    from interpedia.db import transaction
    from interpedia.db.tables import GenerateRun, Model, Source

    enabled = []
    with transaction(factory) as session:
        source_ids = {sid for sid in session.scalars(select(GenerateRun.source_id)) if sid is not None}
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


@click.command("demo")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the demo when it is built.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--corpus",
    type=click.Path(exists=True, path_type=Path),
    help="Your own text: a .txt or .jsonl file (text field), or a directory of them.",
)
@click.option("--toy", is_flag=True, help="The same pipeline at test size (seconds).")
@click.option("--pretrained", is_flag=True, help="gpt2-small and SAELens gpt2-small-res-jb layer 0 (needs the hub).")
@click.option("--pretrained-model", default=None, hidden=True, help="Stand-in for gpt2-small (a local directory).")
@click.option("--pretrained-sae", default=None, hidden=True, help="Stand-in for the SAELens SAE (a local directory).")
def demo_cmd(
    serve: bool,
    host: str,
    port: int,
    corpus: Path | None,
    toy: bool,
    pretrained: bool,
    pretrained_model: str | None,
    pretrained_sae: str | None,
) -> None:
    """Build the demo: real text, a tiny model and SAE trained on CPU, dashboards for every feature."""
    from interpedia.config import get_settings
    from interpedia.db import make_engine, make_sessionmaker, migrate
    from interpedia.demo.builder import PRETRAINED_MODEL, PRETRAINED_SAE, DemoBuilder, DemoConfig

    settings = get_settings()
    migrate(settings.database_url_direct)
    factory = make_sessionmaker(make_engine(settings.database_url))
    corpus_arg = str(corpus.resolve()) if corpus else None
    cfg = DemoConfig.toy(corpus_arg) if toy else DemoConfig(corpus=corpus_arg)
    started = time.perf_counter()
    builder = DemoBuilder(cfg, settings.home, factory)
    if pretrained:
        report = builder.build_pretrained(pretrained_model or PRETRAINED_MODEL, pretrained_sae or PRETRAINED_SAE)
    else:
        report = builder.build()
    for step, stats in report.items():
        shown = {k: v for k, v in stats.items() if k != "config"}
        click.echo(f"  {step}: {shown}")
    sae = report.get("sae", {})
    if sae:
        click.echo(f"SAE: L0 {sae.get('l0', 0):.1f}, explained variance {sae.get('explained_variance', 0):.3f}")
    click.echo(f"demo ready in {time.perf_counter() - started:.0f}s (artefacts in {settings.home / 'demo'})")
    live = enable_inference(factory)
    click.echo(f"live inference on for {', '.join(live) or 'nothing (no generate run recorded)'}")
    if serve:
        import uvicorn

        from interpedia.web.app import create_app

        settings = serving_settings(settings)
        log.info("live inference uses %d torch threads", settings.inference_torch_threads)

        where = f"http://{host}:{port}/{cfg.model_id}/{cfg.source_id}" if not pretrained else f"http://{host}:{port}/"
        click.echo(f"serving on {where}")
        if live:
            base = f"http://{host}:{port}"
            click.echo(f"live pages: {base}/search, {base}/search-topk-by-token, {base}/{live[0].split('/')[0]}/steer")
        app = create_app(settings)
        if live:
            warm_inference(app, live)
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
