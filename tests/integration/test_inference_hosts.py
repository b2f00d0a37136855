"""Remote inference hosts with two real processes: a web server (``interpedia serve``) and an inference-role server
(``interpedia serve --role inference``), started here on free ports, talking real HTTP, on one database.

A web server with no host mapped answers live inference in-process; once ``interpedia hosts add`` maps the inference
server, the same requests are answered by it, with the same results (activation test, search via inference, top-k
by token, steering, chat steering, tokenize, graphs). Killing the inference server is a 503 naming it; the web
server answers again as soon as it is back; a wrong secret is an error that says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graph_helpers import SHORT_PROMPT, TinyGraph
from graph_helpers import build as build_graph
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from sqlalchemy import delete

from interpedia.db import transaction
from interpedia.db.tables import SavedSearch, SteerOutput
from interpedia.store.catalogue import ensure_model, ensure_source
from interpedia.store.users import create_api_key, ensure_user

GRAPH_MODEL = "tiny-graph"
SECRET = "the-shared-secret"


class Server:
    """An ``interpedia serve`` process on a free port, its output in a log file."""

    def __init__(self, role: str, port: int, env: dict[str, str], log: Path) -> None:
        self.role, self.port, self.env, self.log = role, port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "interpedia.cli", "serve", "--role", self.role, "--port", str(self.port)],
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300  # imports alone take minutes on a loaded 2-core machine
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.role} server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def requests_seen(self, path: str) -> int:
        """How many requests for ``path`` this server's access log shows."""
        return self.log.read_text().count(f'"POST {path} HTTP')


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory: pytest.TempPathFactory) -> TinyGraph:
    return build_graph(tmp_path_factory.mktemp("hosts-graph"))


@pytest.fixture
def site(database_url: str, factory: Any, tiny_inf: TinyInference, tiny_graph: TinyGraph, tmp_path: Path) -> Any:  # noqa: F811
    """The tiny inference model and the tiny transcoder set in the catalogue; an API key; the servers' env."""
    register(factory, tiny_inf)
    with transaction(factory) as session:
        ensure_model(session, GRAPH_MODEL, layers=2, dimension=32, tlens_id=str(tiny_graph.model))
        for layer, path in tiny_graph.saelens_layers.items():
            ensure_source(
                session,
                GRAPH_MODEL,
                f"{layer}-tc",
                weights_path=str(path),
                layer_num=layer,
                saelens_config=json.loads((path / "cfg.json").read_text()),
            )
        key = create_api_key(session, ensure_user(session, "grapher"))
    env = {
        **os.environ,
        "INTERPEDIA_DATABASE_URL": database_url,
        "INTERPEDIA_HOME": str(tmp_path / "home"),
        "INTERPEDIA_SECRET": SECRET,
        "INTERPEDIA_INFERENCE_CATALOGUE_TTL_S": "0",  # a host added is used at the next request
        "INTERPEDIA_RATE_LIMIT_ENABLED": "false",
        "INTERPEDIA_INFERENCE_TORCH_THREADS": "1",
        "INTERPEDIA_INFERENCE_HOST_RETRIES": "1",
        "INTERPEDIA_INFERENCE_HOST_TIMEOUT_S": "900",  # a model's first load on a loaded 2-core machine
        "INTERPEDIA_LOG_LEVEL": "INFO",  # uvicorn's access log: which server answered what
        "HF_HUB_OFFLINE": "1",
    }
    return {"env": env, "key": key, "tmp": tmp_path}


@pytest.fixture
def servers(site: Any) -> Iterator[tuple[Server, Server]]:
    """An inference-role server and a web server, both running."""
    tmp = site["tmp"]
    inference = Server("inference", _free_port(), site["env"], tmp / "inference.log")
    web = Server("all", _free_port(), site["env"], tmp / "web.log")
    try:
        inference.start()
        web.start()
        yield web, inference
    finally:
        web.kill()
        inference.kill()


