"""The UMAP map on the source page and the /sae-bench table in a real browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import MODEL, N_FEATURES, build_site, core_eval, run_cli
from e2e_helpers import artifact, require_d3

from interpedia.config import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def mapped(settings: Settings, factory: Any, tmp_path: Path) -> None:
    """Two sources, the first with a UMAP map and a few explanations; both with a core eval."""
    build_site(factory, tmp_path)
    result = run_cli(
        "umap", "--source", f"{MODEL}/0-res-test", "--n-neighbors", "8", "--clusterer", "kmeans", "--n-clusters", "4"
    )
    assert result.exit_code == 0, result.output
    other = core_eval(sae_lens_id="blocks.1.hook_resid_pre")
    other["eval_result_metrics"]["sparsity"]["l0"] = 5.25
    for name, doc, source in (("a.json", core_eval(), "0-res-test"), ("b.json", other, "1-res-test")):
        (tmp_path / name).write_text(json.dumps(doc))
        done = run_cli("import-eval", str(tmp_path / name), "--model", MODEL, "--source", source)
        assert done.exit_code == 0, done.output


def _point(page: Any, index: int) -> tuple[float, float]:
    """Where feature ``index``'s point is on the page (the map draws on a canvas)."""
    box = page.locator("#umap canvas.umap-canvas").bounding_box()
    at = page.evaluate("(i) => window.interpediaUmap.position(i)", index)
    return box["x"] + at["x"], box["y"] + at["y"]


def test_umap_scatter_hover_search_and_click(page: Any, live_server: str, mapped: None) -> None:
    require_d3()
    page.goto(f"{live_server}/{MODEL}/0-res-test")
    page.wait_for_selector('#umap[data-ready="true"]')
    assert page.evaluate("() => window.interpediaUmap.count()") == N_FEATURES
    assert page.locator("#umap .umap-count").inner_text() == f"{N_FEATURES} features"

    # The search box highlights the features whose explanation matches (and draws them on top).
    page.fill("#umap-search", "cat")
    assert page.locator("#umap .umap-count").inner_text() == f"2 of {N_FEATURES} match"
    assert sorted(int(i) for i in page.evaluate("() => window.interpediaUmap.matches()")) == [0, 5]

    # Hover shows the index and the explanation.
    page.mouse.move(*_point(page, 5))
    tip = page.locator("#umap .umap-tip")
    tip.wait_for(state="visible")
    assert "#5" in tip.inner_text() and "cats and kittens" in tip.inner_text()
    page.locator("#umap").screenshot(path=str(artifact("umap-map.png")))
    page.mouse.move(1, 1)
    tip.wait_for(state="hidden")

    # Colour by log sparsity recolours without errors; clearing the search shows every point again.
    page.select_option("#umap select.umap-colour", "sparsity")
    page.fill("#umap-search", "")
    assert page.evaluate("() => window.interpediaUmap.matches()") == []

    # Zooming keeps points findable under the mouse; click opens the feature.
    page.mouse.move(*_point(page, 7))
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(100)
    page.fill("#umap-search", "brackets")
    page.mouse.click(*_point(page, 7))
    page.wait_for_url(f"{live_server}/{MODEL}/0-res-test/7")


def test_sae_bench_sorts_and_plots(page: Any, live_server: str, mapped: None) -> None:
    page.goto(f"{live_server}/sae-bench")

    def first_source() -> str:
        return page.locator("#bench-table tbody tr").first.locator("td").first.inner_text().split("\n")[0]

    assert page.locator("#bench-table tbody tr").count() == 2
    assert first_source() == f"{MODEL}/0-res-test"
    page.click('#bench-table button.sort[data-key="sparsity.l0"]')
    assert first_source() == f"{MODEL}/1-res-test", "ascending L0: 5.25 before 13.2"
    assert page.locator('#bench-table th[aria-sort="ascending"]').count() == 1
    page.click('#bench-table button.sort[data-key="sparsity.l0"]')
    assert first_source() == f"{MODEL}/0-res-test"
    assert page.locator('#bench-table th[aria-sort="descending"]').count() == 1

    assert page.locator("#plot circle.bench-point").count() == 2
    page.select_option("#plot-x", "sparsity.l0")
    page.select_option("#plot-y", "reconstruction_quality.explained_variance")
    page.click("#plot-form button[type=submit]")
    page.wait_for_url("**/sae-bench?*x=sparsity.l0*")
    assert "Explained Variance" in page.locator("#plot h2").inner_text()
    assert page.locator("#plot circle.bench-point").count() == 2
    page.screenshot(path=str(artifact("sae-bench.png")), full_page=True)


def test_feature_page_neighbours_with_explanations_and_in_another_source(
    page: Any, live_server: str, mapped: None, factory: Any
) -> None:
    import numpy as np
    from sqlalchemy import select

    from interpedia.analysis.decoder import load_directions
    from interpedia.db import transaction
    from interpedia.db.tables import Feature, Source
    from interpedia.store.versions import touch_features

    with transaction(factory) as session:  # what generate stores: the feature itself first, then neighbours
        src = session.scalar(select(Source).where(Source.name == "0-res-test"))
        feat = session.scalar(select(Feature).where(Feature.source_id == src.id, Feature.index == 7))
        feat.topk_cos_sim_indices, feat.topk_cos_sim_values = [7, 5, 0, 2], [1.0, 0.61, 0.42, 0.3]
        touch_features(session, [feat.id])  # a write behind the store's back must say so, as the store's writes do
        weights0 = src.weights_path
        weights1 = session.scalar(select(Source.weights_path).where(Source.name == "1-res-test"))

    page.goto(f"{live_server}/{MODEL}/0-res-test/7")
    rows = page.locator("#similar-same tbody tr")
    assert rows.count() == 3
    page.wait_for_function("document.querySelector('#similar-same tbody tr .desc').textContent !== ''")
    assert rows.nth(0).inner_text().split("\t")[:2] == ["0-res-test/5", "cats and kittens"]
    assert "the word cat" in rows.nth(1).inner_text()

    page.locator("#similar .cossim-other").wait_for(state="visible")
    page.select_option("#cossim-target", "1-res-test")
    other = page.locator("#similar-other tbody tr")
    other.first.wait_for()
    assert other.count() == 10
    d0, d1 = load_directions(weights0), load_directions(weights1)
    best = int(np.argmax(d1 @ d0[7]))
    link = other.first.locator("a")
    assert link.inner_text() == f"1-res-test/{best}"
    assert link.get_attribute("href") == f"/{MODEL}/1-res-test/{best}"
    link.click()
    page.wait_for_url(f"{live_server}/{MODEL}/1-res-test/{best}")
