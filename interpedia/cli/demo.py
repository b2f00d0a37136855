"""``interpedia demo``: build the embedded demo (cached) and serve it, with live inference on."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from interpedia.cli.common import factory_for
from interpedia.config import get_settings

log = logging.getLogger(__name__)


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
    from interpedia.demo.builder import PRETRAINED_MODEL, PRETRAINED_SAE, DemoBuilder, DemoConfig
    from interpedia.demo.serving import enable_inference, serving_settings, warm_inference
    from interpedia.demo.summary import describe_dictionaries, summarize_dictionaries

    settings = get_settings()
    factory = factory_for(settings)
    corpus_arg = str(corpus.resolve()) if corpus else None
    cfg = DemoConfig.toy(corpus_arg) if toy else DemoConfig(corpus=corpus_arg)
    started = time.perf_counter()
    builder = DemoBuilder(cfg, settings, factory)
    if pretrained:
        report = builder.build_pretrained(pretrained_model or PRETRAINED_MODEL, pretrained_sae or PRETRAINED_SAE)
    else:
        report = builder.build()
    for step, stats in report.items():
        shown = {k: v for k, v in stats.items() if k != "config"}
        click.echo(f"  {step}: {shown}")
    for line in describe_dictionaries(summarize_dictionaries(report, cfg.sae.d_sae, cfg.transcoder.d_transcoder)):
        click.echo(line)
    for graph in (report.get("graphs") or {}).get("graphs", []):
        click.echo(f"graph {graph['slug']}: {graph['prompt']!r} -> {graph['target']}, {graph['nodes']} nodes")
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
        if report.get("graphs"):
            click.echo(f"attribution graphs: http://{host}:{port}/{cfg.model_id}/graph")
        app = create_app(settings)
        if live:
            warm_inference(app, live)
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
