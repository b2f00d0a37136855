"""``interpedia graph generate``: an attribution graph of a prompt, written as Neuronpedia's graph JSON.

The model's weights are found as live inference finds them (``INTERPEDIA_INFERENCE_MODELS``, the latest
``interpedia generate`` run, or the model's ``tlens_id``); the transcoders are the sources of the source set,
one per layer, each a SAELens transcoder directory or a circuit-tracer ``.safetensors`` file (its
``weights_path``). The graph JSON goes to ``--out``; storing it in the database comes with the graph API.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from interpedia.cli.common import factory_for
from interpedia.config import get_settings
from interpedia.errors import UserError


@click.group("graph")
def graph_group() -> None:
    """Attribution graphs (circuit tracing) over transcoders."""


@graph_group.command("generate")
@click.option("--model", "model_id", required=True, help="Model id, e.g. tiny-demo.")
@click.option("--source-set", required=True, help="Transcoder source set, e.g. tc-demo (sources 0-tc-demo, ...).")
@click.option("--prompt", required=True, help="The prompt to trace (a BOS is put first).")
@click.option("--slug", help="Graph slug (default: from the prompt).")
@click.option("--max-n-logits", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--desired-logit-prob", default=0.95, show_default=True, type=click.FloatRange(0, 1))
@click.option("--node-threshold", default=0.8, show_default=True, type=click.FloatRange(0, 1))
@click.option("--edge-threshold", default=0.98, show_default=True, type=click.FloatRange(0, 1))
@click.option("--max-feature-nodes", default=10000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Targets per pass.")
@click.option("--device", help="cpu or cuda (default INTERPEDIA_INFERENCE_DEVICE).")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the JSON (default ./SLUG.json).")
def generate_graph_cmd(
    model_id: str,
    source_set: str,
    prompt: str,
    slug: str | None,
    max_n_logits: int,
    desired_logit_prob: float,
    node_threshold: float,
    edge_threshold: float,
    max_feature_nodes: int,
    batch_size: int,
    device: str | None,
    out: Path | None,
) -> None:
    """Compute the attribution graph of a prompt and write Neuronpedia's graph JSON."""
    from interpedia.db import transaction
    from interpedia.generate.model import HookedModel
    from interpedia.graph.attribution import AttributionSettings
    from interpedia.graph.loading import load_transcoder_set
    from interpedia.graph.service import GraphRequest, default_slug, generate_graph
    from interpedia.inference.plans import plan_model, plan_transcoder_set

    settings = get_settings()
    request = GraphRequest(
        prompt=prompt,
        slug=slug or default_slug(prompt),
        settings=AttributionSettings(
            max_n_logits=max_n_logits,
            desired_logit_prob=desired_logit_prob,
            batch_size=batch_size,
            max_feature_nodes=max_feature_nodes,
        ),
        node_threshold=node_threshold,
        edge_threshold=edge_threshold,
        token_limit=settings.graph_token_limit,
    )
    try:
        with transaction(factory_for(settings)) as session:
            plan = plan_model(session, settings, model_id)
            paths = plan_transcoder_set(session, model_id, source_set)
        transcoders = load_transcoder_set(paths)
        if settings.inference_torch_threads > 0:
            import torch

            torch.set_num_threads(settings.inference_torch_threads)
        try:
            model = HookedModel.load(plan.spec, device=device or settings.inference_device, dtype="float32")
        except Exception as exc:  # a missing directory, a bad file, no hub: say which model and where
            raise click.ClickException(
                f"model {model_id!r} could not be loaded from {plan.spec!r}: {type(exc).__name__}: {exc}"
            ) from None
        doc = generate_graph(model.model, model.tokenizer, transcoders, request, scan=model_id, source_set=source_set)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    target = out or Path(f"{request.slug}.json")
    _write_atomically(target, doc)
    click.echo(f"graph {request.slug}: {len(doc['nodes'])} nodes, {len(doc['links'])} links -> {target}")


def _write_atomically(path: Path, doc: dict[str, Any]) -> None:
    """Write the JSON next to ``path`` and rename it into place: a failure leaves nothing half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
