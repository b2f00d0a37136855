"""``interpedia umap``, ``/api/umap``, ``/api/cossim`` and the source page's map, on SQLite and Postgres."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_helpers import EXPLAINED, MODEL, N_FEATURES, build_site, run_cli
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from sqlalchemy import select

from interpedia.analysis.decoder import load_directions
from interpedia.config import Settings
from interpedia.db.tables import Feature, Source

JSON = {"Accept": "application/json"}


@pytest.fixture
def site(settings: Settings, factory: Any, tmp_path: Path) -> Any:
    return build_site(factory, tmp_path)


def _features(factory: Any, source: str) -> dict[int, Feature]:
    with factory() as session:
        src = session.scalar(select(Source).where(Source.name == source))
        return {f.index: f for f in session.scalars(select(Feature).where(Feature.source_id == src.id))}


def test_umap_command_stores_coordinates_clusters_and_log_sparsity(site: Any, factory: Any, client: Any) -> None:
    result = run_cli(
        "umap", "--source", f"{MODEL}/0-res-test", "--n-neighbors", "8", "--clusterer", "kmeans", "--n-clusters", "4"
    )
    assert result.exit_code == 0, result.output
    assert f"{MODEL}/0-res-test: UMAP of {N_FEATURES} features, 4 clusters (0 outliers)" in result.stdout
    feats = _features(factory, "0-res-test")
    assert all(f.umap_x is not None and math.isfinite(f.umap_x) and f.umap_y is not None for f in feats.values())
    assert {f.umap_cluster for f in feats.values()} == {0, 1, 2, 3}
    assert feats[3].umap_log_feature_sparsity is None, "a dead feature has no finite log density"
    assert feats[4].umap_log_feature_sparsity == pytest.approx(math.log10(feats[4].frac_nonzero))
    assert all(f.umap_x is None for f in _features(factory, "1-res-test").values()), "only the named source"

    src = client.get(f"/{MODEL}/0-res-test", headers=JSON).json()["source"]
    assert src["hasUmap"] and src["hasUmapClusters"] and src["hasUmapLogSparsity"]
    html = client.get(f"/{MODEL}/0-res-test").text
    assert 'id="umap"' in html and "/static/umap.js" in html
    assert 'id="umap"' not in client.get(f"/{MODEL}/1-res-test").text
    set_page = client.get(f"/{MODEL}/res-test?source=0-res-test").text  # the source set's page shows it too
    assert f'id="umap" data-model="{MODEL}" data-layer="0-res-test"' in set_page
    assert 'id="umap"' not in client.get(f"/{MODEL}/res-test?source=1-res-test").text


def test_api_umap_returns_points_with_explanations(site: Any, client: Any) -> None:
    assert run_cli("umap", "--source", f"{MODEL}/0-res-test", "--n-neighbors", "8").exit_code == 0
    resp = client.post("/api/umap", json={"modelId": MODEL, "layers": ["0-res-test", "1-res-test"]})
    assert resp.status_code == 200
    doc = resp.json()
    assert set(doc) == {"0-res-test", "1-res-test"} and doc["1-res-test"] == []
    points = {int(p["index"]): p for p in doc["0-res-test"]}
    assert len(points) == N_FEATURES
    assert set(points[0]) >= {
        "id",
        "layer",
        "index",
        "description",
        "umap_cluster",
        "umap_x",
        "umap_y",
        "umap_log_feature_sparsity",
    }
    for index, text in EXPLAINED.items():
        assert points[index]["description"] == text and points[index]["id"]
    assert points[1]["description"] is None and points[1]["id"] is None
    assert points[5]["layer"] == "0-res-test" and isinstance(points[5]["umap_x"], float)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"modelId": MODEL, "layers": []}, 422, "layers"),
        ({"modelId": MODEL, "layers": ["9-nope"]}, 404, "source"),
        ({"modelId": "no-model", "layers": ["0-res-test"]}, 404, "modelId"),
        ({"modelId": MODEL}, 422, "layers"),
    ],
)
def test_api_umap_bad_requests(site: Any, client: Any, body: dict[str, Any], status: int, field: str) -> None:
    resp = client.post("/api/umap", json=body)
    assert resp.status_code == status
    assert resp.json()["field"] == field and resp.json()["error"]


def test_umap_without_weights_or_with_the_wrong_sae_fails_clearly(
    settings: Settings, factory: Any, tmp_path: Path
) -> None:
    from generate_helpers import make_sae_dir

    build_site(factory, tmp_path, record_weights=False)
    missing = run_cli("umap", "--source", f"{MODEL}/0-res-test")
    assert missing.exit_code == 1 and "no SAE weights recorded" in missing.stderr
    small = make_sae_dir(tmp_path / "small", "standard", d_sae=16)
    wrong = run_cli("umap", "--source", f"{MODEL}/0-res-test", "--sae", str(small))
    assert wrong.exit_code == 1 and "has 16 features" in wrong.stderr
    assert run_cli("umap", "--source", "no-slash").exit_code == 2
    assert run_cli("umap", "--source", f"{MODEL}/7-nope").exit_code == 1
    assert all(f.umap_x is None for f in _features(factory, "0-res-test").values()), "nothing written"


def test_umap_with_sae_flag_records_the_weights(settings: Settings, factory: Any, tmp_path: Path) -> None:
    site = build_site(factory, tmp_path, record_weights=False)
    result = run_cli("umap", "--source", f"{MODEL}/1-res-test", "--sae", str(site.sae1), "--n-neighbors", "6")
    assert result.exit_code == 0, result.output
    with factory() as session:
        src = session.scalar(select(Source).where(Source.name == "1-res-test"))
        assert src.weights_path == str(site.sae1.resolve()) and src.has_umap


def test_api_cossim_across_two_sources(site: Any, client: Any) -> None:
    body = {
        "modelId": MODEL,
        "source": "0-res-test",
        "index": 5,
        "targetModelId": MODEL,
        "targetSourceId": "1-res-test",
        "numResults": 6,
    }
    resp = client.post("/api/cossim", json=body)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["feature"] == {"model": MODEL, "source": "0-res-test", "index": 5}
    hits = doc["topk_decoder_cossim_features"]
    d0, d1 = load_directions(str(site.sae0)), load_directions(str(site.sae1))
    expected = np.argsort(-(d1 @ d0[5]))[:6]
    assert [h["feature"]["index"] for h in hits] == expected.tolist()
    assert all(h["feature"]["source"] == "1-res-test" and h["feature"]["model"] == MODEL for h in hits)
    assert hits[0]["cosine_similarity"] == pytest.approx(float(d1[expected[0]] @ d0[5]), abs=1e-5)
    sims = [h["cosine_similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)

    same = client.post("/api/cossim", json={**body, "targetSourceId": "0-res-test", "index": "7"}).json()
    assert 7 not in [h["feature"]["index"] for h in same["topk_decoder_cossim_features"]]
    assert len(same["topk_decoder_cossim_features"]) == 6


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"targetModelId": "other-model"}, 404, "modelId"),
        ({"index": 999}, 404, "index"),
        ({"index": "x"}, 422, "index"),
        ({"numResults": 0}, 422, "numResults"),
        ({"targetSourceId": "5-nope"}, 404, "source"),
    ],
)
def test_api_cossim_bad_requests(site: Any, client: Any, change: dict[str, Any], status: int, field: str) -> None:
    body = {
        "modelId": MODEL,
        "source": "0-res-test",
        "index": 5,
        "targetModelId": MODEL,
        "targetSourceId": "1-res-test",
        **change,
    }
    resp = client.post("/api/cossim", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field


def test_api_cossim_reads_only_local_saes(site: Any, factory: Any, client: Any) -> None:
    from interpedia.db import transaction

    with transaction(factory) as session:  # a source known only by its SAELens release: no hub download here
        src = session.scalar(select(Source).where(Source.name == "1-res-test"))
        src.weights_path, src.saelens_release, src.saelens_sae_id = None, "gpt2-small-res-jb", "blocks.1.hook_resid_pre"
    resp = client.post(
        "/api/cossim",
        json={
            "modelId": MODEL,
            "source": "0-res-test",
            "index": 1,
            "targetModelId": MODEL,
            "targetSourceId": "1-res-test",
        },
    )
    assert resp.status_code == 422 and "not a directory on this server" in resp.json()["message"]
