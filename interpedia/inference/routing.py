"""Live inference for the web: sent to the inference host the host map names for the model and sources, or run
in-process when none is mapped.

As Neuronpedia's webapp picks a server of ``InferenceHostSource`` for a source, :class:`InferenceRouter` picks a
host of the map (``interpedia hosts add``; read from the database every ``INTERPEDIA_INFERENCE_CATALOGUE_TTL_S``
seconds) that serves the model and every source a request needs, at random among those that answered last time.
A host that cannot be reached is marked down and the request goes to the next one (or the same one again, after a
short pause), ``INTERPEDIA_INFERENCE_HOST_RETRIES`` times; then the answer is a 503 naming the host(s). The mark
is only an order: a host back up answers the very next request sent to it. Nothing is mapped for the model (or
no host serves those sources): the in-process service answers, created on first use (torch is imported then,
not before, so a web server whose inference is all remote never loads it).

The routes and workflows see one interface (:class:`Inference`), whichever answers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.errors import Unavailable
from interpedia.inference.options import FeatureRef, SteerSettings
from interpedia.inference.plans import PlanCache
from interpedia.inference.remote import HostDown, HostTimeouts, RemoteHost
from interpedia.store.hosts import HostRecord, read_host_map

if TYPE_CHECKING:
    from interpedia.inference.service import InferenceService

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Inference", "InferenceRouter", "router_for_app"]

_BACKOFF_S = 0.25  # pause before trying a host again (doubled each round)


class Inference(Protocol):
    """What the web's routes and workflows ask of live inference (the router and the in-process service)."""

    def weights_id(self, model_id: str, sae_sources: list[str] | None = None) -> list[str]: ...

    def stored_vector(self, model_id: str, source: str, index: int) -> tuple[list[float], str] | None: ...

    def tokenize(self, model_id: str, text: str, prepend_bos: bool | None = None) -> dict[str, Any]: ...

    def activation_single(self, model_id: str, prompt: str, source: str, index: int) -> dict[str, Any]: ...

    def activation_source(self, model_id: str, prompts: list[str], source: str) -> dict[str, Any]: ...

    def activation_all(
        self,
        model_id: str,
        prompt: str,
        source_set: str,
        selected: list[str],
        sort_by: list[int],
        ignore_bos: bool,
        num_results: int,
    ) -> dict[str, Any]: ...

    def topk_by_token(
        self, model_id: str, prompt: str, source: str, top_k: int, ignore_bos: bool
    ) -> dict[str, Any]: ...

    def steer_features(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> dict[str, Any]: ...

    def steer_chat_features(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> dict[str, Any]: ...

    def steer_features_stream(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> Iterator[dict[str, Any]]: ...

    def steer_chat_features_stream(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> Iterator[dict[str, Any]]: ...


class InferenceRouter:
    """Routes each live-inference request to a mapped host, or to the in-process service."""

    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], local: Callable[[], InferenceService]
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.plans = PlanCache(settings, factory)
        self._local = local
        self.timeouts = HostTimeouts(
            connect=settings.inference_host_connect_timeout_s,
            read=settings.inference_host_timeout_s,
            graph=settings.graph_host_timeout_s,
        )
        self._lock = threading.Lock()
        self._map: tuple[float, list[HostRecord]] | None = None
        self._clients: dict[str, RemoteHost] = {}
        self._down: dict[str, float] = {}  # url -> when it last failed (monotonic)

    # --- the host map ---------------------------------------------------------------------------

    def host_map(self) -> list[HostRecord]:
        """The host map, read again when older than ``INTERPEDIA_INFERENCE_CATALOGUE_TTL_S``."""
        now = time.monotonic()
        with self._lock:
            if self._map is not None and self._map[0] > now:
                return self._map[1]
        with self.factory() as session:
            hosts = read_host_map(session)
        with self._lock:
            self._map = (now + self.settings.inference_catalogue_ttl_s, hosts)
        return hosts

    def forget(self) -> None:
        """Read the host map and the catalogue again on the next request."""
        with self._lock:
            self._map = None
        self.plans.forget()

    def hosts_for(self, model_id: str, sources: Sequence[str] = (), kind: str = "inference") -> list[HostRecord]:
        """The hosts of ``model_id`` that serve every one of ``sources`` (transcoder sets for ``kind="graph"``)."""
        return [h for h in self.host_map() if h.model_id == model_id and h.kind == kind and h.serves(sources)]

    def serves(self, model_id: str, source: str | None = None) -> bool:
        """Whether a host answers the model's (and the source's) live inference, so local weights do not matter."""
        return bool(self.hosts_for(model_id, [source] if source else []))

    def _client(self, url: str) -> RemoteHost:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = RemoteHost(url, self.settings.secret, self.timeouts)
            return client

    def _order(self, hosts: list[HostRecord]) -> list[HostRecord]:
        """Hosts that answered last time first, at random (spreading the load); then those marked down, the
        longest-failed first."""
        with self._lock:
            down = dict(self._down)
        up = [h for h in hosts if h.url not in down]
        random.shuffle(up)
        return up + sorted((h for h in hosts if h.url in down), key=lambda h: down[h.url])

    def call_hosts(self, hosts: list[HostRecord], what: str, op: Callable[[RemoteHost], T]) -> T:
        """``op`` on the first host that answers, trying ``1 + INTERPEDIA_INFERENCE_HOST_RETRIES`` times."""
        order = self._order(hosts)
        tries = 1 + max(0, self.settings.inference_host_retries)
        failures: dict[str, str] = {}
        for attempt in range(tries):
            host = order[attempt % len(order)]
            if attempt >= len(order):
                time.sleep(_BACKOFF_S * 2 ** (attempt // len(order) - 1))
            try:
                result = op(self._client(host.url))
            except HostDown as exc:
                log.warning("inference host %s (%s): %s", host.url, what, exc.reason)
                failures[host.url] = exc.reason
                with self._lock:
                    self._down[host.url] = time.monotonic()
                continue
            with self._lock:
                if self._down.pop(host.url, None) is not None:
                    log.info("inference host %s answers again", host.url)
            return result
        named = "; ".join(f"{url}: {reason}" for url, reason in failures.items())
        plural = "s" if len(failures) > 1 else ""
        raise Unavailable(
            f"the inference host{plural} of {what} did not answer ({named}; {tries} tries). Start it again, or "
            "take it out of the host map (interpedia hosts remove URL) to run this model here."
        )

    def _route(
        self,
        model_id: str,
        sources: Sequence[str],
        remote: Callable[[RemoteHost], T],
        local: Callable[[InferenceService], T],
    ) -> T:
        hosts = self.hosts_for(model_id, sources)
        if not hosts:
            return local(self.local())
        # A host answers this server's secret as an admin would: the viewer's access is checked here, as in process.
        self.plans.require_model(model_id)
        for source in dict.fromkeys(sources):
            self.plans.require_source(model_id, source)
        what = f"model {model_id}" + (f" ({', '.join(sorted(set(sources)))})" if sources else "")
        return self.call_hosts(hosts, what, remote)

    def local(self) -> InferenceService:
        """The in-process service (made on first use)."""
        return self._local()

    def _sae_sources(self, model_id: str, refs: Sequence[tuple[str, int]]) -> list[str]:
        """The sources among ``refs`` that are SAEs, not vectors stored as features (a host reads those from the
        database, whatever sources it serves)."""
        return [source for source, index in refs if self.plans.stored_vector(model_id, source, index) is None]

    # --- the interface --------------------------------------------------------------------------

    def weights_id(self, model_id: str, sae_sources: list[str] | None = None) -> list[str]:
        """What weights answer (part of result cache keys): the same whichever server runs them."""
        return self.plans.weights_id(model_id, sae_sources)

    def stored_vector(self, model_id: str, source: str, index: int) -> tuple[list[float], str] | None:
        """``(vector, hook)`` of a vector stored as a feature, else None."""
        return self.plans.stored_vector(model_id, source, index)

    def tokenize(self, model_id: str, text: str, prepend_bos: bool | None = None) -> dict[str, Any]:
        """Token ids and strings of ``text``."""
        return self._route(
            model_id,
            (),
            lambda h: h.tokenize(model_id, text, prepend_bos),
            lambda s: s.tokenize(model_id, text, prepend_bos),
        )

    def activation_single(self, model_id: str, prompt: str, source: str, index: int) -> dict[str, Any]:
        """One feature's values on ``prompt``."""
        return self._route(
            model_id,
            self._sae_sources(model_id, [(source, index)]),
            lambda h: h.activation_single(model_id, prompt, source, index),
            lambda s: s.activation_single(model_id, prompt, source, index),
        )

    def activation_source(self, model_id: str, prompts: list[str], source: str) -> dict[str, Any]:
        """Every positive activation of a source on each prompt."""
        return self._route(
            model_id,
            [source],
            lambda h: h.activation_source(model_id, prompts, source),
            lambda s: s.activation_source(model_id, prompts, source),
        )

    def activation_all(
        self,
        model_id: str,
        prompt: str,
        source_set: str,
        selected: list[str],
        sort_by: list[int],
        ignore_bos: bool,
        num_results: int,
    ) -> dict[str, Any]:
        """The top features across sources of a set on ``prompt``."""
        names = selected or self.plans.visible_set_sources(model_id, source_set)
        return self._route(
            model_id,
            names,
            # the host is told the sources the viewer may see (it would search the whole set)
            lambda h: h.activation_all(model_id, prompt, source_set, names, sort_by, ignore_bos, num_results),
            lambda s: s.activation_all(model_id, prompt, source_set, selected, sort_by, ignore_bos, num_results),
        )

    def topk_by_token(self, model_id: str, prompt: str, source: str, top_k: int, ignore_bos: bool) -> dict[str, Any]:
        """The top features at each token of ``prompt``."""
        return self._route(
            model_id,
            [source],
            lambda h: h.topk_by_token(model_id, prompt, source, top_k, ignore_bos),
            lambda s: s.topk_by_token(model_id, prompt, source, top_k, ignore_bos),
        )

    def steer_features(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> dict[str, Any]:
        """A completion with and/or without steering."""
        return self._route(
            model_id,
            self._sae_sources(model_id, [(f.source, f.index) for f in features]),
            lambda h: h.steer_features(model_id, prompt, features, types, settings),
            lambda s: s.steer_features(model_id, prompt, features, types, settings),
        )

    def steer_chat_features(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> dict[str, Any]:
        """A chat continued with and/or without steering."""
        return self._route(
            model_id,
            self._sae_sources(model_id, [(f.source, f.index) for f in features]),
            lambda h: h.steer_chat_features(model_id, messages, features, types, settings),
            lambda s: s.steer_chat_features(model_id, messages, features, types, settings),
        )

    # A mapped host is asked for the whole answer (the request is checked and run now, retried across hosts as any
    # other), which is then the stream's one chunk; in process, the answer streams token by token.

    def steer_features_stream(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> Iterator[dict[str, Any]]:
        """:meth:`steer_features` as it grows: the whole answer so far after every token (one chunk from a host)."""
        return self._route(
            model_id,
            self._sae_sources(model_id, [(f.source, f.index) for f in features]),
            lambda h: iter([h.steer_features(model_id, prompt, features, types, settings)]),
            lambda s: s.steer_features_stream(model_id, prompt, features, types, settings),
        )

    def steer_chat_features_stream(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`steer_chat_features` as it grows (one chunk from a host)."""
        return self._route(
            model_id,
            self._sae_sources(model_id, [(f.source, f.index) for f in features]),
            lambda h: iter([h.steer_chat_features(model_id, messages, features, types, settings)]),
            lambda s: s.steer_chat_features_stream(model_id, messages, features, types, settings),
        )

    def remote_graph(self, model_id: str, source_set: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The graph JSON from a graph host of ``model_id``/``source_set``; None when none is mapped."""
        hosts = self.hosts_for(model_id, [source_set], kind="graph")
        if not hosts:
            return None
        return self.call_hosts(hosts, f"graphs of {model_id}/{source_set}", lambda h: h.generate_graph(body))


_app_lock = threading.Lock()


def router_for_app(state: Any) -> InferenceRouter:
    """The app's router (``app.state``), made on first use; its in-process service is ``service.for_app``'s."""

    def local() -> InferenceService:
        from interpedia.inference.service import for_app

        return for_app(state)

    with _app_lock:
        router = getattr(state, "inference_router", None)
        if router is None:
            router = InferenceRouter(state.settings, state.sessionmaker, local)
            state.inference_router = router
        return router  # type: ignore[no-any-return]
