"""One graph from a prompt: tokenize (BOS first, token limit), attribute, prune, write Neuronpedia's JSON."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from interpedia.errors import Invalid
from interpedia.graph.attribution import AttributionSettings, attribute
from interpedia.graph.document import build_graph_document
from interpedia.graph.pruning import prune
from interpedia.graph.transcoders import TranscoderSet
from interpedia.store.graph_schema import validate_graph

log = logging.getLogger(__name__)
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class GraphRequest:
    """What to trace and how (defaults as Neuronpedia's graph server)."""

    prompt: str
    slug: str | None = None
    settings: AttributionSettings = field(default_factory=AttributionSettings)
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    token_limit: int = 64


def default_slug(prompt: str) -> str:
    """A slug from the prompt's first words and a short hash of it (``the-cat-sat-3f2a9c``)."""
    words = _SLUG_CHARS.sub("-", prompt.lower()).strip("-")[:40].strip("-") or "graph"
    return f"{words}-{hashlib.sha1(prompt.encode()).hexdigest()[:6]}"


def prompt_token_ids(tokenizer: Any, prompt: str, token_limit: int) -> list[int]:
    """The prompt's token ids with a special token first (the BOS, excluded from the graph), within the limit."""
    if not prompt.strip():
        raise Invalid("the prompt is empty", field="prompt")
    ids = [int(i) for i in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    special = [int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])]
    if not ids or ids[0] not in special:
        candidates = [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, *special]
        bos = next((int(c) for c in candidates if c is not None), None)
        if bos is None:
            raise Invalid("the tokenizer has no special token to put first (BOS)", field="prompt")
        ids = [bos, *ids]
    if len(ids) > token_limit:
        raise Invalid(
            f"the prompt is {len(ids)} tokens (BOS included); graphs take at most {token_limit}", field="prompt"
        )
    if len(ids) < 2:
        raise Invalid("the prompt has no tokens after the BOS", field="prompt")
    return ids


def generate_graph(
    model: Any,
    tokenizer: Any,
    transcoders: TranscoderSet,
    request: GraphRequest,
    *,
    scan: str,
    source_set: str | None,
    creator_name: str | None = None,
    source_urls: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """The graph JSON of ``request.prompt`` through ``model`` (a HookedTransformer) and its transcoders."""
    ids = prompt_token_ids(tokenizer, request.prompt, request.token_limit)
    n_ctx = int(model.cfg.n_ctx)
    if len(ids) > n_ctx and getattr(model.cfg, "positional_embedding_type", "standard") in ("standard", "shortformer"):
        raise Invalid(f"the prompt is {len(ids)} tokens; model {scan!r} reads at most {n_ctx}", field="prompt")
    graph = attribute(model, torch.tensor(ids), transcoders, request.settings, progress=progress)
    pruned = prune(graph, request.node_threshold, request.edge_threshold)
    doc = build_graph_document(
        graph,
        pruned,
        slug=request.slug or default_slug(request.prompt),
        scan=scan,
        prompt=request.prompt,
        prompt_tokens=[tokenizer.decode([t]) for t in ids],
        logit_strings=[tokenizer.decode([t]) for t in graph.logit_tokens],
        source_set=source_set,
        settings=request.settings,
        node_threshold=request.node_threshold,
        edge_threshold=request.edge_threshold,
        creator_name=creator_name,
        source_urls=source_urls,
        generator_version=_version(),
    )
    validate_graph(doc)
    log.info(
        "graph %s: %d active features, %d nodes and %d links kept",
        doc["metadata"]["slug"],
        int(graph.active_features.shape[0]),
        len(doc["nodes"]),
        len(doc["links"]),
    )
    return doc


def _version() -> str:
    try:
        return version("interpedia")
    except PackageNotFoundError:
        return "unknown"
