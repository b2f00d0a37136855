"""The demo's featured attribution graphs: a few prompts where the tiny model's next token is clear, traced
through the demo's transcoders and stored as featured graphs owned by the ``bot`` user."""

from __future__ import annotations

import gzip
import json
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from interpedia.config import Settings

log = logging.getLogger(__name__)

# Prompts on which the full-size demo model predicts its next token with some confidence (measured on a
# build: "," 0.72, "," 0.42, "." 0.61, " the" 0.38), half from each part of the corpus.
DEMO_GRAPH_PROMPTS = (
    "And the LORD spake unto Moses, saying",
    "And it came to pass",
    "import os",
    "Return the number of",
)


def trace_demo_graphs(
    settings: Settings, factory: sessionmaker[Session], model_id: str, source_set: str, prompts: tuple[str, ...]
) -> dict[str, Any]:
    """Trace each prompt through ``source_set`` and store it as a featured graph (replacing the bot's own
    graph of the same slug, so a rebuild updates them); returns what was made."""
    from interpedia.db import transaction
    from interpedia.graph.document import FEATURE_TYPE
    from interpedia.graph.tracer import GraphOptions, GraphTracer, graph_request
    from interpedia.store.graphs import GraphSave, graph_gz
    from interpedia.store.users import ensure_user

    with transaction(factory) as session:
        owner = ensure_user(session, "bot", bot=True)
        session.expunge(owner)
    tracer = GraphTracer(settings, factory, device="cpu")
    made = []
    for prompt in prompts:
        started = time.perf_counter()
        request = graph_request(prompt, None, GraphOptions(), settings.graph_token_limit)
        row = tracer.trace_and_store(
            model_id, source_set, request, GraphSave(creator=owner, featured=True, replace=True)
        )
        seconds = round(time.perf_counter() - started, 2)
        with factory() as session:
            nodes = json.loads(gzip.decompress(graph_gz(session, model_id, row.slug)))["nodes"]
        target = next((n["clerp"] for n in nodes if n.get("is_target_logit")), None)
        features = sum(1 for n in nodes if n["feature_type"] == FEATURE_TYPE)
        log.info("demo graph %s: %d nodes (%d features), %s, in %.1fs", row.slug, len(nodes), features, target, seconds)
        made.append(
            {
                "slug": row.slug,
                "prompt": prompt,
                "nodes": len(nodes),
                "feature_nodes": features,
                "links": row.n_links,
                "target": target,
                "seconds": seconds,
            }
        )
    return {"graphs": made}
