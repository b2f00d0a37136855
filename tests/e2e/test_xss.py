"""The XSS corpus in a real browser (issue #9): every page kind loads with no dialog, no script error, no
injected element or handler in the DOM, and text with an RTL override kept from reordering the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from factories import import_embed
from xss_corpus_data import EXPLANATIONS, LAYER, MODEL, RTL, SCRIPT, SET, write_corpus

from interpedia.config import get_settings
from interpedia.ingest import import_path

# What would have run or been injected: scripts that are not ours, elements the pages never use,
# handler attributes, script URLs; plus a flag any payload that did run would have set.
DOM_CHECK = """() => {
  const bad = [];
  for (const s of document.querySelectorAll('script')) {
    const src = s.getAttribute('src') || '';
    if (!src.startsWith('/static/') && s.type !== 'application/json') bad.push('script: ' + s.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll('img, iframe, object, embed, b')) bad.push('element: ' + el.tagName);
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (a.name.startsWith('on')) bad.push('handler: ' + a.name + ' on ' + el.tagName);
      if (['href', 'src', 'action', 'formaction'].includes(a.name) && /^\\s*javascript:/i.test(a.value)) {
        bad.push('url: ' + a.value);
      }
    }
  }
  return bad;
}"""

# Every element whose own text holds the RTL override must isolate it (unicode-bidi: isolate).
RTL_CHECK = """(rtl) => {
  const loose = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.data.includes(rtl)) continue;
    const el = node.parentElement;
    if (['INPUT', 'TEXTAREA', 'OPTION', 'TITLE'].includes(el.tagName)) continue;
    // The element holding the text itself: an isolated ancestor would still let the override reorder siblings.
    const bidi = getComputedStyle(el).unicodeBidi;
    if (!['isolate', 'plaintext', 'isolate-override'].includes(bidi)) loose.push(el.tagName + '.' + el.className);
  }
  return loose;
}"""


@pytest.fixture
def embed_on_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test searches the corpus by meaning, so its explanations are embedded as they are imported."""
    monkeypatch.setenv("INTERPEDIA_EMBED_ON_IMPORT", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_corpus_pages_run_nothing_in_chromium(
    embed_on_import: None, live_server: str, factory: Any, page: Any, tmp_path: Path
) -> None:
    import_path(write_corpus(tmp_path / "export"), factory, embed=import_embed())
    search = "/search-explanations?" + urlencode({"q": "script tags"})
    reflected = "/search-explanations?" + urlencode({"q": SCRIPT, "modelId": MODEL})
    paths = [
        "/",
        f"/{MODEL}",
        f"/{MODEL}/{SET}",
        f"/{MODEL}/{LAYER}",
        search,
        reflected,
        f"/{MODEL}/{LAYER}/{quote(SCRIPT, safe='')}",
    ]
    paths += [f"/{MODEL}/{LAYER}/{i}" for i in EXPLANATIONS]
    for path in paths:
        page.goto(live_server + path)
        page.wait_for_load_state("load")
        assert page.evaluate(DOM_CHECK) == [], path
        assert page.evaluate(RTL_CHECK, RTL) == [], path
        if path.endswith(f"/{LAYER}/0"):
            # The payload is on the page as text, where a user can read it.
            assert SCRIPT in page.locator("#explanations").inner_text()
            page.hover(".strip .t >> nth=0")  # the token tooltip writes text, never HTML
        if path == search:
            assert page.locator("#search-hits tr.hit").count() >= 1
            assert EXPLANATIONS[0] in page.locator("#search-hits").inner_text()
    # The page fixture fails the test if any alert/confirm/prompt opened or any script error happened.
    assert page.dialogs == [] and page.js_errors == []
