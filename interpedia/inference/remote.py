"""One inference host reached over HTTP: an interpedia ``serve --role inference`` (or any server of Neuronpedia's
inference API) that runs a model's live inference for this web server.

The ``/v1`` inference calls go through the official ``neuronpedia-inference-client``, so what a web server sends
is exactly the published API (its request models check every body before it leaves); the answers are read as the
raw JSON the host sent, so a routed result is byte-for-byte what the host computed. ``/v1/health`` and
``/v1/graph/generate`` (interpedia's own) go through httpx.

Failures are sorted for the router (``interpedia.inference.routing``): :class:`HostDown` when the host could not
be reached or dropped the connection (the router may try again, or another host); a user error (an unknown source,
a bad index) comes back as the same error kind with the host's message; everything else is ``Unavailable``
naming the host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import neuronpedia_inference_client as nic
import orjson
import urllib3

from interpedia.errors import Conflict, Invalid, NotFound, TooLarge, Unavailable, UserError
from interpedia.inference.options import FeatureRef, SteerSettings

log = logging.getLogger(__name__)

__all__ = ["HostDown", "HostTimeouts", "RemoteHost"]

_KINDS: dict[int, type[UserError]] = {404: NotFound, 409: Conflict, 413: TooLarge, 422: Invalid}


class HostDown(Exception):
    """The host could not be reached, or dropped the connection before answering."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class HostTimeouts:
    """Seconds to connect, to wait for an inference answer, and to wait for a graph."""

    connect: float = 5.0
    read: float = 120.0
    graph: float = 900.0


def _reason(exc: BaseException) -> str:
    """A short cause of a connection failure (``connection refused``, ``timed out connecting``)."""
    text = str(exc)
    for needle, said in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host name"),
        ("Connection reset", "connection reset"),
        ("Remote end closed", "the connection closed before an answer"),
        ("RemoteDisconnected", "the connection closed before an answer"),
    ):
        if needle in text:
            return said
    if isinstance(exc, (urllib3.exceptions.ConnectTimeoutError, httpx.ConnectTimeout)):
        return "timed out connecting"
    return f"{type(exc).__name__}: {text[:200]}"


