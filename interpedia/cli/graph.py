"""``interpedia graph generate``: an attribution graph of a prompt, written as Neuronpedia's graph JSON.

The model's weights are found as live inference finds them (``INTERPEDIA_INFERENCE_MODELS``, the latest
``interpedia generate`` run, or the model's ``tlens_id``); the transcoders are the sources of the source set,
one per layer, each a SAELens transcoder directory or a circuit-tracer ``.safetensors`` file (its
``weights_path``). The graph JSON goes to ``--out`` and, with ``--into-db``, into the database.
"""

from __future__ import annotations

import gzip
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
@click.option("--into-db", is_flag=True, help="Store the graph in the database (its page: /MODEL/graph?slug=SLUG).")
@click.option("--featured", is_flag=True, help="With --into-db: list it first on the model's graph pages.")
@click.option("--creator", default="bot", show_default=True, help="With --into-db: the user who owns the graph.")
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
    into_db: bool,
    featured: bool,
    creator: str,
) -> None:
    """Compute the attribution graph of a prompt: Neuronpedia's graph JSON to a file and/or the database."""
    from interpedia.db import transaction
    from interpedia.graph.tracer import GraphOptions, GraphTracer, graph_request
    from interpedia.store.graphs import GraphSave, graph_gz
    from interpedia.store.users import ensure_user

    settings = get_settings()
    options = GraphOptions(
        max_n_logits=max_n_logits,
        desired_logit_prob=desired_logit_prob,
        node_threshold=node_threshold,
        edge_threshold=edge_threshold,
        max_feature_nodes=max_feature_nodes,
        batch_size=batch_size,
    )
    factory = factory_for(settings)
    tracer = GraphTracer(settings, factory, device=device)
    try:
        request = graph_request(prompt, slug, options, settings.graph_token_limit)
        if into_db:
            with transaction(factory) as session:
                owner = ensure_user(session, creator, bot=creator == "bot")
                session.expunge(owner)
            row = tracer.trace_and_store(
                model_id, source_set, request, GraphSave(creator=owner, featured=featured), progress=True
            )
            click.echo(
                f"graph {row.slug}: {row.n_nodes} nodes, {row.n_links} links -> /{row.model_id}/graph?slug={row.slug}"
            )
            if out is None:
                return
            with factory() as session:
                doc = json.loads(gzip.decompress(graph_gz(session, row.model_id, row.slug)))
        else:
            doc = tracer.trace(model_id, source_set, request, progress=True)
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
