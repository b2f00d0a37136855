"""Release pages (``/{release}``): a SAELens release name that sources record, or a Neuronpedia source release,
shows its SAEs, the UMAP of one of them, and explanation search within the release; on SQLite and Postgres."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir
from sqlalchemy import select, update
from test_search import TOPICS, add

from interpedia.db import transaction
from interpedia.db.tables import Feature, Source, SourceRelease, SourceSet
from interpedia.ingest import import_path

RELEASE = "tiny-test-res-jb"  # as SAELens's pretrained_saes.yaml names a release
JSON = {"accept": "application/json"}


@pytest.fixture
def site(settings: Any, factory: Any, tmp_path: Path) -> None:
    """Two SAEs generated from one SAELens release (one with a UMAP), and one SAE of another set outside it."""
    import_path(write_saedashboard_dir(tmp_path / "a", n_features=8), factory)
    import_path(write_saedashboard_dir(tmp_path / "b", n_features=6, layer=1), factory)
    import_path(write_saedashboard_dir(tmp_path / "c", n_features=6, sae_set="other"), factory)
    for name in ("0-res-test", "1-res-test", "0-other"):
        add(factory, name, TOPICS if name != "1-res-test" else {0: "the LORD God of Israel"})
    with transaction(factory) as session:
        for layer in (0, 1):
            session.execute(
                update(Source)
                .where(Source.name == f"{layer}-res-test")
                .values(saelens_release=RELEASE, saelens_sae_id=f"blocks.{layer}.hook_resid_pre")
            )
        mapped = session.scalar(select(Source).where(Source.name == "1-res-test"))
        assert mapped is not None
        mapped.has_umap = True
        for f in session.scalars(select(Feature).where(Feature.source_id == mapped.id)):
            f.umap_x, f.umap_y, f.umap_cluster = float(f.index), float(f.index % 3), f.index % 2


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-source="([^"]+)">', html)


def test_a_saelens_release_name_opens_its_release_page(client: Any, site: None) -> None:
    resp = client.get(f"/{RELEASE}")
    assert resp.status_code == 200
    html = resp.text
    assert _rows(html) == ["tiny-test/0-res-test", "tiny-test/1-res-test"]  # not 0-other
    assert "blocks.1.hook_resid_pre" in html and 'href="/tiny-test/1-res-test"' in html
    assert f'<input type="hidden" name="releaseName" value="{RELEASE}">' in html
    assert 'id="umap" data-model="tiny-test" data-layer="1-res-test"' in html and "/static/umap.js" in html
    doc = client.get(f"/{RELEASE}.json").json()
    assert doc["page"] == "release" and doc["umap"] == {"modelId": "tiny-test", "source": "1-res-test"}
    release = doc["release"]
    assert release["name"] == RELEASE and release["modelIds"] == ["tiny-test"]
    assert [s["id"] for s in release["sources"]] == ["0-res-test", "1-res-test"] and release["featureCount"] == 14
    # the map the page draws is there to fetch
    points = client.post("/api/umap", json={"modelId": "tiny-test", "layers": ["1-res-test"]}).json()["1-res-test"]
    assert len(points) == 6 and points[0]["description"] == "the LORD God of Israel"
    assert f'<a href="/{RELEASE}" id="release-link">' in client.get("/tiny-test/0-res-test").text
    # a model id still opens the model; a name that is neither is 404
    assert client.get("/tiny-test.json").json()["page"] == "model"
    assert client.get("/no-such-release").status_code == 404
    assert client.get(f"/{RELEASE}?umap=0-res-test").status_code == 404  # that source has no map


def test_explanation_search_within_a_saelens_release(client: Any, site: None) -> None:
    page = client.get("/search-explanations.json", params={"q": "religious scripture", "releaseName": RELEASE}).json()
    layers = [r["layer"] for r in page["search"]["results"]]
    assert layers and set(layers) == {"0-res-test", "1-res-test"}  # 0-other has the same explanations: left out
    api = client.post("/api/explanation/search-release", json={"releaseName": RELEASE, "query": "French cooking"})
    assert api.status_code == 200 and api.json()["results"][0]["layer"] == "0-res-test"
    assert f'<option value="{RELEASE}">' in client.get("/search-explanations").text  # the form offers it
    missing = client.post("/api/explanation/search-release", json={"releaseName": "nope", "query": "food"})
    assert missing.status_code == 404


def test_a_source_release_row_and_hidden_sources(client: Any, site: None, factory: Any) -> None:
    with transaction(factory) as session:
        session.add(SourceRelease(name="other-release", description="SAEs trained another way", creator_name="Lab"))
        session.flush()
        session.execute(update(SourceSet).where(SourceSet.name == "other").values(release_name="other-release"))
        session.execute(update(Source).where(Source.name == "1-res-test").values(visibility="PRIVATE"))
    html = client.get("/other-release").text
    assert _rows(html) == ["tiny-test/0-other"] and "SAEs trained another way" in html and "by Lab" in html
    # someone else's private SAE is not listed, and its map goes with it
    doc = client.get(f"/{RELEASE}.json").json()
    assert [s["id"] for s in doc["release"]["sources"]] == ["0-res-test"] and doc["umap"] is None
    assert 'id="umap"' not in client.get(f"/{RELEASE}").text
    with transaction(factory) as session:
        session.execute(update(Source).where(Source.saelens_release == RELEASE).values(visibility="PRIVATE"))
    assert client.get(f"/{RELEASE}").status_code == 404  # nothing visible left: no such release for this viewer