class RemoteHost:
    """Calls to one host's ``/v1`` API with this server's secret and timeouts."""

    def __init__(self, url: str, secret: str, timeouts: HostTimeouts) -> None:
        self.url = url
        self.secret = secret
        self.timeouts = timeouts
        config = nic.Configuration(host=f"{url}/v1", api_key={"SimpleSecretAuth": secret} if secret else None)
        config.retries = False  # the router decides when to try again, and where
        self._api = nic.DefaultApi(nic.ApiClient(config))
        self._http = httpx.Client(
            base_url=f"{url}/v1",
            headers={"X-SECRET-KEY": secret} if secret else {},
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
        )

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        self._api.api_client.rest_client.pool_manager.clear()

    # --- transport ------------------------------------------------------------------------------

    def _post(self, call: Callable[..., Any], body: Any) -> Any:
        """``call`` (a ``*_without_preload_content`` operation of the official client) with ``body``; the JSON."""
        try:
            response = call(body, _request_timeout=(self.timeouts.connect, self.timeouts.read))
            data = response.data
            status = response.status
            response.release_conn()
        except urllib3.exceptions.ReadTimeoutError:
            raise Unavailable(
                f"inference host {self.url} did not answer within {self.timeouts.read:g} s "
                "(INTERPEDIA_INFERENCE_HOST_TIMEOUT_S)"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise HostDown(self.url, _reason(exc)) from None
        return self._answer(status, data)

    def _answer(self, status: int, data: bytes) -> Any:
        """The JSON of a 2xx answer; any other status as the error it stands for."""
        if 200 <= status < 300:
            return orjson.loads(data)
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = None
        message, field = None, None
        if isinstance(body, dict):
            raw = body.get("message") or body.get("error") or body.get("detail")
            message = raw if isinstance(raw, str) else None
            field = body.get("field") if isinstance(body.get("field"), str) else None
        said = message or data[:300].decode(errors="replace").strip() or f"HTTP {status}"
        if status in (401, 403):
            raise Unavailable(
                f"inference host {self.url} refused this server's X-SECRET-KEY ({status}: {said}); "
                "INTERPEDIA_SECRET must be the same here and on the inference server"
            )
        if status in (502, 504):
            raise HostDown(self.url, f"HTTP {status} from a proxy in front of it: {said[:200]}")
        if status >= 500:
            raise Unavailable(f"{said} (on inference host {self.url}, HTTP {status})")
        kind = _KINDS.get(status)
        if kind is not None and message is not None:
            raise kind(message, field)
        raise UserError(f"inference host {self.url} answered {status}: {said}", field, status=status)

    def _http_call(self, method: str, path: str, *, json: Any = None, read_timeout: float | None = None) -> Any:
        timeout = httpx.Timeout(read_timeout or self.timeouts.read, connect=self.timeouts.connect)
        try:
            response = self._http.request(method, path, json=json, timeout=timeout)
        except httpx.ReadTimeout:
            setting = "INTERPEDIA_GRAPH_HOST_TIMEOUT_S" if read_timeout else "INTERPEDIA_INFERENCE_HOST_TIMEOUT_S"
            raise Unavailable(
                f"inference host {self.url} did not answer within {timeout.read:g} s ({setting})"
            ) from None
        except httpx.TransportError as exc:
            raise HostDown(self.url, _reason(exc)) from None
        return self._answer(response.status_code, response.content)

    # --- the API --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The host's ``/v1/health``: ``{status, version, role, device, models}`` (checks the secret too)."""
        result: dict[str, Any] = self._http_call("GET", "/health")
        return result

    def tokenize(self, model_id: str, text: str, prepend_bos: bool | None) -> dict[str, Any]:
        """``/v1/tokenize``."""
        body = nic.TokenizePostRequest(model=model_id, text=text, prepend_bos=prepend_bos)
        return self._post(self._api.tokenize_post_without_preload_content, body)  # type: ignore[no-any-return]

    def activation_single(self, model_id: str, prompt: str, source: str, index: int) -> dict[str, Any]:
        """``/v1/activation/single`` of a feature."""
        body = nic.ActivationSinglePostRequest(prompt=prompt, model=model_id, source=source, index=str(index))
        return self._post(self._api.activation_single_post_without_preload_content, body)  # type: ignore[no-any-return]

    def activation_source(self, model_id: str, prompts: list[str], source: str) -> dict[str, Any]:
        """``/v1/activation/source``."""
        body = nic.ActivationSourcePostRequest(prompts=prompts, model=model_id, source=source)
        return self._post(self._api.activation_source_post_without_preload_content, body)  # type: ignore[no-any-return]

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
        """``/v1/activation/all``."""
        body = nic.ActivationAllPostRequest(
            prompt=prompt,
            model=model_id,
            source_set=source_set,
            selected_sources=selected,
            sort_by_token_indexes=sort_by,
            ignore_bos=ignore_bos,
            num_results=num_results,
        )
        return self._post(self._api.activation_all_post_without_preload_content, body)  # type: ignore[no-any-return]

    def topk_by_token(self, model_id: str, prompt: str, source: str, top_k: int, ignore_bos: bool) -> dict[str, Any]:
        """``/v1/activation/topk-by-token``."""
        body = nic.ActivationTopkByTokenPostRequest(
            prompt=prompt, model=model_id, source=source, top_k=top_k, ignore_bos=ignore_bos
        )
        return self._post(  # type: ignore[no-any-return]
            self._api.activation_topk_by_token_post_without_preload_content, body
        )

    @staticmethod
    def _steer_fields(model_id: str, features: list[FeatureRef], types: list[str], s: SteerSettings) -> dict[str, Any]:
        return {
            "model": model_id,
            "steer_method": nic.NPSteerMethod(s.method),
            "normalize_steering": s.normalize,
            "types": [nic.NPSteerType(t) for t in types],
            "features": [
                nic.NPSteerFeature(
                    model=model_id, source=f.source, index=f.index, strength=f.strength, steering_vector=f.vector
                )
                for f in features
            ],
            "n_completion_tokens": s.n_tokens,
            "temperature": s.temperature,
            "strength_multiplier": s.strength_multiplier,
            "freq_penalty": s.freq_penalty,
            "seed": s.seed,
            "stream": False,
            "n_logprobs": s.n_logprobs,
        }

    def steer_features(
        self, model_id: str, prompt: str, features: list[FeatureRef], types: list[str], settings: SteerSettings
    ) -> dict[str, Any]:
        """``/v1/steer/completion`` with features (none for a DEFAULT-only request)."""
        body = nic.SteerCompletionRequest(prompt=prompt, **self._steer_fields(model_id, features, types, settings))
        return self._post(self._api.steer_completion_post_without_preload_content, body)  # type: ignore[no-any-return]

    def steer_chat_features(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        features: list[FeatureRef],
        types: list[str],
        settings: SteerSettings,
    ) -> dict[str, Any]:
        """``/v1/steer/completion-chat`` with features."""
        body = nic.SteerCompletionChatPostRequest(
            prompt=[nic.NPSteerChatMessage(role=m["role"], content=m["content"]) for m in messages],
            steer_special_tokens=settings.steer_special_tokens,
            **self._steer_fields(model_id, features, types, settings),
        )
        return self._post(  # type: ignore[no-any-return]
            self._api.steer_completion_chat_post_without_preload_content, body
        )

    def generate_graph(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/v1/graph/generate``: the graph JSON of a prompt (interpedia's own route; gzip'd on the wire)."""
        result: dict[str, Any] = self._http_call("POST", "/graph/generate", json=body, read_timeout=self.timeouts.graph)
        return result
