"""The graph workflow: find a model and its transcoder set in the catalogue, keep them warm, trace a prompt,
and store the graph.

Used by ``interpedia graph generate`` and ``POST /api/graph/generate``. One graph is computed at a time per
process (as Neuronpedia's graph server, which answers "busy" to a second request): a graph already uses
every core, and two would only share them while doubling the memory. The last model and transcoder set stay
loaded, so a second graph of the same set costs only the attribution.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.db.engine import transaction
from interpedia.db.graphs import GraphMetadata
from interpedia.db.tables import User
from interpedia.errors import Conflict, Unavailable
from interpedia.graph.attribution import AttributionSettings
from interpedia.graph.loading import load_transcoder_set
from interpedia.graph.service import GraphRequest, default_slug, generate_graph
from interpedia.graph.transcoders import TranscoderSet
from interpedia.inference.plans import plan_model, plan_transcoder_set
from interpedia.store.graphs import GraphSave, check_slug, graph_source_set, save_graph, slug_taken

if TYPE_CHECKING:
    from interpedia.inference.routing import InferenceRouter

log = logging.getLogger(__name__)

__all__ = ["GraphOptions", "GraphTracer", "graph_body", "graph_request"]


@dataclass(frozen=True)
class GraphOptions:
    """The engine's settings as a request gives them (defaults as Neuronpedia's graph server)."""

    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    max_feature_nodes: int = 10000
    batch_size: int = 48


def graph_request(prompt: str, slug: str | None, options: GraphOptions, token_limit: int) -> GraphRequest:
    """The engine's request for a prompt (a slug made from the prompt when none is given)."""
    return GraphRequest(
        prompt=prompt,
        slug=check_slug(slug) if slug else default_slug(prompt),
        settings=AttributionSettings(
            max_n_logits=options.max_n_logits,
            desired_logit_prob=options.desired_logit_prob,
            batch_size=options.batch_size,
            max_feature_nodes=options.max_feature_nodes,
        ),
        node_threshold=options.node_threshold,
        edge_threshold=options.edge_threshold,
        token_limit=token_limit,
    )


def graph_body(model_id: str, source_set: str, request: GraphRequest) -> dict[str, Any]:
    """The body of a graph host's ``/v1/graph/generate`` for ``request`` (the host applies its own token limit)."""
    return {
        "model_id": model_id,
        "source_set": source_set,
        "prompt": request.prompt,
        "slug": request.slug,
        "max_n_logits": request.settings.max_n_logits,
        "desired_logit_prob": request.settings.desired_logit_prob,
        "node_threshold": request.node_threshold,
        "edge_threshold": request.edge_threshold,
        "max_feature_nodes": request.settings.max_feature_nodes,
        "batch_size": request.settings.batch_size,
    }


class GraphTracer:
    """Traces prompts through a model and a transcoder set of the catalogue, one graph at a time.

    With a ``router``, :meth:`trace_and_store` asks the graph host the host map names for the model and transcoder
    set, when there is one; :meth:`trace` always computes here."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        device: str | None = None,
        router: InferenceRouter | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.device = device or settings.inference_device
        self.router = router
        self._lock = threading.Lock()
        self._model: tuple[str, Any] | None = None  # (weights spec, HookedModel)
        self._transcoders: tuple[tuple[tuple[int, str], ...], TranscoderSet] | None = None

    def _load(self, model_id: str, source_set: str) -> tuple[Any, TranscoderSet]:
        from interpedia.generate.model import HookedModel

        with self.factory() as session:
            plan = plan_model(session, self.settings, model_id)
            paths = plan_transcoder_set(session, model_id, source_set)
        key = tuple(sorted(paths.items()))
        if self._transcoders is None or self._transcoders[0] != key:
            self._transcoders = None  # free the old set before loading the new one
            self._transcoders = (key, load_transcoder_set(paths))
        if self._model is None or self._model[0] != plan.spec:
            self._model = None
            try:
                hooked = HookedModel.load(plan.spec, device=self.device, dtype="float32")
            except Exception as exc:  # a missing directory, a bad file, no hub: say which model and where
                raise Unavailable(
                    f"model {model_id!r} could not be loaded from {plan.spec!r}: {type(exc).__name__}: {exc}",
                    field="modelId",
                ) from None
            self._model = (plan.spec, hooked)
        return self._model[1], self._transcoders[1]

    def trace(
        self, model_id: str, source_set: str, request: GraphRequest, *, wait: bool = True, progress: bool = False
    ) -> dict[str, Any]:
        """The graph JSON of ``request`` (Unavailable "busy" when another graph is running and ``wait`` is off)."""
        if not self._lock.acquire(blocking=wait):
            raise Unavailable("another graph is being computed on this server; try again in a minute")
        try:
            if self.settings.inference_torch_threads > 0:
                import torch

                torch.set_num_threads(self.settings.inference_torch_threads)
            started = time.perf_counter()
            model, transcoders = self._load(model_id, source_set)
            doc = generate_graph(
                model.model,
                model.tokenizer,
                transcoders,
                request,
                scan=model_id,
                source_set=source_set,
                progress=progress,
            )
            log.info("graph %s/%s in %.1fs", model_id, request.slug, time.perf_counter() - started)
            return doc
        finally:
            self._lock.release()

    def trace_and_store(
        self,
        model_id: str,
        source_set: str | None,
        request: GraphRequest,
        how: GraphSave,
        *,
        wait: bool = True,
        progress: bool = False,
    ) -> GraphMetadata:
        """Trace ``request`` through ``source_set`` (None: the model's only transcoder set) and store its graph.

        The slug is checked free first, so that no graph is computed only to be refused."""
        with self.factory() as session:
            source_set = graph_source_set(session, model_id, source_set)
            if slug_taken(session, model_id, request.slug or "") and not how.replace:
                raise Conflict(f"graph {model_id}/{request.slug} already exists: choose another slug", field="slug")
        doc = None
        if self.router is not None:  # a graph host mapped for the model and set computes it
            doc = self.router.remote_graph(model_id, source_set, graph_body(model_id, source_set, request))
        if doc is None:
            doc = self.trace(model_id, source_set, request, wait=wait, progress=progress)
        with transaction(self.factory) as session:
            creator = session.get(User, how.creator.id) if how.creator is not None else None
            row = save_graph(session, doc, replace(how, creator=creator))
            session.expunge(row)
        return row
