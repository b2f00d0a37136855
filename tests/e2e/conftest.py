"""Browser fixtures: Debian's chromium driven by Playwright, against the app served by uvicorn.

The e2e tests run on SQLite only (``database_url`` is overridden here): what they check is the
browser side; the integration tests cover both backends.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from parts import missing, require_module

from interpedia.config import get_settings
from interpedia.db import migrate
from interpedia.store.vocab import vocab_cache

CHROMIUM = os.environ.get("INTERPEDIA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated SQLite file (the browser tests do not repeat per backend)."""
    vocab_cache.clear()
    url = f"sqlite:///{tmp_path / 'interpedia.db'}"
    migrate(url)
    yield url


@pytest.fixture(autouse=True)
def _no_embedding_on_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The browser tests import explanations but do not need the sentence embedder.
    monkeypatch.setenv("INTERPEDIA_EMBED_ON_IMPORT", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session."""
    playwright_api = require_module("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        missing(f"no chromium at {CHROMIUM} (make test installs it with apt)")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; JS errors and dialogs fail the test that caused them."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)  # generous: CI machines may be busy
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def _dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", _dialog)
    page.js_errors = errors  # type: ignore[attr-defined]
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not dialogs, f"dialogs opened: {dialogs}"
