"""Speed of the graph page and the UMAP map in a real browser (chromium driven by Playwright).

What is built (SQLite, in a temporary directory): a model with a synthetic attribution graph of
``--links`` links (default 10,000) between about a thousand feature nodes, the errors, tokens and logits of
a 20-token prompt, stored through ``store.graphs.save_graph``; and a source of ``--points`` features (default
100,000) with UMAP coordinates, clusters, log sparsities and an explanation each.

What is measured, by the pages' own ``performance.mark`` calls, read back by Playwright:

- graph drawn: from the graph JSON (and the page's JSON twin) having arrived and been parsed
  (``graph:json``) to the first frame after the link graph is drawn (``graph:painted``): building the arrays,
  the layout, the links on the canvas, the nodes in SVG, the panes; median of ``--repeat`` page loads;
- hover: for ``--hovers`` nodes picked at random (seeded), the time the page takes to answer a ``mouseover``
  on a node (tooltip written, its links drawn on the overlay), measured in the page from dispatching the
  event to the handler's return and to the start of the next frame; and the same hover made by Playwright's
  real mouse, timed from Python until the tooltip is visible (this adds the DevTools round trips); and a click
  on a node until it is selected and its links are listed;
- UMAP drawn: from ``/api/umap``'s JSON parsed (``umap:json``) to the first frame after the points are drawn
  (``umap:painted``); median of ``--repeat`` page loads. The fetch of ``/api/umap`` itself (request to JSON
  parsed) is recorded apart.

Results go to ``bench/results/graph_ui.json`` with the machine's load average (the figures are wall times on
a shared machine).

    .venv/bin/python bench/graph_ui.py [--links 10000] [--points 100000] [--repeat 5] [--hovers 40]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, setup_logging, table, write_results  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from interpedia.config import Settings  # noqa: E402
from interpedia.db import make_engine, make_sessionmaker, migrate, transaction  # noqa: E402
from interpedia.db.tables import Explanation, Feature  # noqa: E402
from interpedia.store.catalogue import create_model, ensure_source  # noqa: E402
from interpedia.store.graphs import GraphSave, save_graph  # noqa: E402

MODEL = "bench-graph"
CHROMIUM = os.environ.get("INTERPEDIA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
N_LAYERS, N_TOKENS, N_LOGITS = 12, 20, 10


def synthetic_graph(n_links: int, seed: int = 0) -> dict[str, Any]:
    """A graph in Neuronpedia's format with ``n_links`` links from lower rows to higher ones."""
    rng = random.Random(seed)
    tokens = ["<bos>"] + [f" tok{i}" for i in range(1, N_TOKENS)]
    nodes: list[dict[str, Any]] = []
    rows: list[list[str]] = [[] for _ in range(N_LAYERS + 2)]

    def add(node: dict[str, Any], row: int) -> None:
        nodes.append(node)
        rows[row].append(node["node_id"])

    for pos, tok in enumerate(tokens):
        add({"node_id": f"E_{pos}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos, "feature_type": "embedding",
             "jsNodeId": f"E_{pos}-{pos}", "clerp": f"Emb: {tok!r}", "influence": None}, 0)  # fmt: skip
    n_features = max(50, n_links // 10)
    seen: set[tuple[int, int, int]] = set()
    while len(seen) < n_features:
        layer, index, pos = rng.randrange(N_LAYERS), rng.randrange(16384), rng.randrange(1, N_TOKENS)
        if (layer, index, pos) in seen:
            continue
        seen.add((layer, index, pos))
        add({"node_id": f"{layer}_{index}_{pos}", "feature": (layer + index) * (layer + index + 1) // 2 + index,
             "layer": str(layer), "ctx_idx": pos, "feature_type": "cross layer transcoder",
             "jsNodeId": f"{layer}_{index}-0", "clerp": "", "influence": rng.uniform(0, 0.8),
             "activation": rng.uniform(0.1, 20)}, layer + 1)  # fmt: skip
    for layer in range(N_LAYERS):
        for pos in range(1, N_TOKENS):
            add({"node_id": f"err_{layer}_{pos}", "feature": -1, "layer": str(layer), "ctx_idx": pos,
                 "feature_type": "mlp reconstruction error", "jsNodeId": f"err_{layer}_{pos}-0", "clerp": "",
                 "influence": rng.uniform(0, 0.8)}, layer + 1)  # fmt: skip
    probs = sorted((rng.random() for _ in range(N_LOGITS)), reverse=True)
    for k, p in enumerate(probs):
        add({"node_id": f"{N_LAYERS + 1}_{k}_{N_TOKENS - 1}", "feature": k, "layer": str(N_LAYERS + 1),
             "ctx_idx": N_TOKENS - 1, "feature_type": "logit", "jsNodeId": f"L_{k}-{N_TOKENS - 1}",
             "clerp": f'Output " w{k}" (p={p / sum(probs):.3f})', "token_prob": p / sum(probs),
             "is_target_logit": k == 0}, N_LAYERS + 1)  # fmt: skip
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < n_links:
        lo = rng.randrange(N_LAYERS + 1)
        hi = rng.randrange(lo + 1, N_LAYERS + 2)
        pairs.add((rng.choice(rows[lo]), rng.choice(rows[hi])))
    links = [{"source": s, "target": t, "weight": rng.gauss(0, 1)} for s, t in sorted(pairs)]
    metadata = {"slug": "bench", "scan": MODEL, "prompt": "".join(tokens[1:]), "prompt_tokens": tokens,
                "node_threshold": 0.8, "schema_version": 1,
                "feature_details": {"neuronpedia_source_set": "clt-bench"}}  # fmt: skip
    return {"metadata": metadata, "qParams": {}, "nodes": nodes, "links": links}


def build(url: str, n_links: int, n_points: int) -> dict[str, Any]:
    """The database: the model, the graph and the mapped source."""
    migrate(url)
    factory = make_sessionmaker(make_engine(url))
    graph = synthetic_graph(n_links)
    rng = random.Random(1)
    with transaction(factory) as session:
        create_model(session, MODEL, layers=N_LAYERS)
        save_graph(session, graph, GraphSave(creator=None, featured=True))
        source = ensure_source(session, MODEL, "0-map-bench")
        source.has_umap = source.has_umap_clusters = source.has_umap_log_sparsity = True
        session.execute(
            insert(Feature),
            [
                {"source_id": source.id, "index": i, "frac_nonzero": 1e-3, "umap_x": rng.gauss(0, 5),
                 "umap_y": rng.gauss(0, 5), "umap_cluster": rng.randrange(-1, 40),
                 "umap_log_feature_sparsity": rng.uniform(-6, -1)}
                for i in range(n_points)
            ],
        )  # fmt: skip
        ids = session.execute(
            Feature.__table__.select().with_only_columns(Feature.id).where(Feature.source_id == source.id)
        ).scalars()
        session.execute(
            insert(Explanation), [{"feature_id": fid, "description": f"mentions of topic {fid % 997}"} for fid in ids]
        )
    return {"nodes": len(graph["nodes"]), "links": len(graph["links"]), "points": n_points}


def _measure(page: Any, start: str, end: str) -> float:
    return float(
        page.evaluate(
            "([a, b]) => performance.getEntriesByName(b)[0].startTime - performance.getEntriesByName(a)[0].startTime",
            [start, end],
        )
    )


HOVER_JS = """async (id) => {
  const el = document.querySelector(`#link-graph path.node[data-node-id="${id}"]`);
  const t0 = performance.now();
  el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
  const t1 = performance.now();
  await new Promise((r) => requestAnimationFrame(() => r()));
  const t2 = performance.now();
  const shown = !document.querySelector('.graph-tip').hidden;
  el.dispatchEvent(new MouseEvent('mouseout', {bubbles: true}));
  return [t1 - t0, t2 - t0, shown];
}"""


UMAP_HOVER_JS = """(index) => {
  const canvas = document.querySelector('#umap canvas.umap-canvas');
  const box = canvas.getBoundingClientRect(), at = window.interpediaUmap.position(index);
  const t0 = performance.now();
  canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + at.x, clientY: box.top + at.y, bubbles: true}));
  const t1 = performance.now();
  const shown = !document.querySelector('#umap .umap-tip').hidden;
  return [t1 - t0, index, shown];
}"""

UMAP_SEARCH_JS = """(text) => {
  const input = document.querySelector('#umap-search');
  input.value = text;
  const t0 = performance.now();
  input.dispatchEvent(new Event('input', {bubbles: true}));
  return performance.now() - t0;
}"""


CLICK_JS = """(id) => {
  const el = document.querySelector(`#link-graph path.node[data-node-id="${id}"]`);
  const t0 = performance.now();
  el.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  const t1 = performance.now();
  return [t1 - t0, document.querySelector('#node-detail').getAttribute('data-node-id') === id];
}"""


def run(base: str, args: argparse.Namespace) -> dict[str, Any]:
    """Drive chromium over the pages; returns the figures."""
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        draws, fetches = [], []
        for _ in range(args.repeat):
            page.goto(f"{base}/{MODEL}/graph?slug=bench")
            page.wait_for_selector('#graph-app[data-ready="true"]', timeout=60_000)
            draws.append(_measure(page, "graph:json", "graph:painted"))
            fetches.append(_measure(page, "graph:fetch", "graph:json"))
        shown = page.locator("#link-graph path.node").count()
        rng = random.Random(2)
        ids = page.locator("#link-graph path.node").evaluate_all("els => els.map(e => e.getAttribute('data-node-id'))")
        picked = rng.sample(ids, min(args.hovers, len(ids)))
        handler, frame, mouse = [], [], []
        for node_id in picked:
            h, f, ok = page.evaluate(HOVER_JS, node_id)
            assert ok, f"no tooltip for {node_id}"
            handler.append(h)
            frame.append(f)
        clicks = [page.evaluate(CLICK_JS, node_id) for node_id in picked[:10]]
        assert all(ok for _, ok in clicks), "a click did not select its node"
        for node_id in picked[: args.hovers // 2]:
            box = page.locator(f'#link-graph path.node[data-node-id="{node_id}"]').bounding_box()
            page.mouse.move(5, 5)
            page.locator(".graph-tip").wait_for(state="hidden")
            t0 = time.perf_counter()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.locator(".graph-tip").wait_for(state="visible")
            mouse.append((time.perf_counter() - t0) * 1000)
        out["graph"] = {
            "nodes_drawn": shown,
            "draw_ms_median": statistics.median(draws),
            "draw_ms_max": max(draws),
            "draw_ms": draws,
            "json_fetch_ms_median": statistics.median(fetches),
            "hover_handler_ms_median": statistics.median(handler),
            "hover_handler_ms_max": max(handler),
            "hover_to_next_frame_ms_median": statistics.median(frame),
            "hover_to_next_frame_ms_max": max(frame),
            "hover_real_mouse_ms_median": statistics.median(mouse),
            "hover_real_mouse_ms_max": max(mouse),
            "hovers": len(handler),
            "click_to_detail_ms_median": statistics.median(ms for ms, _ in clicks),
            "click_to_detail_ms_max": max(ms for ms, _ in clicks),
        }
        umap, umap_fetch = [], []
        for _ in range(args.repeat):
            page.goto(f"{base}/{MODEL}/0-map-bench")
            page.wait_for_selector('#umap[data-ready="true"]', timeout=120_000)
            umap.append(_measure(page, "umap:json", "umap:painted"))
            umap_fetch.append(_measure(page, "umap:fetch", "umap:json"))
        points = page.evaluate("() => window.interpediaUmap.count()")
        moves = [page.evaluate(UMAP_HOVER_JS, i) for i in random.Random(3).sample(range(args.points), args.hovers)]
        assert all(m[2] for m in moves), "a hover on the map showed no tooltip"
        page.fill("#umap-search", "topic 12")
        search = page.evaluate(UMAP_SEARCH_JS, "topic 123")
        out["umap"] = {
            "points_drawn": points,
            "draw_ms_median": statistics.median(umap),
            "draw_ms_max": max(umap),
            "draw_ms": umap,
            "api_umap_fetch_ms_median": statistics.median(umap_fetch),
            "first_hover_ms": moves[0][0],
            "hover_handler_ms_median": statistics.median(m[0] for m in moves[1:]),
            "hover_handler_ms_max": max(m[0] for m in moves[1:]),
            "search_keystroke_ms": search,
        }
        browser.close()
    return out


def main() -> None:
    """Build, serve, measure, write bench/results/graph_ui.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hovers", type=int, default=40)
    args = parser.parse_args()
    setup_logging()
    import uvicorn

    from interpedia.web.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        t0 = time.perf_counter()
        sizes = build(url, args.links, args.points)
        log.info("built %s in %.1f s", sizes, time.perf_counter() - t0)
        app = create_app(Settings(database_url=url, home=Path(tmp), embed_on_import=False))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        load_before = os.getloadavg()
        figures = run(f"http://127.0.0.1:{port}", args)
        load_after = os.getloadavg()
        server.should_exit = True
        thread.join(timeout=10)
    goals = {"graph_draw_ms": 1000, "hover_ms": 50, "umap_draw_ms": 2000}
    g, u = figures["graph"], figures["umap"]

    def row(what: str, doc: dict[str, Any], key: str, goal: str, digits: int = 0) -> list[str]:
        return [what, f"{doc[key + '_median']:.{digits}f} ms", f"{doc[key + '_max']:.{digits}f} ms", goal]

    rows = [
        row("graph drawn (JSON parsed -> painted)", g, "draw_ms", "1000 ms"),
        row("hover: handler", g, "hover_handler_ms", "50 ms", 1),
        row("hover: to next frame", g, "hover_to_next_frame_ms", "50 ms", 1),
        row("hover: real mouse, from Python", g, "hover_real_mouse_ms", "", 1),
        row("click: node selected, panes drawn", g, "click_to_detail_ms", "", 1),
        row(f"UMAP of {u['points_drawn']:,} points drawn", u, "draw_ms", "2000 ms"),
        row("UMAP hover: handler", u, "hover_handler_ms", "", 1),
    ]
    print(table(rows, ["what", "median", "max", "goal"]))
    write_results(
        "graph_ui",
        {
            "parameters": {**vars(args), **sizes, "viewport": "1400x1000", "browser": "chromium (headless)"},
            "goals": goals,
            "load_average_before": load_before,
            "load_average_after": load_after,
            **figures,
        },
    )


if __name__ == "__main__":
    main()
