"""A page of a built interpedia home as a PNG, for the documentation (e.g. ``docs/demo-feature.png``).

Starts ``interpedia serve`` on the home in a subprocess, opens ``--path`` in Debian's headless chromium through
Playwright (as the browser tests do) and saves the visible part of the page.

    .venv/bin/python scripts/screenshot.py --home ~/.interpedia --path /tiny-demo/1-res-demo/1082 \\
        --out docs/demo-feature.png [--width 1280] [--height 900]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

log = logging.getLogger("screenshot")
CHROMIUM = os.environ.get("INTERPEDIA_CHROMIUM", "/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(base: str, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"interpedia serve exited with {server.returncode}")
        try:
            if httpx.get(base + "/", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"interpedia serve did not answer within {timeout_s:.0f} s")


def main() -> None:
    """Serve the home, open the page, save the PNG."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="INTERPEDIA_HOME of a built instance")
    parser.add_argument("--path", required=True, help="the page, e.g. /tiny-demo/1-res-demo/1082")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INTERPEDIA_HOME": str(args.home), "INTERPEDIA_DATABASE_URL": ""}
    server = subprocess.Popen(
        [sys.executable, "-m", "interpedia.cli", "serve", "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    try:
        _wait_until_up(base, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            response = page.goto(base + args.path, wait_until="networkidle")
            if response is None or response.status != 200:
                raise SystemExit(f"{args.path} answered {response.status if response else 'nothing'}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        log.info("saved %s (%s)", args.out, args.path)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
