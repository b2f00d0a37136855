"""The graph page in chromium: find a featured graph from the model page, hover and click nodes, pin two, group
them into a labelled supernode, label a node, prune, and reopen the copied URL in the same state; save a
subgraph and load another user's; upload a graph JSON (and see a bad one's error); the new-graph form's error."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import artifact, require_d3
from graph_page_helpers import EXPLAINED, MODEL, SOURCE, build_site, site_graph

FEATURE_A, FEATURE_B, TOKEN, LOGIT, ERROR = "0_3_2", "0_7_2", "E_2_2", "3_42_2", "err_0_2"


@pytest.fixture(autouse=True)
def _d3_built() -> None:
    require_d3()


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    return build_site(factory, tmp_path)


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('#graph-app[data-ready="true"]')


def _node(page: Any, node_id: str) -> Any:
    return page.locator(f'#link-graph path.node[data-node-id="{node_id}"]')


def _sign_in(page: Any, live_server: str, key: str, next_path: str) -> None:
    page.goto(f"{live_server}/signin?next={next_path}")
    page.fill("input[name=api_key]", key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signed-in-as")


def _scores_oracle(doc: dict[str, Any]) -> tuple[float, float]:
    """circuit-tracer's compute_graph_scores, written out with numpy on the graph's adjacency matrix."""
    ids = [n["node_id"] for n in doc["nodes"]]
    at = {i: k for k, i in enumerate(ids)}
    adj = np.zeros((len(ids), len(ids)))
    for link in doc["links"]:
        adj[at[link["target"]], at[link["source"]]] = link["weight"]
    norm = np.abs(adj)
    norm = norm / np.clip(norm.sum(axis=1, keepdims=True), 1e-10, None)
    logit = np.array([n.get("token_prob", 0.0) if n["feature_type"] == "logit" else 0.0 for n in doc["nodes"]])
    current, influence = logit @ norm, np.zeros(len(ids))
    while current.any():
        influence += current
        current = current @ norm
    kind = [n["feature_type"] for n in doc["nodes"]]
    errors = np.array(["error" in k for k in kind])
    tokens = np.array([k == "embedding" for k in kind])
    replacement = influence[tokens].sum() / (influence[tokens].sum() + influence[errors].sum())
    non_error = 1 - norm[:, errors].sum(axis=1)
    out = influence + logit
    return float(replacement), float((non_error * out).sum() / out.sum())


def test_explore_pin_group_label_prune_and_reopen_the_copied_url(site: Any, live_server: str, page: Any) -> None:
    # A new user finds the featured graph from the model page.
    page.goto(f"{live_server}/{MODEL}")
    page.click("#model-featured-graphs a.graph-prompt")
    page.wait_for_selector('#graph-app[data-ready="true"]')
    assert page.url.endswith(f"/{MODEL}/graph?slug=cat-dog")
    assert page.locator("#link-graph path.node").count() == 7
    replacement, completeness = _scores_oracle(site_graph())
    scores = page.locator("#graph-scores")
    assert float(scores.get_attribute("data-replacement")) == pytest.approx(replacement, rel=1e-9)
    assert float(scores.get_attribute("data-completeness")) == pytest.approx(completeness, rel=1e-9)

    # Hover: this instance's explanation of the feature, its layer, position, activation and influence.
    _node(page, FEATURE_A).hover()
    tip = page.locator(".graph-tip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert EXPLAINED[3] in text and "layer 0" in text and "position 2" in text
    assert "activation 1.5" in text and "influence 0.5" in text

    # Click: its links ranked, and its dashboard summary from this instance with a link to the dashboard.
    _node(page, FEATURE_A).click()
    detail = page.locator("#node-detail")
    assert detail.locator(".node-label").inner_text() == EXPLAINED[3]
    assert detail.locator(".edges-in tr.edge").first.get_attribute("data-node-id") == TOKEN
    assert detail.locator(".edges-out tr.edge td.num").first.inner_text() == "1.25"
    link = detail.locator("a", has_text="Open the feature's dashboard")
    assert link.get_attribute("href") == f"/{MODEL}/{SOURCE}/3"
    page.wait_for_selector("#node-detail .logits.pos li")
    assert "LORD" in detail.locator(".logits.pos").inner_text()
    page.screenshot(path=str(artifact("graph-clicked.png")), full_page=True)

    # Pin two nodes (the Pin button, a Shift-click) and group them into a labelled supernode.
    detail.locator("button.pin-toggle").click()
    _node(page, FEATURE_B).click(modifiers=["Shift"])
    assert page.locator("#subgraph-list li.pinned-row").count() == 2
    for box in page.locator("#subgraph-list input.pick").all():
        box.check()
    page.fill("#supernode-label", "animal words")
    page.click("#group-button")
    assert page.locator("#subgraph-list input.supernode-name").input_value() == "animal words"
    assert page.locator("#subgraph svg .sg-node.supernode text").text_content() == "animal words"
    assert page.locator("#link-graph path.node.grouped").count() == 2

    # Label the token node, prune below the error node's influence.
    _node(page, TOKEN).click()
    page.fill("#node-detail .clerp-input", "the cat token")
    page.click("#node-detail button.clerp-save")
    assert page.locator("#node-detail .node-label").inner_text() == "the cat token"
    page.locator("#pruning-threshold").fill("0.1")
    _node(page, ERROR).wait_for(state="detached")
    assert _node(page, FEATURE_A).count() == 1, "pinned nodes stay, whatever the pruning"

    shared = page.locator("#share-url").input_value()
    assert shared == page.url
    for name in ("slug", "pinnedIds", "supernodes", "clerps", "pruningThreshold", "clickedId"):
        assert re.search(rf"[?&]{name}=", shared), name

    # The copied link, in a fresh browser context, reopens the same view.
    other = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
    again = other.new_page()
    _open(again, shared)
    assert again.locator("#subgraph-list input.supernode-name").input_value() == "animal words"
    assert again.locator("#node-detail .node-label").inner_text() == "the cat token"
    assert again.locator("#pruning-threshold").input_value() == "0.1"
    assert again.locator(f'#link-graph path.node[data-node-id="{ERROR}"]').count() == 0
    assert again.locator(f'#link-graph path.node.clicked[data-node-id="{TOKEN}"]').count() == 1
    assert again.locator("#link-graph path.node.grouped").count() == 2
    other.close()


def test_save_a_subgraph_and_load_another_users(site: Any, live_server: str, page: Any) -> None:
    _sign_in(page, live_server, site["key"], f"/{MODEL}/graph?slug=cat-dog")
    _open(page, f"{live_server}/{MODEL}/graph?slug=cat-dog&pinnedIds={FEATURE_A},{LOGIT}&pruningThreshold=0.3")
    page.fill("#subgraph-name", "feature to logit")
    page.click("#save-subgraph button[type=submit]")
    page.wait_for_selector("#saved-subgraphs li.saved-subgraph")
    assert "owner" in page.locator("#saved-subgraphs").inner_text()

    # Someone else (not signed in) sees it, loads it, and cannot delete it.
    other = page.context.browser.new_context()
    them = other.new_page()
    _open(them, f"{live_server}/{MODEL}/graph?slug=cat-dog")
    assert them.locator("#subgraph-list li.pinned-row").count() == 0
    saved = them.locator("#saved-subgraphs li.saved-subgraph")
    assert "feature to logit" in saved.inner_text() and saved.locator("button.delete").count() == 0
    saved.locator("button.load").click()
    assert them.locator("#subgraph-list li.pinned-row").count() == 2
    assert "pinnedIds=" in them.url and "pruningThreshold=0.3" in them.url
    other.close()

    # The owner deletes it.
    page.locator("#saved-subgraphs button.delete").click()
    page.wait_for_selector("#saved-subgraphs li.muted")


def test_upload_a_graph_and_see_a_bad_uploads_error(site: Any, live_server: str, page: Any, tmp_path: Path) -> None:
    _sign_in(page, live_server, site["key"], f"/{MODEL}/graph")
    page.goto(f"{live_server}/{MODEL}/graph")
    good = tmp_path / "uploaded.json"
    good.write_text(json.dumps(site_graph("uploaded-graph")))
    page.set_input_files("#upload-file", str(good))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"slug=uploaded-graph"))
    page.wait_for_selector('#graph-app[data-ready="true"]')
    assert page.locator("#link-graph path.node").count() == 7

    page.goto(f"{live_server}/{MODEL}/graph")
    assert "uploaded-graph" in page.locator("#my-graphs").inner_text()
    bad = site_graph("bad-graph")
    bad["links"][0]["target"] = "no-such-node"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-form button[type=submit]")
    message = page.locator("#upload-message.error")
    message.wait_for()
    assert "links[0].target" in message.inner_text() and "no-such-node" in message.inner_text()

    not_json = tmp_path / "broken.json"
    not_json.write_text('{"metadata": ')
    page.set_input_files("#upload-file", str(not_json))
    page.click("#upload-form button[type=submit]")
    page.locator("#upload-message.error", has_text="not JSON").wait_for()

    page.set_input_files("#upload-file", str(tmp_path / "uploaded.json"))
    page.click("#upload-form button[type=submit]")
    page.locator("#upload-message.error", has_text="already exists").wait_for()


def test_embed_shows_the_graph_alone(site: Any, live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/{MODEL}/graph?slug=cat-dog&embed=true&pinnedIds={FEATURE_A}")
    page.wait_for_selector('#graph-app[data-ready="true"]')
    assert page.locator(".topbar").count() == 0 and page.locator("#subgraph").count() == 0
    assert _node(page, FEATURE_A).get_attribute("class").split() == ["node", "feature", "pinned"]
    assert "embed" not in (page.locator("#open-full").get_attribute("href") or "")


@pytest.fixture
def tiny_model(settings: Any, factory: Any, tmp_path: Path) -> str:
    """The attribution engine's tiny model and transcoders (tests/graph_helpers.py) as model ``tiny-graph``
    with transcoder set ``tc``; returns an API key of user ``maker``."""
    from graph_helpers import build

    from interpedia.db import transaction
    from interpedia.store.catalogue import ensure_model, ensure_source
    from interpedia.store.users import create_api_key, ensure_user

    tiny = build(tmp_path / "tiny")
    with transaction(factory) as session:
        ensure_model(session, "tiny-graph", layers=2, dimension=32, tlens_id=str(tiny.model))
        for layer, path in tiny.saelens_layers.items():
            cfg = json.loads((path / "cfg.json").read_text())  # as an import of the SAELens directory keeps it
            ensure_source(
                session, "tiny-graph", f"{layer}-tc", weights_path=str(path), layer_num=layer, saelens_config=cfg
            )
        return create_api_key(session, ensure_user(session, "maker"))


def test_upload_a_graph_made_by_the_engine(tiny_model: str, live_server: str, page: Any, tmp_path: Path) -> None:
    """A graph from ``interpedia graph generate`` (the attribution engine, on a tiny model and transcoders)
    uploads from the browser and draws, its feature nodes named as the transcoder set's features."""
    from click.testing import CliRunner
    from graph_helpers import SHORT_PROMPT

    from interpedia.cli import main

    out = tmp_path / "engine.json"
    args = ["graph", "generate", "--model", "tiny-graph", "--source-set", "tc", "--prompt", SHORT_PROMPT]
    result = CliRunner().invoke(main, [*args, "--slug", "engine-graph", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())

    _sign_in(page, live_server, tiny_model, "/tiny-graph/graph")
    page.goto(f"{live_server}/tiny-graph/graph")
    page.set_input_files("#upload-file", str(out))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"slug=engine-graph"))
    page.wait_for_selector('#graph-app[data-ready="true"]')
    assert page.locator("#link-graph path.node").count() == sum(
        1 for n in doc["nodes"] if n["feature_type"] in ("embedding", "logit") or n["influence"] <= 0.8
    )
    feature = next(n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    _node(page, feature["node_id"]).click()
    layer, index, _ = feature["node_id"].split("_")
    link = page.locator("#node-detail a", has_text="Open the feature's dashboard")
    assert link.get_attribute("href") == f"/tiny-graph/{layer}-tc/{index}"
    page.locator("#node-detail .feature-summary", has_text="no dashboard on this instance").wait_for()


def test_new_graph_form_generates_a_graph_and_shows_errors(tiny_model: str, live_server: str, page: Any) -> None:
    from graph_helpers import SHORT_PROMPT

    page.goto(f"{live_server}/tiny-graph/graph")
    assert page.locator("#generate-form").count() == 0, "signed out: a sign-in link instead of the form"
    _sign_in(page, live_server, tiny_model, "/tiny-graph/graph")
    page.goto(f"{live_server}/tiny-graph/graph")
    page.click("#generate-form button[type=submit]")
    assert "Write a prompt first" in page.locator("#generate-message").inner_text()
    page.fill("#g-prompt", SHORT_PROMPT)
    page.fill("#g-slug", "made-in-browser")
    page.click("#generate-form button[type=submit]")
    page.wait_for_url(re.compile(r"slug=made-in-browser"), timeout=120_000)
    page.wait_for_selector('#graph-app[data-ready="true"]')
    assert page.locator("#link-graph path.node.feature").count() > 0

    # The same slug again: the server's error, shown in the form, which stays usable.
    page.goto(f"{live_server}/tiny-graph/graph")
    assert "made-in-browser" in page.locator("#my-graphs").inner_text()
    page.fill("#g-prompt", SHORT_PROMPT)
    page.fill("#g-slug", "made-in-browser")
    page.click("#generate-form button[type=submit]")
    message = page.locator("#generate-message.error")
    message.wait_for()
    assert message.inner_text().startswith("Generation failed:") and "already exists" in message.inner_text()
    assert page.locator("#generate-form button[type=submit]").is_enabled()
