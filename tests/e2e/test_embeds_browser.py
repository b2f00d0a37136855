"""Embeds in chromium: a page served from an origin in ``INTERPEDIA_EMBED_ORIGINS`` (a second local server on
another port) shows the feature dashboard in an iframe, runs its ``defaulttesttext`` live, and shows the graph;
the same page from an origin not in the list gets a blocked frame."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from e2e_helpers import artifact, write_batch
from factories import make_feature, make_graph
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.db.tables import Explanation, Feature, Source
from interpedia.ingest import import_path
from interpedia.store import graphs as graph_store
from interpedia.store.users import ensure_user

pytestmark = pytest.mark.e2e

SOURCE = "1-res-standard"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Host:
    """A plain web server on its own port (another origin) whose page frames ``src``."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.src = ""
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (the stdlib's name)
                body = (
                    "<!doctype html><title>a blog post</title><h1>A post about a feature</h1>"
                    f'<iframe id="np" src="{host.src}" width="900" height="700"></iframe>'
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts() -> Iterator[tuple[_Host, _Host]]:
    """An allowed origin and another one."""
    allowed, other = _Host(), _Host()
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture
def app(settings: Settings, hosts: tuple[_Host, _Host]) -> Any:
    """The app, letting only the first host frame its embeds (live_server serves this app)."""
    from interpedia.web.app import create_app

    return create_app(settings.model_copy(update={"embed_origins": [hosts[0].origin]}))


@pytest.fixture
def live(factory: Any, tiny_inf: TinyInference, tmp_path: Path) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    feats = [make_feature(i) for i in range(16)]
    import_path(write_batch(tmp_path / "dash", feats, model_id=MODEL_ID, sae_set="res-standard", layer=1), factory)
    with transaction(factory) as session:
        for f in session.query(Feature).join(Source).filter(Source.name == SOURCE):
            session.add(Explanation(feature_id=f.id, description=f"explained {f.index}", type_name="manual"))
        graph_store.save_graph(
            session, make_graph(MODEL_ID, "cat-dog"), graph_store.GraphSave(ensure_user(session, "g"))
        )
    return tiny_inf


def _frame(page: Any, url: str) -> Any:
    """The iframe's frame once it has loaded ``url`` (or been refused)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        frames = [f for f in page.frames if f != page.main_frame]
        if frames and frames[0].url not in ("", "about:blank"):
            return frames[0]
        page.wait_for_timeout(100)
    raise AssertionError(f"the iframe never loaded {url}")


def test_an_allowed_origin_shows_the_embed_and_another_is_blocked(
    page: Any, live_server: str, live: TinyInference, hosts: tuple[_Host, _Host]
) -> None:
    allowed, other = hosts
    feature = f"{live_server}/{MODEL_ID}/{SOURCE}/3?embed=true&embedtestfield=false&defaulttesttext=" + quote(
        "the king spoke unto his people"
    )
    allowed.src = other.src = feature
    refusals: list[str] = []
    page.on("console", lambda msg: refusals.append(msg.text) if "frame-ancestors" in msg.text else None)

    page.goto(allowed.origin)
    frame = page.frame_locator("#np")
    assert frame.locator("#top-explanation").inner_text() == "explained 3"
    assert frame.locator("#open-full").get_attribute("target") == "_blank"
    assert frame.locator("#activations .ex").count() > 0 and frame.locator("#feature-stats").is_visible()
    assert frame.locator("#test-form").is_hidden()  # embedtestfield=false
    frame.locator("#test-result").wait_for(state="visible")  # defaulttesttext ran by itself
    assert frame.locator("#test-strip .t").count() > 0
    page.screenshot(path=str(artifact("embed-allowed.png")))
    assert not refusals

    page.goto(other.origin)
    blocked = _frame(page, feature)
    page.wait_for_timeout(500)
    assert blocked.locator("#top-explanation").count() == 0  # chromium shows its error page instead
    assert refusals and "frame-ancestors" in refusals[0]
    page.screenshot(path=str(artifact("embed-blocked.png")))

    # the graph's embed follows the same list
    allowed.src = other.src = f"{live_server}/{MODEL_ID}/graph?slug=cat-dog&embed=true"
    page.goto(allowed.origin)
    assert "The cat" in page.frame_locator("#np").locator(".graph-prompt").inner_text()
    refusals.clear()
    page.goto(other.origin)
    blocked = _frame(page, allowed.src)
    page.wait_for_timeout(500)
    assert blocked.locator(".graph-prompt").count() == 0 and refusals
