"""The XSS corpus in a real browser (issue #9): every page kind loads with no dialog, no script error, no
injected element or handler in the DOM, and text with an RTL override kept from reordering the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from factories import import_embed
from xss_corpus_data import BREAKOUT, EXPLANATIONS, IMG, LAYER, MODEL, RTL, SCRIPT, SET, SVG, write_corpus

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


def _payload_graph() -> dict[str, Any]:
    """A graph of the corpus model whose prompt tokens and clerps carry the payloads; its feature node is
    feature 0 of the corpus source, so the feature page lists it too."""
    from factories import make_graph

    tokens = ("<bos>", SCRIPT, IMG, RTL)
    doc = make_graph(MODEL, "payload-graph", tokens=tokens, feature_details={"neuronpedia_source_set": SET})
    doc["metadata"]["prompt"] = "".join(tokens[1:]) + SVG
    layer = LAYER.split("-", 1)[0]
    for node in doc["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            node["layer"], node["node_id"] = layer, node["node_id"].replace("0_", f"{layer}_", 1).replace("_7_", "_0_")
            node["clerp"] = f"clerp {BREAKOUT} {RTL}" if node["node_id"].startswith(f"{layer}_3_") else ""
    ids = {n["node_id"] for n in doc["nodes"]}
    for link in doc["links"]:
        for end in ("source", "target"):
            if link[end] not in ids:
                link[end] = link[end].replace("0_", f"{layer}_", 1).replace("_7_", "_0_")
    return doc


def test_graph_pages_run_nothing_in_chromium(live_server: str, factory: Any, page: Any, tmp_path: Path) -> None:
    """Prompt tokens, clerps, supernode labels and title prefixes with script tags, handlers and bidi overrides
    (from an upload or from a shared URL) render as inert text on the graph pages."""
    from e2e_helpers import require_d3

    from interpedia.db import transaction
    from interpedia.store.graphs import GraphSave, save_graph

    require_d3()
    import_path(write_corpus(tmp_path / "export"), factory)
    doc = _payload_graph()
    with transaction(factory) as session:
        save_graph(session, doc, GraphSave(creator=None, featured=True, title_prefix=IMG))
    ids = [n["node_id"] for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    state = urlencode(
        {
            "slug": "payload-graph",
            "pinnedIds": ",".join(ids),
            "supernodes": json.dumps([[f"{SCRIPT} {SVG} {RTL}", *ids]]),
            "clerps": json.dumps([[doc["nodes"][1]["node_id"], f"{IMG} {RTL}"]]),
            "clickedId": ids[0],
        }
    )
    graph_url = f"/{MODEL}/graph?{state}"
    for path in (f"/{MODEL}", f"/{MODEL}/graph", f"/{MODEL}/{LAYER}/0", graph_url, graph_url + "&embed=true"):
        page.goto(live_server + path)
        page.wait_for_load_state("load")
        if "slug=" in path:
            page.wait_for_selector('#graph-app[data-ready="true"]')
            for node_id in (ids[0], doc["nodes"][1]["node_id"]):
                page.hover(f'#link-graph path.node[data-node-id="{node_id}"]')
                assert page.locator(".graph-tip").is_visible()
        assert page.evaluate(DOM_CHECK) == [], path
        assert page.evaluate(RTL_CHECK, RTL) == [], path
        if path == graph_url:
            # The payloads are on the page as text a user can read.
            assert SCRIPT in page.locator("#subgraph-list input.supernode-name").input_value()
            assert "clerp " + BREAKOUT in page.locator("#node-detail .node-label").inner_text()
            assert SCRIPT in page.locator("#prompt-tokens").inner_text()
        if path == f"/{MODEL}/{LAYER}/0":
            assert page.locator("#feature-graph-list a.graph-prompt").count() == 1
    assert page.dialogs == [] and page.js_errors == []