def _hosts(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI: ``interpedia hosts ...``."""
    return subprocess.run(
        [sys.executable, "-m", "interpedia.cli", "hosts", *args], env=env, capture_output=True, text=True, timeout=300
    )


FEATURE = {"modelId": MODEL_ID, "layer": "1-res-standard", "index": "5", "strength": 30}
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/api/activation/new", {"feature": {**FEATURE}, "customText": "the cat sat on the mat"}),
    ("/api/activation/source", {"modelId": MODEL_ID, "source": "1-res-standard", "customText": "a dog ran"}),
    ("/api/search-all", {"modelId": MODEL_ID, "sourceSet": "res-standard", "text": "the king spoke", "numResults": 5}),
    ("/api/search-topk-by-token", {"modelId": MODEL_ID, "source": "1-res-standard", "text": "birds sang"}),
    (
        "/api/steer",
        {"modelId": MODEL_ID, "prompt": "the cat sat", "features": [FEATURE], "temperature": 0.7, "n_tokens": 6},
    ),
    (
        "/api/steer-chat",
        {
            "modelId": MODEL_ID,
            "features": [FEATURE],
            "defaultChatMessages": [{"role": "user", "content": "hi"}],
            "steeredChatMessages": [{"role": "user", "content": "hello"}],
            "temperature": 0,
            "n_tokens": 5,
            "n_logprobs": 2,
        },
    ),
    ("/api/tokenize", {"modelId": MODEL_ID, "prompt": "the cat sat"}),
]
# What each route sends the host, for the access-log check
V1_PATH = {
    "/api/activation/new": "/v1/activation/single",
    "/api/activation/source": "/v1/activation/source",
    "/api/search-all": "/v1/activation/all",
    "/api/search-topk-by-token": "/v1/activation/topk-by-token",
    "/api/steer": "/v1/steer/completion",
    "/api/steer-chat": "/v1/steer/completion-chat",
    "/api/tokenize": "/v1/tokenize",
}


def _answers(web: Server) -> dict[str, Any]:
    out = {}
    with httpx.Client(base_url=web.url, timeout=300) as http:
        for path, body in REQUESTS:
            r = http.post(path, json=body)
            assert r.status_code == 200, (path, r.text[:500])
            doc = r.json()
            for volatile in ("id", "shareUrl"):  # a steering result's saved row
                doc.pop(volatile, None) if isinstance(doc, dict) else None
            out[path] = doc
    return out


def _stream(web: Server, path: str, body: dict[str, Any]) -> list[Any]:
    """The server-sent events of a streamed answer (every one a ``data:`` event, none an error)."""
    r = httpx.post(f"{web.url}{path}", json={**body, "stream": True}, timeout=300)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text[:500]
    blocks = [b for b in r.text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), r.text[:500]
    return [json.loads(b.removeprefix("data: ")) for b in blocks]


def _graph(web: Server, key: str, slug: str) -> dict[str, Any]:
    with httpx.Client(base_url=web.url, timeout=600, headers={"x-api-key": key}) as http:
        body = {"modelId": GRAPH_MODEL, "sourceSetName": "tc", "prompt": SHORT_PROMPT, "slug": slug}
        made = http.post("/api/graph/generate", json=body)
        assert made.status_code == 200, made.text[:500]
        doc: dict[str, Any] = http.get(made.json()["s3url"]).json()
    return doc


def _forget_cached_results(factory: Any) -> None:
    """Drop saved searches and steering outputs, so the next requests compute again."""
    with transaction(factory) as session:
        session.execute(delete(SavedSearch))
        session.execute(delete(SteerOutput))


def test_routed_answers_equal_in_process_ones(servers: tuple[Server, Server], site: Any, factory: Any) -> None:
    web, inference = servers
    local = _answers(web)  # no host mapped: the web server runs the model itself
    local_graph = _graph(web, site["key"], "local-graph")
    assert all(inference.requests_seen(p) == 0 for p in V1_PATH.values())

    added = _hosts(site["env"], "add", inference.url, "--model", MODEL_ID)
    assert added.returncode == 0, added.stderr
    assert f"serves inference for {MODEL_ID} (every source)" in added.stdout and "health: ok" in added.stdout
    graph_host = _hosts(site["env"], "add", inference.url + "/v1/", "--model", GRAPH_MODEL, "--graph")
    assert graph_host.returncode == 0, graph_host.stderr
    listed = _hosts(site["env"], "list", "--check")
    assert listed.returncode == 0 and listed.stdout.count(inference.url) == 2 and "ok (cpu" in listed.stdout

    _forget_cached_results(factory)
    remote = _answers(web)
    for path, v1 in V1_PATH.items():
        assert inference.requests_seen(v1) >= 1, f"{path} was not sent to the inference host ({v1})"
        assert remote[path] == local[path], path
    # Streamed steering through the host: each output arrives whole (STEERED, then DEFAULT), then the saved result,
    # which is the plain answer's.
    _forget_cached_results(factory)
    seen = inference.requests_seen("/v1/steer/completion")
    events = _stream(web, "/api/steer", dict(REQUESTS[4][1]))
    assert inference.requests_seen("/v1/steer/completion") == seen + 2
    assert len(events) == 3, events
    assert events[0]["STEERED"] == local["/api/steer"]["STEERED"] and events[0]["DEFAULT"] is None
    assert events[1]["DEFAULT"] == local["/api/steer"]["DEFAULT"]
    assert {k: v for k, v in events[2].items() if k not in ("id", "shareUrl")} == local["/api/steer"]
    assert events[2]["shareUrl"].endswith(f"/steer/{events[2]['id']}")

    remote_graph = _graph(web, site["key"], "remote-graph")
    assert inference.requests_seen("/v1/graph/generate") == 1
    for part in ("nodes", "links"):
        assert remote_graph[part] == local_graph[part]
    assert remote_graph["metadata"]["slug"] == "remote-graph"

    removed = _hosts(site["env"], "remove", inference.url)
    assert removed.returncode == 0 and removed.stdout.count("removed host") == 2
    _forget_cached_results(factory)
    seen = inference.requests_seen("/v1/activation/single")
    assert _answers(web) == local  # in-process again
    assert inference.requests_seen("/v1/activation/single") == seen


def test_a_dead_host_is_a_503_naming_it_and_recovers(servers: tuple[Server, Server], site: Any) -> None:
    web, inference = servers
    assert _hosts(site["env"], "add", inference.url, "--model", MODEL_ID, "--source", "1-res-standard").returncode == 0
    body = {"feature": {**FEATURE}, "customText": "the cat sat on the mat"}
    with httpx.Client(base_url=web.url, timeout=300) as http:
        first = http.post("/api/activation/new", json=body)
        assert first.status_code == 200
        # the host's health check: behind the secret, and it says what the routed request loaded there
        assert httpx.get(f"{inference.url}/v1/health", timeout=30).status_code == 401
        health = httpx.get(f"{inference.url}/v1/health", headers={"X-SECRET-KEY": SECRET}, timeout=30).json()
        assert health["status"] == "ok" and health["role"] == "inference"
        assert health["warm"]["models"] == [MODEL_ID] and health["warm"]["sources"] == [f"{MODEL_ID}/1-res-standard"]
        assert "warm: " + MODEL_ID in _hosts(site["env"], "list", "--check").stdout
        # a second host of the model that is down: a request that meets it first goes on to the live one
        dead = f"http://127.0.0.1:{_free_port()}"
        added = _hosts(site["env"], "add", dead, "--model", MODEL_ID, "--source", "1-res-standard", "--no-check")
        assert added.returncode == 0
        for _ in range(3):
            assert http.post("/api/activation/new", json=body).json() == first.json()

        inference.kill()
        down = http.post("/api/activation/new", json=body)
        assert down.status_code == 503
        message = down.json()["message"]
        assert inference.url in message and "connection refused" in message and "interpedia hosts remove" in message
        listed = _hosts(site["env"], "list", "--check")
        assert listed.returncode == 1 and f"DOWN: inference host {inference.url} is not answering" in listed.stdout
        # a source the host does not serve is not sent to it: the web server answers it itself
        other = {"feature": {**FEATURE, "layer": "1-res-topk"}, "customText": "the cat sat on the mat"}
        assert http.post("/api/activation/new", json=other).status_code == 200

        inference.start(INTERPEDIA_SECRET="another-secret")
        wrong = http.post("/api/activation/new", json=body)
        assert wrong.status_code == 503
        assert "X-SECRET-KEY" in wrong.json()["message"] and "INTERPEDIA_SECRET" in wrong.json()["message"]
        refused = _hosts(site["env"], "add", inference.url, "--model", GRAPH_MODEL, "--graph")
        assert refused.returncode != 0 and "X-SECRET-KEY" in refused.stderr

        inference.kill()
        inference.start()
        back = http.post("/api/activation/new", json=body)
        assert back.status_code == 200, back.text[:500]
        assert back.json() == first.json()
        # a user error on the host comes back as the same error, not as a host failure
        bad = http.post("/api/activation/new", json={**body, "feature": {**FEATURE, "index": "100000"}})
        assert bad.status_code == 422 and inference.url not in bad.json()["message"]


ROUTE_WITHOUT_TORCH = """
import sys
from fastapi.testclient import TestClient
from interpedia.web.app import create_app
client = TestClient(create_app())
body = {"feature": {"modelId": "tiny-inf", "layer": "1-res-standard", "index": "5"}, "customText": "a cat"}
r = client.post("/api/activation/new", json=body)
print(r.status_code, "torch" in sys.modules)
"""


def test_a_web_server_that_routes_everything_loads_no_torch(site: Any) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    assert _hosts(site["env"], "add", dead, "--model", MODEL_ID, "--no-check").returncode == 0
    run = subprocess.run(
        [sys.executable, "-c", ROUTE_WITHOUT_TORCH], env=site["env"], capture_output=True, text=True, timeout=300
    )
    assert run.stdout.split() == ["503", "False"], run.stderr[-2000:]
